/*
 * room.c — where a room handles a message: rooms and their connections inside one shard, their life cycle, and the
 * room API of party.h that parties call.
 *
 * Every function here runs on the shard's single loop.
 *
 * Life cycle. A room is created by its first event (a connection, a request, its alarm) and started (on_start). It is
 * *idle* when it has no connections (or only connections, for a party that hibernates) and no request in flight; idle
 * rooms wait in an LRU list, oldest first, and the sweep (rooms_tick, a slice per tick, never a full scan) evicts those
 * idle for timers.idle_ms: on_stop runs and the party's memory goes. A room without connections is then freed
 * entirely; a hibernating room keeps its connection records (id, tags, state) and its next event starts it again.
 * limits.rooms_in_memory caps the started rooms per shard: the least recently used idle room makes way.
 *
 * Storage. A room's keys live in the shard's RocksDB under [slot u16][length u16][party/room][tag]: a slot's rooms and
 * a room's keys are contiguous ranges. Tags: 'd' the party's keys, 'a' the alarm. The alarm index, ordered by time, is
 * [FF FF][time u64][room prefix]; the tick reads its head for due alarms.
 *
 * Closing. A connection closed by the party from inside a callback is flagged, leaves the room's lookups at once, and
 * is freed (after its on_close) once the event is done, so a party is never handed a freed pointer.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <uthash.h>

#include "shard.h"
#include "slots.h"

#define ROOM_KEY_MAX (64 + 1 + 256)
#define PREFIX_MAX (4 + ROOM_KEY_MAX)
#define DATA_KEY_MAX (PREFIX_MAX + 1 + PARTY_KEY_MAX)
#define CLOSE_REASON_MAX 123
#define TAG_DATA 'd'
#define TAG_ALARM 'a'
#define ALARM_TRIES 6
#define LIST_CHUNK 128
#define ALARMS_PER_TICK 64
#define ALARM_RECHECK_MS 50 /* when due alarms could not be fired now (storage error, their room moving away) */
#define EVICTIONS_PER_TICK 256
/* Evictions and wakes are logged in aggregate, at most this often (and once at shutdown): one line a minute per shard
 * however busy, nothing when nothing happened. */
#define ACTIVITY_LOG_MS 60000

enum { CONN_ACCEPTED = 1, CONN_CLOSED = 2 };

struct st_party_conn_t {
    UT_hash_handle hh_cid; /* rooms.conns_by_cid */
    UT_hash_handle hh_id;  /* room->conns_by_id */
    uint64_t cid;
    party_room_t *room;
    party_conn_t *prev, *next; /* room->conns, join order */
    party_conn_t *next_deferred;
    char *id;
    void *state;
    uint32_t state_len;
    uint8_t flags;
    uint8_t num_tags;
    uint16_t close_code;
    char **tags;
    char *close_reason;
};

struct st_party_request_t {
    uint64_t rid;
    party_room_t *room; /* NULL for an upgrade request */
    party_request_t *prev, *next;
    int responded;
    const char *method, *path, *query;
    size_t num_headers;
    const char **names, **values;
    const char *body;
    size_t body_len;
    proto_header_t *resp_headers;
    size_t num_resp_headers;
};

/* A room's request to another room, waiting for its answer (party_fetch). */
typedef struct st_room_fetch_t {
    UT_hash_handle hh; /* rooms.fetches, by id */
    uint64_t id;
    party_room_t *room;
    party_fetch_cb cb;
    void *arg;
    struct st_room_fetch_t *prev, *next; /* room->fetches */
} room_fetch_t;

/* The answer handed to a fetch's callback: the FETCH_REPLY's fields, header names and values NUL-terminated. */
struct st_party_fetch_t {
    int status;
    size_t num_headers;
    char **names, **values;
    const void *body;
    size_t body_len;
};

struct st_party_room_t {
    UT_hash_handle hh; /* rooms.by_key */
    char *key;         /* "party/room" */
    size_t key_len;
    char *party_name;
    char *id;
    const config_party_t *conf;
    const party_t *party;
    void *data;
    party_conn_t *conns; /* head; doubly linked in join order, including closed-but-deferred ones */
    party_conn_t *conns_tail;
    party_conn_t *conns_by_id;
    size_t open_count;
    party_request_t *requests; /* outstanding HTTP requests */
    room_fetch_t *fetches;     /* its requests to other rooms, waiting for their answers */
    party_conn_t *connecting;  /* the connection whose on_connect runs */
    /* storage */
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len;
    uint64_t alarm_at; /* wall ms; 0: none */
    uint8_t alarm_tries;
    /* life cycle */
    uint8_t started;
    uint8_t in_lru;
    uint8_t hibernates;
    party_room_t *lru_prev, *lru_next;
    party_room_t *slot_prev, *slot_next; /* rooms.by_slot[slot] */
    uint16_t slot;
    uint64_t idle_since; /* monotonic ms */
    /* output gate */
    uint64_t gated_pass; /* the pass in which it last wrote, plus one (0: never) */
    party_room_t *gated_next;
};

static struct {
    const config_t *conf;
    store_t *store;
    party_room_t *by_key;
    party_conn_t *conns_by_cid;
    party_conn_t *deferred; /* closed by the party, on_close pending */
    room_fetch_t *fetches;  /* every room's fetches waiting for an answer, by id */
    char refusal[257];      /* the reason on_connect gave for refusing (party_conn_refusal) */
    int node_stopping;      /* the router said the node drains (party_node_stopping) */
    uint64_t next_fetch_id;
    party_room_t *lru, *lru_tail; /* idle rooms, least recently used first */
    party_room_t *gated;          /* rooms that wrote in this pass */
    size_t num_rooms;             /* structs */
    size_t num_started;           /* party in memory */
    size_t num_conns;
    uint64_t evictions;
    uint64_t messages_in, bytes_in;   /* messages delivered to rooms, and their payload bytes */
    uint64_t messages_out, bytes_out; /* per recipient */
    base_hist_t wake;
    struct {
        uint64_t at_ms, evictions, wakes;
    } reported;                         /* the figures of the last activity log line */
    party_room_t *by_slot[SLOTS_COUNT]; /* rooms in memory, per slot: what a slot move must evict */
    uint8_t frozen[SLOTS_COUNT];        /* slots being moved away: no event may run in their rooms */
    uint64_t alarms_from;               /* no alarm index entry is earlier (wall ms): see rooms_fire_alarms */
    int alarms_checking;                /* rooms_fire_alarms is running */
} rooms;

/* ---- lifecycle ---- */

void rooms_init(const config_t *conf, store_t *store)
{
    memset(&rooms, 0, sizeof(rooms));
    rooms.conf = conf;
    rooms.reported.at_ms = base_now_mono_ms();
    rooms.store = store;
    shard_alarms_wake_at(0); /* alarms_from is 0: look through the whole index once */
}

static void conn_free(party_conn_t *conn)
{
    for (size_t i = 0; i < conn->num_tags; ++i)
        free(conn->tags[i]);
    free(conn->tags);
    free(conn->id);
    free(conn->state);
    free(conn->close_reason);
    free(conn);
}

static void conn_unlink(party_conn_t *conn)
{
    party_room_t *room = conn->room;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        room->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    else
        room->conns_tail = conn->prev;
    conn->prev = conn->next = NULL;
}

/* Removes the connection from every lookup (but not from the join-order list, see conn_unlink). */
static void conn_forget(party_conn_t *conn)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return;
    conn->flags |= CONN_CLOSED;
    HASH_DELETE(hh_id, conn->room->conns_by_id, conn);
    HASH_DELETE(hh_cid, rooms.conns_by_cid, conn);
    --conn->room->open_count;
    --rooms.num_conns;
}

static void lru_remove(party_room_t *room)
{
    if (!room->in_lru)
        return;
    if (room->lru_prev != NULL)
        room->lru_prev->lru_next = room->lru_next;
    else
        rooms.lru = room->lru_next;
    if (room->lru_next != NULL)
        room->lru_next->lru_prev = room->lru_prev;
    else
        rooms.lru_tail = room->lru_prev;
    room->lru_prev = room->lru_next = NULL;
    room->in_lru = 0;
}

static void lru_append(party_room_t *room)
{
    room->idle_since = base_now_mono_ms();
    room->lru_prev = rooms.lru_tail;
    room->lru_next = NULL;
    if (rooms.lru_tail != NULL)
        rooms.lru_tail->lru_next = room;
    else
        rooms.lru = room;
    rooms.lru_tail = room;
    room->in_lru = 1;
}

/* Whether the room could leave memory now: nothing waits on it, and no connection (or only connections, when the
 * party hibernates). */
static int room_is_idle(const party_room_t *room)
{
    if (room->requests != NULL || room->connecting != NULL || room->fetches != NULL)
        return 0;
    return room->conns == NULL || (room->hibernates && room->started);
}

/* Puts the room in the idle list, or takes it out, as its state says. */
static void room_settle(party_room_t *room)
{
    int idle = room_is_idle(room);
    if (idle && !room->in_lru)
        lru_append(room);
    else if (!idle && room->in_lru)
        lru_remove(room);
}

static void request_answer_internal(party_request_t *req, int status, const char *msg);

static void fetches_drop(party_room_t *room);

static void room_stop(party_room_t *room)
{
    /* answers still to come would find the party's state gone: they are dropped (party.h, party_fetch) */
    fetches_drop(room);
    if (!room->started)
        return;
    if (room->party->on_stop != NULL)
        room->party->on_stop(room);
    room->data = NULL;
    room->started = 0;
    --rooms.num_started;
}

/* Frees a room that has no connections left. */
static void room_destroy(party_room_t *room)
{
    while (room->requests != NULL)
        request_answer_internal(room->requests, 503, "the room stopped");
    room_stop(room);
    lru_remove(room);
    if (room->slot_prev != NULL)
        room->slot_prev->slot_next = room->slot_next;
    else
        rooms.by_slot[room->slot] = room->slot_next;
    if (room->slot_next != NULL)
        room->slot_next->slot_prev = room->slot_prev;
    HASH_DEL(rooms.by_key, room);
    --rooms.num_rooms;
    free(room->key);
    free(room->party_name);
    free(room->id);
    free(room);
}

static size_t make_key(char *buf, proto_str_t party, proto_str_t room)
{
    memcpy(buf, party.base, party.len);
    buf[party.len] = '/';
    memcpy(buf + party.len + 1, room.base, room.len);
    return party.len + 1 + room.len;
}

