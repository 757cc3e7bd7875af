/*
 * shards.c — the router's side of the shard links: which shard owns a room (the slot table), what goes to a shard
 * when a client speaks, and what the router does with each frame a shard sends back — above all the fan-out of a
 * room's broadcast to the room's sockets, with the frame encoded once.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "router.h"


/* ---- the links on h2o's loop: link.c reads and writes the socket itself, h2o only says when it can ---- */

static void on_link_readable(h2o_socket_t *sock, const char *err)
{
    (void)err; /* with H2O_SOCKET_FLAG_DONT_READ h2o reads nothing: the link's own read meets any error */
    link_on_readable(sock->data);
}

static void on_link_writable(h2o_socket_t *sock, const char *err)
{
    (void)err;
    link_on_writable(sock->data);
}

static void *link_h2o_watch(void *loop, int fd, link_t *link)
{
    h2o_socket_t *sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    sock->data = link;
    h2o_socket_read_start(sock, on_link_readable);
    return sock;
}

static void link_h2o_want_write(void *handle, int on)
{
    /* h2o's notification is one-shot and cannot be taken back: a late one finds the link no longer waiting */
    if (on)
        h2o_socket_notify_write(handle, on_link_writable);
}

static void link_h2o_want_read(void *handle, int on)
{
    if (on)
        h2o_socket_read_start(handle, on_link_readable);
    else
        h2o_socket_read_stop(handle);
}

static void link_h2o_close(void *handle)
{
    h2o_socket_close(handle);
}

static const link_io_t link_io_h2o = {link_h2o_watch, link_h2o_want_write, link_h2o_want_read, link_h2o_close};

static int id_cmp(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

void shards_set_active(int id, int active)
{
    if (router.shards[id].active == active)
        return;
    router.shards[id].active = active;
    router.num_shards = 0;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (router.shards[i].active)
            router.ids[router.num_shards++] = i;
}

#define SLOTS_MAGIC "PARTYD-SLOTS 1\n"
#define SLOTS_FILE_SIZE (sizeof(SLOTS_MAGIC) - 1 + 2 * SLOTS_COUNT)

static void slots_path(char *out, size_t len, const char *dir, const char *suffix)
{
    snprintf(out, len, "%s/slots%s", dir, suffix);
}

int shards_save_slots_in(const char *dir)
{
    unsigned char *buf = xmalloc(SLOTS_FILE_SIZE), *p = buf + sizeof(SLOTS_MAGIC) - 1;
    memcpy(buf, SLOTS_MAGIC, sizeof(SLOTS_MAGIC) - 1);
    for (size_t s = 0; s < SLOTS_COUNT; ++s) {
        p[2 * s] = (unsigned char)(router.slots.owner[s] >> 8);
        p[2 * s + 1] = (unsigned char)router.slots.owner[s];
    }
    int err = base_write_file_atomic(dir, "slots", buf, SLOTS_FILE_SIZE);
    free(buf);
    return err;
}

int shards_save_slots(void)
{
    return shards_save_slots_in(router.conf->data_dir);
}

int shards_init(const int *ids, int num_ids)
{
    for (int i = 0; i < num_ids; ++i)
        router.shards[ids[i]].active = 1;
    router.num_shards = num_ids;
    memcpy(router.ids, ids, (size_t)num_ids * sizeof(*ids));
    qsort(router.ids, (size_t)num_ids, sizeof(int), id_cmp);

    char path[BASE_PATH_MAX];
    slots_path(path, sizeof(path), router.conf->data_dir, "");
    FILE *f = fopen(path, "rb");
    if (f != NULL) {
        unsigned char *buf = xmalloc(SLOTS_FILE_SIZE), *p = buf + sizeof(SLOTS_MAGIC) - 1;
        size_t n = fread(buf, 1, SLOTS_FILE_SIZE, f);
        fclose(f);
        int ok = n == SLOTS_FILE_SIZE && memcmp(buf, SLOTS_MAGIC, sizeof(SLOTS_MAGIC) - 1) == 0;
        for (size_t s = 0; ok && s < SLOTS_COUNT; ++s) {
            uint16_t owner = (uint16_t)(p[2 * s] << 8 | p[2 * s + 1]);
            if (owner >= CONFIG_MAX_SHARDS || !router.shards[owner].active) {
                log_error("%s: slot %zu belongs to shard %u, which is not one of this node's shards", path, s, owner);
                ok = 0;
            }
            router.slots.owner[s] = owner;
        }
        free(buf);
        if (!ok) {
            log_error("%s is not a slot table of this node; refusing to guess where rooms are", path);
            return -1;
        }
        return 0;
    }
    /* the first start (or a data directory from before slot tables were recorded): the rendezvous table over the
     * shards, which is where the data is; recorded now, so that adding a shard later cannot change it by accident */
    slots_shard_t list[CONFIG_MAX_SHARDS];
    for (int i = 0; i < router.num_shards; ++i)
        list[i] = (slots_shard_t){(uint32_t)router.ids[i], 1.0};
    slots_build(&router.slots, list, (size_t)router.num_shards);
    int r = shards_save_slots();
    if (r != 0) {
        log_error("cannot write %s: %s", path, strerror(-r));
        return -1;
    }
    return 0;
}

void shards_dispose(void)
{
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i) {
        if (router.shards[i].link != NULL)
            link_close(router.shards[i].link);
        free(router.shards[i].paused);
        router.shards[i].paused = NULL;
    }
}

