/*
 * shards.c — the router's side of the shard links: which shard owns a room (the slot table), what goes to a shard
 * when a client speaks, and what the router does with each frame a shard sends back — above all the fan-out of a
 * room's broadcast to the room's sockets, with the frame encoded once.
 */
#include <string.h>
#include <unistd.h>

#include "router.h"

#define ROOM_KEY_MAX (64 + 1 + 256)

void shards_init(void)
{
    int n = router.conf->shards;
    router.shards = xcalloc((size_t)n, sizeof(*router.shards));
    slots_shard_t list[CONFIG_MAX_SHARDS];
    for (int i = 0; i < n; ++i)
        list[i] = (slots_shard_t){(uint32_t)i, 1.0};
    slots_build(&router.slots, list, (size_t)n);
}

void shards_dispose(void)
{
    for (int i = 0; i < router.conf->shards; ++i) {
        if (router.shards[i].link != NULL)
            link_close(router.shards[i].link);
        free(router.shards[i].paused);
    }
    free(router.shards);
    router.shards = NULL;
}

uint16_t shards_owner(const char *party, size_t party_len, const char *room, size_t room_len)
{
    return router.slots.owner[slots_of_room(party, party_len, room, room_len)];
}

link_t *shards_link(uint16_t shard)
{
    return router.shards[shard].link;
}

size_t shards_backlog(void)
{
    size_t n = 0;
    for (int i = 0; i < router.conf->shards; ++i)
        if (router.shards[i].link != NULL)
            n += link_backlog(router.shards[i].link);
    return n;
}

int shards_all_up(void)
{
    for (int i = 0; i < router.conf->shards; ++i)
        if (router.shards[i].link == NULL || !link_is_ready(router.shards[i].link))
            return 0;
    return 1;
}

void shards_flush(void)
{
    for (int i = 0; i < router.conf->shards; ++i)
        if (router.shards[i].link != NULL)
            link_flush(router.shards[i].link);
}

/* ---- rooms ---- */

router_room_t *shards_find_room(const char *key, size_t key_len)
{
    router_room_t *room;
    HASH_FIND(hh, router.rooms, key, key_len, room);
    return room;
}

static void room_add(ws_conn_t *conn, const char *key, size_t key_len)
{
    router_room_t *room = shards_find_room(key, key_len);
    if (room == NULL) {
        room = xcalloc(1, sizeof(*room));
        room->key = xstrndup(key, key_len);
        room->key_len = key_len;
        room->shard = conn->shard;
        HASH_ADD_KEYPTR(hh, router.rooms, room->key, room->key_len, room);
    }
    conn->room = room;
    conn->room_prev = NULL;
    conn->room_next = room->conns;
    if (room->conns != NULL)
        room->conns->room_prev = conn;
    room->conns = conn;
    ++room->count;
}

static void room_remove(ws_conn_t *conn)
{
    router_room_t *room = conn->room;
    if (room == NULL)
        return;
    if (conn->room_prev != NULL)
        conn->room_prev->room_next = conn->room_next;
    else
        room->conns = conn->room_next;
    if (conn->room_next != NULL)
        conn->room_next->room_prev = conn->room_prev;
    conn->room = NULL;
    conn->room_prev = conn->room_next = NULL;
    if (--room->count == 0) {
        HASH_DEL(router.rooms, room);
        free(room->key);
        free(room);
    }
}

/* ---- client → shard ---- */

void shards_on_ws_message(ws_conn_t *conn, int binary, const uint8_t *data, size_t len)
{
    link_t *link = router.shards[conn->shard].link;
    if (!conn->shard_knows || link == NULL)
        return;
    proto_msg_t m = {.type = PROTO_MESSAGE, .id = conn->cid, .binary = binary, .data = proto_str((const char *)data, len)};
    link_emit(link, &m);
    if (link_congested(link)) {
        /* the shard is behind: stop reading this client until the link drains (on_drained) */
        router_shard_t *s = &router.shards[conn->shard];
        if (s->num_paused == s->cap_paused) {
            s->cap_paused = s->cap_paused == 0 ? 64 : s->cap_paused * 2;
            s->paused = xrealloc(s->paused, s->cap_paused * sizeof(*s->paused));
        }
        s->paused[s->num_paused++] = conn->cid;
        ws_conn_pause(conn);
    }
}

