/*
 * member.h — a node's membership of the cluster, on etcd (etcd.h): a lease of `lease_ttl_ms`, the key
 * `<name>/nodes/<node>` under it (JSON: {"advertise", "shards", "version", "state": "joining"|"active"|"draining"}),
 * one keepalive POST every TTL/3, and the cluster's member list from a watch of `<name>/nodes/`.
 *
 * "My lease is valid until" is computed by this node's own clock (monotonic), never by comparing clocks: the time the
 * last successful keepalive (or the grant) was SENT, plus the TTL, minus a margin. A keepalive that fails does not
 * extend it; a keepalive that says the lease is gone (or a put refused for it) ends it at once, and the member grants a
 * new lease and puts its key again.
 *
 * Loop: the etcd client's (every call and callback on it). Not yet used by the router or the shards (issue 19).
 *
 * Failure: etcd errors never stop the member; it retries every `retry_ms` and logs each failure once per kind.
 * on_lease(held = 0) tells the owner it must stop serving (the fence); on_lease(held = 1) that it holds a lease again.
 */
#ifndef PARTYD_MEMBER_H
#define PARTYD_MEMBER_H

#include "etcd.h"

typedef struct st_member_t member_t;

typedef enum { MEMBER_JOINING, MEMBER_ACTIVE, MEMBER_DRAINING } member_state_t;

typedef struct st_member_config_t {
    const char *name;      /* the cluster's key prefix; copied */
    const char *node;      /* this node's id; copied */
    const char *advertise; /* host:port of its peer listener; copied */
    unsigned shards;
    const char *version;   /* copied */
    uint64_t lease_ttl_ms; /* rounded up to whole seconds for etcd, at least 2 s */
    uint64_t margin_ms;    /* 0: a fifth of the TTL */
    uint64_t retry_ms;     /* after a failed request; 0: 500 */
} member_config_t;

/* A node of the member list. `value` is its key's JSON as put (NUL-terminated); `state` parsed from it (-1 if not). */
typedef struct st_member_node_t {
    char *id;
    char *value;
    int state;
    int64_t mod_revision;
    int64_t lease;
} member_node_t;

typedef struct st_member_callbacks_t {
    void (*on_nodes)(member_t *member, void *data);           /* the list changed (member_nodes) */
    void (*on_lease)(member_t *member, int held, void *data); /* the lease (and our key) began or ended */
} member_callbacks_t;

/* Starts the membership (grant, put, keepalive; read and watch the list) on `etcd`, which must outlive it. Strings of
 * the config are copied. Callbacks may be NULL. */
member_t *member_start(etcd_t *etcd, const member_config_t *config, const member_callbacks_t *cb, void *data);
/* Stops: no callback follows. With `leave`, the lease is revoked first (our key goes at once, not after the TTL). The
 * member is freed once its requests in flight have answered (so the etcd client must be driven, or destroyed, after). */
void member_stop(member_t *member, int leave);

/* Puts the key again with the new state. */
void member_set_state(member_t *member, member_state_t state);
/* 1 while the lease is held and valid by this node's clock at `now_ms` (base_now_mono_ms()). */
int member_lease_valid(const member_t *member, uint64_t now_ms);
/* The monotonic time the lease is valid until (0 before the first grant). */
uint64_t member_valid_until(const member_t *member);
int64_t member_lease_id(const member_t *member);
/* The list, sorted by id; valid until the next callback of the member. */
const member_node_t *member_nodes(const member_t *member, size_t *n);
const char *member_state_name(member_state_t state);

#endif