uint16_t shards_owner(const char *party, size_t party_len, const char *room, size_t room_len, uint16_t *slot)
{
    uint16_t s = slots_of_room(party, party_len, room, room_len);
    if (slot != NULL)
        *slot = s;
    return router.slots.owner[s];
}

link_t *shards_link(uint16_t shard)
{
    return router.shards[shard].link;
}

size_t shards_backlog(void)
{
    size_t n = 0;
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
        if (router.shards[i].link != NULL)
            n += link_backlog(router.shards[i].link);
    return n;
}

int shards_all_up(void)
{
    for (int k = 0; k < router.num_shards; ++k)
        if (router.shards[router.ids[k]].link == NULL || !link_is_ready(router.shards[router.ids[k]].link))
            return 0;
    return 1;
}

void shards_flush(void)
{
    /* every link, a retiring shard's too: it may still owe acks */
    for (int i = 0; i < CONFIG_MAX_SHARDS; ++i)
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
        room->slot = slots_of_key(key, key_len);
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

static void on_broadcast(int shard, const proto_msg_t *m)
{
    char key[BASE_ROOM_KEY_MAX];
    if (m->party.len + 1 + m->room.len > sizeof(key))
        return;
    memcpy(key, m->party.base, m->party.len);
    key[m->party.len] = '/';
    memcpy(key + m->party.len + 1, m->room.base, m->room.len);
    router_room_t *room = shards_find_room(key, m->party.len + 1 + m->room.len);
    /* only the shard whose sockets these are may speak to them: a stale copy of a moved room on its old shard must
     * not reach the new owner's clients */
    if (room == NULL || room->shard != shard)
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
        /* Frames of one connection may arrive out of the order they happened in: the output gate holds ATTACH and
         * ACCEPT for the pass's commit while a CLOSE_CONN (an operator's evict, a slot export) or our own close
         * (the client left, the node drains) is not held. A connection already reported closed (shard_knows is 0
         * from then on) is in no room and must never join one: its record is freed at the end of a pass without
         * another on_closed to take it out again. */
        if ((conn = conn_of(shard, m->id)) != NULL && conn->pending != NULL && conn->room == NULL && conn->shard_knows)
            room_add(conn, conn->pending->key, conn->pending->key_len);
        break;
    case PROTO_ACCEPT:
        /* a connection closed before its ACCEPT still gets its 101, then the close frame queued for it (a room that
         * closes a socket in on_connect: the client sees it open, then close, as on PartyKit) */
        if ((conn = conn_of(shard, m->id)) != NULL) {
            if (conn->pending != NULL && !conn->pending->upgrading)
                http_upgrade_accepted(conn->pending);
        } else if (router.shards[shard].link != NULL) {
            /* a connection this router no longer has: the shard holds it open, so tell it that it is gone */
            proto_msg_t close = {.type = PROTO_CLOSE, .id = m->id, .code = 1006, .reason = PROTO_STR("gone"), .clean = 0};
            link_emit(router.shards[shard].link, &close);
        }
        break;
    case PROTO_REJECT:
        if ((conn = conn_of(shard, m->id)) != NULL && conn->pending != NULL && !conn->pending->upgrading) {
            char why[300];
            size_t n = m->data.len < sizeof(why) - 1 ? m->data.len : sizeof(why) - 1;
            memcpy(why, m->data.base, n);
            why[n] = '\0';
            for (size_t i = 0; i < n; ++i) /* a room's text, shown as it is (http_send_error escapes it) but on one line */
                if ((unsigned char)why[i] < 0x20)
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
        on_broadcast(shard, m);
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
        else
            fetch_on_response(shard, m);
        break;
    }
    case PROTO_FETCH:
        fetch_on_request(shard, m);
        break;
    case PROTO_ADMIN_REPLY:
        admin_on_reply(shard, m);
        break;
    case PROTO_SLOT_REPLY:
        migrate_on_slot_reply(shard, m);
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
    if (shards_all_up()) {
        router_ctl_send(CTL_SERVING, -1); /* the supervisor tells a service manager the node is ready */
        migrate_reconcile();
    }
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
    /* the shards stop with the supervisor (they watch it too) and may go before our control socket tells us: then
     * the node is going away, not restarting a shard, and clients should hear that */
    int node_gone = router.draining || getppid() != router.supervisor;
    router_room_t *room, *tmp;
    HASH_ITER(hh, router.rooms, room, tmp)
    {
        if (room->shard != shard)
            continue;
        /* each close unlinks its connection, and the last one frees the room: count first, touch nothing after */
        for (size_t i = 0, n = room->count; i < n; ++i) {
            ws_conn_t *c = room->conns;
            c->shard_knows = 0;
            if (node_gone)
                ws_conn_close(c, 1001, "node shutting down");
            else
                ws_conn_close(c, 1011, "shard restarting");
            if (c->room != NULL)
                room_remove(c);
        }
    }
    admin_on_shard_down(shard);
    fetch_on_shard_down(shard);
    migrate_on_shard_down(shard);
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

/* First of all on a new link, before any move's frame: which slots the shard owns. It deletes what it holds of the
 * others (a "drop" lost with a restart, an abandoned import) and fires alarms only in its own (shard/migrate.c). */
static void send_owned(link_t *link, int shard)
{
    uint8_t owned[SLOTS_COUNT / 8] = {0};
    for (size_t s = 0; s < SLOTS_COUNT; ++s)
        if (router.slots.owner[s] == shard)
            owned[s / 8] |= (uint8_t)(1u << (s % 8));
    proto_msg_t f = {.type = PROTO_SLOT,
                     .id = ++router.next_rid,
                     .method = PROTO_STR("owned"),
                     .data = proto_str((const char *)owned, sizeof(owned))};
    link_emit(link, &f);
}

void shards_on_up(int shard, int pid, uint32_t restarts, int fd)
{
    if (shard < 0 || shard >= CONFIG_MAX_SHARDS) {
        close(fd);
        return;
    }
    int is_new = !router.shards[shard].active;
    if (is_new)
        shards_set_active(shard, 1); /* a shard added live: it owns no slot until migrate.c moves some to it */
    if (router.shards[shard].link != NULL) {
        link_close(router.shards[shard].link);
        shard_lost(shard);
    }
    router.shards[shard].pid = pid;
    router.shards[shard].restarts = restarts;
    router.shards[shard].state = SHARD_STARTING;
    router.shards[shard].link = link_open(&link_io_h2o, router.loop, fd, router.max_frame, PROTO_ROLE_ROUTER, shard,
                                          &link_callbacks, (void *)(intptr_t)shard);
    if (router.shards[shard].link != NULL)
        send_owned(router.shards[shard].link, shard);
    migrate_on_shard_up(shard, is_new);
}

void shards_on_down(int shard)
{
    if (shard < 0 || shard >= CONFIG_MAX_SHARDS)
        return;
    if (router.shards[shard].link != NULL) {
        link_close(router.shards[shard].link);
        shard_lost(shard);
    }
    router.shards[shard].state = SHARD_DOWN;
}