static void resume_paused(router_shard_t *s)
{
    for (size_t i = 0; i < s->num_paused; ++i) {
        ws_conn_t *c = ws_conn_find(s->paused[i]);
        if (c != NULL)
            ws_conn_resume(c);
    }
    s->num_paused = 0;
}

void shards_on_ws_closed(ws_conn_t *conn, int code, const char *reason, int clean)
{
    room_remove(conn);
    link_t *link = router.shards[conn->shard].link;
    if (conn->shard_knows && link != NULL) {
        proto_msg_t m = {
            .type = PROTO_CLOSE, .id = conn->cid, .code = code, .reason = proto_str(reason, strlen(reason)), .clean = clean};
        link_emit(link, &m);
    }
    conn->shard_knows = 0;
}

/* ---- shard → router ---- */

/* The connection a frame from `shard` names, if it is that shard's. */
static ws_conn_t *conn_of(int shard, uint64_t cid)
{
    ws_conn_t *conn = ws_conn_find(cid);
    return conn != NULL && conn->shard == shard ? conn : NULL;
}

static void on_broadcast(const proto_msg_t *m)
{
    char key[ROOM_KEY_MAX];
    if (m->party.len + 1 + m->room.len > sizeof(key))
        return;
    memcpy(key, m->party.base, m->party.len);
    key[m->party.len] = '/';
    memcpy(key + m->party.len + 1, m->room.base, m->room.len);
    router_room_t *room = shards_find_room(key, m->party.len + 1 + m->room.len);
    if (room == NULL)
        return;
    ws_frame_t *frame = ws_frame_new(m->binary ? WS_OP_BINARY : WS_OP_TEXT, m->data.base, m->data.len);
    for (ws_conn_t *c = room->conns, *next; c != NULL; c = next) {
        /* ws_conn_send can close `c` (slow consumer), which unlinks it: step first */
        next = c->room_next;
        int skip = 0;
        for (size_t i = 0; i < m->num_except && !skip; ++i)
            skip = m->except[i] == c->cid;
        if (!skip)
            ws_conn_send(c, frame);
    }
    ws_frame_release(frame);
}

static void on_frame(link_t *link, const proto_msg_t *m)
{
    int shard = (int)(intptr_t)link_data(link);
    ws_conn_t *conn;
    switch (m->type) {
    case PROTO_ATTACH:
        if ((conn = conn_of(shard, m->id)) != NULL && conn->pending != NULL && conn->room == NULL)
            room_add(conn, conn->pending->key, conn->pending->key_len);
        break;
    case PROTO_ACCEPT:
        if ((conn = conn_of(shard, m->id)) != NULL && conn->pending != NULL && !conn->pending->upgrading)
            http_upgrade_accepted(conn->pending);
        break;
    case PROTO_REJECT:
        if ((conn = conn_of(shard, m->id)) != NULL && conn->pending != NULL && !conn->pending->upgrading) {
            char why[256];
            size_t n = m->data.len < sizeof(why) - 1 ? m->data.len : sizeof(why) - 1;
            memcpy(why, m->data.base, n);
            why[n] = '\0';
            for (size_t i = 0; i < n; ++i)
                if (why[i] == '"' || why[i] == '\\' || (unsigned char)why[i] < 0x20)
                    why[i] = ' ';
            conn->shard_knows = 0;
            room_remove(conn);
            http_fail_pending(conn->pending, m->status, why);
        }
        break;
    case PROTO_SEND:
        if ((conn = conn_of(shard, m->id)) != NULL) {
            ws_frame_t *frame = ws_frame_new(m->binary ? WS_OP_BINARY : WS_OP_TEXT, m->data.base, m->data.len);
            ws_conn_send(conn, frame);
            ws_frame_release(frame);
        }
        break;
    case PROTO_BROADCAST:
        on_broadcast(m);
        break;
    case PROTO_CLOSE_CONN:
        if ((conn = conn_of(shard, m->id)) != NULL) {
            char reason[124];
            size_t n = m->reason.len < sizeof(reason) - 1 ? m->reason.len : sizeof(reason) - 1;
            memcpy(reason, m->reason.base, n);
            reason[n] = '\0';
            conn->shard_knows = 0; /* the room already let it go */
            ws_conn_close(conn, m->code, reason);
        }
        break;
    case PROTO_RESPONSE: {
        router_pending_t *p;
        HASH_FIND(hh, router.requests, &m->id, sizeof(m->id), p);
        if (p != NULL && p->shard == shard)
            http_respond_pending(p, m);
        break;
    }
    case PROTO_ADMIN_REPLY:
        admin_on_reply(shard, m);
        break;
    default:
        log_warn("shard %d sent an unexpected %s frame", shard, proto_type_name(m->type));
        break;
    }
}

