/*
 * loop.h — partyload's event loop and client connections: one thread, one epoll set (level-triggered), non-blocking
 * TCP sockets to a loopback address.
 *
 * A scenario owns its connections (usually an array of structs that embed a bench_conn_t), initialises each once,
 * and reuses it across reconnects: the buffers are allocated at init and only grow (up to a cap), so nothing is
 * allocated per request or per message.
 *
 * Callbacks run on the loop. Inside them a scenario may write to any connection and close any connection;
 * bench_conn_close is safe on the connection whose callback is running (the loop checks the state after every
 * callback and skips what is left of that pass for a closed connection). A connection closed in a pass is not
 * dispatched again in that pass, even if it reconnects, so reconnecting from a callback is safe too.
 */
#ifndef BENCH_LOOP_H
#define BENCH_LOOP_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct st_bench_loop_t bench_loop_t;
typedef struct st_bench_conn_t bench_conn_t;

/* Called when `interval_ns` has passed since the previous call (at the end of a loop pass). */
typedef void (*bench_tick_cb)(bench_loop_t *loop, void *data);

struct st_bench_loop_t {
    int epfd;
    int stop;        /* set by a callback to make bench_loop_run return at the end of the pass */
    uint64_t now_ns; /* CLOCK_MONOTONIC, refreshed before each event is dispatched */
    /*
     * Set before connecting: sockets opened from then on have the kernel stamp their incoming bytes (SO_TIMESTAMPNS),
     * and rx_ns is, during on_read, when the newest bytes of that read reached the socket (CLOCK_MONOTONIC; 0 when
     * the kernel gave no stamp). On loopback that is the moment the server's write put them on the wire: unlike
     * now_ns it leaves out how long this one thread took to get round to reading the socket.
     */
    int rx_stamps;
    uint64_t rx_ns;
    uint64_t _pass;              /* counts epoll_wait calls; a connection closed in pass N is skipped for the rest of it */
    int64_t _mono_minus_real_ns; /* the kernel stamps with CLOCK_REALTIME */
    int _ms_timeouts;            /* epoll_pwait2 is missing: epoll_wait, whole milliseconds */
};

typedef enum en_bench_conn_state_t {
    BENCH_CONN_CLOSED = 0,
    BENCH_CONN_CONNECTING,
    BENCH_CONN_OPEN,
} bench_conn_state_t;

typedef struct st_bench_conn_cb_t {
    /* The TCP connection is established; the connection may be written to. */
    void (*on_open)(bench_conn_t *conn);
    /*
     * Bytes arrived: data[0..len) is everything received and not yet consumed. Returns how many bytes from the front
     * the scenario consumed (the rest stays buffered for the next call), or -1 to close the connection with the
     * error "malformed input". `eof` is set once, when the peer closed; the connection is closed (with err NULL)
     * after this call.
     */
    ssize_t (*on_read)(bench_conn_t *conn, const char *data, size_t len, int eof);
    /*
     * The connection was closed: by bench_conn_close (err as given), by the peer (NULL), or by an error (a constant
     * string, or the conn's errbuf). Called once per open/connecting connection; the conn may be reconnected from here.
     */
    void (*on_close)(bench_conn_t *conn, const char *err);
} bench_conn_cb_t;

typedef struct st_bench_buf_t {
    char *base;
    size_t len;
    size_t cap;
    size_t max; /* the buffer never grows past this */
} bench_buf_t;

struct st_bench_conn_t {
    bench_loop_t *loop;
    const bench_conn_cb_t *cb;
    bench_conn_state_t state;
    int fd;
    bench_buf_t in;
    bench_buf_t out;
    char errbuf[96]; /* for errors built from errno; valid during on_close */
    uint32_t _events;
    uint64_t _closed_pass;
};

/* partyload's one allocation path: allocation failure aborts (a load generator has nothing better to do). */
void *bench_xcalloc(size_t n, size_t size);
void *bench_xrealloc(void *p, size_t size);

/* Opens the epoll set. Returns 0 or -errno. */
int bench_loop_init(bench_loop_t *loop);
void bench_loop_dispose(bench_loop_t *loop);
/* CLOCK_MONOTONIC in nanoseconds; also stores it in loop->now_ns. */
uint64_t bench_loop_now(bench_loop_t *loop);
/*
 * Runs until a callback sets loop->stop. `tick` (may be NULL) is called once per `interval_ns`,
 * on a fixed grid from the start, at the end of the pass in which its time came; after a stall the grid restarts
 * from then rather than calling it for every tick missed.
 * Returns 0, or -errno when epoll_wait fails.
 */
int bench_loop_run(bench_loop_t *loop, uint64_t interval_ns, bench_tick_cb tick, void *data);

/*
 * Prepares a connection (closed): allocates its input and output buffers, growing up to in_max and out_max bytes.
 * The conn is owned by the caller, which calls bench_conn_dispose once it is closed.
 */
void bench_conn_init(bench_conn_t *conn, bench_loop_t *loop, const bench_conn_cb_t *cb, size_t in_max, size_t out_max);
/* Frees the buffers; the connection must be closed. */
void bench_conn_dispose(bench_conn_t *conn);
/*
 * Starts a non-blocking connect to `addr` (a closed conn only). Returns 0 (on_open or on_close follows) or -errno
 * (nothing follows: as libuv has it, if the call fails the callbacks are not called).
 */
int bench_conn_connect(bench_conn_t *conn, const struct sockaddr_in *addr);
/*
 * Queues data[0..len) and writes what the socket takes now (when open; a connecting conn sends once it opens).
 * Returns 0, or -ENOBUFS when the output buffer would pass its max (nothing is queued), or -ENOTCONN when closed.
 * A write error closes the connection (on_close runs before this returns 0).
 */
int bench_conn_write(bench_conn_t *conn, const void *data, size_t len);
/* Like bench_conn_write, but only queues: the bytes go out with the next bench_conn_flush or bench_conn_write
 * (or when on_open returns, for bytes queued before or during on_open). */
int bench_conn_queue(bench_conn_t *conn, const void *data, size_t len);
/*
 * Like bench_conn_queue, for a caller that builds the bytes in place (a masked frame, without a copy): reserves `len`
 * bytes at the end of the output and returns where they start; the caller fills all of them before it returns to
 * the loop or calls anything else on the conn. NULL when closed or when the output would pass its max (nothing is
 * reserved then).
 */
void *bench_conn_queue_space(bench_conn_t *conn, size_t len);
/* Writes what is queued, as far as the socket takes it. A write error closes the connection. */
void bench_conn_flush(bench_conn_t *conn);
/* Closes the socket, drops buffered bytes and calls on_close(conn, err). Does nothing on a closed conn. */
void bench_conn_close(bench_conn_t *conn, const char *err);

#endif
