/*
 * ws.c — WebSocket connections after the upgrade: frames and their pool, the connection records and their life
 * cycle, the sweep (pings, closing deadlines, queue memory) and the API of ws.h. Reading is wsread.c, output
 * wswrite.c (see ws.h for the design, ws_int.h for what the three share).
 */
#include "ws_int.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base.h"

ws_layer_t ws;

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

void ws__conn_free(ws_conn_t *c)
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
    ws__queue_clear(c, 0);
    ws.freed += c->_qcap * sizeof(*c->_q);
    free(c->_q);
    wsframe_parser_dispose(&c->_parser);
    free(c->id);
    free(c);
    --ws.count;
}

void ws__report(ws_conn_t *c, int code, const char *reason, int clean)
{
    if (c->_flags & F_REPORTED)
        return;
    c->_flags |= F_REPORTED;
    ws.cb->on_closed(c, code, reason, clean);
}

/* The socket is done: close it now, free the record at the end of the pass. */
void ws__conn_finish(ws_conn_t *c)
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
    ws__report(c, 1006, "connection lost", 0);
    ws__queue_clear(c, 0);
    schedule_reap(c);
}

/* Fails the connection: report, queue a close frame, stop parsing what follows. */
void ws__conn_fail(ws_conn_t *c, int code, const char *reason)
{
    c->_flags |= F_DISCARD_INPUT;
    ws__queue_close_frame(c, code, reason);
    ws__report(c, code, reason, 0);
}

/* ---- the sweep: pings, closing deadlines, queue memory ---- */

static void sweep_one(ws_conn_t *c, uint64_t t)
{
    if (!ws__has_socket(c) || (c->_flags & F_REAP))
        return;
    ws__queue_trim(c);
    if (c->_state == ST_CLOSING) {
        if (t >= c->_deadline)
            ws__conn_finish(c); /* the peer never finished the closing handshake */
        return;
    }
    if (c->_flags & F_PING_OUT) {
        if (t >= c->_deadline) {
            log_debug("ws: connection %s did not answer a ping; dropping it", c->id != NULL ? c->id : "?");
            ws__conn_finish(c);
        }
        return;
    }
    if (t - c->_last_rx >= ws.conf->ping_ms) {
        c->_flags |= F_PING_OUT;
        c->_deadline = t + ws.conf->ping_ms;
        ws__queue_push(c, ws_frame_new(WS_OP_PING, NULL, 0));
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    (void)entry;
    uint64_t t = ws__now();
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
    h2o_socket_read_start(ws.epsock, ws__on_epoll_ready);
    ws.tick_ms = conf->ping_ms / 4;
    if (ws.tick_ms < 10)
        ws.tick_ms = 10;
    if (ws.tick_ms > 1000)
        ws.tick_ms = 1000;
    h2o_timeout_init(loop, &ws.tick, ws.tick_ms);
    ws.tick_entry.cb = on_tick;
    h2o_timeout_link(loop, &ws.tick, &ws.tick_entry);
    ws__batch_init();
}

void ws_dispose(void)
{
    while (ws.dirty.head != NULL)
        ws__dirty_pop(&ws.dirty);
    while (ws.backlog.head != NULL)
        ws__dirty_pop(&ws.backlog);
    for (ws_conn_t *c = ws.all; c != NULL; c = c->_all_next) {
        c->_flags |= F_REPORTED;
        schedule_reap(c);
    }
    ws_flush();
    h2o_timeout_unlink(&ws.tick_entry);
    h2o_timeout_dispose(ws.loop, &ws.tick);
    h2o_socket_close(ws.epsock); /* closes epfd */
    ws__batch_dispose();
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
    c->_last_rx = ws__now();
    c->_state = (c->_flags & F_CLOSE_SENT) ? ST_CLOSING : ST_OPEN;
    struct epoll_event ev = {.events = (c->_flags & F_PAUSED) ? 0 : EPOLLIN, .data.ptr = c};
    if (epoll_ctl(ws.epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        log_error("ws: epoll_ctl(ADD): %s", strerror(errno));
        ws__conn_finish(c);
        return;
    }
    if (c->_qlen != 0)
        ws__mark_dirty(c);
    if (len != 0)
        ws__conn_consume(c, leftover, len);
}

void ws_conn_attach_tls(ws_conn_t *c, h2o_socket_t *sock)
{
    c->_sock = sock;
    sock->data = c;
    c->_last_rx = ws__now();
    c->_state = (c->_flags & F_CLOSE_SENT) ? ST_CLOSING : ST_OPEN;
    ++ws.stats.open;
    ++ws.stats.accepted;
    if (c->_qlen != 0)
        ws__mark_dirty(c);
    if (!(c->_flags & F_PAUSED))
        h2o_socket_read_start(sock, ws__on_tls_read);
    if (sock->input->size != 0)
        ws__on_tls_read(sock, NULL);
}

void ws_conn_abort(ws_conn_t *c)
{
    c->_flags |= F_REPORTED;
    ws__queue_clear(c, 0);
    schedule_reap(c);
}

void ws_conn_send(ws_conn_t *c, ws_frame_t *f)
{
    if ((c->_flags & (F_CLOSE_SENT | F_REAP)) != 0)
        return;
    if (c->_qbytes + f->len > ws.conf->max_output) {
        ws__close_slow_consumer(c, "passed the output cap");
        return;
    }
    ++f->refcnt;
    ++ws.stats.messages_out;
    ws__queue_push(c, f);
}

void ws_conn_close(ws_conn_t *c, int code, const char *reason)
{
    if (c->_flags & F_REAP)
        return;
    ws__queue_close_frame(c, code, reason);
    ws__report(c, code, reason, 1);
}

void ws_conn_pause(ws_conn_t *c)
{
    if ((c->_flags & (F_PAUSED | F_REAP)) != 0)
        return;
    c->_flags |= F_PAUSED;
    if (c->_fd != -1)
        ws__set_events(c);
    else if (c->_sock != NULL)
        h2o_socket_read_stop(c->_sock);
}

void ws_conn_resume(ws_conn_t *c)
{
    if (!(c->_flags & F_PAUSED) || (c->_flags & F_REAP))
        return;
    c->_flags &= ~F_PAUSED;
    if (c->_fd != -1)
        ws__set_events(c);
    else if (c->_sock != NULL)
        h2o_socket_read_start(c->_sock, ws__on_tls_read);
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
