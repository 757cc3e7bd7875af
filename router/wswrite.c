/*
 * wswrite.c — WebSocket output: each connection's queue of shared frames (pongs and close frames included), writes
 * (writev, or one io_uring submission for many connections; TLS through h2o), the write lists and ws_flush's
 * per-pass budget, and the output caps that close slow consumers. See ws_int.h; the batching is explained at
 * ws_batch_t.
 */
#include "ws_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base.h"

/* Drops the queued frames, except those a write is using: over TLS, the frames handed to h2o's write in flight
 * (on_tls_written releases them: freeing them here would leave it advancing over freed frames), else with
 * keep_partial_head a half-written head frame (the stream must end on a frame boundary for the close frame). */
void ws__queue_clear(ws_conn_t *c, int keep_partial_head)
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


void ws__mark_dirty(ws_conn_t *c)
{
    if ((c->_flags & (F_DIRTY | F_WANT_WRITE | F_REAP)) != 0 || !ws__has_socket(c))
        return;
    c->_flags |= F_DIRTY;
    c->_dirty_next = NULL;
    if (ws.dirty.tail != NULL)
        ws.dirty.tail->_dirty_next = c;
    else
        ws.dirty.head = c;
    ws.dirty.tail = c;
}

void ws__queue_push(ws_conn_t *c, ws_frame_t *f)
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
    ws__mark_dirty(c);
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
void ws__queue_pong(ws_conn_t *c, const uint8_t *data, size_t len)
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
    ws__queue_push(c, p);
    c->_pong = p;
}

void ws__queue_close_frame(ws_conn_t *c, int code, const char *reason)
{
    if (c->_flags & F_CLOSE_SENT)
        return;
    uint8_t payload[125];
    size_t n = code == 0 ? 0 : wsframe_close_payload(payload, code, reason, strlen(reason));
    ws__queue_push(c, ws_frame_new(WS_OP_CLOSE, payload, n));
    c->_flags |= F_CLOSE_SENT;
    c->_deadline = ws__now() + (ws.conf->ping_ms < CLOSE_TIMEOUT_MS ? ws.conf->ping_ms : CLOSE_TIMEOUT_MS);
    if (c->_state == ST_OPEN)
        c->_state = ST_CLOSING;
}

/* ---- writing ---- */

void ws__set_events(ws_conn_t *c)
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
void ws__queue_trim(ws_conn_t *c)
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
        ws__conn_finish(c);
        return 1;
    }
    return 0;
}

static void tls_write(ws_conn_t *c);

static void on_tls_written(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    if (err != NULL) {
        ws__conn_finish(c);
        return;
    }
    /* h2o 2.2.5 does not mark a socket's state changed when a write completes at once; started at the end of a pass
     * (outside h2o's callbacks), such a write leaves the socket polled for EPOLLOUT with no write callback, and the next
     * writable event aborts in write_pending. Restarting (or stopping) reading marks it, now that no write is in
     * flight, so its polling is brought up to date before the next wait. */
    if (c->_flags & F_PAUSED)
        h2o_socket_read_stop(sock);
    else
        h2o_socket_read_start(sock, ws__on_tls_read);
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

void ws__conn_write(ws_conn_t *c)
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
            ws__conn_finish(c); /* EPIPE, ECONNRESET: the peer is gone */
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
        ws__set_events(c);
    }
}

/* Everything queued is written. */
static void on_drained(ws_conn_t *c)
{
    if (c->_flags & F_WANT_WRITE) {
        c->_flags &= ~F_WANT_WRITE;
        ws__set_events(c);
    }
    if (after_drain(c))
        return;
    /* we failed the connection (RFC 6455 7.1.7): the input can no longer be parsed, so no close frame will be read
     * back; half-close so the client sees the end at once, and drain until it closes too (or the deadline) */
    if ((c->_flags & (F_CLOSE_SENT | F_DISCARD_INPUT)) == (F_CLOSE_SENT | F_DISCARD_INPUT) && c->_fd != -1)
        shutdown(c->_fd, SHUT_WR);
}

/* Takes the next connection off a write list. */
ws_conn_t *ws__dirty_pop(conn_list_t *l)
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
void ws__batch_complete(unsigned n)
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
        ws_conn_t *c = ws__dirty_pop(l);
        ++taken;
        if (!ws__has_socket(c) || (c->_flags & F_REAP))
            continue;
        if (c->_fd == -1 || c->_qlen == 0) {
            ws__conn_write(c); /* TLS (h2o writes it), or nothing to send but the bookkeeping of a drained queue */
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
    ws__batch_complete(n);
    for (unsigned i = 0; i < n; ++i) {
        ws_conn_t *c = b->conn[i];
        int res = b->res[i];
        if (!ws__fd_live(c))
            continue; /* finished by a callback of an earlier result */
        if (res >= 0) {
            queue_advance(c, (size_t)res);
            if (c->_qlen == 0)
                on_drained(c);
            else if ((size_t)res < b->want[i])
                want_write(c); /* the socket is full */
            else
                ws__mark_dirty(c); /* more frames than one submission takes: next round */
        } else if (res == -EAGAIN) {
            want_write(c);
        } else if (res == -EINTR) {
            ws__mark_dirty(c);
        } else {
            ws__conn_finish(c); /* EPIPE, ECONNRESET: the peer is gone */
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
        ws_conn_t *c = ws__dirty_pop(l);
        ++written;
        if (ws__has_socket(c) && !(c->_flags & F_REAP))
            ws__conn_write(c);
    }
    return written;
}

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
        if (ws__has_socket(c) && !(c->_flags & F_REAP) && c->_qbytes != 0)
            v[n++] = c;
    qsort(v, n, sizeof(*v), more_behind);
    log_warn("ws: %zu bytes of output queued, over limits.output_total_bytes (%zu); closing the slowest consumers", ws.out_total,
             cap);
    for (size_t i = 0; i < n && ws.out_total > target; ++i)
        if (!(v[i]->_flags & F_REAP)) /* a callback of an earlier close may have ended it */
            ws__close_slow_consumer(v[i], "the router's output is over its total cap");
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
        ws__conn_free(c);
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

void ws__batch_init(void)
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

void ws__batch_dispose(void)
{
    if (ws.batch == NULL)
        return;
    io_uring_queue_exit(&ws.batch->ring);
    free(ws.batch->rslot);
    free(ws.batch);
    ws.batch = NULL;
}

/* A client that does not read: keep a half-written frame (the stream must stay well-formed), drop the rest, say
 * why, and let the others go on. One already closing has nothing left to say: its socket goes. */
void ws__close_slow_consumer(ws_conn_t *c, const char *why)
{
    log_debug("ws: connection %s: %s (%zu bytes queued); closing it", c->id != NULL ? c->id : "?", why, c->_qbytes);
    ++ws.stats.slow_consumers;
    if (c->_flags & F_CLOSE_SENT) {
        ws__conn_finish(c);
        return;
    }
    ws__queue_clear(c, 1);
    ws__conn_fail(c, 1008, "slow consumer: output buffer full");
}