/* Evicts the room: its party leaves memory; the room itself goes too unless connections hibernate in it. */
static void room_evict(party_room_t *room)
{
    ++rooms.evictions;
    lru_remove(room);
    if (room->conns == NULL) {
        room_destroy(room);
    } else {
        room_stop(room);
        log_debug("room %s hibernates with %zu connections", room->key, room->open_count);
    }
}

/* The first idle room that may leave memory now (not one with writes waiting for this pass's commit). */
static party_room_t *evictable(void)
{
    for (party_room_t *r = rooms.lru; r != NULL; r = r->lru_next)
        if (r->gated_pass != shard_pass() + 1)
            return r;
    return NULL;
}

/* Loads the room's alarm from storage into the struct. */
static void load_alarm(party_room_t *room)
{
    unsigned char key[PREFIX_MAX + 1];
    memcpy(key, room->prefix, room->prefix_len);
    key[room->prefix_len] = TAG_ALARM;
    char *v;
    size_t len;
    if (store_get(rooms.store, key, room->prefix_len + 1, &v, &len) == 0) {
        if (len == 9) {
            room->alarm_at = store_get_u64((unsigned char *)v);
            room->alarm_tries = (uint8_t)v[8];
        }
        free(v);
    }
}

/* Finds the room, creating its struct when needed (not started). NULL with an HTTP status when it cannot be. */
static party_room_t *room_get(proto_str_t party, proto_str_t id, int *status, const char **why)
{
    if (party.len == 0 || party.len > 64 || id.len == 0 || id.len > 256) {
        *status = 400;
        *why = "bad party or room name";
        return NULL;
    }
    char key[ROOM_KEY_MAX];
    size_t key_len = make_key(key, party, id);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    if (room != NULL)
        return room;

    const partydef_t *pdef = partydefs_find(shard_partydefs(), party.base, party.len);
    if (pdef == NULL) {
        *status = 404;
        *why = "unknown party";
        return NULL;
    }
    room = xcalloc(1, sizeof(*room));
    room->key = xstrndup(key, key_len);
    room->key_len = key_len;
    room->party_name = xstrndup(party.base, party.len);
    room->id = xstrndup(id.base, id.len);
    room->conf = pdef->conf;
    room->party = pdef->party;
    room->hibernates = pdef->hibernate;
    uint16_t slot = slots_of_key(key, key_len);
    room->prefix[0] = (unsigned char)(slot >> 8);
    room->prefix[1] = (unsigned char)slot;
    room->prefix[2] = (unsigned char)(key_len >> 8);
    room->prefix[3] = (unsigned char)key_len;
    memcpy(room->prefix + 4, key, key_len);
    room->prefix_len = 4 + key_len;
    HASH_ADD_KEYPTR(hh, rooms.by_key, room->key, room->key_len, room);
    room->slot = slot;
    room->slot_next = rooms.by_slot[slot];
    if (room->slot_next != NULL)
        room->slot_next->slot_prev = room;
    rooms.by_slot[slot] = room;
    ++rooms.num_rooms;
    load_alarm(room);
    return room;
}

/* Starts the room when its party is not in memory. 0, or an HTTP status. */
static int room_wake(party_room_t *room, const char **why)
{
    if (room->started)
        return 0;
    if (rooms.num_started >= rooms.conf->limits.rooms_in_memory) {
        party_room_t *victim = evictable();
        if (victim != NULL && victim != room) {
            room_evict(victim);
        } else if (room->conns == NULL) {
            *why = "too many rooms in memory on this shard";
            return 503;
        }
        /* else a hibernating room with live connections wakes above the cap rather than drop them; the sweep brings
         * the count back down */
    }
    room->started = 1;
    ++rooms.num_started;
    uint64_t t0 = base_now_mono_us();
    int failed = room->party->on_start != NULL && room->party->on_start(room) != 0;
    base_hist_observe(&rooms.wake, (double)(base_now_mono_us() - t0) / 1e6);
    if (failed) {
        log_warn("room %s failed to start", room->key);
        room->started = 0;
        --rooms.num_started;
        if (room->party->on_stop != NULL)
            room->party->on_stop(room);
        room->data = NULL;
        *why = "the room failed to start";
        return 500;
    }
    return 0;
}

/* An event for the room begins: it is no longer idle, and its output joins the gate when it wrote in this pass. */
static void room_enter(party_room_t *room)
{
    lru_remove(room);
    if (room->gated_pass == shard_pass() + 1)
        shard_gate_event();
}

static void room_leave(party_room_t *room)
{
    room_settle(room);
}

/* ---- emitting to the router ---- */

static void emit_close_conn(uint64_t cid, int code, const char *reason)
{
    proto_msg_t m = {.type = PROTO_CLOSE_CONN, .id = cid, .code = code, .reason = proto_str(reason, strlen(reason))};
    shard_emit(&m);
}

static void emit_reject(uint64_t cid, int status, const char *why)
{
    proto_msg_t m = {.type = PROTO_REJECT, .id = cid, .status = status, .data = proto_str(why, strlen(why))};
    shard_emit(&m);
}

/* Closes every connection of the room at once, without callbacks: the clients get `code` and `why` and reconnect to
 * find the room started afresh (from storage). The caller then drops the room. */
static void room_close_all_now(party_room_t *room, int code, const char *why)
{
    rooms_run_deferred();
    while (room->conns != NULL) {
        party_conn_t *c = room->conns;
        if ((c->flags & CONN_CLOSED) == 0)
            emit_close_conn(c->cid, code, why);
        conn_forget(c);
        conn_unlink(c);
        conn_free(c);
    }
}

/* The room cannot run (its start failed, or its writes were lost): its connections are closed with 1011, without
 * callbacks, its requests answered 500, and the room is dropped; its next event starts it afresh from storage. */
static void room_fail(party_room_t *room, const char *why)
{
    room_close_all_now(room, 1011, why);
    while (room->requests != NULL)
        request_answer_internal(room->requests, 500, why);
    room_destroy(room);
}

/* ---- requests ---- */

/* Copies the request fields of `msg` into one allocation with NUL-terminated strings. */
static party_request_t *request_new(const proto_msg_t *msg)
{
    size_t size = sizeof(party_request_t) + msg->method.len + msg->path.len + msg->query.len + msg->data.len + 4 +
                  msg->num_headers * (2 * sizeof(char *) + 2);
    for (size_t i = 0; i < msg->num_headers; ++i)
        size += msg->headers[i].name.len + msg->headers[i].value.len;
    party_request_t *req = xcalloc(1, size);
    char **ptrs = (char **)(req + 1);
    req->names = (const char **)ptrs;
    req->values = (const char **)(ptrs + msg->num_headers);
    char *p = (char *)(ptrs + 2 * msg->num_headers);
#define COPY(dst, s)                                                                                                               \
    do {                                                                                                                           \
        if ((s).len != 0)                                                                                                          \
            memcpy(p, (s).base, (s).len);                                                                                          \
        p[(s).len] = '\0';                                                                                                         \
        dst = p;                                                                                                                   \
        p += (s).len + 1;                                                                                                          \
    } while (0)
    COPY(req->method, msg->method);
    COPY(req->path, msg->path);
    COPY(req->query, msg->query);
    for (size_t i = 0; i < msg->num_headers; ++i) {
        COPY(req->names[i], msg->headers[i].name);
        for (char *c = (char *)req->names[i]; *c != '\0'; ++c)
            *c = (char)tolower((unsigned char)*c);
        COPY(req->values[i], msg->headers[i].value);
    }
    COPY(req->body, msg->data);
#undef COPY
    req->body_len = msg->data.len;
    req->num_headers = msg->num_headers;
    req->rid = msg->id;
    return req;
}

static void request_free(party_request_t *req)
{
    for (size_t i = 0; i < req->num_resp_headers; ++i) {
        free((char *)req->resp_headers[i].name.base);
        free((char *)req->resp_headers[i].value.base);
    }
    free(req->resp_headers);
    free(req);
}

/* Takes the request off its room; returns the room (NULL for an upgrade request). */
static party_room_t *request_unlink(party_request_t *req)
{
    party_room_t *room = req->room;
    if (room == NULL)
        return NULL;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        room->requests = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->room = NULL;
    return room;
}

static void respond_simple(uint64_t rid, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", msg);
    proto_header_t h = {PROTO_STR("content-type"), PROTO_STR("application/json")};
    proto_msg_t m = {
        .type = PROTO_RESPONSE, .id = rid, .status = status, .headers = &h, .num_headers = 1, .data = proto_str(body, (size_t)n)};
    shard_emit(&m);
}

static void request_answer_internal(party_request_t *req, int status, const char *msg)
{
    respond_simple(req->rid, status, msg);
    request_unlink(req);
    request_free(req);
}

/* ---- frames from the router ---- */

/* The connection number names the same connection in the router; a reused one is the router's bug. */
static party_conn_t *conn_by_cid(uint64_t cid)
{
    party_conn_t *conn;
    HASH_FIND(hh_cid, rooms.conns_by_cid, &cid, sizeof(cid), conn);
    return conn;
}

static void conn_close_now(party_conn_t *conn, int code, const char *reason, int clean, const char *error);

/* The room a client's connection or request (OPEN, REQUEST) is for, entered and started. NULL, with the HTTP status
 * and the reason to answer, when the room is moving to another shard, its name is bad, its party unknown, or it cannot
 * start. */
static party_room_t *room_for_client(const proto_msg_t *msg, int *status, const char **why)
{
    if (rooms.frozen[slots_of_room(msg->party.base, msg->party.len, msg->room.base, msg->room.len)]) {
        *status = 503;
        *why = "the room is moving to another shard";
        return NULL;
    }
    party_room_t *room = room_get(msg->party, msg->room, status, why);
    if (room == NULL)
        return NULL;
    room_enter(room);
    if ((*status = room_wake(room, why)) != 0) {
        if (room->conns == NULL)
            room_destroy(room);
        return NULL;
    }
    return room;
}

