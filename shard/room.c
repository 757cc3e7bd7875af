/*
 * room.c — where a room handles a message: rooms and their connections inside one shard, and the room API of
 * party.h that parties call.
 *
 * Every function here runs on the shard's single loop. A connection closed by the party from inside a callback is
 * flagged, leaves the room's lookups at once, and is freed (after its on_close) once the frame being handled is done,
 * so a party can never be handed a freed pointer.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uthash.h>

#include "shard.h"

#define ROOM_KEY_MAX (64 + 1 + 256)
#define CLOSE_REASON_MAX 123

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
    uint16_t close_code;
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
};

static struct {
    const config_t *conf;
    party_room_t *by_key;
    party_conn_t *conns_by_cid;
    party_conn_t *deferred; /* closed by the party, on_close pending */
    size_t num_rooms;
    size_t num_conns;
    uint64_t messages_in;
    uint64_t messages_out;
} rooms;

/* ---- lifecycle ---- */

void rooms_init(const config_t *conf)
{
    memset(&rooms, 0, sizeof(rooms));
    rooms.conf = conf;
}

static void conn_free(party_conn_t *conn)
{
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

static void request_answer_internal(party_request_t *req, int status, const char *msg);

static void room_destroy(party_room_t *room)
{
    /* connections are gone by now; a party must not be stopped with live connections */
    while (room->requests != NULL)
        request_answer_internal(room->requests, 503, "the room stopped");
    if (room->party->on_stop != NULL)
        room->party->on_stop(room);
    HASH_DEL(rooms.by_key, room);
    --rooms.num_rooms;
    free(room->key);
    free(room->party_name);
    free(room->id);
    free(room);
}

static void conn_close_now(party_conn_t *conn, int code, const char *reason, int clean, const char *error)
{
    party_room_t *room = conn->room;
    int accepted = (conn->flags & CONN_ACCEPTED) != 0;
    conn_forget(conn);
    conn_unlink(conn);
    if (accepted) {
        if (error != NULL && room->party->on_error != NULL)
            room->party->on_error(room, conn, error);
        if (room->party->on_close != NULL)
            room->party->on_close(room, conn, code, reason, strlen(reason), clean);
    }
    /* party_conn_close on this conn from its own on_close gets -ENOTCONN (it is already flagged), so nothing else
     * holds it now */
    conn_free(conn);
}

void rooms_dispose(void)
{
    rooms_run_deferred();
    party_room_t *room, *tmp;
    HASH_ITER(hh, rooms.by_key, room, tmp)
    {
        /* on_close may close other connections (deferred); run those before taking the next one */
        while (room->conns != NULL) {
            conn_close_now(room->conns, 1001, "shard shutting down", 0, NULL);
            rooms_run_deferred();
        }
        room_destroy(room);
    }
}

void rooms_stats(proto_stats_t *stats)
{
    stats->rooms = rooms.num_rooms;
    stats->connections = rooms.num_conns;
    stats->messages_in = rooms.messages_in;
    stats->messages_out = rooms.messages_out;
}

static size_t make_key(char *buf, proto_str_t party, proto_str_t room)
{
    memcpy(buf, party.base, party.len);
    buf[party.len] = '/';
    memcpy(buf + party.len + 1, room.base, room.len);
    return party.len + 1 + room.len;
}

/* Finds the room, creating and starting it when needed. On failure returns NULL with an HTTP status in *status. */
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

    const config_party_t *pconf = config_find_party(rooms.conf, party.base, party.len);
    if (pconf == NULL) {
        *status = 404;
        *why = "unknown party";
        return NULL;
    }
    if (rooms.num_rooms >= rooms.conf->limits.rooms_in_memory) {
        *status = 503;
        *why = "too many rooms on this shard";
        return NULL;
    }
    room = xcalloc(1, sizeof(*room));
    room->key = xstrndup(key, key_len);
    room->key_len = key_len;
    room->party_name = xstrndup(party.base, party.len);
    room->id = xstrndup(id.base, id.len);
    room->conf = pconf;
    room->party = pconf->party;
    HASH_ADD_KEYPTR(hh, rooms.by_key, room->key, room->key_len, room);
    ++rooms.num_rooms;
    if (room->party->on_start != NULL && room->party->on_start(room) != 0) {
        log_warn("room %s failed to start", room->key);
        room_destroy(room);
        *status = 500;
        *why = "the room failed to start";
        return NULL;
    }
    return room;
}

/* ---- emitting to the router ---- */

static void emit_close_conn(party_conn_t *conn, int code, const char *reason)
{
    proto_msg_t m = {.type = PROTO_CLOSE_CONN, .id = conn->cid, .code = code, .reason = proto_str(reason, strlen(reason))};
    shard_emit(&m);
}

