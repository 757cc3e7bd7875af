/*
 * ws.c — WebSocket connections after the upgrade: socket I/O, framing, output queues, pings and closing
 * (see ws.h for the design).
 */
#include "ws.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <h2o/socket/evloop.h>
#include <h2o/timeout.h>
#include <liburing.h>

#include "base.h"

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

static struct {
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
} ws;

/* ---- frames ----
 * Frames of up to FRAME_SMALL bytes (most messages) are allocated with that room and kept on a free list when
 * released, at most FRAME_POOL_MAX of them, so that a message costs no allocation on the way through the router. */

#define FRAME_SMALL 248 /* header included: a 256-byte allocation */
#define FRAME_POOL_MAX 4096

static struct {
    ws_frame_t *free; /* linked through their data */
    size_t n;
} frame_pool;

ws_frame_t *ws_frame_new(int opcode, const void *payload, size_t len)
{
    uint8_t hdr[10];
    size_t h = wsframe_header(hdr, opcode, len);
    ws_frame_t *f;
    if (h + len > FRAME_SMALL) {
        f = xmalloc(sizeof(*f) + h + len);
    } else if (frame_pool.free != NULL) {
        f = frame_pool.free;
        memcpy(&frame_pool.free, f->data, sizeof(frame_pool.free));
        --frame_pool.n;
    } else {
        f = xmalloc(sizeof(*f) + FRAME_SMALL);
    }
    f->refcnt = 1;
    f->len = (uint32_t)(h + len);
    memcpy(f->data, hdr, h);
    if (len != 0)
        memcpy(f->data + h, payload, len);
    return f;
}

void ws_frame_release(ws_frame_t *f)
{
    if (--f->refcnt != 0)
        return;
    if (f->len <= FRAME_SMALL && frame_pool.n < FRAME_POOL_MAX) {
        memcpy(f->data, &frame_pool.free, sizeof(frame_pool.free));
        frame_pool.free = f;
        ++frame_pool.n;
    } else {
        ws.freed += f->len > FRAME_SMALL ? f->len : FRAME_SMALL;
        free(f);
    }
}

static void frame_pool_dispose(void)
{
    while (frame_pool.free != NULL) {
        ws_frame_t *f = frame_pool.free;
        memcpy(&frame_pool.free, f->data, sizeof(frame_pool.free));
        free(f);
    }
    frame_pool.n = 0;
}

/* ---- records ---- */

static uint64_t now(void)
{
    return h2o_now(ws.loop);
}

/* Attached to a socket: its own fd (plain TCP), or an h2o socket (TLS). */
static int has_socket(const ws_conn_t *c)
{
    return c->_fd != -1 || c->_sock != NULL;
}

/* A plain connection still served: not closed or condemned by a callback that ran earlier in this batch or pass. */
static int fd_live(const ws_conn_t *c)
{
    return c->_fd != -1 && !(c->_flags & F_REAP);
}

static void on_tls_read(h2o_socket_t *sock, const char *err);

ws_conn_t *ws_conn_new(void)
{
    uint32_t idx;
    if (ws.num_free != 0) {
        idx = ws.free_idx[--ws.num_free];
    } else {
        if (ws.num_slots == (1u << CID_INDEX_BITS)) {
            log_error("ws: %u connections; no room for another", ws.num_slots);
            return NULL;
        }
        idx = ws.num_slots++;
        if (idx == ws.slots_cap) {
            ws.slots_cap = ws.slots_cap == 0 ? 64 : ws.slots_cap * 2;
            ws.slots = xrealloc(ws.slots, ws.slots_cap * sizeof(*ws.slots));
            ws.free_idx = xrealloc(ws.free_idx, ws.slots_cap * sizeof(*ws.free_idx));
        }
    }
    ws_conn_t *c = xcalloc(1, sizeof(*c));
    c->cid = (++ws.seq << CID_INDEX_BITS) | idx;
    c->_fd = -1;
    c->_state = ST_PENDING;
    wsframe_parser_init(&c->_parser);
    ws.slots[idx] = c;
    c->_all_next = ws.all;
    if (ws.all != NULL)
        ws.all->_all_prev = c;
    ws.all = c;
    ++ws.count;
    return c;
}

ws_conn_t *ws_conn_find(uint64_t cid)
{
    uint32_t idx = (uint32_t)(cid & ((1u << CID_INDEX_BITS) - 1));
    if (idx >= ws.num_slots)
        return NULL;
    ws_conn_t *c = ws.slots[idx];
    return c != NULL && c->cid == cid ? c : NULL;
}

/* Drops the queued frames, except those a write is using: over TLS, the frames handed to h2o's write in flight
 * (on_tls_written releases them: freeing them here would leave it advancing over freed frames), else with
 * keep_partial_head a half-written head frame (the stream must end on a frame boundary for the close frame). */
