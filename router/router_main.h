/*
 * router_main.h — what the supervisor (node/) needs of the router: running it, and checking the TLS files before
 * starting it. No h2o type appears here, so node/ builds without h2o's headers.
 */
#ifndef PARTYD_ROUTER_MAIN_H
#define PARTYD_ROUTER_MAIN_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "partydefs.h"

/* Runs the router until drained. The listening sockets are made by the supervisor (so they outlive a router
 * restart); admin_fd is -1 when the admin listener is off. `defs` are the parties resolved to their code (the edge
 * hooks run here); they and `conf` outlive the call. Returns the exit status.
 * `ids` are the node's shards (their ids, from node.json); conf->shards is the count it should have, which the
 * router reaches by adding or draining shards live once they are all up (migrate.c). */
int router_main(const config_t *conf, const partydefs_t *defs, int ctl_fd, int listen_fd, int admin_fd, uint64_t node_started_ms,
                const int *ids, int num_ids, int target_shards);

/* The TLS context of listen.tls (HTTP/1.1 only: WebSocket needs it), or NULL with the reason in err. The caller frees it
 * with SSL_CTX_free. */
struct ssl_ctx_st *router_tls_context(const config_t *conf, char *err, size_t errlen);

#endif
