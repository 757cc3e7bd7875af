/*
 * admin_int.h — what the admin listener's files share (admin.c: the endpoint and its calls to the shards; metrics.c:
 * /metrics). Router loop only, as all of router/.
 */
#ifndef PARTYD_ADMIN_INT_H
#define PARTYD_ADMIN_INT_H

#include <jansson.h>

#include "router.h"

typedef struct st_admin_call_t admin_call_t;
typedef void (*admin_done_cb)(admin_call_t *call);

/* One question to one shard or to all of them, and the HTTP request waiting for the answers. */
struct st_admin_call_t {
    h2o_req_t *req;
    uint64_t rid;
    int ids[CONFIG_MAX_SHARDS]; /* the shards asked */
    int num;
    json_t **result; /* per shard asked: its JSON answer, or NULL */
    int *status;     /* per shard asked: its status; 0 while waiting, 503 when it is down */
    int waiting;
    admin_done_cb done;
    h2o_timeout_entry_t timeout;
    json_t *acc; /* what the operation gathers across calls (room pages) */
    json_t *args;
    admin_call_t *next;
};

/* Shards whose loop the supervisor reports stalled (CTL_SHARD_STALLED). */
size_t admin_num_stalled(void);
/* metrics.c: answers GET /metrics once every shard asked for its stats has answered (or timed out): Prometheus text. */
void admin_done_metrics(admin_call_t *c);

#endif