static void queue_clear(ws_conn_t *c, int keep_partial_head)
{
    uint32_t keep = 0;
    if (c->_sock != NULL && c->_inflight != 0) {
        size_t covered = c->_qoff + c->_inflight;
        while (keep < c->_qlen && covered != 0) {
            size_t len = c->_q[(c->_qhead + keep) % c->_qcap]->len;
            covered -= covered < len ? covered : len;
            ++keep;
        }
    } else if (keep_partial_head && c->_qlen != 0 && c->_qoff != 0) {
        keep = 1;
    }
    while (c->_qlen > keep) {
        uint32_t last = (c->_qhead + c->_qlen - 1) % c->_qcap;
        ws_frame_t *f = c->_q[last];
        c->_qbytes -= f->len;
        ws.out_total -= f->len;
        if (f == c->_pong)
            c->_pong = NULL;
        ws_frame_release(f);
        --c->_qlen;
    }
    if (c->_qlen == 0) {
        c->_qoff = 0;
        c->_qbytes = 0;
    }
}

/* The record is done: it is freed at the end of the pass (ws_flush), never under a caller's feet. */
static void schedule_reap(ws_conn_t *c)
{
    if (c->_flags & F_REAP)
        return;
    c->_flags |= F_REAP;
    c->_state = ST_CLOSED;
    c->_reap_next = ws.reap;
    ws.reap = c;
}

static void close_fd(ws_conn_t *c)
{
    if (ws.cb->on_socket != NULL)
        ws.cb->on_socket(c, c->_fd, 0);
    close(c->_fd);
}

static void conn_free(ws_conn_t *c)
{
    uint32_t idx = (uint32_t)(c->cid & ((1u << CID_INDEX_BITS) - 1));
    ws.slots[idx] = NULL;
    ws.free_idx[ws.num_free++] = idx;
    if (c->_all_prev != NULL)
        c->_all_prev->_all_next = c->_all_next;
    else
        ws.all = c->_all_next;
    if (c->_all_next != NULL)
        c->_all_next->_all_prev = c->_all_prev;
    if (ws.sweep_cursor == c)
        ws.sweep_cursor = c->_all_next;
    if (c->_fd != -1)
        close_fd(c);
    if (c->_sock != NULL) {
        h2o_socket_close(c->_sock); /* a write in flight is abandoned: its callback never runs */
        c->_sock = NULL;
    }
    queue_clear(c, 0);
    ws.freed += c->_qcap * sizeof(*c->_q);
    free(c->_q);
    wsframe_parser_dispose(&c->_parser);
    free(c->id);
    free(c);
    --ws.count;
}

static void report(ws_conn_t *c, int code, const char *reason, int clean)
{
    if (c->_flags & F_REPORTED)
        return;
    c->_flags |= F_REPORTED;
    ws.cb->on_closed(c, code, reason, clean);
}

/* The socket is done: close it now, free the record at the end of the pass. */
static void conn_finish(ws_conn_t *c)
{
    if (c->_fd != -1) {
        close_fd(c); /* also leaves the epoll set */
        c->_fd = -1;
        --ws.stats.open;
    } else if (c->_sock != NULL) {
        h2o_socket_close(c->_sock); /* a write in flight is abandoned: its callback never runs */
        c->_sock = NULL;
        c->_inflight = 0;
        --ws.stats.open;
    }
    report(c, 1006, "connection lost", 0);
    queue_clear(c, 0);
    schedule_reap(c);
}

static void mark_dirty(ws_conn_t *c)
{
    if ((c->_flags & (F_DIRTY | F_WANT_WRITE | F_REAP)) != 0 || !has_socket(c))
        return;
    c->_flags |= F_DIRTY;
    c->_dirty_next = NULL;
    if (ws.dirty.tail != NULL)
        ws.dirty.tail->_dirty_next = c;
    else
        ws.dirty.head = c;
    ws.dirty.tail = c;
}

static void queue_push(ws_conn_t *c, ws_frame_t *f)
{
    if (c->_qlen == c->_qcap) {
        uint32_t cap = c->_qcap == 0 ? 4 : c->_qcap * 2;
        ws_frame_t **q = xmalloc(cap * sizeof(*q));
        for (uint32_t i = 0; i < c->_qlen; ++i)
            q[i] = c->_q[(c->_qhead + i) % c->_qcap];
        free(c->_q);
        c->_q = q;
        c->_qcap = cap;
        c->_qhead = 0;
    }
    c->_q[(c->_qhead + c->_qlen) % c->_qcap] = f;
    ++c->_qlen;
    c->_qbytes += f->len;
    ws.out_total += f->len;
    mark_dirty(c);
}

/* Whether a write is using frame `p` of the queue: the head half written, or (TLS) handed to h2o's write. Such a
 * frame must not change. At most MAX_IOV frames are in flight, so the scan is short. */
static int frame_in_write(const ws_conn_t *c, const ws_frame_t *p)
{
    if (c->_qlen == 0)
        return 0;
    if (c->_q[c->_qhead] == p && c->_qoff != 0)
        return 1;
    if (c->_sock == NULL || c->_inflight == 0)
        return 0;
    size_t covered = c->_qoff + c->_inflight;
    for (uint32_t i = 0; i < c->_qlen && covered != 0; ++i) {
        const ws_frame_t *f = c->_q[(c->_qhead + i) % c->_qcap];
        if (f == p)
            return 1;
        covered -= covered < f->len ? covered : f->len;
    }
    return 0;
}

