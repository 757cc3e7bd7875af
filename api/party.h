/*
 * party.h — the room API of partyd. Installed as <partyd/party.h>.
 *
 * (In the tree: api/, the lowest layer with proto/, header only; api/party.sym lists the functions of this header that
 * the partyd binary exports to modules.)
 *
 * A *party* is room logic: a table of callbacks (party_t). Every room of a party runs those callbacks on its shard's
 * single event loop, one at a time, so a room never needs locks: no two callbacks of any room ever run at once.
 * This is PartyKit's model (onStart, onConnect, onMessage, onClose, onError, onRequest) in C.
 *
 * Ownership, once for the whole header:
 *  - Pointers passed *into* a callback (room, conn, req, message bytes) are owned by partyd. Room and connection
 *    pointers stay valid until the room stops (on_stop) or the connection's on_close has returned; message bytes and
 *    request fields only until the callback returns — copy what you keep.
 *  - Bytes passed *to* a room function (party_send, party_broadcast, state) are copied before it returns.
 *  - Room functions may only be called from a callback of the same room, on the shard's loop (there is no other).
 *
 * Errors: functions return 0 or a negative errno value:
 *   -EINVAL    an argument is out of range (bad close code, NULL data with a length, ...)
 *   -EMSGSIZE  the message, state, key or value is over its cap (limits.message_bytes; PARTY_STATE_MAX;
 *              PARTY_KEY_MAX; PARTY_VALUE_MAX)
 *   -ENOTCONN  the connection is closed or closing
 *   -EALREADY  the request was already answered
 *   -ENOENT    no such key, no alarm
 *   -EIO       the storage failed (the shard logs why)
 *   -EBUSY     not allowed from this callback (party_conn_set_tags outside on_connect, party_fetch in on_stop)
 *
 * Durability: storage writes are atomic per loop pass and durable once committed; what a callback sends, broadcasts
 * or answers after (or before) writing is held back until those writes are on disk, so no client ever sees an effect
 * that a crash could take back (the output gate). A room that is idle is evicted from memory (on_stop) and started
 * again (on_start) by its next event; keep in memory only what on_start can rebuild from storage.
 */
#ifndef PARTYD_PARTY_H
#define PARTYD_PARTY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version a party is built against; partyd refuses a party whose abi_version differs (the layout of party_t
 * and the meaning of the functions below belong to one version). */
#define PARTY_ABI_VERSION 2

/* Per-connection state survives hibernation; it is capped so a room's connections stay cheap. */
#define PARTY_STATE_MAX 2048
/* Storage caps. */
#define PARTY_KEY_MAX 2048
#define PARTY_VALUE_MAX (128 * 1024)
#define PARTY_BATCH_MAX 128
/* Tags per connection, and bytes per tag. */
#define PARTY_TAGS_MAX 10
#define PARTY_TAG_MAX 256

typedef struct st_party_room_t party_room_t;       /* one room: a party plus a room id */
typedef struct st_party_conn_t party_conn_t;       /* one WebSocket connection in a room */
typedef struct st_party_request_t party_request_t; /* one HTTP request: to on_request, or the upgrade to on_connect */
typedef struct st_party_edge_t party_edge_t;       /* a request at the edge: in the router, before it is routed */
typedef struct st_party_fetch_t party_fetch_t;     /* the answer to a room's request to another room (party_fetch) */

