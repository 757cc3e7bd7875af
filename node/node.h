/*
 * node.h — the supervisor: the `partyd` process itself. It binds the listeners, starts one router and N shards
 * (fork, no exec: they share the parsed config), hands out their links (ctl.h), restarts a child that dies (with
 * backoff), and drains on SIGTERM/SIGINT: the router first (clients get 1001), then the shards, then exit 0.
 */
#ifndef PARTYD_NODE_H
#define PARTYD_NODE_H

#include "config.h"

/* Runs the node until it is told to stop; returns the exit status. */
int node_run(config_t *conf);

#endif