static void on_hello(link_t *link, const proto_msg_t *hello)
{
    int shard = (int)(intptr_t)link_data(link);
    if (hello->shard != shard) {
        log_error("the link for shard %d says it is shard %d", shard, hello->shard);
        return;
    }
    router.shards[shard].state = SHARD_UP;
    log_info("shard %d (pid %u) connected", shard, hello->pid);
}

/* The shard is gone: its rooms' sockets close with 1011 so clients reconnect (to the restarted shard), held
 * requests get 503 with Retry-After. */
static void shard_lost(int shard)
{
    resume_paused(&router.shards[shard]);
    router.shards[shard].link = NULL;
    router.shards[shard].state = SHARD_DOWN;
    for (router_pending_t *p = router.pending, *next; p != NULL; p = next) {
        next = p->next;
        if (p->shard != shard || p->upgrading)
            continue;
        if (p->conn != NULL) {
            p->conn->shard_knows = 0;
            room_remove(p->conn);
        }
        http_fail_pending(p, 503, "the room's shard is restarting");
    }
    router_room_t *room, *tmp;
    HASH_ITER(hh, router.rooms, room, tmp)
    {
        if (room->shard != shard)
            continue;
        /* each close unlinks its connection, and the last one frees the room: count first, touch nothing after */
        for (size_t i = 0, n = room->count; i < n; ++i) {
            ws_conn_t *c = room->conns;
            c->shard_knows = 0;
            ws_conn_close(c, 1011, "shard restarting");
            if (c->room != NULL)
                room_remove(c);
        }
    }
    admin_on_shard_down(shard);
}

static void on_closed(link_t *link, const char *why)
{
    int shard = (int)(intptr_t)link_data(link);
    log_warn("link to shard %d closed (%s)", shard, why);
    shard_lost(shard);
}

static void on_drained(link_t *link)
{
    resume_paused(&router.shards[(intptr_t)link_data(link)]);
}

static const link_callbacks_t link_callbacks = {on_hello, on_frame, on_closed, on_drained};

void shards_on_up(int shard, int pid, uint32_t restarts, int fd)
{
    if (shard < 0 || shard >= router.conf->shards) {
        close(fd);
        return;
    }
    if (router.shards[shard].link != NULL) {
        link_close(router.shards[shard].link);
        shard_lost(shard);
    }
    router.shards[shard].pid = pid;
    router.shards[shard].restarts = restarts;
    router.shards[shard].state = SHARD_STARTING;
    router.shards[shard].link =
        link_open(router.loop, fd, router.max_frame, PROTO_ROLE_ROUTER, shard, &link_callbacks, (void *)(intptr_t)shard);
}

void shards_on_down(int shard)
{
    if (shard < 0 || shard >= router.conf->shards)
        return;
    if (router.shards[shard].link != NULL) {
        link_close(router.shards[shard].link);
        shard_lost(shard);
    }
    router.shards[shard].state = SHARD_DOWN;
}