typedef struct st_party_t {
    /* PARTY_ABI_VERSION */
    unsigned abi_version;
    /* The kind's name, as config files name it ("chat"). */
    const char *kind;

    /* The room starts: its first event after it was created or evicted. Read stored state here (storage reads are
     * synchronous). Return 0, or non-zero to fail the event that woke the room (a connection gets HTTP 500 before any
     * upgrade, a request 500); on_stop runs then too, so free what was set, and the next event tries again. */
    int (*on_start)(party_room_t *room);
    /* The room leaves memory: it was idle for timers.idle_ms (or hibernates), the shard stops, or on_start failed.
     * Free what party_room_set_data holds. Do not send or write here; party_fetch is refused (-EBUSY), and the
     * room's fetches still waiting are dropped (their callbacks never run). When the room is taken down (an operator
     * evict or delete, a slot move, a failed commit), the connection pointers the party kept are still valid here —
     * their id, tags and state can be read — though they are closed and no longer listed; they are freed after it.
     * May be NULL. */
    void (*on_stop)(party_room_t *room);

    /* A WebSocket connection asks to join. `req` is the upgrade request (method, path, query, headers).
     * The connection is already in the room (party_room_connections lists it, broadcasts include it) and may be
     * sent to; what it is sent is written right after the 101. Return 0 to accept, or an HTTP status from 400 to
     * 599 to refuse it before the upgrade (the client sees that status; the connection leaves the room without an
     * on_close; party_conn_refusal sets the reason the client reads). May be NULL: every connection is accepted. */
    int (*on_connect)(party_room_t *room, party_conn_t *conn, const party_request_t *req);
    /* A whole message from a connection: text (valid UTF-8, `binary` = 0) or binary. May be NULL. */
    void (*on_message)(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary);
    /* The connection is gone: the client closed it (`clean` = 1 after a close handshake), it failed, the party closed
     * it, a newer connection with the same id replaced it (code 4000), or the node stops (code 1001, and
     * party_node_stopping() is 1). It is no longer in the room. Not called when the room itself is taken down — an
     * operator evicts or deletes it, or it moves to another shard: its connections are closed with 1012 (clients
     * reconnect) and on_stop runs. May be NULL. */
    void (*on_close)(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean);
    /* The connection failed (protocol error, message too big, invalid UTF-8, slow consumer, lost peer) and is about to
     * close; `error` says why. on_close follows. May be NULL. */
    void (*on_error)(party_room_t *room, party_conn_t *conn, const char *error);

    /* An HTTP request to the room (anything but a WebSocket upgrade on the room's path). Answer it with party_respond,
     * now or later; until then the client waits. NULL: every request gets 404. */
    void (*on_request)(party_room_t *room, party_request_t *req);

    /* The room's alarm is due (see party_alarm_set); the room is started first if it was not in memory. The alarm is
     * cleared before this runs. Return 0 when done; non-zero to have it retried (timers.alarm_retry_ms, doubling, up
     * to 6 tries). Delivery is at least once: after a crash before the pass committed, it runs again. May be NULL. */
    int (*on_alarm)(party_room_t *room);

    /* Rooms of this party may be evicted from memory while connections are open (hibernation): the connections,
     * their ids, tags and state stay; on_stop runs; the next message, close, request or alarm runs on_start first.
     * The config's "hibernate" overrides this default. */
    int hibernate;

    /* ---- edge hooks: run in the router process, before a request is routed to its room ----
     *
     * They see the request as the client sent it (party_edge_*), and decide: return 0 to let it through, or an HTTP
     * status (100–599) that the router answers with itself (body and headers from party_edge_respond and
     * party_edge_response_header; by default a JSON error). Headers added with party_edge_set_header travel with the
     * request to the room, which sees them in on_connect / on_request like the client's own. This is where a token
     * is verified once and the user id handed on (README, "Auth at the edge").
     *
     * They run on the router's loop, which serves every room of the node: they must not block or take long (no
     * network or disk I/O). They have no room: no room function may be called from them. Either may be NULL. */
    /* Before a WebSocket upgrade (a GET with Upgrade: websocket). */
    int (*before_connect)(party_edge_t *edge);
    /* Before any other HTTP request to one of the party's rooms. */
    int (*before_request)(party_edge_t *edge);
} party_t;

/* A party built as a module (a shared object named by "module" in the config) defines exactly one party_t under this
 * name, with default visibility:
 *
 *     PARTY_EXPORT const party_t partyd_party = {.abi_version = PARTY_ABI_VERSION, .kind = "mine", ...};
 *
 * partyd loads it with dlopen when it starts (every symbol resolved then: a missing one is an error at start, never at
 * the first request) and refuses one whose abi_version is not its own. A module calls the functions of this header,
 * which the partyd binary exports; it may use any library it links. */
#define PARTY_MODULE_SYMBOL "partyd_party"
#define PARTY_EXPORT __attribute__((visibility("default")))

