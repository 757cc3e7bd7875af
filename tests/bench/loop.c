/*
 * loop.c — see loop.h.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define BENCH_EVENTS 256
#define BENCH_BUF_INITIAL 4096

static void out_of_memory(size_t n)
{
    fprintf(stderr, "partyload: out of memory (%zu bytes)\n", n);
    abort();
}

void *bench_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL)
        out_of_memory(n * size);
    return p;
}

void *bench_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size);
    if (q == NULL)
        out_of_memory(size);
    return q;
}

/* Makes room for `extra` more bytes. Returns 0, or -ENOBUFS past the buffer's max. */
static int buf_reserve(bench_buf_t *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    if (b->max - b->len < extra)
        return -ENOBUFS;
    size_t cap = b->cap * 2;
    if (cap < b->len + extra)
        cap = b->len + extra;
    if (cap > b->max)
        cap = b->max;
    b->base = bench_xrealloc(b->base, cap);
    b->cap = cap;
    return 0;
}

static void buf_consume(bench_buf_t *b, size_t n)
{
    memmove(b->base, b->base + n, b->len - n);
    b->len -= n;
}

int bench_loop_init(bench_loop_t *loop)
{
    memset(loop, 0, sizeof(*loop));
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd == -1)
        return -errno;
    loop->_pass = 1;
    /* NTP slews CLOCK_REALTIME by at most 500 ppm: 5 µs over a 10 s run, below what the histogram tells apart */
    struct timespec real;
    clock_gettime(CLOCK_REALTIME, &real);
    uint64_t mono = bench_loop_now(loop);
    loop->_mono_minus_real_ns = (int64_t)mono - ((int64_t)real.tv_sec * 1000000000 + real.tv_nsec);
    return 0;
}

void bench_loop_dispose(bench_loop_t *loop)
{
    if (loop->epfd != -1)
        close(loop->epfd);
    loop->epfd = -1;
}

uint64_t bench_loop_now(bench_loop_t *loop)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    loop->now_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    return loop->now_ns;
}

/* Whether the conn was closed in this pass (maybe reconnected since): its remaining events are stale. */
static int conn_gone(const bench_conn_t *conn)
{
    return conn->state == BENCH_CONN_CLOSED || conn->_closed_pass == conn->loop->_pass;
}

static void conn_close_errno(bench_conn_t *conn, const char *what, int err)
{
    snprintf(conn->errbuf, sizeof(conn->errbuf), "%s: %s", what, strerror(err));
    bench_conn_close(conn, conn->errbuf);
}

/* Registers the events the conn's state calls for, when they changed. Returns 0, or closes the conn and -1. */
static int conn_update_events(bench_conn_t *conn)
{
    uint32_t want = conn->state == BENCH_CONN_CONNECTING ? EPOLLOUT : EPOLLIN | (conn->out.len != 0 ? EPOLLOUT : 0);
    if (want == conn->_events)
        return 0;
    struct epoll_event ev = {.events = want, .data.ptr = conn};
    if (epoll_ctl(conn->loop->epfd, conn->_events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, conn->fd, &ev) == -1) {
        conn_close_errno(conn, "epoll_ctl", errno);
        return -1;
    }
    conn->_events = want;
    return 0;
}

/* Writes what the socket takes. Returns 0, or -1 when the conn was closed by an error. */
static int conn_flush(bench_conn_t *conn)
{
    size_t off = 0;
    while (off < conn->out.len) {
        ssize_t n = send(conn->fd, conn->out.base + off, conn->out.len - off, MSG_NOSIGNAL);
        if (n == -1) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close_errno(conn, "send", errno);
            return -1;
        }
        off += (size_t)n;
    }
    buf_consume(&conn->out, off);
    return conn_update_events(conn);
}

