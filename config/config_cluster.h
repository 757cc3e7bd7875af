/*
 * config_cluster.h — the "cluster" key of partyd.json (issue 19), checked for syntax only (config/cluster.c). Without the key
 * `enabled` is 0 and nothing changes: the node is a single node with no etcd.
 *
 *   "cluster": {"etcd": ["http://127.0.0.1:2379", ...], "name": "prod", "node": "n1",
 *               "peer": {"listen": "0.0.0.0:7999", "advertise": "10.0.0.5:7999"},
 *               "secret": "..." | {"env": "PARTYD_CLUSTER_SECRET"}, "lease_ttl_ms": 10000}
 */
#ifndef PARTYD_CONFIG_CLUSTER_H
#define PARTYD_CONFIG_CLUSTER_H

#include <stddef.h>

#define CONFIG_CLUSTER_MAX_ETCD 16

typedef struct st_config_cluster_t {
    int enabled;
    char **etcd; /* the endpoints, "http://host:port" (or https), in order */
    size_t num_etcd;
    char *name;      /* the key prefix in etcd (default "partyd"): several clusters can share one etcd */
    char *node;      /* this node's id (default: the host name); its data dir belongs to it */
    char *peer_host; /* peer.listen (default 127.0.0.1:7999) */
    int peer_port;
    char *peer_advertise;  /* peer.advertise: what other nodes dial (default: peer.listen) */
    char *secret;          /* NULL: none (refused when peer.listen is not a loopback address) */
    unsigned lease_ttl_ms; /* 2000 to 600000, default 10000 */
} config_cluster_t;

/* Overlays `json` (a json_t *, the value of "cluster") onto `cl`. On error writes "SOURCE: cluster.FIELD: reason" into
 * err and returns -1 (cl may then hold part of it: config_cluster_dispose frees it). */
int config_cluster_apply(config_cluster_t *cl, const void *json, const char *source, char *err, size_t errlen);
void config_cluster_dispose(config_cluster_t *cl);

#endif