/* Answers a ping. RFC 6455 5.5.3 lets a pong answer only the most recent ping: while a pong waits unwritten, the
 * next ping's payload replaces its own, so a client that sends pings and never reads costs one frame, not one per
 * ping (it took the router to 4.3 GiB with 100 MiB of empty pings). A pong is small (≤ 127 bytes) and never shared:
 * its frame is rewritten in place. */
static void queue_pong(ws_conn_t *c, const uint8_t *data, size_t len)
{
    ws_frame_t *p = c->_pong;
    if (p != NULL && p->refcnt == 1 && !frame_in_write(c, p)) {
        uint8_t hdr[10];
        size_t h = wsframe_header(hdr, WS_OP_PONG, len);
        c->_qbytes -= p->len;
        ws.out_total -= p->len;
        p->len = (uint32_t)(h + len);
        memcpy(p->data, hdr, h);
        if (len != 0)
            memcpy(p->data + h, data, len);
        c->_qbytes += p->len;
        ws.out_total += p->len;
        return;
    }
    p = ws_frame_new(WS_OP_PONG, data, len);
    queue_push(c, p);
    c->_pong = p;
}

static void queue_close_frame(ws_conn_t *c, int code, const char *reason)
{
    if (c->_flags & F_CLOSE_SENT)
        return;
    uint8_t payload[125];
    size_t n = code == 0 ? 0 : wsframe_close_payload(payload, code, reason, strlen(reason));
    queue_push(c, ws_frame_new(WS_OP_CLOSE, payload, n));
    c->_flags |= F_CLOSE_SENT;
    c->_deadline = now() + (ws.conf->ping_ms < CLOSE_TIMEOUT_MS ? ws.conf->ping_ms : CLOSE_TIMEOUT_MS);
    if (c->_state == ST_OPEN)
        c->_state = ST_CLOSING;
}

/* Fails the connection: report, queue a close frame, stop parsing what follows. */
static void conn_fail(ws_conn_t *c, int code, const char *reason)
{
    c->_flags |= F_DISCARD_INPUT;
    queue_close_frame(c, code, reason);
    report(c, code, reason, 0);
}

/* ---- writing ---- */

static void set_events(ws_conn_t *c)
{
    uint32_t events = ((c->_flags & F_PAUSED) ? 0 : EPOLLIN) | ((c->_flags & F_WANT_WRITE) ? EPOLLOUT : 0);
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ws.epfd, EPOLL_CTL_MOD, c->_fd, &ev) == -1)
        log_warn("ws: epoll_ctl: %s", strerror(errno));
}

/* Frames fully written: released from the head of the queue. */
static void queue_advance(ws_conn_t *c, size_t done)
{
    ws.stats.bytes_out += done;
    while (done != 0) {
        ws_frame_t *f = c->_q[c->_qhead];
        size_t left = f->len - c->_qoff;
        if (done < left) {
            c->_qoff += (uint32_t)done;
            break;
        }
        done -= left;
        c->_qoff = 0;
        c->_qbytes -= f->len;
        ws.out_total -= f->len;
        if (f == c->_pong)
            c->_pong = NULL;
        ws_frame_release(f);
        c->_qhead = (c->_qhead + 1) % c->_qcap;
        --c->_qlen;
    }
}

/* Frees a drained queue that grew past its first sizes: an idle connection keeps no more than 16 slots. */
static void queue_trim(ws_conn_t *c)
{
    if (c->_qlen == 0 && c->_qcap > 16) {
        free(c->_q);
        c->_q = NULL;
        c->_qcap = c->_qhead = 0;
    }
}

/* What follows a drained queue: finish a completed close. 1 when the connection is done. (The queue's memory stays
 * for the next pass: a busy connection would otherwise grow it again every pass, 80 % of the router's mallocs in a
 * broadcast; the sweep trims it.) */
static int after_drain(ws_conn_t *c)
{
    /* both close frames exchanged and ours is out: the server closes the TCP connection first (RFC 6455 7.1.1) */
    if ((c->_flags & (F_CLOSE_SENT | F_CLOSE_RECEIVED)) == (F_CLOSE_SENT | F_CLOSE_RECEIVED)) {
        conn_finish(c);
        return 1;
    }
    return 0;
}

static void tls_write(ws_conn_t *c);

static void on_tls_written(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    if (err != NULL) {
        conn_finish(c);
        return;
    }
    /* h2o 2.2.5 does not mark a socket's state changed when a write completes at once; started at the end of a pass
     * (outside h2o's callbacks), such a write leaves the socket polled for EPOLLOUT with no write callback, and the next
     * writable event aborts in write_pending. Restarting (or stopping) reading marks it, now that no write is in
     * flight, so its polling is brought up to date before the next wait. */
    if (c->_flags & F_PAUSED)
        h2o_socket_read_stop(sock);
    else
        h2o_socket_read_start(sock, on_tls_read);
    queue_advance(c, c->_inflight);
    c->_inflight = 0;
    if (c->_flags & F_REAP)
        return; /* aborted while the write was in flight: nothing more goes out */
    tls_write(c);
}