static void conn_on_connectable(bench_conn_t *conn)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
        err = errno;
    if (err != 0) {
        conn_close_errno(conn, "connect", err);
        return;
    }
    conn->state = BENCH_CONN_OPEN;
    if (conn_update_events(conn) != 0)
        return;
    conn->cb->on_open(conn);
    if (!conn_gone(conn) && conn->out.len != 0)
        conn_flush(conn);
}

/* read(), or with rx_stamps recvmsg() and the arrival stamp of what it returned into loop->rx_ns */
static ssize_t conn_read(bench_conn_t *conn)
{
    bench_loop_t *loop = conn->loop;
    struct iovec iov = {conn->in.base + conn->in.len, conn->in.cap - conn->in.len};
    if (!loop->rx_stamps)
        return read(conn->fd, iov.iov_base, iov.iov_len);
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(struct timespec))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf, .msg_controllen = sizeof(control.buf)};
    ssize_t n = recvmsg(conn->fd, &msg, 0);
    loop->rx_ns = 0;
    if (n <= 0)
        return n;
    /* TCP hands over the stamp of the last segment copied: for earlier messages of the same read it is late */
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
            int64_t real = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
            if (real != 0)
                loop->rx_ns = (uint64_t)(real + loop->_mono_minus_real_ns);
        }
    }
    return n;
}

static void conn_on_readable(bench_conn_t *conn)
{
    /* a full buffer doubles (up to its max) */
    if (conn->in.len == conn->in.cap && buf_reserve(&conn->in, 1) != 0) {
        bench_conn_close(conn, "input buffer full without a complete message");
        return;
    }
    ssize_t n = conn_read(conn);
    if (n == -1) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            conn_close_errno(conn, "read", errno);
        return;
    }
    int eof = n == 0;
    conn->in.len += (size_t)n;
    if (conn->in.len != 0 || eof) {
        ssize_t used = conn->cb->on_read(conn, conn->in.base, conn->in.len, eof);
        if (conn_gone(conn))
            return;
        if (used < 0) {
            bench_conn_close(conn, "malformed input");
            return;
        }
        buf_consume(&conn->in, (size_t)used);
    }
    if (eof)
        bench_conn_close(conn, NULL);
}