void rooms_on_open(const proto_msg_t *msg)
{
    shard_event_begin();
    if (msg->conn_id.len == 0 || msg->conn_id.len > 128 || memchr(msg->conn_id.base, '\0', msg->conn_id.len) != NULL) {
        emit_reject(msg->id, 400, "bad connection id");
        return;
    }
    if (conn_by_cid(msg->id) != NULL) {
        log_error("router reused connection number %llu; refusing the new connection", (unsigned long long)msg->id);
        emit_reject(msg->id, 500, "duplicate connection number");
        return;
    }
    int status;
    const char *why;
    party_room_t *room = room_for_client(msg, &status, &why);
    if (room == NULL) {
        emit_reject(msg->id, status, why);
        return;
    }

    /* the newest connection with an id wins: the older one is closed first, as its own event */
    party_conn_t *conn;
    HASH_FIND(hh_id, room->conns_by_id, msg->conn_id.base, msg->conn_id.len, conn);
    if (conn != NULL) {
        emit_close_conn(conn->cid, 4000, "replaced by a newer connection with the same id");
        conn_close_now(conn, 4000, "replaced by a newer connection with the same id", 1, NULL);
        rooms_run_deferred();
    }
    if (room->open_count >= rooms.conf->limits.connections_per_room) {
        emit_reject(msg->id, 503, "the room is full");
        room_leave(room);
        return;
    }

    conn = xcalloc(1, sizeof(*conn));
    conn->cid = msg->id;
    conn->room = room;
    conn->id = xstrndup(msg->conn_id.base, msg->conn_id.len);
    HASH_ADD_KEYPTR(hh_id, room->conns_by_id, conn->id, msg->conn_id.len, conn);
    HASH_ADD(hh_cid, rooms.conns_by_cid, cid, sizeof(conn->cid), conn);
    conn->prev = room->conns_tail;
    if (room->conns_tail != NULL)
        room->conns_tail->next = conn;
    else
        room->conns = conn;
    room->conns_tail = conn;
    ++room->open_count;
    ++rooms.num_conns;

    proto_msg_t attach = {.type = PROTO_ATTACH, .id = conn->cid};
    shard_emit(&attach);

    int verdict = 0;
    if (room->party->on_connect != NULL) {
        party_request_t *req = request_new(msg);
        room->connecting = conn;
        rooms.refusal[0] = '\0';
        verdict = room->party->on_connect(room, conn, req);
        room->connecting = NULL;
        request_free(req);
    }
    if (verdict == 0) {
        conn->flags |= CONN_ACCEPTED;
        proto_msg_t accept = {.type = PROTO_ACCEPT, .id = conn->cid};
        shard_emit(&accept);
    } else {
        if (verdict < 400 || verdict > 599) {
            log_warn("room %s: on_connect returned %d, which is not an HTTP status from 400 to 599; answering 500", room->key,
                     verdict);
            verdict = 500;
        }
        emit_reject(conn->cid, verdict, rooms.refusal[0] != '\0' ? rooms.refusal : "the room refused the connection");
        if ((conn->flags & CONN_CLOSED) == 0) {
            conn_forget(conn);
            conn_unlink(conn);
            conn_free(conn);
        }
    }
    rooms_run_deferred();
    room_leave(room);
}

void rooms_on_message(const proto_msg_t *msg)
{
    party_conn_t *conn = conn_by_cid(msg->id);
    if (conn == NULL || (conn->flags & CONN_ACCEPTED) == 0)
        return; /* closed meanwhile by the party: what it sent after that is dropped, as a closed socket would */
    shard_event_begin();
    party_room_t *room = conn->room;
    room_enter(room);
    const char *why;
    if (room_wake(room, &why) != 0) {
        room_fail(room, why);
        return;
    }
    ++rooms.messages_in;
    rooms.bytes_in += msg->data.len;
    if (room->party->on_message != NULL)
        room->party->on_message(room, conn, msg->data.base, msg->data.len, msg->binary);
    rooms_run_deferred();
    room_leave(room);
}

static const char *close_error(int code)
{
    switch (code) {
    case 1002:
        return "protocol error";
    case 1006:
        return "connection lost";
    case 1007:
        return "invalid UTF-8 in a text message";
    case 1008:
        return "policy violation or slow consumer";
    case 1009:
        return "message too big";
    case 1011:
        return "internal error";
    default:
        return NULL;
    }
}

/* The connection leaves now: out of the room, then error and close callbacks (waking a hibernating room), freed. */
static void conn_close_now(party_conn_t *conn, int code, const char *reason, int clean, const char *error)
{
    party_room_t *room = conn->room;
    int accepted = (conn->flags & CONN_ACCEPTED) != 0;
    conn_forget(conn);
    conn_unlink(conn);
    if (accepted && (room->party->on_error != NULL || room->party->on_close != NULL)) {
        const char *why;
        if (room_wake(room, &why) == 0) {
            if (error != NULL && room->party->on_error != NULL)
                room->party->on_error(room, conn, error);
            if (room->party->on_close != NULL)
                room->party->on_close(room, conn, code, reason, strlen(reason), clean);
        }
    }
    /* party_conn_close on this conn from its own on_close gets -ENOTCONN (it is already flagged), so nothing else
     * holds it now */
    conn_free(conn);
}

void rooms_on_close(const proto_msg_t *msg)
{
    party_conn_t *conn = conn_by_cid(msg->id);
    if (conn == NULL)
        return;
    shard_event_begin();
    party_room_t *room = conn->room;
    room_enter(room);
    char reason[CLOSE_REASON_MAX + 1];
    size_t n = msg->reason.len < CLOSE_REASON_MAX ? msg->reason.len : CLOSE_REASON_MAX;
    memcpy(reason, msg->reason.base, n);
    reason[n] = '\0';
    conn_close_now(conn, msg->code, reason, msg->clean, msg->clean ? NULL : close_error(msg->code));
    rooms_run_deferred();
    room_leave(room);
}

void rooms_on_request(const proto_msg_t *msg)
{
    shard_event_begin();
    int status;
    const char *why;
    party_room_t *room = room_for_client(msg, &status, &why);
    if (room == NULL) {
        respond_simple(msg->id, status, why);
        return;
    }
    if (room->party->on_request == NULL) {
        respond_simple(msg->id, 404, "this party has no request handler");
        room_leave(room);
        return;
    }
    party_request_t *req = request_new(msg);
    req->room = room;
    req->next = room->requests;
    if (room->requests != NULL)
        room->requests->prev = req;
    room->requests = req;
    room->party->on_request(room, req);
    rooms_run_deferred();
    room_leave(room);
}

void rooms_on_router_lost(void)
{
    rooms_run_deferred();
    party_room_t *room, *tmp;
    HASH_ITER(hh, rooms.by_key, room, tmp)
    {
        shard_event_begin();
        room_enter(room);
        while (room->conns != NULL) {
            conn_close_now(room->conns, 1006, "router went away", 0, "connection lost");
            rooms_run_deferred();
        }
        /* the answers to its fetches went with the router */
        fetches_drop(room);
        /* nobody is waiting for these answers any more */
        while (room->requests != NULL) {
            party_request_t *req = room->requests;
            request_unlink(req);
            request_free(req);
        }
        room_leave(room);
    }
}

void rooms_run_deferred(void)
{
    while (rooms.deferred != NULL) {
        party_conn_t *conn = rooms.deferred;
        rooms.deferred = conn->next_deferred;
        conn->next_deferred = NULL;
        party_room_t *room = conn->room;
        conn_unlink(conn);
        if ((conn->flags & CONN_ACCEPTED) != 0 && room->started && room->party->on_close != NULL)
            room->party->on_close(room, conn, conn->close_code, conn->close_reason, strlen(conn->close_reason), 1);
        conn_free(conn);
    }
}

/* One info line with the evictions and wakes since the last one, when there were any. */
static void log_activity(uint64_t now_ms)
{
    uint64_t evicted = rooms.evictions - rooms.reported.evictions, woken = rooms.wake.count - rooms.reported.wakes;
    if (evicted != 0 || woken != 0)
        log_info("rooms: %llu woken, %llu evicted in the last %llu s; %zu in memory, %zu hibernating, %zu connections",
                 (unsigned long long)woken, (unsigned long long)evicted,
                 (unsigned long long)((now_ms - rooms.reported.at_ms + 500) / 1000), rooms.num_started,
                 rooms.num_rooms - rooms.num_started, rooms.num_conns);
    rooms.reported.at_ms = now_ms;
    rooms.reported.evictions = rooms.evictions;
    rooms.reported.wakes = rooms.wake.count;
}

void rooms_dispose(void)
{
    log_activity(base_now_mono_ms());
    rooms_run_deferred();
    party_room_t *room, *tmp;
    HASH_ITER(hh, rooms.by_key, room, tmp)
    {
        /* connections still here at shutdown are told in on_close; a hibernating room is not woken for it */
        while (room->conns != NULL) {
            party_conn_t *c = room->conns;
            if (room->started) {
                conn_close_now(c, 1001, "shard shutting down", 0, NULL);
            } else {
                conn_forget(c);
                conn_unlink(c);
                conn_free(c);
            }
            rooms_run_deferred();
        }
        room_destroy(room);
    }
}

void rooms_stats(rooms_stats_t *stats)
{
    stats->rooms = rooms.num_started;
    /* room records without their party: hibernating rooms (and, for an instant, rooms being created) */
    stats->rooms_hibernating = rooms.num_rooms - rooms.num_started;
    stats->evictions = rooms.evictions;
    stats->connections = rooms.num_conns;
    stats->messages_in = rooms.messages_in;
    stats->messages_out = rooms.messages_out;
    stats->bytes_in = rooms.bytes_in;
    stats->bytes_out = rooms.bytes_out;
    stats->wake = rooms.wake;
}

/* ---- the output gate ---- */

/* The room wrote: its output waits for the commit at the end of this pass. */
static void room_wrote(party_room_t *room)
{
    if (room->gated_pass != shard_pass() + 1) {
        room->gated_pass = shard_pass() + 1;
        room->gated_next = rooms.gated;
        rooms.gated = room;
    }
    shard_gate_event();
}

void rooms_on_committed(void)
{
    rooms.gated = NULL;
}

void rooms_on_commit_failed(const uint64_t *held_rids, size_t num_rids, const uint64_t *held_cids, size_t num_cids)
{
    /* answers that never left: the router still waits for them */
    for (size_t i = 0; i < num_rids; ++i)
        respond_simple(held_rids[i], 500, "the room's storage failed");
    for (size_t i = 0; i < num_cids; ++i) {
        party_conn_t *c = conn_by_cid(held_cids[i]);
        if (c != NULL) {
            /* its ACCEPT was dropped: refuse it instead, and let room_fail skip it */
            emit_reject(c->cid, 500, "the room's storage failed");
            conn_forget(c);
        } else {
            emit_reject(held_cids[i], 500, "the room's storage failed");
        }
    }
    /* the pass's deletes of due alarms' index entries are lost too: look through the whole index again */
    rooms.alarms_from = 0;
    shard_alarms_wake_at(0);
    while (rooms.gated != NULL) {
        party_room_t *room = rooms.gated;
        rooms.gated = room->gated_next;
        log_warn("room %s: its writes of this pass were lost; resetting it", room->key);
        room_fail(room, "the room's storage failed");
    }
}