/* A TLS connection writes through h2o (which encrypts): one write in flight, the frames stay queued until it is done. */
static void tls_write(ws_conn_t *c)
{
    if (c->_sock == NULL || h2o_socket_is_writing(c->_sock))
        return; /* on_tls_written goes on */
    if (c->_qlen == 0) {
        after_drain(c);
        return;
    }
    h2o_iovec_t iov[MAX_IOV];
    uint32_t n = c->_qlen < MAX_IOV ? c->_qlen : MAX_IOV;
    size_t total = 0;
    for (uint32_t i = 0; i < n; ++i) {
        ws_frame_t *f = c->_q[(c->_qhead + i) % c->_qcap];
        iov[i] = h2o_iovec_init(f->data, f->len);
        total += f->len;
    }
    iov[0].base += c->_qoff;
    iov[0].len -= c->_qoff;
    c->_inflight = total - c->_qoff;
    h2o_socket_write(c->_sock, iov, n, on_tls_written);
}

static void want_write(ws_conn_t *c);
static void on_drained(ws_conn_t *c);

static void conn_write(ws_conn_t *c)
{
    if (c->_sock != NULL) {
        tls_write(c);
        return;
    }
    while (c->_qlen != 0) {
        struct iovec iov[MAX_IOV];
        uint32_t n = c->_qlen < MAX_IOV ? c->_qlen : MAX_IOV;
        for (uint32_t i = 0; i < n; ++i) {
            ws_frame_t *f = c->_q[(c->_qhead + i) % c->_qcap];
            iov[i].iov_base = f->data;
            iov[i].iov_len = f->len;
        }
        iov[0].iov_base = (char *)iov[0].iov_base + c->_qoff;
        iov[0].iov_len -= c->_qoff;
        ssize_t w = writev(c->_fd, iov, (int)n);
        if (w == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN) {
                want_write(c);
                return;
            }
            conn_finish(c); /* EPIPE, ECONNRESET: the peer is gone */
            return;
        }
        queue_advance(c, (size_t)w);
    }
    on_drained(c);
}

/* The socket took no more: wait for EPOLLOUT. */
static void want_write(ws_conn_t *c)
{
    if (!(c->_flags & F_WANT_WRITE)) {
        c->_flags |= F_WANT_WRITE;
        set_events(c);
    }
}

/* Everything queued is written. */
static void on_drained(ws_conn_t *c)
{
    if (c->_flags & F_WANT_WRITE) {
        c->_flags &= ~F_WANT_WRITE;
        set_events(c);
    }
    if (after_drain(c))
        return;
    /* we failed the connection (RFC 6455 7.1.7): the input can no longer be parsed, so no close frame will be read
     * back; half-close so the client sees the end at once, and drain until it closes too (or the deadline) */
    if ((c->_flags & (F_CLOSE_SENT | F_DISCARD_INPUT)) == (F_CLOSE_SENT | F_DISCARD_INPUT) && c->_fd != -1)
        shutdown(c->_fd, SHUT_WR);
}

/* Takes the next connection off a write list. */
static ws_conn_t *dirty_pop(conn_list_t *l)
{
    ws_conn_t *c = l->head;
    l->head = c->_dirty_next;
    if (l->head == NULL)
        l->tail = NULL;
    c->_dirty_next = NULL;
    c->_flags &= ~F_DIRTY;
    return c;
}

/* Submits the n SQEs prepared in the ring (data: their index) and collects every result into b->res. Every result
 * first (buffers and iovecs stay the kernel's until then), then the caller runs the callbacks they may cause. The
 * kernel may take fewer SQEs than offered (-EAGAIN, -EBUSY, a partial count): submit the rest while collecting, and
 * wait only once all are in, or the wait could be for an operation that was never submitted. */
static void batch_complete(unsigned n)
{
    ws_batch_t *b = ws.batch;
    unsigned submitted = 0, got = 0;
    while (got < n) {
        int r;
        if (submitted < n) {
            r = io_uring_submit(&b->ring);
            if (r > 0)
                submitted += (unsigned)r;
            else if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
                log_error("ws: io_uring_submit: %s", strerror(-r));
                abort(); /* the ring holds our SQEs in an unknown state: nothing safe is left to do */
            }
        }
        struct io_uring_cqe *cqe;
        r = submitted == n ? io_uring_wait_cqe(&b->ring, &cqe) : io_uring_peek_cqe(&b->ring, &cqe);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r < 0) {
            log_error("ws: io_uring_wait_cqe: %s", strerror(-r));
            abort();
        }
        b->res[io_uring_cqe_get_data64(cqe)] = cqe->res;
        io_uring_cqe_seen(&b->ring, cqe);
        ++got;
    }
}

/* Takes up to BATCH_MAX (and at most `max`) connections off `l`, writes the plain ones with one submission, then
 * applies the results. Returns how many connections it took off. */