int bench_loop_run(bench_loop_t *loop, uint64_t interval_ns, bench_tick_cb tick, void *data)
{
    struct epoll_event events[BENCH_EVENTS];
    uint64_t next_tick = bench_loop_now(loop) + interval_ns;
    while (!loop->stop) {
        uint64_t now = bench_loop_now(loop);
        /* to the nanosecond: epoll_wait's milliseconds round up, so a tick due in 0.3 ms came after 1 ms, ticks drifted
         * 1–2 ms apart, and a scenario that sends "what is due every tick" sent it in bursts up to twice the size */
        uint64_t wait = next_tick > now ? next_tick - now : 0;
        struct timespec to = {(time_t)(wait / 1000000000u), (long)(wait % 1000000000u)};
        int n = loop->_ms_timeouts ? -1 : epoll_pwait2(loop->epfd, events, BENCH_EVENTS, &to, NULL);
        if (n == -1 && (loop->_ms_timeouts || errno == ENOSYS)) {
            /* a kernel before 5.11, or a sandbox that filters the call: milliseconds it is, with the bursts above */
            loop->_ms_timeouts = 1;
            n = epoll_wait(loop->epfd, events, BENCH_EVENTS, (int)((wait + 999999) / 1000000));
        }
        if (n == -1 && errno != EINTR)
            return -errno;
        ++loop->_pass;
        for (int i = 0; i < n; ++i) {
            bench_conn_t *conn = events[i].data.ptr;
            if (conn_gone(conn))
                continue;
            bench_loop_now(loop);
            if (conn->state == BENCH_CONN_CONNECTING) {
                conn_on_connectable(conn);
                continue;
            }
            /* errors and hang-ups surface through read, after any bytes that came before them */
            if (events[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_on_readable(conn);
            if (!conn_gone(conn) && (events[i].events & EPOLLOUT))
                conn_flush(conn);
        }
        if (bench_loop_now(loop) >= next_tick) {
            /* on a fixed grid, not `now + interval`: that drifts by each pass's length, and ticks came 1.1–1.5 ms
             * apart; after a stall the grid starts again from now rather than firing the missed ticks in a row */
            next_tick += interval_ns;
            if (next_tick <= loop->now_ns)
                next_tick = loop->now_ns + interval_ns;
            if (tick != NULL)
                tick(loop, data);
        }
    }
    return 0;
}

void bench_conn_init(bench_conn_t *conn, bench_loop_t *loop, const bench_conn_cb_t *cb, size_t in_max, size_t out_max)
{
    memset(conn, 0, sizeof(*conn));
    conn->loop = loop;
    conn->cb = cb;
    conn->fd = -1;
    conn->in.max = in_max;
    conn->out.max = out_max;
    buf_reserve(&conn->in, in_max < BENCH_BUF_INITIAL ? in_max : BENCH_BUF_INITIAL);
    buf_reserve(&conn->out, out_max < BENCH_BUF_INITIAL ? out_max : BENCH_BUF_INITIAL);
}

void bench_conn_dispose(bench_conn_t *conn)
{
    free(conn->in.base);
    free(conn->out.base);
    conn->in = (bench_buf_t){0};
    conn->out = (bench_buf_t){0};
}

int bench_conn_connect(bench_conn_t *conn, const struct sockaddr_in *addr)
{
    if (conn->state != BENCH_CONN_CLOSED)
        return -EISCONN;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    /* requests are small and latency is what we measure: do not let Nagle hold them */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (conn->loop->rx_stamps && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) == -1) {
        int err = errno;
        close(fd);
        return -err;
    }
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == -1 && errno != EINPROGRESS) {
        int err = errno;
        close(fd);
        return -err;
    }
    /* even a connect that finished at once is reported from the loop, so callbacks never run inside this call */
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = conn};
    if (epoll_ctl(conn->loop->epfd, EPOLL_CTL_ADD, fd, &ev) == -1) {
        int err = errno;
        close(fd);
        return -err;
    }
    conn->fd = fd;
    conn->state = BENCH_CONN_CONNECTING;
    conn->_events = EPOLLOUT;
    conn->in.len = 0;
    conn->out.len = 0;
    return 0;
}

int bench_conn_queue(bench_conn_t *conn, const void *data, size_t len)
{
    if (conn->state == BENCH_CONN_CLOSED)
        return -ENOTCONN;
    if (buf_reserve(&conn->out, len) != 0)
        return -ENOBUFS;
    memcpy(conn->out.base + conn->out.len, data, len);
    conn->out.len += len;
    return 0;
}

void *bench_conn_queue_space(bench_conn_t *conn, size_t len)
{
    if (conn->state == BENCH_CONN_CLOSED || buf_reserve(&conn->out, len) != 0)
        return NULL;
    void *p = conn->out.base + conn->out.len;
    conn->out.len += len;
    return p;
}

void bench_conn_flush(bench_conn_t *conn)
{
    if (conn->state == BENCH_CONN_OPEN && conn->out.len != 0)
        conn_flush(conn);
}

int bench_conn_write(bench_conn_t *conn, const void *data, size_t len)
{
    int r = bench_conn_queue(conn, data, len);
    if (r == 0)
        bench_conn_flush(conn);
    return r;
}

void bench_conn_close(bench_conn_t *conn, const char *err)
{
    if (conn->state == BENCH_CONN_CLOSED)
        return;
    close(conn->fd);
    conn->fd = -1;
    conn->state = BENCH_CONN_CLOSED;
    conn->_events = 0;
    conn->_closed_pass = conn->loop->_pass;
    conn->in.len = 0;
    conn->out.len = 0;
    conn->cb->on_close(conn, err);
}