/* ---- storage keys ---- */

static size_t data_key(const party_room_t *room, unsigned char *out, const void *key, size_t key_len)
{
    memcpy(out, room->prefix, room->prefix_len);
    out[room->prefix_len] = TAG_DATA;
    memcpy(out + room->prefix_len + 1, key, key_len);
    return room->prefix_len + 1 + key_len;
}

static int check_key(const void *key, size_t key_len)
{
    if (key == NULL || key_len == 0)
        return -EINVAL;
    return key_len > PARTY_KEY_MAX ? -EMSGSIZE : 0;
}

/* ---- party.h: storage ---- */

int party_storage_get(party_room_t *room, const void *key, size_t key_len, void **value, size_t *value_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = data_key(room, k, key, key_len);
    char *v;
    if ((r = store_get(rooms.store, k, kl, &v, value_len)) != 0)
        return r;
    *value = v;
    return 0;
}

int party_storage_put(party_room_t *room, const void *key, size_t key_len, const void *value, size_t value_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    if (value_len > PARTY_VALUE_MAX)
        return -EMSGSIZE;
    if (value == NULL && value_len != 0)
        return -EINVAL;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = data_key(room, k, key, key_len);
    store_put(rooms.store, k, kl, value != NULL ? value : "", value_len);
    room_wrote(room);
    return 0;
}

int party_storage_delete(party_room_t *room, const void *key, size_t key_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = data_key(room, k, key, key_len);
    char *v;
    size_t vl;
    r = store_get(rooms.store, k, kl, &v, &vl);
    if (r == -ENOENT)
        return 0;
    if (r != 0)
        return r;
    free(v);
    store_delete(rooms.store, k, kl);
    room_wrote(room);
    return 1;
}

static int check_batch(const party_kv_t *kvs, size_t n, int with_values)
{
    if (n > PARTY_BATCH_MAX || (n != 0 && kvs == NULL))
        return -EINVAL;
    for (size_t i = 0; i < n; ++i) {
        int r = check_key(kvs[i].key, kvs[i].key_len);
        if (r != 0)
            return r;
        if (with_values && (kvs[i].value_len > PARTY_VALUE_MAX))
            return -EMSGSIZE;
        if (with_values && kvs[i].value == NULL && kvs[i].value_len != 0)
            return -EINVAL;
    }
    return 0;
}

int party_storage_get_many(party_room_t *room, party_kv_t *kvs, size_t n)
{
    int r;
    if ((r = check_batch(kvs, n, 0)) != 0)
        return r;
    for (size_t i = 0; i < n; ++i) {
        void *v = NULL;
        size_t vl = 0;
        r = party_storage_get(room, kvs[i].key, kvs[i].key_len, &v, &vl);
        if (r != 0 && r != -ENOENT) {
            for (size_t j = 0; j < i; ++j) {
                free((void *)kvs[j].value);
                kvs[j].value = NULL;
            }
            return r;
        }
        kvs[i].value = v;
        kvs[i].value_len = vl;
    }
    return 0;
}

int party_storage_put_many(party_room_t *room, const party_kv_t *kvs, size_t n)
{
    int r;
    if ((r = check_batch(kvs, n, 1)) != 0)
        return r; /* checked up front: all or nothing */
    for (size_t i = 0; i < n; ++i)
        party_storage_put(room, kvs[i].key, kvs[i].key_len, kvs[i].value, kvs[i].value_len);
    return 0;
}

int party_storage_delete_many(party_room_t *room, const party_kv_t *keys, size_t n)
{
    int r;
    if ((r = check_batch(keys, n, 0)) != 0)
        return r;
    int deleted = 0;
    for (size_t i = 0; i < n; ++i) {
        if ((r = party_storage_delete(room, keys[i].key, keys[i].key_len)) < 0)
            return r;
        deleted += r;
    }
    return deleted;
}

/* The smallest byte string greater than every string starting with s[0..len), into out; 0 when there is none. */
static size_t successor(const unsigned char *s, size_t len, unsigned char *out)
{
    while (len > 0 && s[len - 1] == 0xff)
        --len;
    if (len == 0)
        return 0;
    memcpy(out, s, len);
    out[len - 1]++;
    return len;
}

static int bytes_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

long party_storage_list(party_room_t *room, const party_list_t *o,
                        int (*cb)(void *arg, const void *key, size_t key_len, const void *value, size_t value_len), void *arg)
{
    if (o == NULL || cb == NULL || o->prefix_len > PARTY_KEY_MAX || o->start_len > PARTY_KEY_MAX || o->end_len > PARTY_KEY_MAX)
        return -EINVAL;
    /* the range in the party's key space: [max(start, prefix), min(end, successor(prefix))) */
    const unsigned char *lo = (const unsigned char *)"";
    size_t lo_len = 0;
    if (o->prefix != NULL) {
        lo = o->prefix;
        lo_len = o->prefix_len;
    }
    if (o->start != NULL && bytes_cmp(o->start, o->start_len, lo, lo_len) > 0) {
        lo = o->start;
        lo_len = o->start_len;
    }
    unsigned char succ[PARTY_KEY_MAX];
    const unsigned char *hi = NULL;
    size_t hi_len = 0;
    if (o->prefix != NULL && o->prefix_len != 0 && (hi_len = successor(o->prefix, o->prefix_len, succ)) != 0)
        hi = succ;
    if (o->end != NULL && (hi == NULL || bytes_cmp(o->end, o->end_len, hi, hi_len) < 0)) {
        hi = o->end;
        hi_len = o->end_len;
    }

    /* the same range in the store: the room's data tag, then the party's key */
    unsigned char lo_key[DATA_KEY_MAX + 1], hi_key[DATA_KEY_MAX + 1];
    size_t lo_kl = data_key(room, lo_key, lo, lo_len), hi_kl;
    if (hi != NULL) {
        hi_kl = data_key(room, hi_key, hi, hi_len);
    } else {
        memcpy(hi_key, room->prefix, room->prefix_len);
        hi_key[room->prefix_len] = TAG_DATA + 1;
        hi_kl = room->prefix_len + 1;
    }
    if (bytes_cmp(lo_key, lo_kl, hi_key, hi_kl) >= 0)
        return 0;

    /* in chunks, so that cb may write (an iterator would not survive it) and memory stays bounded */
    long visited = 0;
    size_t skip = room->prefix_len + 1;
    store_entry_t chunk[LIST_CHUNK];
    for (;;) {
        size_t want = LIST_CHUNK;
        if (o->limit != 0 && o->limit - (size_t)visited < want)
            want = o->limit - (size_t)visited;
        if (want == 0)
            break;
        long n = store_scan(rooms.store, lo_key, lo_kl, hi_key, hi_kl, o->reverse, chunk, want);
        if (n < 0)
            return n;
        int stop = 0;
        for (long i = 0; i < n && !stop; ++i) {
            ++visited;
            stop = cb(arg, chunk[i].key + skip, chunk[i].key_len - skip, chunk[i].value, chunk[i].value_len) != 0;
        }
        if (n > 0) {
            /* continue past the last key: forward from last + "\0", backward below last */
            store_entry_t *last = &chunk[n - 1];
            if (!o->reverse) {
                memcpy(lo_key, last->key, last->key_len);
                lo_key[last->key_len] = '\0';
                lo_kl = last->key_len + 1;
            } else {
                memcpy(hi_key, last->key, last->key_len);
                hi_kl = last->key_len;
            }
        }
        store_entries_free(chunk, (size_t)n);
        if (stop || (size_t)n < want)
            break;
    }
    return visited;
}

static int delete_cb(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)value, (void)value_len;
    party_room_t *room = arg;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = data_key(room, k, key, key_len);
    store_delete(rooms.store, k, kl);
    return 0;
}

long party_storage_delete_all(party_room_t *room)
{
    party_list_t all = {0};
    long n = party_storage_list(room, &all, delete_cb, room);
    if (n > 0)
        room_wrote(room);
    return n;
}

int party_storage_transaction(party_room_t *room, int (*fn)(party_room_t *room, void *arg), void *arg)
{
    store_savepoint(rooms.store);
    int r = fn(room, arg);
    if (r != 0)
        store_rollback(rooms.store);
    return r;
}

/* ---- party.h: the alarm ---- */

/* The index key that sorts before every entry due at `at` or later. */
static void alarm_index_bound(unsigned char out[10], uint64_t at)
{
    out[0] = out[1] = 0xff;
    store_put_u64(out + 2, at);
}

/* The index entry of an alarm at `at` for the room whose key prefix is prefix[0..prefix_len). */
static size_t alarm_index_entry(const void *prefix, size_t prefix_len, uint64_t at, unsigned char *out)
{
    alarm_index_bound(out, at);
    memcpy(out + 10, prefix, prefix_len);
    return 10 + prefix_len;
}

static size_t alarm_index_key(const party_room_t *room, uint64_t at, unsigned char *out)
{
    return alarm_index_entry(room->prefix, room->prefix_len, at, out);
}

/* The alarm index entry that an 'a' key (its storage key and 9-byte value) stands for. */
static size_t index_key_of(const char *key, size_t prefix_len, const char *value, unsigned char *out)
{
    return alarm_index_entry(key, prefix_len, store_get_u64((const unsigned char *)value), out);
}

/* Every alarm index entry is written here, so that rooms.alarms_from stays at or below the earliest one; the shard
 * is asked to wake then (during a check, rooms_fire_alarms asks once at its end). */
static void alarm_index_put(const unsigned char *idx, size_t idx_len, const uint8_t *tries)
{
    uint64_t at = store_get_u64(idx + 2);
    if (at < rooms.alarms_from) {
        rooms.alarms_from = at;
        if (!rooms.alarms_checking)
            shard_alarms_wake_at(at);
    }
    store_put(rooms.store, idx, idx_len, tries, 1);
}

