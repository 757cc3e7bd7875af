/*
 * ws_int.h — router/ws*.c's private header: the connection states and flags, the layer's state, and the functions
 * its three files share. Only ws.c, wsread.c and wswrite.c include it; the rest of the router sees ws.h.
 *
 *   ws.c       frames (and their pool), connection records and their life cycle, the sweep (pings, closing
 *              deadlines), the API of ws.h
 *   wsread.c   reading: epoll readiness, plain and io_uring-batched reads, TLS input, frame callbacks (messages,
 *              pings, the peer's close)
 *   wswrite.c  output: the per-connection queues, pongs and close frames, writev and io_uring-batched writes, TLS
 *              writes, the write lists and ws_flush's budget, the output caps (slow consumers)
 *
 * Every function here runs on the router's loop, like ws.h's. None returns an error: a socket error ends the
 * connection (ws__conn_finish, which reports it through on_closed once); out of memory aborts (base.h).
 */
#ifndef PARTYD_WS_INT_H
#define PARTYD_WS_INT_H

#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <h2o/socket.h>
#include <h2o/socket/evloop.h>
#include <h2o/timeout.h>
#include <liburing.h>

#include "ws.h"

enum { ST_PENDING = 0, ST_OPEN, ST_CLOSING, ST_CLOSED };

enum {
    F_CLOSE_SENT = 1,     /* our close frame is queued */
    F_CLOSE_RECEIVED = 2, /* the peer's close frame arrived */
    F_PING_OUT = 4,       /* a ping is unanswered */
    F_DIRTY = 8,          /* in the dirty list */
    F_WANT_WRITE = 16,    /* waiting for EPOLLOUT */
    F_REPORTED = 32,      /* on_closed ran */
    F_DISCARD_INPUT = 64, /* after a protocol error: read and drop */
    F_REAP = 128,         /* in the reap list */
    F_PAUSED = 256,       /* not reading: the shard is behind */
};

#define READ_BUF_SIZE (64 * 1024)
#define MAX_IOV 64
#define CID_INDEX_BITS 24
#define CLOSE_TIMEOUT_MS 3000
#define BATCH_MAX 256  /* connections written by one io_uring submission */
#define BATCH_IOV 16   /* frames per connection in one submission (more: the connection goes round again) */
#define BATCH_MIN 4    /* fewer dirty connections than this: writev each (a submission costs more than one writev) */
#define READ_SLOT 4096 /* bytes one batched recv takes from a connection; a full slot is followed by plain reads */
/* connections written per loop pass; the rest wait for the next pass (ws_flush) */
#define PASS_WRITES 128
/* bytes freed in big blocks after which the sweep gives the heap's free memory back to the system (malloc_trim):
 * glibc keeps freed memory below its top otherwise, and a router that once held a flood's output would stay at
 * that size */
#define TRIM_AFTER (32 << 20)

/* Connections waiting to be written, first in first out, linked through _dirty_next (F_DIRTY: in one of them). */
typedef struct st_conn_list_t {
    ws_conn_t *head, *tail;
} conn_list_t;

/*
 * Batched writes. On loopback and on virtual machines a syscall costs as much as the TCP work it starts (measured
 * here: writev of 66 bytes to 100 sockets ≈ 4.5 µs each, the same sends as one io_uring submission ≈ 2.1 µs each).
 * A broadcast to a room of N writes to N sockets in the same pass, so the end-of-pass flush hands all of them to the
 * kernel at once: one IORING_OP_SENDMSG per connection with MSG_DONTWAIT (a full socket answers -EAGAIN instead of
 * being parked in the kernel), one io_uring_enter for the whole batch. A pass with fewer than BATCH_MIN connections
 * to write (an echo, a room of two) uses writev: there one submission costs more than the writes it replaces. Where
 * io_uring is unavailable (old kernel, seccomp, kernel.io_uring_disabled) or PARTYD_IO_URING=0, each connection is
 * written with writev as before.
 *
 * Reads are batched the same way: when one epoll_wait reports BATCH_MIN or more readable connections (many clients
 * sending at once: 50 echo pairs at 10k msgs/s read ≈ 12 connections per pass, one `read` each, 62 % of the router's
 * syscall time), one IORING_OP_RECV per connection into its slot of `rslot`, one submission. A slot that comes back
 * full may leave more in the socket: that connection then goes on with plain reads, as a single readable one does.
 */
typedef struct st_ws_batch_t {
    struct io_uring ring;
    struct msghdr msg[BATCH_MAX];
    struct iovec iov[BATCH_MAX][BATCH_IOV];
    ws_conn_t *conn[BATCH_MAX];
    size_t want[BATCH_MAX]; /* bytes offered to each connection */
    int res[BATCH_MAX];
    uint8_t *rslot; /* BATCH_MAX × READ_SLOT: where a batch of reads lands */
} ws_batch_t;

