/*
 * node.h — the supervisor: the `partyd` process itself. It binds the listeners, starts one router and N shards
 * (fork, no exec: they share the parsed config), hands out their links (ctl.h), restarts a child that dies (with
 * backoff), and drains on SIGTERM/SIGINT: the router first (clients get 1001), then the shards, then exit 0.
 *
 * node/ is the top layer; it may include every folder's header but not h2o's (it sees router/router_main.h):
 *   node.c      this header: the supervisor
 *   reload.c    SIGHUP: the configuration read again and checked (node_reload_prepare)
 *   strikes.c   rooms that crashed their shard, and when that quarantines them (docs/failure.md)
 *   notify.c    READY=1 and STOPPING=1 to a service manager ($NOTIFY_SOCKET, systemd's Type=notify)
 *   main.c      `partyd`: the config, the parties resolved (shard/module.h), then node_run
 *   partyctl.c  `partyctl`, the admin API's command-line client (its own binary; proto/ and libcurl only)
 *   meson.build the sources of the two binaries (the top meson.build links them, after the layer check)
 */
#ifndef PARTYD_NODE_H
#define PARTYD_NODE_H

#include "config.h"
#include "partydefs.h"

/* Runs the node until it is told to stop; returns the exit status (0 after a drain; 1 when it could not start or
 * start its children, the reason logged). Called once, by main() in the supervisor, which it turns into the node's
 * loop. `conf` and `defs` are the caller's and must outlive the call: `defs` are conf's parties resolved to their code
 * (shard/module.h); the router and the shards inherit both. */
int node_run(config_t *conf, const partydefs_t *defs);

/* ---- reload.c: SIGHUP ----
 * Reads conf->source again, with the environment, into `fresh` and checks it (TLS files too); logs what changed live
 * and what needs a restart. Returns a memfd holding the file's text for the children (CTL_RELOAD; the caller closes
 * it and disposes `fresh`), or -1 after logging why the old settings stay (`fresh` then holds nothing). */
int node_reload_prepare(const config_t *conf, config_t *fresh);

/* ---- strikes.c: the supervisor's record of rooms that crashed their shard (its loop only; cannot fail) ---- */
#define STRIKES_WINDOW_MS 60000     /* a second crash within this of the one before quarantines the room */
#define STRIKES_MAX_MS (600 * 1000) /* the quarantine doubles up to this */
/* A crash of `room` ("party/room", copied) at `now_ms`: 0 when it is only counted, else the quarantine it earns in ms
 * (`base_ms` the first time, doubling each time after), with its number in *level. After a quarantine one more crash
 * within the window quarantines the room again. A room without a crash for an hour starts again from `base_ms`. */
uint64_t strikes_crash(const char *room, uint64_t now_ms, unsigned base_ms, unsigned *level);
/* An operator lifted `room`'s quarantine: its record goes. 0, or -ENOENT when there was none. */
int strikes_forget(const char *room);
/* cb(room, ms left, data) for every room quarantined at `now_ms` (to tell a restarted router). */
void strikes_each_quarantined(uint64_t now_ms, void (*cb)(const char *room, uint64_t left_ms, void *data), void *data);

/* ---- notify.c: the service manager's notification socket (the supervisor's loop; never blocks for long) ---- */
/* Sends `state` ("READY=1", "STOPPING=1", newline-separated "KEY=VALUE" lines) as one datagram to $NOTIFY_SOCKET.
 * 0 when sent or when no service manager listens (no $NOTIFY_SOCKET); else -errno, logged as a warning: the node
 * runs on either way. */
int notify_send(const char *state);

#endif