static unsigned flush_batch(conn_list_t *l, unsigned max)
{
    ws_batch_t *b = ws.batch;
    unsigned n = 0, taken = 0;
    while (l->head != NULL && n < BATCH_MAX && taken < max) {
        ws_conn_t *c = dirty_pop(l);
        ++taken;
        if (!has_socket(c) || (c->_flags & F_REAP))
            continue;
        if (c->_fd == -1 || c->_qlen == 0) {
            conn_write(c); /* TLS (h2o writes it), or nothing to send but the bookkeeping of a drained queue */
            continue;
        }
        uint32_t k = c->_qlen < BATCH_IOV ? c->_qlen : BATCH_IOV;
        size_t want = 0;
        for (uint32_t i = 0; i < k; ++i) {
            ws_frame_t *f = c->_q[(c->_qhead + i) % c->_qcap];
            b->iov[n][i] = (struct iovec){f->data, f->len};
            want += f->len;
        }
        b->iov[n][0].iov_base = (char *)b->iov[n][0].iov_base + c->_qoff;
        b->iov[n][0].iov_len -= c->_qoff;
        want -= c->_qoff;
        b->msg[n] = (struct msghdr){.msg_iov = b->iov[n], .msg_iovlen = k};
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        io_uring_prep_sendmsg(sqe, c->_fd, &b->msg[n], MSG_DONTWAIT | MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, n);
        b->conn[n] = c;
        b->want[n] = want;
        ++n;
    }
    if (n == 0)
        return taken;
    batch_complete(n);
    for (unsigned i = 0; i < n; ++i) {
        ws_conn_t *c = b->conn[i];
        int res = b->res[i];
        if (!fd_live(c))
            continue; /* finished by a callback of an earlier result */
        if (res >= 0) {
            queue_advance(c, (size_t)res);
            if (c->_qlen == 0)
                on_drained(c);
            else if ((size_t)res < b->want[i])
                want_write(c); /* the socket is full */
            else
                mark_dirty(c); /* more frames than one submission takes: next round */
        } else if (res == -EAGAIN) {
            want_write(c);
        } else if (res == -EINTR) {
            mark_dirty(c);
        } else {
            conn_finish(c); /* EPIPE, ECONNRESET: the peer is gone */
        }
    }
    return taken;
}

/* At least BATCH_MIN connections wait to be written. */
static int enough_for_batch(const conn_list_t *l)
{
    unsigned n = 0;
    for (ws_conn_t *c = l->head; c != NULL && n < BATCH_MIN; c = c->_dirty_next)
        ++n;
    return n == BATCH_MIN;
}

/* Writes up to `max` connections from the front of `l`; returns how many it took off. */
static unsigned write_from(conn_list_t *l, unsigned max)
{
    unsigned written = 0;
    while (l->head != NULL && written < max) {
        if (ws.batch != NULL && enough_for_batch(l)) {
            written += flush_batch(l, max - written);
            continue;
        }
        ws_conn_t *c = dirty_pop(l);
        ++written;
        if (has_socket(c) && !(c->_flags & F_REAP))
            conn_write(c);
    }
    return written;
}

static void close_slow_consumer(ws_conn_t *c, const char *why);

