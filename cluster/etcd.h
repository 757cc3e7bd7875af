/*
 * etcd.h — a non-blocking client of etcd 3.4's v3 HTTP/JSON gateway (POST /v3/...), on libcurl multi and jansson,
 * driven by its owner's event loop through an etcd_io_t (ipc/loop.c's: etcd_io_loop; h2o's can be written the same way).
 *
 * cluster/ files: etcd.c (this client), etcdwire.c (its JSON and base64), etcd_loop.c (etcd_io_loop);
 * member.c (member.h: a node's membership: lease, nodes/<id>, the member list).
 *
 * Loop: one thread. Every function is called on the owner's loop thread; every callback runs from etcd_io_t's fd or
 * timer callbacks, never from inside the call that started the request. A callback may start new requests and may
 * cancel watches; it must not call etcd_destroy.
 *
 * Gateway facts this client hides (DESIGN.md "Scaling out"): keys and values are base64 on the wire; int64 fields are
 * JSON strings; fields with their default value are omitted (a txn reply without `succeeded` failed; a kv without
 * `lease` has none); one POST per lease keepalive; one HTTP request per watch, newline-delimited JSON on a chunked
 * response; a watch cancelled by compaction carries `compact_revision`.
 *
 * Failure: every request ends in exactly one callback with an etcd_result_t. `err` is 0 or -errno:
 *   -ECONNREFUSED  no endpoint could be reached (each was tried once, in turn);
 *   -ETIMEDOUT     the request timed out on the last endpoint tried. For a read this means every endpoint timed out;
 *                  for a write (put, delete, txn, lease grant/revoke, compaction) the outcome is UNKNOWN — the request
 *                  may have been applied — and it is not retried: read back to learn it;
 *   -EIO           the connection broke after the request was sent (same rule as -ETIMEDOUT for writes);
 *   -EREMOTEIO     etcd answered with an error (`etcd_code`, the gRPC code, and `message` say which);
 *   -EPROTO        etcd's answer was not what the gateway sends (bad JSON, bad base64, a missing field).
 * `message` is always set (a human sentence) when err != 0, and names the endpoint. A transport failure before the
 * request was sent (connection refused) is retried on the next endpoint; the client then sticks to the endpoint that
 * answered.
 */
#ifndef PARTYD_ETCD_H
#define PARTYD_ETCD_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_etcd_t etcd_t;
typedef struct st_etcd_watch_t etcd_watch_t;

/* ---- the loop interface ---------------------------------------------------------------------------------------- */

#define ETCD_IO_READ 1
#define ETCD_IO_WRITE 2

/* What the client needs of its owner's loop: file descriptors (libcurl's sockets, which curl opens and closes: the io
 * never closes them) and one-shot timers. */
typedef struct st_etcd_io_t {
    /* Starts watching `fd` for `events` (ETCD_IO_READ|ETCD_IO_WRITE); calls cb(data, fd, events_seen) while ready.
     * Returns the owner's handle; NULL when the loop refuses the fd. */
    void *(*fd_watch)(void *loop, int fd, int events, void (*cb)(void *data, int fd, int events), void *data);
    /* Changes the events of a watched fd (never 0: curl removes a socket it no longer wants watched). */
    void (*fd_events)(void *handle, int events);
    /* Stops watching (does not close the fd); safe inside the fd's own callback. */
    void (*fd_unwatch)(void *handle);
    /* A one-shot timer: created stopped, started (restarted) `ms` from now, stopped, freed (stopped first). */
    void *(*timer_new)(void *loop, void (*cb)(void *data), void *data);
    void (*timer_start)(void *timer, uint64_t ms);
    void (*timer_stop)(void *timer);
    void (*timer_free)(void *timer);
} etcd_io_t;

/* The etcd_io_t of ipc/loop.c's loop: `loop` is a loop_t *. */
extern const etcd_io_t etcd_io_loop;