static void emit_reject(uint64_t cid, int status, const char *why)
{
    proto_msg_t m = {.type = PROTO_REJECT, .id = cid, .status = status, .data = proto_str(why, strlen(why))};
    shard_emit(&m);
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

static void request_unlink(party_request_t *req)
{
    if (req->room == NULL)
        return;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        req->room->requests = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->room = NULL;
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

void rooms_on_open(const proto_msg_t *msg)
{
    int status;
    const char *why;
    party_room_t *room = room_get(msg->party, msg->room, &status, &why);
    if (room == NULL) {
        emit_reject(msg->id, status, why);
        return;
    }
    if (msg->conn_id.len == 0 || msg->conn_id.len > 128 || memchr(msg->conn_id.base, '\0', msg->conn_id.len) != NULL) {
        emit_reject(msg->id, 400, "bad connection id");
        return;
    }
    party_conn_t *conn;
    HASH_FIND(hh_cid, rooms.conns_by_cid, &msg->id, sizeof(msg->id), conn);
    if (conn != NULL) {
        log_error("router reused connection number %llu; refusing the new connection", (unsigned long long)msg->id);
        emit_reject(msg->id, 500, "duplicate connection number");
        return;
    }

    /* the newest connection with an id wins: the older one is closed first, as its own event */
    HASH_FIND(hh_id, room->conns_by_id, msg->conn_id.base, msg->conn_id.len, conn);
    if (conn != NULL) {
        emit_close_conn(conn, 4000, "replaced by a newer connection with the same id");
        conn_close_now(conn, 4000, "replaced by a newer connection with the same id", 1, NULL);
        rooms_run_deferred();
    }
    if (room->open_count >= rooms.conf->limits.connections_per_room) {
        emit_reject(msg->id, 503, "the room is full");
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
        verdict = room->party->on_connect(room, conn, req);
        request_free(req);
    }
    if (verdict == 0) {
        conn->flags |= CONN_ACCEPTED;
        proto_msg_t accept = {.type = PROTO_ACCEPT, .id = conn->cid};
        shard_emit(&accept);
        return;
    }
    if (verdict < 400 || verdict > 599) {
        log_warn("room %s: on_connect returned %d, which is not an HTTP status from 400 to 599; answering 500", room->key, verdict);
        verdict = 500;
    }
    emit_reject(conn->cid, verdict, "the room refused the connection");
    if ((conn->flags & CONN_CLOSED) == 0) {
        conn_forget(conn);
        conn_unlink(conn);
        conn_free(conn);
    }
}

void rooms_on_message(const proto_msg_t *msg)
{
    party_conn_t *conn;
    HASH_FIND(hh_cid, rooms.conns_by_cid, &msg->id, sizeof(msg->id), conn);
    if (conn == NULL || (conn->flags & CONN_ACCEPTED) == 0)
        return; /* closed meanwhile by the party: what it sent after that is dropped, as a closed socket would */
    ++rooms.messages_in;
    if (conn->room->party->on_message != NULL)
        conn->room->party->on_message(conn->room, conn, msg->data.base, msg->data.len, msg->binary);
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

void rooms_on_close(const proto_msg_t *msg)
{
    party_conn_t *conn;
    HASH_FIND(hh_cid, rooms.conns_by_cid, &msg->id, sizeof(msg->id), conn);
    if (conn == NULL)
        return;
    char reason[CLOSE_REASON_MAX + 1];
    size_t n = msg->reason.len < CLOSE_REASON_MAX ? msg->reason.len : CLOSE_REASON_MAX;
    memcpy(reason, msg->reason.base, n);
    reason[n] = '\0';
    conn_close_now(conn, msg->code, reason, msg->clean, msg->clean ? NULL : close_error(msg->code));
}

void rooms_on_request(const proto_msg_t *msg)
{
    int status;
    const char *why;
    party_room_t *room = room_get(msg->party, msg->room, &status, &why);
    if (room == NULL) {
        respond_simple(msg->id, status, why);
        return;
    }
    if (room->party->on_request == NULL) {
        respond_simple(msg->id, 404, "this party has no request handler");
        return;
    }
    party_request_t *req = request_new(msg);
    req->room = room;
    req->next = room->requests;
    if (room->requests != NULL)
        room->requests->prev = req;
    room->requests = req;
    room->party->on_request(room, req);
}

void rooms_on_router_lost(void)
{
    party_room_t *room, *tmp;
    HASH_ITER(hh, rooms.by_key, room, tmp)
    {
        while (room->conns != NULL) {
            conn_close_now(room->conns, 1006, "router went away", 0, "connection lost");
            rooms_run_deferred();
        }
        /* nobody is waiting for these answers any more */
        while (room->requests != NULL) {
            party_request_t *req = room->requests;
            request_unlink(req);
            request_free(req);
        }
    }
    rooms_run_deferred();
}

void rooms_run_deferred(void)
{
    while (rooms.deferred != NULL) {
        party_conn_t *conn = rooms.deferred;
        rooms.deferred = conn->next_deferred;
        conn->next_deferred = NULL;
        party_room_t *room = conn->room;
        conn_unlink(conn);
        if ((conn->flags & CONN_ACCEPTED) != 0 && room->party->on_close != NULL)
            room->party->on_close(room, conn, conn->close_code, conn->close_reason, strlen(conn->close_reason), 1);
        conn_free(conn);
    }
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
    if (ret == 0)
        rooms.messages_out += room->open_count - n;
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
    if ((ret = shard_emit(&m)) == 0)
        ++rooms.messages_out;
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
    emit_close_conn(conn, code, reason);
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

static int header_name_valid(const char *s)
{
    if (*s == '\0')
        return 0;
    for (; *s != '\0'; ++s)
        if (!(isalnum((unsigned char)*s) || strchr("!#$%&'*+-.^_`|~", *s) != NULL))
            return 0;
    return 1;
}

static int header_value_valid(const char *s)
{
    for (; *s != '\0'; ++s)
        if ((unsigned char)*s < 0x20 && *s != '\t')
            return 0;
    return 1;
}

int party_response_header(party_request_t *req, const char *name, const char *value)
{
    if (req->room == NULL || req->responded)
        return -EALREADY;
    if (!header_name_valid(name) || !header_value_valid(value) || req->num_resp_headers >= PROTO_MAX_HEADERS - 1)
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
    if (status < 100 || status > 599 || (body == NULL && len != 0) || (content_type != NULL && !header_value_valid(content_type)))
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
    request_unlink(req);
    request_free(req);
    return ret == -ENOTCONN ? 0 : ret;
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