static void alarm_write(party_room_t *room, uint64_t at, uint8_t tries)
{
    unsigned char key[PREFIX_MAX + 1], idx[10 + PREFIX_MAX];
    memcpy(key, room->prefix, room->prefix_len);
    key[room->prefix_len] = TAG_ALARM;
    if (room->alarm_at != 0)
        store_delete(rooms.store, idx, alarm_index_key(room, room->alarm_at, idx));
    if (at != 0) {
        unsigned char v[9];
        store_put_u64(v, at);
        v[8] = tries;
        store_put(rooms.store, key, room->prefix_len + 1, v, sizeof(v));
        alarm_index_put(idx, alarm_index_key(room, at, idx), &tries);
    } else {
        store_delete(rooms.store, key, room->prefix_len + 1);
    }
    room->alarm_at = at;
    room->alarm_tries = tries;
    room_wrote(room);
}

int party_alarm_set(party_room_t *room, uint64_t at_ms)
{
    if (at_ms == 0)
        return -EINVAL;
    alarm_write(room, at_ms, 0);
    return 0;
}

int party_alarm_get(party_room_t *room, uint64_t *at_ms)
{
    if (room->alarm_at == 0)
        return -ENOENT;
    *at_ms = room->alarm_at;
    return 0;
}

int party_alarm_delete(party_room_t *room)
{
    if (room->alarm_at != 0)
        alarm_write(room, 0, 0);
    return 0;
}

/* Runs the due alarm whose index key is key[0..len). Returns 1 when it left the entry in place (its room is moving
 * away), else 0. */
static int fire_alarm(const unsigned char *idx, size_t idx_len)
{
    const unsigned char *prefix = idx + 10;
    size_t prefix_len = idx_len - 10;
    uint64_t at = store_get_u64(idx + 2);
    size_t key_len = prefix_len >= 4 ? (size_t)prefix[2] << 8 | prefix[3] : 0;
    const char *key = (const char *)prefix + 4;
    const char *sep = key_len != 0 ? memchr(key, '/', key_len) : NULL;
    if (prefix_len >= 2 && rooms.frozen[prefix[0] << 8 | prefix[1]])
        return 1; /* the room is moving: its new shard fires it */
    /* this index entry is done with, whatever happens next (a retry writes a new one) */
    store_delete(rooms.store, idx, idx_len);
    if (key_len + 4 != prefix_len || sep == NULL) {
        log_error("alarm index: a malformed entry; dropped it");
        return 0;
    }
    shard_event_begin();
    int status;
    const char *why;
    proto_str_t party = proto_str(key, (size_t)(sep - key)), id = proto_str(sep + 1, key_len - (size_t)(sep - key) - 1);
    party_room_t *room = room_get(party, id, &status, &why);
    if (room == NULL) {
        log_warn("alarm for %.*s: %s; dropped it", (int)key_len, key, why);
        return 0;
    }
    room_enter(room);
    if (room->alarm_at != at) {
        /* a stale entry (the alarm moved, or is gone): nothing to fire */
        room_leave(room);
        return 0;
    }
    uint8_t tries = room->alarm_tries;
    /* cleared before the callback (which may set the next one); committed with whatever the callback writes */
    alarm_write(room, 0, 0);
    int failed;
    if (room_wake(room, &why) != 0)
        failed = 1;
    else
        failed = room->party->on_alarm != NULL ? room->party->on_alarm(room) != 0 : 0;
    if (failed) {
        if (room->alarm_at == 0 && tries + 1 < ALARM_TRIES) {
            uint64_t delay = (uint64_t)rooms.conf->timers.alarm_retry_ms << tries;
            alarm_write(room, base_now_wall_ms() + delay, (uint8_t)(tries + 1));
            log_info("room %s: alarm failed; retry %u in %llu ms", room->key, tries + 1, (unsigned long long)delay);
        } else if (room->alarm_at == 0) {
            log_warn("room %s: alarm failed %d times; giving up", room->key, ALARM_TRIES);
        }
    }
    rooms_run_deferred();
    room_leave(room);
    return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* When an index entry (as scanned) is due; `otherwise` for a malformed one too short to say. */
static uint64_t alarm_index_at(const store_entry_t *e, uint64_t otherwise)
{
    return e->key_len >= 10 ? store_get_u64((const unsigned char *)e->key + 2) : otherwise;
}

/* The time of the earliest index entry due at `from` or later: UINT64_MAX when there is none. -EIO when storage
 * cannot say. */
static int alarm_index_first(uint64_t from, uint64_t *at)
{
    unsigned char lo[10];
    alarm_index_bound(lo, from);
    store_entry_t e;
    long n = store_scan_keys(rooms.store, lo, sizeof(lo), NULL, 0, &e, 1);
    if (n < 0)
        return -EIO;
    *at = n == 0 ? UINT64_MAX : alarm_index_at(&e, from);
    if (n > 0)
        store_entries_free(&e, 1);
    return 0;
}

/* When the shard wakes for alarms (shard_alarms_wake_at) and on every tick. The scan starts at rooms.alarms_from, not
 * at the start of the index: each alarm that fires or moves deletes its entry, and a scan from the start stepped over
 * all those tombstones until a compaction removed them (after 150k alarms a shard spent 28 ms of every 50 ms tick
 * there). Until the earliest entry is due no scan runs. alarms_from only goes up here, to what this scan proved;
 * alarm_index_put lowers it, a failed commit resets it. At most ALARMS_PER_TICK fire in one call, which keeps it short;
 * the shard is then woken again at once, so a backlog is worked off pass by pass, between other events. */
void rooms_fire_alarms(void)
{
    uint64_t now = base_now_wall_ms();
    uint64_t from = rooms.alarms_from;
    if (from > now)
        return;
    unsigned char lo[10], hi[10];
    alarm_index_bound(lo, from);
    alarm_index_bound(hi, now + 1);
    store_entry_t due[ALARMS_PER_TICK];
    long n = store_scan(rooms.store, lo, sizeof(lo), hi, sizeof(hi), 0, due, ALARMS_PER_TICK);
    if (n < 0) {
        shard_alarms_wake_at(now + ALARM_RECHECK_MS);
        return;
    }
    rooms.alarms_from = UINT64_MAX; /* every entry before `hi` is in due[] (or further, if n hit the cap) */
    rooms.alarms_checking = 1;
    uint64_t left = UINT64_MAX; /* the earliest entry left in place */
    for (long i = 0; i < n; ++i)
        if (due[i].key_len > 10 && fire_alarm((const unsigned char *)due[i].key, due[i].key_len) && left == UINT64_MAX)
            left = alarm_index_at(&due[i], from);
    rooms.alarms_checking = 0;
    /* The next call scans from, and the shard wakes for it at, the earliest of: an alarm the callbacks set (`set`); at
     * the cap, the last one fired (more may be due then, after it: at once); else the earliest entry left (`at`), or,
     * when storage cannot say, from here in a while; and those left in place (their rooms are moving away), in a while
     * too, not in a loop. */
    uint64_t set = rooms.alarms_from, later = now + ALARM_RECHECK_MS, at, at_wake;
    if (n == ALARMS_PER_TICK) {
        at = at_wake = alarm_index_at(&due[n - 1], from);
    } else if (alarm_index_first(now + 1, &at) == 0) {
        at_wake = at;
    } else {
        at = now + 1;
        at_wake = later;
    }
    rooms.alarms_from = min_u64(set, min_u64(at, left));
    shard_alarms_wake_at(min_u64(set, min_u64(at_wake, left != UINT64_MAX ? later : UINT64_MAX)));
    if (n > 0)
        store_entries_free(due, (size_t)n);
}

/* ---- the sweep ---- */

static void evict_idle(void)
{
    uint64_t now = base_now_mono_ms(), wall = base_now_wall_ms();
    party_room_t *room = rooms.lru;
    for (int i = 0; i < EVICTIONS_PER_TICK && room != NULL; ++i) {
        if (now - room->idle_since < rooms.conf->timers.idle_ms)
            break; /* the rest are younger */
        party_room_t *next = room->lru_next;
        if (room->gated_pass == shard_pass() + 1) {
            /* its writes are not committed yet; next pass */
        } else if (room->alarm_at != 0 && room->alarm_at <= wall + rooms.conf->timers.idle_ms) {
            /* its alarm is due soon: stay, and look again later */
            lru_remove(room);
            lru_append(room);
        } else {
            room_evict(room);
        }
        room = next;
    }
}

void rooms_tick(void)
{
    rooms_fire_alarms(); /* as well: where the shard has no timer to wake it, and after a storage error */
    evict_idle();
    uint64_t now = base_now_mono_ms();
    if (now - rooms.reported.at_ms >= ACTIVITY_LOG_MS)
        log_activity(now);
}

/* ---- party.h: rooms ---- */

const char *party_room_id(const party_room_t *room)
{
    return room->id;
}

const char *party_room_party(const party_room_t *room)
{
    return room->party_name;
}

void *party_room_data(const party_room_t *room)
{
    return room->data;
}

void party_room_set_data(party_room_t *room, void *data)
{
    room->data = data;
}

size_t party_room_connection_count(const party_room_t *room)
{
    return room->open_count;
}

party_conn_t *party_room_connections(party_room_t *room, party_conn_t *prev)
{
    party_conn_t *c = prev == NULL ? room->conns : prev->next;
    while (c != NULL && (c->flags & CONN_CLOSED) != 0)
        c = c->next;
    return c;
}

static int conn_has_tag(const party_conn_t *c, const char *tag)
{
    for (size_t i = 0; i < c->num_tags; ++i)
        if (strcmp(c->tags[i], tag) == 0)
            return 1;
    return 0;
}

party_conn_t *party_room_connections_tagged(party_room_t *room, const char *tag, party_conn_t *prev)
{
    party_conn_t *c = prev;
    while ((c = party_room_connections(room, c)) != NULL && !conn_has_tag(c, tag))
        ;
    return c;
}

party_conn_t *party_room_connection(party_room_t *room, const char *id)
{
    party_conn_t *conn;
    HASH_FIND(hh_id, room->conns_by_id, id, strlen(id), conn);
    return conn;
}

static int check_payload(const void *data, size_t len, int binary)
{
    if (data == NULL && len != 0)
        return -EINVAL;
    if (len > rooms.conf->limits.message_bytes)
        return -EMSGSIZE;
    if (!binary && !base_utf8_valid(data, len))
        return -EINVAL;
    return 0;
}

int party_broadcast(party_room_t *room, const void *data, size_t len, int binary, const char *const *except, size_t nexcept)
{
    int ret;
    if ((ret = check_payload(data, len, binary)) != 0)
        return ret;
    if (nexcept > PROTO_MAX_EXCEPT || (nexcept != 0 && except == NULL))
        return -EINVAL;
    uint64_t cids[nexcept == 0 ? 1 : nexcept];
    size_t n = 0;
    for (size_t i = 0; i < nexcept; ++i) {
        party_conn_t *c = except[i] != NULL ? party_room_connection(room, except[i]) : NULL;
        if (c != NULL)
            cids[n++] = c->cid;
    }
    if (room->open_count <= n)
        return 0;
    const char *sep = strchr(room->key, '/');
    proto_msg_t m = {.type = PROTO_BROADCAST,
                     .party = proto_str(room->key, (size_t)(sep - room->key)),
                     .room = proto_str(sep + 1, room->key_len - (size_t)(sep - room->key) - 1),
                     .binary = binary,
                     .data = proto_str(data, len),
                     .except = cids,
                     .num_except = n};
    if ((ret = shard_emit(&m)) == -ENOTCONN)
        ret = 0; /* no router: nobody to deliver to */
    if (ret == 0) {
        rooms.messages_out += room->open_count - n;
        rooms.bytes_out += (uint64_t)len * (room->open_count - n);
    }
    return ret;
}

/* ---- party.h: connections ---- */

const char *party_conn_id(const party_conn_t *conn)
{
    return conn->id;
}

int party_send(party_conn_t *conn, const void *data, size_t len, int binary)
{
    int ret;
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if ((ret = check_payload(data, len, binary)) != 0)
        return ret;
    proto_msg_t m = {.type = PROTO_SEND, .id = conn->cid, .binary = binary, .data = proto_str(data, len)};
    if ((ret = shard_emit(&m)) == 0) {
        ++rooms.messages_out;
        rooms.bytes_out += len;
    }
    return ret;
}

static int close_code_valid(int code)
{
    return code == 1000 || code == 1001 || code == 1003 || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int party_conn_close(party_conn_t *conn, int code, const char *reason)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if (reason == NULL)
        reason = "";
    size_t rlen = strlen(reason);
    if (!close_code_valid(code) || rlen > CLOSE_REASON_MAX || !base_utf8_valid(reason, rlen))
        return -EINVAL;
    emit_close_conn(conn->cid, code, reason);
    conn_forget(conn);
    conn->close_code = (uint16_t)code;
    conn->close_reason = xstrdup(reason);
    conn->next_deferred = rooms.deferred;
    rooms.deferred = conn;
    return 0;
}

int party_conn_set_state(party_conn_t *conn, const void *data, size_t len)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if (len > PARTY_STATE_MAX)
        return -EMSGSIZE;
    if (data == NULL && len != 0)
        return -EINVAL;
    void *copy = NULL;
    if (len != 0) {
        copy = xmalloc(len);
        memcpy(copy, data, len);
    }
    free(conn->state);
    conn->state = copy;
    conn->state_len = (uint32_t)len;
    return 0;
}