/* ---- results ------------------------------------------------------------------------------------------------------ */

/* One key-value. key and value point into the result (valid during the callback only); key and value are
 * NUL-terminated for convenience (the length excludes the NUL). Fields etcd omitted are 0. */
typedef struct st_etcd_kv_t {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    int64_t create_revision, mod_revision, version, lease;
} etcd_kv_t;

typedef struct st_etcd_result_t {
    int err;             /* 0 or -errno (above) */
    const char *message; /* when err != 0: what failed, with the endpoint; else NULL */
    int etcd_code;       /* with -EREMOTEIO: the gRPC code etcd gave (3 invalid argument, 5 not found, ...) */
    int64_t revision;    /* the store's revision in the reply's header */
    /* range: the keys read; txn: the kvs of every range op of the branch that ran, in order */
    etcd_kv_t *kvs;
    size_t n_kvs;
    int64_t count;     /* range: the number of keys in the range (even with a limit); delete: the number deleted */
    int succeeded;     /* txn: 1 when the compares held (the success ops ran), 0 when the failure ops ran */
    int64_t lease_id;  /* lease grant / keepalive: the lease */
    int64_t lease_ttl; /* lease grant / keepalive: its TTL in seconds; keepalive: 0 = the lease does not exist any more */
} etcd_result_t;

/* The result is the client's and lives until the callback returns. */
typedef void (*etcd_cb)(etcd_t *etcd, const etcd_result_t *result, void *data);

/* ---- the client ---------------------------------------------------------------------------------------------------- */

typedef struct st_etcd_config_t {
    const char *const *endpoints; /* "http://127.0.0.1:2379", ...; copied */
    size_t n_endpoints;
    uint64_t request_timeout_ms; /* one attempt of one request; 0: 5000 */
    uint64_t connect_timeout_ms; /* 0: 1000 */
} etcd_config_t;

/* Creates a client on `loop` (driven through `io`, which must outlive it). Returns NULL with *err set to a constant
 * message when the config is unusable (no endpoints) or libcurl cannot start. */
etcd_t *etcd_create(const etcd_io_t *io, void *loop, const etcd_config_t *config, const char **err);
/* Fails every pending request with -ECANCELED (their callbacks run, inside this call), ends every watch without a
 * callback, frees the client. Not from inside one of its callbacks. */
void etcd_destroy(etcd_t *etcd);
const etcd_io_t *etcd_io(etcd_t *etcd);
void *etcd_loop(etcd_t *etcd);
/* Requests not yet answered (watches not counted). */
size_t etcd_pending(etcd_t *etcd);

/* Keys are NUL-terminated strings (partyd's keys are text); values are bytes. `prefix`: the range is every key that
 * starts with `key`. Arguments are copied before the call returns. */

/* Range get. `revision` 0: the newest; else read the store as of that revision (-EREMOTEIO code 11 when compacted). */
void etcd_get(etcd_t *etcd, const char *key, int prefix, int64_t revision, etcd_cb cb, void *data);
/* Put, under `lease` when non-zero (-EREMOTEIO code 5 when the lease does not exist). */
void etcd_put(etcd_t *etcd, const char *key, const void *value, size_t value_len, int64_t lease, etcd_cb cb, void *data);
/* Delete; result.count says how many keys went. */
void etcd_delete(etcd_t *etcd, const char *key, int prefix, etcd_cb cb, void *data);