static int more_behind(const void *a, const void *b)
{
    size_t x = (*(ws_conn_t *const *)a)->_qbytes, y = (*(ws_conn_t *const *)b)->_qbytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The output of every connection together passed max_output_total: the connections furthest behind (most bytes
 * queued) are closed first, until the total is back under 7/8 of the cap (so that a total hovering at the cap does
 * not scan every connection every pass). One scan and a sort per shedding. */
static void shed_output(void)
{
    size_t cap = ws.conf->max_output_total;
    if (cap == 0 || ws.out_total <= cap)
        return;
    size_t n = 0, target = cap - cap / 8;
    ws_conn_t **v = xmalloc(ws.count * sizeof(*v));
    for (ws_conn_t *c = ws.all; c != NULL; c = c->_all_next)
        if (has_socket(c) && !(c->_flags & F_REAP) && c->_qbytes != 0)
            v[n++] = c;
    qsort(v, n, sizeof(*v), more_behind);
    log_warn("ws: %zu bytes of output queued, over limits.output_total_bytes (%zu); closing the slowest consumers", ws.out_total,
             cap);
    for (size_t i = 0; i < n && ws.out_total > target; ++i)
        if (!(v[i]->_flags & F_REAP)) /* a callback of an earlier close may have ended it */
            close_slow_consumer(v[i], "the router's output is over its total cap");
    free(v);
}

/* A pass writes at most PASS_WRITES connections. Sending one message to 999 sockets takes ≈ 5 ms here (≈ 4.8 µs a
 * send); written in one pass, a message that comes in meanwhile waits for the whole fan-out and then for its own,
 * and every other room waits too. So a big fan-out is written in slices, and between them the loop reads what came
 * in: a connection still waiting gets the new message in the same send as the old (its queue holds both).
 * What the slices leave is the backlog. A pass writes the connections given output in it first (half the budget
 * while there is a backlog: a small room's answer waits one slice, not the rest of a big room's fan-out), then the
 * backlog, oldest first, then more of the pass's own if the budget allows; whatever is left joins the backlog. The
 * backlog gets at least half of every pass, so it drains under any load. */
void ws_flush(void)
{
    unsigned written = write_from(&ws.dirty, ws.backlog.head != NULL ? PASS_WRITES / 2 : PASS_WRITES);
    written += write_from(&ws.backlog, PASS_WRITES - written);
    written += write_from(&ws.dirty, PASS_WRITES - written);
    shed_output();
    if (ws.dirty.head != NULL) {
        if (ws.backlog.tail != NULL)
            ws.backlog.tail->_dirty_next = ws.dirty.head;
        else
            ws.backlog.head = ws.dirty.head;
        ws.backlog.tail = ws.dirty.tail;
        ws.dirty.head = ws.dirty.tail = NULL;
    }
    /* a record still in a list stays until a later pass takes it off */
    ws_conn_t **link = &ws.reap;
    while (*link != NULL) {
        ws_conn_t *c = *link;
        if (c->_flags & F_DIRTY) {
            link = &c->_reap_next;
            continue;
        }
        *link = c->_reap_next;
        conn_free(c);
    }
}

size_t ws_output_total(void)
{
    return ws.out_total;
}

int ws_has_output(void)
{
    return ws.dirty.head != NULL || ws.backlog.head != NULL;
}

/* ---- reading ---- */

static int on_frame_message(void *ctx, int opcode, uint8_t *data, size_t len)
{
    ws_conn_t *c = ctx;
    if (c->_state != ST_OPEN)
        return 0; /* closing: data is dropped */
    if (opcode == WS_OP_TEXT && !base_utf8_valid(data, len)) {
        conn_fail(c, 1007, "invalid UTF-8 in a text message");
        return 1;
    }
    ++ws.stats.messages_in;
    ws.cb->on_message(c, opcode == WS_OP_BINARY, data, len);
    return c->_state != ST_OPEN;
}

static int on_frame_control(void *ctx, int opcode, uint8_t *data, size_t len)
{
    ws_conn_t *c = ctx;
    switch (opcode) {
    case WS_OP_PING:
        if (!(c->_flags & F_CLOSE_SENT))
            queue_pong(c, data, len);
        return 0;
    case WS_OP_PONG:
        return 0; /* any input already counts as life */
    case WS_OP_CLOSE: {
        int code = 1005;
        char reason[124] = "";
        if (len == 1) {
            conn_fail(c, 1002, "close frame with a one-byte payload");
            return 1;
        }
        if (len >= 2) {
            code = data[0] << 8 | data[1];
            if (!wsframe_close_code_valid(code)) {
                conn_fail(c, 1002, "invalid close code");
                return 1;
            }
            if (!base_utf8_valid(data + 2, len - 2)) {
                conn_fail(c, 1007, "invalid UTF-8 in the close reason");
                return 1;
            }
            memcpy(reason, data + 2, len - 2);
            reason[len - 2] = '\0';
        }
        c->_flags |= F_CLOSE_RECEIVED;
        /* echo the code, as clients expect to see the one they sent */
        queue_close_frame(c, code == 1005 ? 0 : code, "");
        report(c, code, reason, 1);
        mark_dirty(c);
        return 1;
    }
    }
    return 0;
}

static const wsframe_callbacks_t frame_callbacks = {on_frame_message, on_frame_control};

/* Parses bytes that arrived. */
static void conn_consume(ws_conn_t *c, uint8_t *data, size_t len)
{
    c->_last_rx = now();
    c->_flags &= ~F_PING_OUT;
    if (c->_flags & (F_DISCARD_INPUT | F_CLOSE_RECEIVED))
        return;
    wsframe_error_t err;
    if (wsframe_parse(&c->_parser, data, len, ws.conf->max_message, &frame_callbacks, c, &err) == -1)
        conn_fail(c, err.code, err.reason);
}

/* What one read of the connection into `data` (`cap` bytes) returned, bytes or -errno: the bytes are consumed; EOF
 * or an error ends the connection. Returns 1 when the read filled `cap` (more may wait in the socket), else 0. */
static int conn_took(ws_conn_t *c, uint8_t *data, ssize_t r, size_t cap)
{
    if (r > 0) {
        ws.stats.bytes_in += (size_t)r;
        conn_consume(c, data, (size_t)r);
        return (size_t)r == cap;
    }
    if (r != -EAGAIN && r != -EINTR)
        conn_finish(c); /* EOF or error: whatever stage the close handshake was at, the socket is done */
    return 0;
}

static void conn_readable(ws_conn_t *c)
{
    /* a few reads per wake-up keeps one busy client from starving the others; epoll is level-triggered */
    for (int i = 0; i < 4 && c->_fd != -1 && !(c->_flags & F_PAUSED); ++i) {
        ssize_t n = read(c->_fd, ws.rbuf, READ_BUF_SIZE);
        if (!conn_took(c, ws.rbuf, n == -1 ? -errno : n, READ_BUF_SIZE))
            return;
    }
}

/* Reads the n (BATCH_MIN .. BATCH_MAX) readable connections with one submission (see ws_batch_t). */
static void read_batch(ws_conn_t **ready, unsigned n)
{
    ws_batch_t *b = ws.batch;
    for (unsigned i = 0; i < n; ++i) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        io_uring_prep_recv(sqe, ready[i]->_fd, b->rslot + (size_t)i * READ_SLOT, READ_SLOT, MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, i);
    }
    batch_complete(n);
    for (unsigned i = 0; i < n; ++i) {
        ws_conn_t *c = ready[i];
        int res = b->res[i];
        if (!fd_live(c))
            continue; /* finished by what an earlier connection's bytes caused */
        /* bytes already read are consumed even if that paused this connection meanwhile (its shard's link is
         * congested): a pause stops the next read, as in conn_readable, and must not lose what was taken */
        if (conn_took(c, b->rslot + (size_t)i * READ_SLOT, res, READ_SLOT) && c->_fd != -1)
            conn_readable(c); /* the slot was full: the rest as a lone readable connection is read */
    }
}