const void *party_conn_state(const party_conn_t *conn, size_t *len)
{
    *len = conn->state_len;
    return conn->state;
}

int party_conn_set_tags(party_conn_t *conn, const char *const *tags, size_t n)
{
    if (conn->room->connecting != conn)
        return -EBUSY;
    if (n > PARTY_TAGS_MAX || (n != 0 && tags == NULL))
        return -EINVAL;
    for (size_t i = 0; i < n; ++i) {
        size_t len = tags[i] != NULL ? strlen(tags[i]) : 0;
        if (len == 0 || len > PARTY_TAG_MAX || !base_utf8_valid(tags[i], len))
            return -EINVAL;
    }
    for (size_t i = 0; i < conn->num_tags; ++i)
        free(conn->tags[i]);
    free(conn->tags);
    conn->tags = n != 0 ? xcalloc(n, sizeof(char *)) : NULL;
    for (size_t i = 0; i < n; ++i)
        conn->tags[i] = xstrdup(tags[i]);
    conn->num_tags = (uint8_t)n;
    return 0;
}

size_t party_conn_tags(const party_conn_t *conn, const char *const **tags)
{
    *tags = (const char *const *)conn->tags;
    return conn->num_tags;
}

/* ---- party.h: requests ---- */

const char *party_request_method(const party_request_t *req)
{
    return req->method;
}

const char *party_request_path(const party_request_t *req)
{
    return req->path;
}

const char *party_request_query(const party_request_t *req)
{
    return req->query;
}

long party_request_query_param(const party_request_t *req, const char *name, char *out, size_t cap)
{
    return base_query_param(req->query, strlen(req->query), name, out, cap);
}

const char *party_request_header(const party_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; ++i)
        if (strcasecmp(req->names[i], name) == 0)
            return req->values[i];
    return NULL;
}

size_t party_request_header_count(const party_request_t *req)
{
    return req->num_headers;
}

const char *party_request_header_at(const party_request_t *req, size_t i, const char **name)
{
    if (i >= req->num_headers) {
        *name = NULL;
        return NULL;
    }
    *name = req->names[i];
    return req->values[i];
}

const void *party_request_body(const party_request_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

int party_response_header(party_request_t *req, const char *name, const char *value)
{
    if (req->room == NULL || req->responded)
        return -EALREADY;
    if (!base_http_token_valid(name) || !base_http_value_valid(value) || req->num_resp_headers >= PROTO_MAX_HEADERS - 1)
        return -EINVAL;
    req->resp_headers = xrealloc(req->resp_headers, (req->num_resp_headers + 1) * sizeof(*req->resp_headers));
    req->resp_headers[req->num_resp_headers].name = proto_str(xstrdup(name), strlen(name));
    req->resp_headers[req->num_resp_headers].value = proto_str(xstrdup(value), strlen(value));
    ++req->num_resp_headers;
    return 0;
}

int party_respond(party_request_t *req, int status, const char *content_type, const void *body, size_t len)
{
    if (req->room == NULL || req->responded)
        return -EALREADY;
    if (status < 100 || status > 599 || (body == NULL && len != 0) ||
        (content_type != NULL && !base_http_value_valid(content_type)))
        return -EINVAL;
    req->responded = 1;
    proto_header_t headers[PROTO_MAX_HEADERS];
    size_t n = 0;
    if (content_type != NULL)
        headers[n++] = (proto_header_t){PROTO_STR("content-type"), proto_str(content_type, strlen(content_type))};
    for (size_t i = 0; i < req->num_resp_headers; ++i)
        headers[n++] = req->resp_headers[i];
    proto_msg_t m = {.type = PROTO_RESPONSE,
                     .id = req->rid,
                     .status = status,
                     .headers = headers,
                     .num_headers = n,
                     .data = proto_str(body, len)};
    int ret = shard_emit(&m);
    if (ret == -EMSGSIZE) {
        log_warn("room %s: a response of %zu bytes is over the link's cap; answering 500", req->room->key, len);
        respond_simple(req->rid, 500, "the response is too large");
    }
    party_room_t *room = request_unlink(req);
    request_free(req);
    /* a request answered later (not from its own on_request) may leave the room idle */
    if (room != NULL)
        room_settle(room);
    return ret == -ENOTCONN ? 0 : ret;
}

void rooms_node_stopping(void)
{
    rooms.node_stopping = 1;
}

int party_node_stopping(void)
{
    return rooms.node_stopping;
}

size_t party_message_max(void)
{
    return rooms.conf->limits.message_bytes;
}

int party_conn_refusal(party_conn_t *conn, const char *reason)
{
    if (conn->room->connecting != conn)
        return -EBUSY;
    size_t len = reason != NULL ? strlen(reason) : 0;
    if (reason == NULL || len == 0 || len >= sizeof(rooms.refusal) || !base_utf8_valid(reason, len))
        return -EINVAL;
    memcpy(rooms.refusal, reason, len + 1);
    return 0;
}

/* ---- party.h: vars ---- */

const char *party_var(const party_room_t *room, const char *name)
{
    return name != NULL ? config_party_var(room->conf, name) : NULL;
}

/* ---- party.h: rooms calling rooms ---- */

#define FETCH_HEADERS_MAX 64
#define FETCH_METHOD_MAX 16

static void fetch_unlink(room_fetch_t *f)
{
    HASH_DEL(rooms.fetches, f);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        f->room->fetches = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
}

static void fetches_drop(party_room_t *room)
{
    while (room->fetches != NULL) {
        room_fetch_t *f = room->fetches;
        fetch_unlink(f);
        free(f);
    }
}

int party_fetch(party_room_t *room, const char *party, const char *room_id, const char *method, const char *path,
                const char *const *headers, const void *body, size_t len, party_fetch_cb cb, void *arg)
{
    if (party == NULL || room_id == NULL || cb == NULL || (body == NULL && len != 0))
        return -EINVAL;
    if (method == NULL)
        method = "GET";
    if (strlen(method) > FETCH_METHOD_MAX || !base_http_token_valid(method))
        return -EINVAL;
    if (path == NULL)
        path = "";
    if (path[0] != '\0' && path[0] != '/' && path[0] != '?')
        return -EINVAL;
    for (const char *c = path; *c != '\0'; ++c)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return -EINVAL; /* a request target has no spaces or control characters: percent-encode them */
    if (len > rooms.conf->limits.body_bytes)
        return -EMSGSIZE;
    /* the room the target sees it from; a party's own header of that name is dropped, so the target can trust it */
    proto_header_t hdrs[FETCH_HEADERS_MAX + 1];
    size_t n = 0;
    hdrs[n++] = (proto_header_t){PROTO_STR("x-partyd-from"), proto_str(room->key, room->key_len)};
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        if (headers[i + 1] == NULL || !base_http_token_valid(headers[i]) || !base_http_value_valid(headers[i + 1]))
            return -EINVAL;
        if (strcasecmp(headers[i], "x-partyd-from") == 0)
            continue;
        if (n > FETCH_HEADERS_MAX)
            return -EINVAL;
        hdrs[n++] = (proto_header_t){proto_str(headers[i], strlen(headers[i])), proto_str(headers[i + 1], strlen(headers[i + 1]))};
    }
    const char *q = strchr(path, '?');
    size_t path_len = q != NULL ? (size_t)(q - path) : strlen(path);
    room_fetch_t *f = xcalloc(1, sizeof(*f));
    f->id = ++rooms.next_fetch_id;
    proto_msg_t m = {.type = PROTO_FETCH,
                     .id = f->id,
                     .party = proto_str(party, strlen(party)),
                     .room = proto_str(room_id, strlen(room_id)),
                     .method = proto_str(method, strlen(method)),
                     .path = proto_str(path, path_len),
                     .query = q != NULL ? proto_str(q + 1, strlen(q + 1)) : PROTO_STR(""),
                     .headers = hdrs,
                     .num_headers = n,
                     .data = proto_str(body, len)};
    int r = shard_emit(&m);
    if (r == -ENOTCONN) {
        r = 0; /* no router now: the answer never comes, and the room is dropped with the router (rooms_on_router_lost) */
    } else if (r != 0) {
        free(f);
        return r == -EMSGSIZE ? -EMSGSIZE : r;
    }
    f->room = room;
    f->cb = cb;
    f->arg = arg;
    f->next = room->fetches;
    if (room->fetches != NULL)
        room->fetches->prev = f;
    room->fetches = f;
    HASH_ADD(hh, rooms.fetches, id, sizeof(f->id), f);
    return 0;
}

