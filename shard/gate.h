/*
 * gate.h — the output gate: what an event that wrote storage produces leaves only once the write is committed.
 *
 * The shard runs events one after the other (a frame from the router, an alarm, a room's share of the router going
 * away), each between gate_event_begin and gate_event_end. Every frame an event emits is encoded into the event's own
 * buffer; at gate_event_end it goes to the router at once, or, when the event wrote (gate_hold, at any point of the
 * event: frames emitted before the write are held too), it joins the pass's held output. At the end of the loop pass
 * gate_end_pass commits the pass's writes (one WAL sync) and only then releases what was held; when the commit fails,
 * exactly that pass's held output is dropped and the failure callback is told which requests and connections were
 * owed an answer in it (so the room layer can answer them and reset the rooms that wrote).
 *
 * The gate never looks at what it emits: the caller says whether a frame is an answer owed to request msg->id
 * (GATE_ANSWER: a RESPONSE) or a verdict owed to connection msg->id (GATE_VERDICT: ACCEPT, REJECT). Which rooms stay
 * gated for the rest of a pass is the room layer's (it calls gate_hold for every later event of such a room).
 *
 * It is written against two small interfaces, so that a unit test can drive it with a fake store and a fake link:
 * a commit function and an output sink (gate_ops_t). One gate per shard; everything runs on the shard's loop.
 * Frames emitted outside an event (the answers of a failed commit, a room stopping in the sweep) go out at once.
 */
#ifndef PARTYD_GATE_H
#define PARTYD_GATE_H

#include <stddef.h>
#include <stdint.h>

#include "proto.h"

typedef struct st_gate_t gate_t;

typedef enum en_gate_kind_t {
    GATE_FRAME = 0, /* anything else: a message, a broadcast, a close, an admin or slot reply */
    GATE_ANSWER,    /* the answer (RESPONSE) to request msg->id */
    GATE_VERDICT,   /* the verdict (ACCEPT or REJECT) on connection msg->id */
    GATE_CLOSE,     /* the close (CLOSE_CONN) of connection msg->id, which has left the room: if it is dropped, the room
                     * layer must send it again or the socket stays open in the router */
} gate_kind_t;

typedef struct st_gate_ops_t {
    /* Commits the pass's writes: 0, or -EIO with the reason in err. */
    int (*commit)(void *ctx, char *err, size_t errlen);
    /* Writes waiting for a commit (a pass that held nothing and wrote nothing commits nothing). */
    size_t (*pending)(void *ctx);
    /* Whether there is a router to send to; frames emitted while there is none are dropped (-ENOTCONN). */
    int (*connected)(void *ctx);
    /* Queues already-encoded frames to the router (the bytes are copied). */
    void (*out)(void *ctx, const void *frames, size_t len);
    /* After a commit returned 0: the writes of the pass are durable (the held output has gone out). */
    void (*committed)(void *ctx);
    /* After a commit failed (the held output is dropped): the requests and connections among it that were owed an
     * answer or a verdict, and the connections whose close was dropped. The arrays are the gate's, valid during the
     * call; frames emitted from it go out at once. */
    void (*failed)(void *ctx, const uint64_t *rids, size_t num_rids, const uint64_t *cids, size_t num_cids, const uint64_t *closed,
                   size_t num_closed);
} gate_ops_t;

/* `ops` and `ctx` must outlive the gate; `max_frame` caps every frame (as the link does). */
gate_t *gate_new(const gate_ops_t *ops, void *ctx, size_t max_frame);
/* Frees the gate; held output is dropped (commit with gate_end_pass first). */
void gate_free(gate_t *g);

/* An event begins / ends. A begin while an event is open ends that one first. */
void gate_event_begin(gate_t *g);
void gate_event_end(gate_t *g);
/* The current event wrote storage: all it emitted and emits is held until the pass's commit. Outside an event it only
 * makes the pass commit. */
void gate_hold(gate_t *g);
/* Emits a frame (encoded now: msg may go once this returns). 0, -ENOTCONN (no router: dropped), -EMSGSIZE (over the
 * frame cap: dropped). */
int gate_emit(gate_t *g, const proto_msg_t *msg, gate_kind_t kind);

/* End of a loop pass (an open event is ended first): commits when anything was held or written, then releases the
 * held output (1) or drops it and calls ops->failed (-EIO, the reason in err); 0 when there was nothing to commit.
 * Starts the next pass either way. */
int gate_end_pass(gate_t *g, char *err, size_t errlen);
/* The router went away: what was held for it cannot reach it (the writes still commit). */
void gate_drop_held(gate_t *g);
/* Bytes emitted in this pass and not yet handed to the output sink (held for the commit, or in the open event): what
 * a pass's output costs before the link sees it (shard.c bounds a pass by it). */
size_t gate_held_bytes(const gate_t *g);
/* The number of the current pass, from 0: rooms use it to know whether they wrote in this pass. */
uint64_t gate_pass(const gate_t *g);

#endif
