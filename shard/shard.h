/*
 * shard.h — one shard process: one event loop running many rooms (see room.c), talking to the router over one link
 * (proto.h frames) and to the supervisor over a control socket.
 *
 * Where things are:
 *   shard.c   the process: loop, control socket, the router link, decoding frames and dispatching them to rooms
 *   room.c    rooms and connections, and the room API of party.h that parties call
 *   parties/  the built-in parties (relay, chat), written against party.h only
 */
#ifndef PARTYD_SHARD_H
#define PARTYD_SHARD_H

#include "config.h"
#include "party.h"
#include "proto.h"

/* Runs shard `index` until the supervisor tells it to stop or goes away. `ctl_fd` is the shard's end of its control
 * socket. Returns the process exit status. */
int shard_main(const config_t *conf, int index, int ctl_fd);

/* ---- between shard.c and room.c (one shard per process, so these act on the process's shard) ---- */

/* Queues a frame to the router. Returns 0, -ENOTCONN when no router is connected (the frame is dropped: there is no
 * client to see it), -EMSGSIZE when it is over the link's frame cap. */
int shard_emit(const proto_msg_t *msg);
/* The caps of this node (limits.*). */
const config_t *shard_config(void);

/* room.c: entry points for the frames the router sends. */
void rooms_init(const config_t *conf);
void rooms_dispose(void);
void rooms_on_open(const proto_msg_t *msg);
void rooms_on_message(const proto_msg_t *msg);
void rooms_on_close(const proto_msg_t *msg);
void rooms_on_request(const proto_msg_t *msg);
/* The router went away: every connection is gone (their on_close runs with 1006), rooms stay. */
void rooms_on_router_lost(void);
/* Runs the on_close callbacks that party_conn_close deferred. Called after each frame is handled. */
void rooms_run_deferred(void);
void rooms_stats(proto_stats_t *stats);

#endif