void rooms_on_fetch_reply(const proto_msg_t *msg)
{
    room_fetch_t *f;
    HASH_FIND(hh, rooms.fetches, &msg->id, sizeof(msg->id), f);
    if (f == NULL)
        return; /* its room stopped meanwhile */
    shard_event_begin();
    party_room_t *room = f->room;
    fetch_unlink(f);
    room_enter(room);
    size_t size = msg->num_headers * 2 * (sizeof(char *) + 1);
    for (size_t i = 0; i < msg->num_headers; ++i)
        size += msg->headers[i].name.len + msg->headers[i].value.len;
    char **ptrs = xmalloc(size + 1), *p = (char *)(ptrs + 2 * msg->num_headers);
    party_fetch_t res = {msg->status, msg->num_headers, ptrs, ptrs + msg->num_headers, msg->data.base, msg->data.len};
    for (size_t i = 0; i < msg->num_headers; ++i) {
        const proto_str_t *parts[2] = {&msg->headers[i].name, &msg->headers[i].value};
        for (int k = 0; k < 2; ++k) {
            memcpy(p, parts[k]->base, parts[k]->len);
            p[parts[k]->len] = '\0';
            (k == 0 ? res.names : res.values)[i] = p;
            p += parts[k]->len + 1;
        }
    }
    f->cb(room, f->arg, &res);
    free(ptrs);
    free(f);
    rooms_run_deferred();
    room_leave(room);
}

int party_fetch_status(const party_fetch_t *res)
{
    return res->status;
}

const char *party_fetch_header(const party_fetch_t *res, const char *name)
{
    for (size_t i = 0; i < res->num_headers; ++i)
        if (strcasecmp(res->names[i], name) == 0)
            return res->values[i];
    return NULL;
}

const void *party_fetch_body(const party_fetch_t *res, size_t *len)
{
    *len = res->body_len;
    return res->body;
}

/* ---- party.h: utilities ---- */

int party_utf8_valid(const void *data, size_t len)
{
    return base_utf8_valid(data, len);
}

size_t party_utf8_length(const void *data, size_t len)
{
    return base_utf8_count(data, len);
}

uint64_t party_now_ms(void)
{
    return base_now_wall_ms();
}

void party_log(const party_room_t *room, int level, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (level < LOG_ERROR)
        level = LOG_ERROR;
    if (level > LOG_DEBUG)
        level = LOG_DEBUG;
    log_msg((log_level_t)level, "room %s: %s", room->key, line);
}

/* ---- admin operations (shard/admin.c) ---- */

#define ADMIN_EXAMINE_MAX 10000

/* The storage prefix of a room key "party/room". */
static size_t prefix_of(const char *key, size_t key_len, unsigned char *out)
{
    uint16_t slot = slots_of_key(key, key_len);
    out[0] = (unsigned char)(slot >> 8);
    out[1] = (unsigned char)slot;
    out[2] = (unsigned char)(key_len >> 8);
    out[3] = (unsigned char)key_len;
    memcpy(out + 4, key, key_len);
    return 4 + key_len;
}

static int matches(const char *key, size_t key_len, const char *party, const char *prefix)
{
    const char *sep = memchr(key, '/', key_len);
    if (sep == NULL)
        return 0;
    size_t plen = (size_t)(sep - key);
    if (party != NULL && (strlen(party) != plen || memcmp(key, party, plen) != 0))
        return 0;
    size_t idlen = key_len - plen - 1;
    return prefix == NULL || (strlen(prefix) <= idlen && memcmp(sep + 1, prefix, strlen(prefix)) == 0);
}

typedef struct st_listed_t {
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len;
    int stored;
} listed_t;

static int listed_cmp(const void *a, const void *b)
{
    const listed_t *x = a, *y = b;
    return bytes_cmp(x->prefix, x->prefix_len, y->prefix, y->prefix_len);
}

static json_t *listed_json(const listed_t *l)
{
    size_t key_len = l->prefix_len - 4;
    const char *key = (const char *)l->prefix + 4, *sep = memchr(key, '/', key_len);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    json_t *party = json_stringn(key, (size_t)(sep - key)), *id = json_stringn(sep + 1, key_len - (size_t)(sep - key) - 1);
    return json_pack("{s:o, s:o, s:i, s:b, s:b, s:I, s:b}", "party", party != NULL ? party : json_null(), "room",
                     id != NULL ? id : json_null(), "slot", l->prefix[0] << 8 | l->prefix[1], "in_memory",
                     room != NULL && room->started, "hibernating", room != NULL && !room->started && room->conns != NULL,
                     "connections", (json_int_t)(room != NULL ? room->open_count : 0), "stored", l->stored);
}

json_t *rooms_admin_list(const char *after, const char *party, const char *prefix, size_t limit)
{
    unsigned char from[PREFIX_MAX + 1];
    size_t from_len = 0;
    if (after != NULL && strlen(after) <= ROOM_KEY_MAX)
        from_len = prefix_of(after, strlen(after), from);

    /* rooms in memory after the cursor, sorted */
    size_t nmem = 0;
    listed_t *mem = xcalloc(rooms.num_rooms + 1, sizeof(*mem));
    for (party_room_t *r = rooms.by_key; r != NULL; r = r->hh.next) {
        if (!matches(r->key, r->key_len, party, prefix) || bytes_cmp(r->prefix, r->prefix_len, from, from_len) <= 0)
            continue;
        memcpy(mem[nmem].prefix, r->prefix, r->prefix_len);
        mem[nmem++].prefix_len = r->prefix_len;
    }
    qsort(mem, nmem, sizeof(*mem), listed_cmp);

    /* rooms in storage after the cursor: one seek per room, to the first key past the previous room's keys */
    listed_t *disk = xcalloc(limit + 1, sizeof(*disk));
    listed_t frontier = {.prefix_len = 0}; /* the last room examined in storage */
    size_t ndisk = 0, examined = 0;
    unsigned char lo[PREFIX_MAX + 1], hi[2] = {0xff, 0xff}; /* the alarm index starts at FF FF */
    size_t lo_len = from_len != 0 ? successor(from, from_len, lo) : 0;
    if (from_len == 0)
        lo[lo_len++] = 0;
    int disk_more = 0; /* storage was not read to its end */
    while (lo_len != 0) {
        if (ndisk == limit || ++examined > ADMIN_EXAMINE_MAX) {
            disk_more = 1;
            break;
        }
        store_entry_t e;
        long n = store_scan_keys(rooms.store, lo, lo_len, hi, 2, &e, 1);
        if (n <= 0)
            break;
        size_t klen = e.key_len >= 4 ? (size_t)(unsigned char)e.key[2] << 8 | (unsigned char)e.key[3] : 0;
        if (klen == 0 || 4 + klen > e.key_len || klen > ROOM_KEY_MAX) {
            store_entries_free(&e, 1);
            break; /* not a room key: past the rooms */
        }
        memcpy(frontier.prefix, e.key, 4 + klen);
        frontier.prefix_len = 4 + klen;
        frontier.stored = 1;
        store_entries_free(&e, 1);
        lo_len = successor(frontier.prefix, frontier.prefix_len, lo);
        if (matches((const char *)frontier.prefix + 4, klen, party, prefix))
            disk[ndisk++] = frontier;
    }

    /* merge the two sorted lists; when storage was cut short, rooms in memory beyond the last room examined there wait
     * for the next page, or the order would break */
    json_t *list = json_array();
    size_t i = 0, j = 0;
    const listed_t *last = NULL;
    while (json_array_size(list) < limit) {
        int c;
        if (i < nmem && j < ndisk)
            c = listed_cmp(&mem[i], &disk[j]);
        else if (i < nmem && (!disk_more || (frontier.prefix_len != 0 && listed_cmp(&mem[i], &frontier) <= 0)))
            c = -1;
        else if (j < ndisk)
            c = 1;
        else
            break;
        listed_t l = c <= 0 ? mem[i] : disk[j];
        l.stored = c >= 0;
        i += c <= 0;
        j += c >= 0;
        json_array_append_new(list, listed_json(&l));
        last = c <= 0 ? &mem[i - 1] : &disk[j - 1];
    }
    int more = i < nmem || j < ndisk || disk_more;
    json_t *next = json_null();
    if (more && last != NULL)
        next = json_stringn((const char *)last->prefix + 4, last->prefix_len - 4);
    else if (more && frontier.prefix_len != 0)
        next = json_stringn((const char *)frontier.prefix + 4, frontier.prefix_len - 4);
    free(mem);
    free(disk);
    return json_pack("{s:o, s:o}", "rooms", list, "next", next != NULL ? next : json_null());
}