/* ---- the room ---- */

/* The room id: the raw, still percent-encoded path segment (1–256 bytes, NUL-terminated, no control characters). */
const char *party_room_id(const party_room_t *room);
/* The party name the room was reached under (the config's key, e.g. "main"). */
const char *party_room_party(const party_room_t *room);

/* The value of the party's configured var `name` ("vars" in the config: a string, or an environment variable read when
 * the node started), or NULL when there is none. Valid for the life of the process. */
const char *party_var(const party_room_t *room, const char *name);

/* A pointer the party keeps with the room (NULL until set). Free it in on_stop. */
void *party_room_data(const party_room_t *room);
void party_room_set_data(party_room_t *room, void *data);

/* Open connections (accepted or being accepted; not yet closed) in the order they joined. */
size_t party_room_connection_count(const party_room_t *room);
/* Iterates the room's open connections: pass NULL for the first, the previous one for the next; NULL at the end.
 * Closing the returned connection while iterating is allowed. */
party_conn_t *party_room_connections(party_room_t *room, party_conn_t *prev);
/* The open connection with this id, or NULL. */
party_conn_t *party_room_connection(party_room_t *room, const char *id);

/* Sends a message to every open connection of the room except those whose ids are in except[0..nexcept-1].
 * Text (`binary` = 0) must be valid UTF-8. The frame is encoded once, whatever the number of recipients.
 * Returns 0, -EINVAL (invalid UTF-8, too many exceptions), -EMSGSIZE. */
int party_broadcast(party_room_t *room, const void *data, size_t len, int binary, const char *const *except, size_t nexcept);

/* ---- connections ---- */

/* The connection's id: the client's `_pk` query value, else a generated UUID. NUL-terminated, ≤ 128 bytes. */
const char *party_conn_id(const party_conn_t *conn);
/* Sends one message to the connection. Returns 0, -EINVAL (invalid UTF-8 in text), -EMSGSIZE, -ENOTCONN. */
int party_send(party_conn_t *conn, const void *data, size_t len, int binary);
/* Closes the connection with a WebSocket close code (1000, 1001, 1003, 1007–1014 or 3000–4999) and an optional reason
 * (≤ 123 bytes of UTF-8; NULL for none). The connection leaves the room at once; its on_close runs after the current
 * callback returns. Returns 0, -EINVAL, -ENOTCONN. */
int party_conn_close(party_conn_t *conn, int code, const char *reason);
/* Per-connection state: ≤ PARTY_STATE_MAX bytes, copied. Kept with the connection, also while the room hibernates.
 * Returns 0, -EMSGSIZE, -ENOTCONN. */
int party_conn_set_state(party_conn_t *conn, const void *data, size_t len);
/* The state last set, or NULL with *len = 0. Valid until the next set or the connection's on_close returns. */
const void *party_conn_state(const party_conn_t *conn, size_t *len);

/* In on_connect, before returning a refusal status: the reason the client gets, as the JSON body {"error": reason}
 * (≤ 256 bytes of UTF-8, copied). Returns 0, -EINVAL, -EBUSY (outside on_connect). */
int party_conn_refusal(party_conn_t *conn, const char *reason);

/* Tags: up to PARTY_TAGS_MAX strings of 1..PARTY_TAG_MAX bytes, set in on_connect only (copied); they survive
 * hibernation. Returns 0, -EINVAL, -EBUSY (outside on_connect). */
int party_conn_set_tags(party_conn_t *conn, const char *const *tags, size_t n);
/* The connection's tags: their number, with the array in *tags (valid while the connection is). */
size_t party_conn_tags(const party_conn_t *conn, const char *const **tags);
/* Iterates the open connections that have `tag`, as party_room_connections does. */
party_conn_t *party_room_connections_tagged(party_room_t *room, const char *tag, party_conn_t *prev);

/* ---- storage: the room's own sorted key-value store ---- */

/* A key (and, for puts, a value). */
typedef struct st_party_kv_t {
    const void *key;
    size_t key_len;
    const void *value;
    size_t value_len;
} party_kv_t;