static void on_epoll_ready(h2o_socket_t *sock, const char *err)
{
    (void)sock, (void)err;
    struct epoll_event evs[BATCH_MAX];
    ws_conn_t *ready[BATCH_MAX];
    unsigned nready = 0;
    int n = epoll_wait(ws.epfd, evs, BATCH_MAX, 0);
    for (int i = 0; i < n; ++i) {
        ws_conn_t *c = evs[i].data.ptr;
        if (!fd_live(c) || (c->_flags & F_PAUSED) || !(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            continue;
        ready[nready++] = c;
    }
    if (ws.batch != NULL && nready >= BATCH_MIN) {
        read_batch(ready, nready);
    } else {
        for (unsigned i = 0; i < nready; ++i)
            if (fd_live(ready[i]))
                conn_readable(ready[i]);
    }
    for (int i = 0; i < n; ++i) {
        ws_conn_t *c = evs[i].data.ptr;
        if (fd_live(c) && (evs[i].events & EPOLLOUT) && (c->_flags & F_WANT_WRITE))
            conn_write(c);
    }
}

/* ---- the sweep: pings, closing deadlines, queue memory ---- */

static void sweep_one(ws_conn_t *c, uint64_t t)
{
    if (!has_socket(c) || (c->_flags & F_REAP))
        return;
    queue_trim(c);
    if (c->_state == ST_CLOSING) {
        if (t >= c->_deadline)
            conn_finish(c); /* the peer never finished the closing handshake */
        return;
    }
    if (c->_flags & F_PING_OUT) {
        if (t >= c->_deadline) {
            log_debug("ws: connection %s did not answer a ping; dropping it", c->id != NULL ? c->id : "?");
            conn_finish(c);
        }
        return;
    }
    if (t - c->_last_rx >= ws.conf->ping_ms) {
        c->_flags |= F_PING_OUT;
        c->_deadline = t + ws.conf->ping_ms;
        queue_push(c, ws_frame_new(WS_OP_PING, NULL, 0));
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    (void)entry;
    uint64_t t = now();
    /* visit every record about once per ping interval, a slice per tick */
    size_t slice = ws.count * ws.tick_ms / (ws.conf->ping_ms != 0 ? ws.conf->ping_ms : 1) + 16;
    for (size_t i = 0; i < slice && ws.all != NULL; ++i) {
        if (ws.sweep_cursor == NULL)
            ws.sweep_cursor = ws.all;
        ws_conn_t *c = ws.sweep_cursor;
        ws.sweep_cursor = c->_all_next;
        sweep_one(c, t);
    }
    if (ws.freed >= TRIM_AFTER) {
        ws.freed = 0;
        malloc_trim(0);
    }
    h2o_timeout_link(ws.loop, &ws.tick, &ws.tick_entry);
}

/* ---- the API ---- */

static void batch_init(void)
{
    const char *env = getenv("PARTYD_IO_URING");
    if (env != NULL && strcmp(env, "0") == 0) {
        log_info("ws: io_uring off (PARTYD_IO_URING=0): one read and one writev per connection");
        return;
    }
    ws_batch_t *b = xcalloc(1, sizeof(*b));
    int r = io_uring_queue_init(BATCH_MAX, &b->ring, 0);
    if (r < 0) {
        log_info("ws: io_uring unavailable (%s): one read and one writev per connection", strerror(-r));
        free(b);
        return;
    }
    b->rslot = xmalloc((size_t)BATCH_MAX * READ_SLOT);
    ws.batch = b;
}

void ws_init(h2o_evloop_t *loop, const ws_config_t *conf, const ws_callbacks_t *cb)
{
    memset(&ws, 0, sizeof(ws));
    ws.loop = loop;
    ws.conf = conf;
    ws.cb = cb;
    ws.rbuf = xmalloc(READ_BUF_SIZE);
    ws.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (ws.epfd == -1) {
        log_error("epoll_create1: %s", strerror(errno));
        abort();
    }
    ws.epsock = h2o_evloop_socket_create(loop, ws.epfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(ws.epsock, on_epoll_ready);
    ws.tick_ms = conf->ping_ms / 4;
    if (ws.tick_ms < 10)
        ws.tick_ms = 10;
    if (ws.tick_ms > 1000)
        ws.tick_ms = 1000;
    h2o_timeout_init(loop, &ws.tick, ws.tick_ms);
    ws.tick_entry.cb = on_tick;
    h2o_timeout_link(loop, &ws.tick, &ws.tick_entry);
    batch_init();
}

void ws_dispose(void)
{
    while (ws.dirty.head != NULL)
        dirty_pop(&ws.dirty);
    while (ws.backlog.head != NULL)
        dirty_pop(&ws.backlog);
    for (ws_conn_t *c = ws.all; c != NULL; c = c->_all_next) {
        c->_flags |= F_REPORTED;
        schedule_reap(c);
    }
    ws_flush();
    h2o_timeout_unlink(&ws.tick_entry);
    h2o_timeout_dispose(ws.loop, &ws.tick);
    h2o_socket_close(ws.epsock); /* closes epfd */
    if (ws.batch != NULL) {
        io_uring_queue_exit(&ws.batch->ring);
        free(ws.batch->rslot);
        free(ws.batch);
        ws.batch = NULL;
    }
    free(ws.rbuf);
    free(ws.slots);
    free(ws.free_idx);
    frame_pool_dispose();
}

void ws_conn_attach(ws_conn_t *c, int fd, uint8_t *leftover, size_t len)
{
    c->_fd = fd;
    if (ws.cb->on_socket != NULL)
        ws.cb->on_socket(c, fd, 1);
    ++ws.stats.open;
    ++ws.stats.accepted;
    c->_last_rx = now();
    c->_state = (c->_flags & F_CLOSE_SENT) ? ST_CLOSING : ST_OPEN;
    struct epoll_event ev = {.events = (c->_flags & F_PAUSED) ? 0 : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ws.epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        log_error("ws: epoll_ctl(ADD): %s", strerror(errno));
        conn_finish(c);
        return;
    }
    if (c->_qlen != 0)
        mark_dirty(c);
    if (len != 0)
        conn_consume(c, leftover, len);
}

static void on_tls_read(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    if (err != NULL) {
        conn_finish(c);
        return;
    }
    size_t n = sock->input->size;
    ws.stats.bytes_in += n;
    /* h2o decrypted into its buffer, which is ours to unmask in place until consumed */
    conn_consume(c, (uint8_t *)sock->input->bytes, n);
    if (c->_sock != NULL)
        h2o_buffer_consume(&sock->input, n);
}

void ws_conn_attach_tls(ws_conn_t *c, h2o_socket_t *sock)
{
    c->_sock = sock;
    sock->data = c;
    c->_last_rx = now();
    c->_state = (c->_flags & F_CLOSE_SENT) ? ST_CLOSING : ST_OPEN;
    ++ws.stats.open;
    ++ws.stats.accepted;
    if (c->_qlen != 0)
        mark_dirty(c);
    if (!(c->_flags & F_PAUSED))
        h2o_socket_read_start(sock, on_tls_read);
    if (sock->input->size != 0)
        on_tls_read(sock, NULL);
}

void ws_conn_abort(ws_conn_t *c)
{
    c->_flags |= F_REPORTED;
    queue_clear(c, 0);
    schedule_reap(c);
}

/* A client that does not read: keep a half-written frame (the stream must stay well-formed), drop the rest, say
 * why, and let the others go on. One already closing has nothing left to say: its socket goes. */
static void close_slow_consumer(ws_conn_t *c, const char *why)
{
    log_debug("ws: connection %s: %s (%zu bytes queued); closing it", c->id != NULL ? c->id : "?", why, c->_qbytes);
    ++ws.stats.slow_consumers;
    if (c->_flags & F_CLOSE_SENT) {
        conn_finish(c);
        return;
    }
    queue_clear(c, 1);
    conn_fail(c, 1008, "slow consumer: output buffer full");
}

void ws_conn_send(ws_conn_t *c, ws_frame_t *f)
{
    if ((c->_flags & (F_CLOSE_SENT | F_REAP)) != 0)
        return;
    if (c->_qbytes + f->len > ws.conf->max_output) {
        close_slow_consumer(c, "passed the output cap");
        return;
    }
    ++f->refcnt;
    ++ws.stats.messages_out;
    queue_push(c, f);
}

void ws_conn_close(ws_conn_t *c, int code, const char *reason)
{
    if (c->_flags & F_REAP)
        return;
    queue_close_frame(c, code, reason);
    report(c, code, reason, 1);
}

void ws_conn_pause(ws_conn_t *c)
{
    if ((c->_flags & (F_PAUSED | F_REAP)) != 0)
        return;
    c->_flags |= F_PAUSED;
    if (c->_fd != -1)
        set_events(c);
    else if (c->_sock != NULL)
        h2o_socket_read_stop(c->_sock);
}

void ws_conn_resume(ws_conn_t *c)
{
    if (!(c->_flags & F_PAUSED) || (c->_flags & F_REAP))
        return;
    c->_flags &= ~F_PAUSED;
    if (c->_fd != -1)
        set_events(c);
    else if (c->_sock != NULL)
        h2o_socket_read_start(c->_sock, on_tls_read);
}

int ws_conn_is_open(const ws_conn_t *c)
{
    return (c->_flags & (F_CLOSE_SENT | F_REAP)) == 0;
}

void ws_close_all(int code, const char *reason)
{
    for (ws_conn_t *c = ws.all, *next; c != NULL; c = next) {
        next = c->_all_next;
        /* open ones, and those whose 101 is being written (their close frame follows it) */
        if (!(c->_flags & (F_CLOSE_SENT | F_REAP)))
            ws_conn_close(c, code, reason);
    }
}

size_t ws_count(void)
{
    return ws.count;
}

const ws_stats_t *ws_stats(void)
{
    return &ws.stats;
}