json_t *rooms_admin_room(proto_str_t party, proto_str_t id, const void *cursor, size_t cursor_len, size_t limit)
{
    if (config_find_party(rooms.conf, party.base, party.len) == NULL || party.len + 1 + id.len > ROOM_KEY_MAX)
        return NULL;
    char key[ROOM_KEY_MAX];
    size_t key_len = make_key(key, party, id);
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len = prefix_of(key, key_len, prefix);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);

    json_t *conns = json_array();
    for (party_conn_t *c = room != NULL ? party_room_connections(room, NULL) : NULL; c != NULL;
         c = party_room_connections(room, c)) {
        json_t *tags = json_array();
        for (size_t t = 0; t < c->num_tags; ++t)
            json_array_append_new(tags, json_string(c->tags[t]));
        json_array_append_new(conns,
                              json_pack("{s:s, s:o, s:I}", "id", c->id, "tags", tags, "state_bytes", (json_int_t)c->state_len));
    }

    /* the alarm, from memory or storage */
    uint64_t alarm = 0;
    if (room != NULL) {
        alarm = room->alarm_at;
    } else {
        unsigned char ak[PREFIX_MAX + 1];
        memcpy(ak, prefix, prefix_len);
        ak[prefix_len] = TAG_ALARM;
        char *v;
        size_t vl;
        if (store_get(rooms.store, ak, prefix_len + 1, &v, &vl) == 0) {
            if (vl == 9)
                alarm = store_get_u64((unsigned char *)v);
            free(v);
        }
    }

    /* the party's keys, a page at a time */
    unsigned char lo[DATA_KEY_MAX + 1], hi[PREFIX_MAX + 1];
    memcpy(lo, prefix, prefix_len);
    lo[prefix_len] = TAG_DATA;
    size_t lo_len = prefix_len + 1;
    if (cursor != NULL && cursor_len <= PARTY_KEY_MAX) {
        memcpy(lo + lo_len, cursor, cursor_len);
        lo_len += cursor_len;
        lo[lo_len++] = 0; /* strictly after the cursor */
    }
    memcpy(hi, prefix, prefix_len);
    hi[prefix_len] = TAG_DATA + 1;
    if (limit > 1000)
        limit = 1000;
    store_entry_t *e = xcalloc(limit + 1, sizeof(*e));
    long n = store_scan_keys(rooms.store, lo, lo_len, hi, prefix_len + 1, e, limit + 1);
    json_t *keys = json_array(), *next = json_null();
    char hex[2 * PARTY_KEY_MAX + 1];
    for (long i = 0; i < n && (size_t)i < limit; ++i) {
        const char *kb = e[i].key + prefix_len + 1;
        size_t kl = e[i].key_len - prefix_len - 1;
        json_t *k = json_stringn(kb, kl),
               *entry = json_pack("{s:o, s:I}", "key", k != NULL ? k : json_null(), "bytes", (json_int_t)e[i].value_len);
        if (k == NULL || (size_t)i == limit - 1)
            base_hex_encode(kb, kl, hex);
        if (k == NULL) /* JSON strings cannot carry it */
            json_object_set_new(entry, "key_hex", json_string(hex));
        json_array_append_new(keys, entry);
        if ((size_t)i == limit - 1 && (size_t)n > limit)
            next = json_string(hex);
    }
    if (n > 0)
        store_entries_free(e, (size_t)n);
    free(e);
    json_t *ids = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) json_array_append(ids, json_object_get(c, "id"));
    return json_pack("{s:s%, s:s%, s:i, s:b, s:b, s:I, s:o, s:o, s:o, s:o, s:o}", "party", party.base, party.len, "room", id.base,
                     id.len, "slot", prefix[0] << 8 | prefix[1], "in_memory", room != NULL && room->started, "hibernating",
                     room != NULL && !room->started && room->conns != NULL, "connections", (json_int_t)json_array_size(conns),
                     "ids", ids, "clients", conns, "alarmAt", alarm != 0 ? json_integer((json_int_t)alarm) : json_null(), "keys",
                     keys, "next", next);
}

long rooms_admin_evict(proto_str_t party, proto_str_t id, int delete_data)
{
    if (config_find_party(rooms.conf, party.base, party.len) == NULL)
        return -ENOENT;
    char key[ROOM_KEY_MAX];
    size_t key_len = make_key(key, party, id);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    if (room != NULL) {
        shard_event_begin();
        /* the clients reconnect and find the room started afresh from storage (or empty, after a delete) */
        room_close_all_now(room, 1012, "the room was evicted; reconnect");
        ++rooms.evictions;
        room_destroy(room);
    }
    if (!delete_data)
        return 0;
    unsigned char prefix[PREFIX_MAX + 1];
    size_t prefix_len = prefix_of(key, key_len, prefix);
    long deleted = 0;
    /* the alarm and its index entry, then every key of the room's range */
    unsigned char ak[PREFIX_MAX + 1];
    memcpy(ak, prefix, prefix_len);
    ak[prefix_len] = TAG_ALARM;
    char *v;
    size_t vl;
    if (store_get(rooms.store, ak, prefix_len + 1, &v, &vl) == 0) {
        if (vl == 9) {
            unsigned char idx[10 + PREFIX_MAX];
            store_delete(rooms.store, idx, index_key_of((const char *)ak, prefix_len, v, idx));
        }
        free(v);
    }
    unsigned char hi[PREFIX_MAX + 1];
    size_t hi_len = successor(prefix, prefix_len, hi);
    store_entry_t e[LIST_CHUNK];
    for (;;) {
        long n = store_scan_keys(rooms.store, prefix, prefix_len, hi, hi_len, e, LIST_CHUNK);
        if (n < 0)
            return -EIO;
        for (long i = 0; i < n; ++i) {
            store_delete(rooms.store, e[i].key, e[i].key_len);
            deleted += e[i].key[prefix_len] == TAG_DATA;
        }
        store_entries_free(e, (size_t)n);
        if (n < LIST_CHUNK)
            break;
    }
    return deleted;
}

/* ---- slot moves (shard/migrate.c, driven by router/migrate.c) ---- */

void rooms_slot_freeze(uint16_t slot, int frozen)
{
    rooms.frozen[slot] = (uint8_t)(frozen != 0);
}

void rooms_slots_unfreeze_all(void)
{
    memset(rooms.frozen, 0, sizeof(rooms.frozen));
}

/* The storage range of a slot: [slot][...] up to [slot + 1]. */
static void slot_range(uint16_t slot, unsigned char lo[2], unsigned char hi[2])
{
    lo[0] = (unsigned char)(slot >> 8);
    lo[1] = (unsigned char)slot;
    hi[0] = (unsigned char)((slot + 1) >> 8);
    hi[1] = (unsigned char)(slot + 1);
}

/* The tag of a room key in storage ([slot][len][party/room][tag]...), or 0 when the key is not one. */
static int key_tag(const char *key, size_t len, size_t *prefix_len)
{
    if (len < 5)
        return 0;
    size_t klen = (size_t)(unsigned char)key[2] << 8 | (unsigned char)key[3];
    if (4 + klen >= len)
        return 0;
    *prefix_len = 4 + klen;
    return (unsigned char)key[4 + klen];
}

void rooms_slot_evict(uint16_t slot)
{
    while (rooms.by_slot[slot] != NULL) {
        party_room_t *room = rooms.by_slot[slot];
        /* the router closed these connections before asking; any left (a race with a new one) reconnect */
        room_close_all_now(room, 1012, "the room is moving to another shard; reconnect");
        ++rooms.evictions;
        room_destroy(room);
    }
}

long rooms_slot_export(uint16_t slot, void (*emit)(void *arg, base_buf_t *chunk, int last), void *arg, size_t chunk_bytes)
{
    unsigned char lo[DATA_KEY_MAX + 1], hi[2];
    size_t lo_len = 2;
    slot_range(slot, lo, hi);
    base_buf_t chunk;
    base_buf_init(&chunk);
    long pairs = 0;
    store_entry_t e[LIST_CHUNK];
    for (;;) {
        long n = store_scan(rooms.store, lo, lo_len, hi, 2, 0, e, LIST_CHUNK);
        if (n < 0) {
            base_buf_dispose(&chunk);
            return n;
        }
        for (long i = 0; i < n; ++i) {
            proto_pairs_add(&chunk, e[i].key, e[i].key_len, e[i].value, e[i].value_len);
            ++pairs;
            if (base_buf_len(&chunk) >= chunk_bytes) {
                emit(arg, &chunk, 0);
                base_buf_consume(&chunk, base_buf_len(&chunk));
            }
        }
        if (n > 0) {
            memcpy(lo, e[n - 1].key, e[n - 1].key_len);
            lo[e[n - 1].key_len] = 0;
            lo_len = e[n - 1].key_len + 1;
        }
        store_entries_free(e, (size_t)n);
        if (n < LIST_CHUNK)
            break;
    }
    emit(arg, &chunk, 1);
    base_buf_dispose(&chunk);
    return pairs;
}

/* Deletes every key of the slot's range (and the alarm index entries of its rooms). */
static long slot_clear(uint16_t slot)
{
    unsigned char lo[DATA_KEY_MAX + 1], hi[2];
    size_t lo_len = 2;
    slot_range(slot, lo, hi);
    long deleted = 0;
    store_entry_t e[LIST_CHUNK];
    for (;;) {
        long n = store_scan(rooms.store, lo, lo_len, hi, 2, 0, e, LIST_CHUNK);
        if (n < 0)
            return n;
        for (long i = 0; i < n; ++i) {
            size_t plen;
            if (key_tag(e[i].key, e[i].key_len, &plen) == TAG_ALARM && e[i].value_len == 9) {
                unsigned char idx[10 + PREFIX_MAX];
                store_delete(rooms.store, idx, index_key_of(e[i].key, plen, e[i].value, idx));
            }
            store_delete(rooms.store, e[i].key, e[i].key_len);
            ++deleted;
        }
        if (n > 0) {
            memcpy(lo, e[n - 1].key, e[n - 1].key_len);
            lo[e[n - 1].key_len] = 0;
            lo_len = e[n - 1].key_len + 1;
        }
        store_entries_free(e, (size_t)n);
        if (n < LIST_CHUNK)
            break;
    }
    return deleted;
}

int rooms_slot_import(uint16_t slot, proto_str_t data, int first)
{
    if (first) {
        /* what an earlier, interrupted move left here is stale: the source is the truth */
        rooms_slot_evict(slot);
        if (slot_clear(slot) < 0)
            return -EIO;
    }
    size_t off = 0;
    proto_str_t k, v;
    int r;
    while ((r = proto_pairs_next(data, &off, &k, &v)) == 1) {
        if (k.len < 2 || (size_t)((unsigned char)k.base[0] << 8 | (unsigned char)k.base[1]) != slot)
            return -EINVAL; /* a key of another slot: refuse the whole chunk */
        store_put(rooms.store, k.base, k.len, v.base, v.len);
        size_t plen;
        if (key_tag(k.base, k.len, &plen) == TAG_ALARM && v.len == 9) {
            unsigned char idx[10 + PREFIX_MAX];
            alarm_index_put(idx, index_key_of(k.base, plen, v.base, idx), (const uint8_t *)v.base + 8);
        }
    }
    return r == 0 ? 0 : -EINVAL;
}

long rooms_slot_drop(uint16_t slot)
{
    rooms_slot_evict(slot);
    long n = slot_clear(slot);
    rooms.frozen[slot] = 0;
    return n;
}