/* Reads a key. 0 with a malloc'ed copy in *value (NUL-terminated for convenience; free() it), -ENOENT, -EMSGSIZE,
 * -EIO. Sees the room's own writes that are not committed yet. */
int party_storage_get(party_room_t *room, const void *key, size_t key_len, void **value, size_t *value_len);
/* Writes a key (key 1..PARTY_KEY_MAX bytes, value ≤ PARTY_VALUE_MAX). 0, -EINVAL, -EMSGSIZE. */
int party_storage_put(party_room_t *room, const void *key, size_t key_len, const void *value, size_t value_len);
/* Deletes a key: 1 when it existed, 0 when not, -EMSGSIZE, -EIO. */
int party_storage_delete(party_room_t *room, const void *key, size_t key_len);
/* Batches of up to PARTY_BATCH_MAX keys. get_many fills each value/value_len (value NULL when absent; free() the
 * others); put_many writes all or nothing; delete_many returns how many existed. */
int party_storage_get_many(party_room_t *room, party_kv_t *kvs, size_t n);
int party_storage_put_many(party_room_t *room, const party_kv_t *kvs, size_t n);
int party_storage_delete_many(party_room_t *room, const party_kv_t *keys, size_t n);

typedef struct st_party_list_t {
    const void *prefix; /* only keys that start with this (NULL: all) */
    size_t prefix_len;
    const void *start; /* only keys ≥ start (NULL: no lower bound) */
    size_t start_len;
    const void *end; /* only keys < end (NULL: no upper bound) */
    size_t end_len;
    size_t limit; /* at most this many (0: no limit) */
    int reverse;  /* descending order */
} party_list_t;

/* Calls cb for each key in order (byte-wise), with the room's uncommitted writes included; cb returns non-zero to
 * stop. cb may write to storage (the listing sees it past the current key). Returns the number of keys visited, or
 * -EINVAL, -EIO. */
long party_storage_list(party_room_t *room, const party_list_t *opts,
                        int (*cb)(void *arg, const void *key, size_t key_len, const void *value, size_t value_len), void *arg);
/* Deletes every key of the room; returns how many, or -EIO. */
long party_storage_delete_all(party_room_t *room);
/* Runs fn; when it returns non-zero every storage write it made is undone (reads inside saw them). Returns fn's
 * value. Without it, the writes of one callback are already atomic: they commit together or not at all. */
int party_storage_transaction(party_room_t *room, int (*fn)(party_room_t *room, void *arg), void *arg);

/* ---- the alarm: one per room, durable ---- */

/* Sets (replacing) the room's alarm to the wall-clock time `at_ms` (ms since the epoch; a past time fires at once).
 * The alarm is stored: it fires even if the room was evicted or the node restarted meanwhile. 0, -EINVAL. */
int party_alarm_set(party_room_t *room, uint64_t at_ms);
/* 0 with the time in *at_ms, or -ENOENT. */
int party_alarm_get(party_room_t *room, uint64_t *at_ms);
/* Clears the alarm: 0 (also when there was none). */
int party_alarm_delete(party_room_t *room);

/* ---- HTTP requests ---- */

/* Fields of a request. Strings are NUL-terminated; the path is raw (percent-encoded, without the query); the query
 * excludes the '?' and is "" when absent. */
const char *party_request_method(const party_request_t *req);
const char *party_request_path(const party_request_t *req);
const char *party_request_query(const party_request_t *req);
/* The first query parameter `name`, decoded as URLSearchParams does, into out[0..cap) (NUL-terminated). Returns its
 * length, -1 when absent, -2 when it does not fit. */
long party_request_query_param(const party_request_t *req, const char *name, char *out, size_t cap);
/* The first header with this (case-insensitive) name, or NULL. */
const char *party_request_header(const party_request_t *req, const char *name);
size_t party_request_header_count(const party_request_t *req);
/* The i-th header (0 ≤ i < count): its lower-cased name into *name and its value returned. */
const char *party_request_header_at(const party_request_t *req, size_t i, const char **name);
/* The body (empty for an upgrade request). */
const void *party_request_body(const party_request_t *req, size_t *len);