/* The layer's state, one per process (the router's loop); defined in ws.c. */
typedef struct st_ws_layer_t {
    h2o_evloop_t *loop;
    const ws_config_t *conf;
    const ws_callbacks_t *cb;
    int epfd;
    h2o_socket_t *epsock;
    uint8_t *rbuf;
    /* cid table */
    ws_conn_t **slots;
    uint32_t num_slots; /* slots handed out so far */
    uint32_t slots_cap;
    uint32_t *free_idx;
    uint32_t num_free;
    uint64_t seq;
    size_t count;
    /* lists */
    conn_list_t dirty;   /* given output during this pass */
    conn_list_t backlog; /* left unwritten by an earlier pass */
    ws_conn_t *reap;
    ws_conn_t *all; /* every record, for the sweep */
    ws_conn_t *sweep_cursor;
    h2o_timeout_t tick;
    h2o_timeout_entry_t tick_entry;
    uint32_t tick_ms;
    ws_stats_t stats;
    ws_batch_t *batch; /* NULL: writev per connection */
    size_t out_total;  /* the sum of every connection's _qbytes */
    size_t freed;      /* bytes freed in big blocks since the last malloc_trim */
} ws_layer_t;

extern ws_layer_t ws;

static inline uint64_t ws__now(void)
{
    return h2o_now(ws.loop);
}

/* Attached to a socket: its own fd (plain TCP), or an h2o socket (TLS). */
static inline int ws__has_socket(const ws_conn_t *c)
{
    return c->_fd != -1 || c->_sock != NULL;
}

/* A plain connection still served: not closed or condemned by a callback that ran earlier in this batch or pass. */
static inline int ws__fd_live(const ws_conn_t *c)
{
    return c->_fd != -1 && !(c->_flags & F_REAP);
}

/* ---- ws.c ---- */

/* Frees the record now (ws_flush's reap, ws_dispose): closes its socket, drops its queue, frees its cid slot. */
void ws__conn_free(ws_conn_t *c);
/* Calls on_closed unless it already ran for this connection. */
void ws__report(ws_conn_t *c, int code, const char *reason, int clean);
/* The socket is done: closed now (reported 1006 if nothing was reported yet), the record freed at the pass's end. */
void ws__conn_finish(ws_conn_t *c);
/* Fails the connection (protocol error, slow consumer): reports it, queues a close frame, drops further input. */
void ws__conn_fail(ws_conn_t *c, int code, const char *reason);

/* ---- wsread.c ---- */

/* Parses bytes that arrived from the client (the bytes are the caller's; unmasked in place). */
void ws__conn_consume(ws_conn_t *c, uint8_t *data, size_t len);
/* The private epoll set is readable (h2o read callback of ws.epsock). */
void ws__on_epoll_ready(h2o_socket_t *sock, const char *err);
/* A TLS connection's h2o read callback. */
void ws__on_tls_read(h2o_socket_t *sock, const char *err);

/* ---- wswrite.c ---- */

/* Drops the queued frames but those a write in flight uses (and, with keep_partial_head, a half-written head). */
void ws__queue_clear(ws_conn_t *c, int keep_partial_head);
/* Puts the connection on this pass's write list (once; not while it waits for EPOLLOUT or is reaped). */
void ws__mark_dirty(ws_conn_t *c);
/* Queues a frame, taking over the caller's reference, and marks the connection dirty. */
void ws__queue_push(ws_conn_t *c, ws_frame_t *f);
/* Answers a ping: a waiting pong is rewritten in place (only the latest ping is answered). */
void ws__queue_pong(ws_conn_t *c, const uint8_t *data, size_t len);
/* Queues our close frame (once) and sets the closing deadline. */
void ws__queue_close_frame(ws_conn_t *c, int code, const char *reason);
/* Frees a drained queue's memory past 16 slots (the sweep). */
void ws__queue_trim(ws_conn_t *c);
/* Brings a plain connection's epoll events up to date with F_PAUSED and F_WANT_WRITE. */
void ws__set_events(ws_conn_t *c);
/* Writes what the connection's socket takes now (plain: writev until EAGAIN; TLS: one h2o write in flight). */
void ws__conn_write(ws_conn_t *c);
/* Takes the first connection off a write list. */
ws_conn_t *ws__dirty_pop(conn_list_t *l);
/* Submits the n SQEs prepared in ws.batch->ring and waits for all n results (in ws.batch->res); aborts if the ring
 * fails, as nothing safe is left to do then. */
void ws__batch_complete(unsigned n);
/* Sets up ws.batch (io_uring) unless unavailable or PARTYD_IO_URING=0; ws.batch stays NULL then. */
void ws__batch_init(void);
/* Frees ws.batch (NULL is fine). */
void ws__batch_dispose(void);
/* Closes a connection over its output cap (1008), or at once if it is already closing. */
void ws__close_slow_consumer(ws_conn_t *c, const char *why);

#endif