typedef enum { ETCD_CMP_MOD, ETCD_CMP_CREATE, ETCD_CMP_VERSION, ETCD_CMP_VALUE } etcd_cmp_target_t;
typedef enum { ETCD_EQUAL, ETCD_NOT_EQUAL, ETCD_LESS, ETCD_GREATER } etcd_cmp_result_t;
typedef struct st_etcd_cmp_t {
    const char *key;
    etcd_cmp_target_t target;
    etcd_cmp_result_t result;
    int64_t number;    /* MOD, CREATE (0: the key does not exist), VERSION */
    const void *value; /* VALUE */
    size_t value_len;
} etcd_cmp_t;
typedef enum { ETCD_OP_GET, ETCD_OP_PUT, ETCD_OP_DELETE } etcd_op_kind_t;
typedef struct st_etcd_op_t {
    etcd_op_kind_t kind;
    const char *key;
    int prefix;        /* GET, DELETE */
    const void *value; /* PUT */
    size_t value_len;
    int64_t lease; /* PUT */
} etcd_op_t;
/* etcd refuses more than 128 operations in one txn (per branch) with -EREMOTEIO; the client sends what it is given so
 * that the caller sees etcd's own word. */
#define ETCD_TXN_MAX_OPS 128
void etcd_txn(etcd_t *etcd, const etcd_cmp_t *cmps, size_t n_cmps, const etcd_op_t *success, size_t n_success,
              const etcd_op_t *failure, size_t n_failure, etcd_cb cb, void *data);

/* Leases. TTL in seconds (etcd's minimum is 2 s; it raises a smaller one). A keepalive is one POST; its result's
 * lease_ttl is 0 when the lease expired or was revoked. */
void etcd_lease_grant(etcd_t *etcd, int64_t ttl_s, etcd_cb cb, void *data);
void etcd_lease_keepalive(etcd_t *etcd, int64_t lease_id, etcd_cb cb, void *data);
void etcd_lease_revoke(etcd_t *etcd, int64_t lease_id, etcd_cb cb, void *data);
/* Compacts the store's history up to `revision` (tests and operators; a watch from before it is cancelled). */
void etcd_compact(etcd_t *etcd, int64_t revision, etcd_cb cb, void *data);

/* ---- watches ------------------------------------------------------------------------------------------------------- */

typedef enum { ETCD_EVENT_PUT, ETCD_EVENT_DELETE } etcd_event_type_t;
typedef struct st_etcd_event_t {
    etcd_event_type_t type;
    etcd_kv_t kv; /* DELETE: key and mod_revision (the delete's revision) only */
} etcd_event_t;

typedef struct st_etcd_watch_result_t {
    /* 0: events (possibly none: the watch was created, `created` is 1). Otherwise the watch is over and this is its last
     * callback: -ECANCELED with compact_revision > 0 when etcd compacted past the watch's revision (re-read, then
     * watch from the read's revision + 1), -ECANCELED without it when etcd cancelled it, or a request error (above). */
    int err;
    const char *message;
    int created;
    int64_t revision; /* the header's revision */
    int64_t compact_revision;
    const etcd_event_t *events; /* in etcd's order (revision order) */
    size_t n_events;
} etcd_watch_result_t;

typedef void (*etcd_watch_cb)(etcd_watch_t *watch, const etcd_watch_result_t *result, void *data);

/* Watches `key` (or every key under it, with `prefix`) from `start_revision` (0: from now). The watch is the client's;
 * it ends with a callback whose err != 0 (then it is freed after that callback returns) or with etcd_watch_cancel.
 * Before etcd accepted it, a refused connection is retried on the next endpoint; after, a broken stream ends it (the
 * caller re-reads and watches again: events may have been missed). */
etcd_watch_t *etcd_watch(etcd_t *etcd, const char *key, int prefix, int64_t start_revision, etcd_watch_cb cb, void *data);
/* Ends the watch; no callback follows. Safe inside the watch's own callback and any other callback of the client. */
void etcd_watch_cancel(etcd_watch_t *watch);

/* ---- helpers ------------------------------------------------------------------------------------------------------- */

/* Writes the end of `key`'s prefix range (the key with its last byte incremented, etcd's rule) into out[cap];
 * returns its length, or -1 when it does not fit. An all-0xff key gives "\0" (every key after it). */
long etcd_prefix_end(const char *key, size_t key_len, char *out, size_t cap);

#endif