/* Adds a response header (copied) before party_respond. Returns 0, -EINVAL (bad name or value), -EALREADY. */
int party_response_header(party_request_t *req, const char *name, const char *value);
/* Answers the request: status 100–599, a content type (NULL: none) and a body (copied). Exactly once per request;
 * after it returns `req` is gone. Only for requests given to on_request (the upgrade request of on_connect: -EALREADY).
 * Returns 0, -EINVAL, -EALREADY. */
int party_respond(party_request_t *req, int status, const char *content_type, const void *body, size_t len);

/* ---- rooms calling rooms ---- */

/* The answer to party_fetch: valid only during the callback. */
typedef void (*party_fetch_cb)(party_room_t *room, void *arg, const party_fetch_t *res);

/* Sends an HTTP request to room `room_id` of party `party` — any party of this node, this room included — routed like
 * a client's request (the target may be on another shard), and calls `cb` with the answer. `path` is the sub-path
 * after the room, with an optional query ("/score?round=2"; NULL or "" for the room itself); `method` NULL is "GET";
 * `headers` is NULL or a NULL-terminated list of name, value pairs; the body is copied. The target's on_request sees
 * the header "x-partyd-from: PARTY/ROOM" naming this room (clients cannot forge it: the router drops it from their
 * requests); edge hooks do not run for it.
 *
 * `cb` runs later, on this room's loop, as a callback of this room (it may use every room function, and answer a
 * request the room holds). The room stays in memory until every fetch of it was answered. The answer's status is the
 * target's, or one of partyd's: 400 (bad room id or party name), 404 (no such party), 503 (the target's shard is
 * down or the room is moving; retry), 504 (no answer within timers.fetch_ms). `cb` runs exactly once — unless this
 * room stops first (its shard stops or restarts, an operator evicts it, it moves to another shard, its start fails):
 * then it never runs, so free what `arg` holds in on_stop too (for example, keep pending args in the room's data).
 *
 * Like a message, the request leaves only once the writes this callback made are committed (the output gate).
 * Returns 0, -EINVAL (a bad argument), -EMSGSIZE (the body is over limits.body_bytes), -EBUSY (called from on_stop:
 * the room is stopping, and its answer would find the party's state gone). */
int party_fetch(party_room_t *room, const char *party, const char *room_id, const char *method, const char *path,
                const char *const *headers, const void *body, size_t len, party_fetch_cb cb, void *arg);
/* The answer's HTTP status. */
int party_fetch_status(const party_fetch_t *res);
/* The first header of the answer with this (case-insensitive) name, or NULL. */
const char *party_fetch_header(const party_fetch_t *res, const char *name);
/* The answer's body. */
const void *party_fetch_body(const party_fetch_t *res, size_t *len);

/* ---- the edge (before_connect, before_request; in the router) ---- */

/* The party name and the room id the request is for (the room id raw, as party_room_id gives it). */
const char *party_edge_party(const party_edge_t *edge);
const char *party_edge_room(const party_edge_t *edge);
/* The request: method, raw path (without the query), query ("" when absent), as party_request_* give them. */
const char *party_edge_method(const party_edge_t *edge);
const char *party_edge_path(const party_edge_t *edge);
const char *party_edge_query(const party_edge_t *edge);
/* The first query parameter `name`, decoded; as party_request_query_param. */
long party_edge_query_param(const party_edge_t *edge, const char *name, char *out, size_t cap);
/* The first request header with this (case-insensitive) name, or NULL. */
const char *party_edge_header(const party_edge_t *edge, const char *name);
/* Sets a request header for the room (copied): it replaces every header of that name the client sent, so a room can
 * trust a header only the hook sets. Returns 0, -EINVAL (bad name or value), -ENOSPC (too many headers). */
int party_edge_set_header(party_edge_t *edge, const char *name, const char *value);
/* When the hook answers itself (returns a status): the response body (copied; NULL content type: none) and headers.
 * Returns 0, -EINVAL. */
int party_edge_respond(party_edge_t *edge, const char *content_type, const void *body, size_t len);
int party_edge_response_header(party_edge_t *edge, const char *name, const char *value);
/* The party's configured var, as party_var. */
const char *party_edge_var(const party_edge_t *edge, const char *name);
/* A log line tagged with the party and room. level as party_log. */
void party_edge_log(const party_edge_t *edge, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ---- utilities ---- */

/* Whether `len` bytes are well-formed UTF-8 (what a text message must be). */
int party_utf8_valid(const void *data, size_t len);
/* The number of code points in valid UTF-8 (what JavaScript's [...s].length counts). */
size_t party_utf8_length(const void *data, size_t len);

/* The largest message party_send and party_broadcast take (limits.message_bytes): larger is -EMSGSIZE. */
size_t party_message_max(void);
/* 1 while the node stops (SIGTERM: it drains, and its clients will reconnect to the next one), else 0. In on_close it
 * tells a client that leaves from one the node lets go: a presence list, say, keeps the user then. */
int party_node_stopping(void);

/* ---- JSON: a small writer and string escaping (so a party never builds JSON with printf) ---- */

/* Writes `len` bytes of `s` as the inside of a JSON string (no quotes): `"` and `\` and control characters escaped
 * (\n, \t, ... and \u00XX), bytes that are not well-formed UTF-8 replaced by \ufffd. Writes at most `cap` bytes
 * including a terminating NUL (when cap > 0) and returns the length the whole escape needs, as snprintf does: a
 * result >= cap means `out` was cut. */
size_t party_json_escape(char *out, size_t cap, const void *s, size_t len);

/* A JSON writer: one text built in memory, with the commas, the colons and the escaping done for you.
 *
 *     party_json_t *j = party_json_new();
 *     party_json_object(j);
 *     party_json_key(j, "type"); party_json_str(j, "welcome");
 *     party_json_key(j, "id");   party_json_str(j, party_conn_id(conn));
 *     party_json_key(j, "n");    party_json_int(j, 3);
 *     party_json_end(j);
 *     size_t len;
 *     const char *text = party_json_text(j, &len);   // {"type":"welcome","id":"...","n":3}
 *     if (text != NULL) party_send(conn, text, len, 0);
 *     party_json_free(j);
 *
 * Owned by the caller (free it with party_json_free); the text belongs to the writer and lives until the next call on
 * it. Errors are sticky: a misuse (a value where a key is due, an end without a begin, more than 64 levels) or
 * running out of memory makes party_json_text return NULL (and party_json_error say why); the calls in between do
 * nothing. Any thread may use its own writer; one writer belongs to one thread at a time. */
typedef struct st_party_json_t party_json_t;
/* NULL when out of memory. */
party_json_t *party_json_new(void);
void party_json_free(party_json_t *j);
/* Begin an object / an array; party_json_end closes the innermost one. */
void party_json_object(party_json_t *j);
void party_json_array(party_json_t *j);
void party_json_end(party_json_t *j);
/* In an object, before each value: its key (NUL-terminated; escaped as party_json_escape does). */
void party_json_key(party_json_t *j, const char *key);
/* Values. party_json_str takes a NUL-terminated string, party_json_strn `len` bytes (either escaped);
 * party_json_double writes a non-finite number as null; party_json_raw inserts `len` bytes that the caller vouches
 * are one valid JSON value (a document it stored, say). */
void party_json_str(party_json_t *j, const char *s);
void party_json_strn(party_json_t *j, const void *s, size_t len);
void party_json_int(party_json_t *j, long long v);
void party_json_double(party_json_t *j, double v);
void party_json_bool(party_json_t *j, int v);
void party_json_null(party_json_t *j);
void party_json_raw(party_json_t *j, const void *json, size_t len);
/* The text (NUL-terminated; its length in *len when len is not NULL) once every object and array is closed; NULL on
 * an error or while one is still open. */
const char *party_json_text(party_json_t *j, size_t *len);
/* 0, or why the writer failed: -ENOMEM, -EINVAL (a misuse), -E2BIG (nesting over 64 levels). */
int party_json_error(const party_json_t *j);

/* Wall-clock time in milliseconds since the Unix epoch. */
uint64_t party_now_ms(void);
/* A log line tagged with the room ("party/room"). level: 0 error, 1 warn, 2 info, 3 debug. */
void party_log(const party_room_t *room, int level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif

#endif
