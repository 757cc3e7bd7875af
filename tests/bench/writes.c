/*
 * writes.c — the "writes" scenario: acknowledged storage writes per second through partyd's output gate.
 *
 * C keep-alive HTTP/1.1 connections each keep `pipeline` requests `POST /parties/PARTY/rN` in flight; the counter
 * party answers 200 only after the increment is committed (fsynced under durability "sync"), so every 2xx is one
 * durable write. Request k of connection i goes to room (i + k*C) mod R: the R rooms are spread evenly over the
 * connections, and a connection visits its rooms in turn rather than hammering one.
 *
 * Phases: connect every connection (not measured), then send until the deadline or the request budget, then stop.
 * Requests still in flight at a deadline are "unfinished", not errors: the run ends at the deadline, as wrk does.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "http.h"
#include "loop.h"

#define WRITES_TICK_NS 10000000u       /* 10 ms: deadline and timeout checks */
#define WRITES_RETRY_NS 100000000u     /* 100 ms before reconnecting after an error */
#define WRITES_REQUEST_MAX 512         /* the longest request we build */
#define WRITES_INPUT_MAX (1024 * 1024) /* the largest response we accept */

typedef enum en_writes_phase_t {
    WRITES_CONNECTING,
    WRITES_RUNNING,
    WRITES_DONE,
} writes_phase_t;

typedef struct st_writes_t writes_t;

typedef struct st_writes_conn_t {
    bench_conn_t conn; /* first: the loop's callbacks get &conn and cast back */
    writes_t *w;
    unsigned index;
    uint64_t k;        /* requests this connection made: picks its next room */
    uint64_t *sent_at; /* a ring of `pipeline` send times (w->sent_at + index * pipeline), oldest at head */
    unsigned head;
    unsigned inflight;
    int opened;          /* the current connection attempt succeeded */
    uint64_t connect_at; /* when the current connect started (CONNECTING), or when to retry (CLOSED) */
} writes_conn_t;

struct st_writes_t {
    const bench_opts_t *opts;
    bench_result_t *res;
    void (*on_measure_start)(void);
    bench_loop_t loop;
    writes_conn_t *conns;
    uint64_t *sent_at; /* one allocation for every connection's ring */
    writes_phase_t phase;
    uint64_t inflight;
    uint64_t warmup_deadline, start_ns, deadline_ns, end_ns, last_progress_ns, timeout_ns;
    int stalled;
    /* a request is head + room number + tail */
    char head[WRITES_REQUEST_MAX / 2]; /* "POST /parties/PARTY/r" */
    char tail[WRITES_REQUEST_MAX / 2]; /* " HTTP/1.1\r\nHost: ...\r\n\r\n" */
};

static void writes_finish(writes_t *w)
{
    if (w->phase == WRITES_DONE)
        return;
    w->end_ns = w->loop.now_ns;
    w->phase = WRITES_DONE;
    w->res->unfinished = w->inflight;
    w->loop.stop = 1;
}

static int writes_may_send(const writes_t *w)
{
    return w->phase == WRITES_RUNNING && (w->opts->requests == 0 || w->res->sent < w->opts->requests);
}

/* Queues requests until the connection's pipeline is full (or the budget is spent), then writes them at once. */
static void writes_fill(writes_conn_t *wc)
{
    writes_t *w = wc->w;
    const bench_opts_t *o = w->opts;
    int queued = 0;
    while (wc->conn.state == BENCH_CONN_OPEN && wc->inflight < o->pipeline && writes_may_send(w)) {
        char req[WRITES_REQUEST_MAX + 24];
        unsigned room = (unsigned)((wc->index + wc->k * o->connections) % o->rooms);
        int n = snprintf(req, sizeof(req), "%s%u%s", w->head, room, w->tail);
        if (bench_conn_queue(&wc->conn, req, (size_t)n) != 0)
            break; /* cannot happen: the output buffer holds a full pipeline */
        ++wc->k;
        wc->sent_at[(wc->head + wc->inflight) % o->pipeline] = w->loop.now_ns;
        ++wc->inflight;
        ++w->inflight;
        ++w->res->sent;
        queued = 1;
    }
    if (queued)
        bench_conn_flush(&wc->conn);
}

static void writes_on_open(bench_conn_t *conn)
{
    writes_conn_t *wc = (writes_conn_t *)conn;
    wc->opened = 1;
    wc->w->last_progress_ns = wc->w->loop.now_ns;
    writes_fill(wc);
}

static ssize_t writes_on_read(bench_conn_t *conn, const char *data, size_t len, int eof)
{
    writes_conn_t *wc = (writes_conn_t *)conn;
    writes_t *w = wc->w;
    bench_result_t *res = w->res;
    size_t used = 0;
    while (used < len) {
        http_response_t r;
        ssize_t n = http_response_parse(data + used, len - used, eof, &r);
        if (n == -2)
            break;
        if (n == -1) {
            bench_note_error(res, "malformed HTTP response", eof ? "(truncated by the close)" : NULL);
            bench_conn_close(conn, "malformed HTTP response");
            return -1;
        }
        used += (size_t)n;
        if (r.status < 200 && r.status != 101)
            continue; /* interim (100 Continue, 103 Early Hints): the final response follows */
        if (wc->inflight == 0) {
            bench_note_error(res, "a response that answers no request", NULL);
            bench_conn_close(conn, "a response that answers no request");
            return -1;
        }
        uint64_t sent_at = wc->sent_at[wc->head];
        wc->head = (wc->head + 1) % w->opts->pipeline;
        --wc->inflight;
        --w->inflight;
        if (w->phase == WRITES_RUNNING) {
            hist_record(&res->latency, w->loop.now_ns - sent_at);
            ++res->responses;
            if (r.status >= 200 && r.status < 300) {
                ++res->ok;
            } else {
                if (res->non_2xx == 0) {
                    char detail[96];
                    snprintf(detail, sizeof(detail), "the first was %d", r.status);
                    bench_note_error(res, "non-2xx responses", detail);
                }
                ++res->non_2xx;
            }
        }
        w->last_progress_ns = w->loop.now_ns;
        if (!r.keep_alive || r.status == 101) {
            /* the server ends the connection here: what is still in flight is lost (on_close counts it) */
            bench_conn_close(conn, r.status == 101 ? "an unexpected 101" : NULL);
            return -1;
        }
    }
    if (w->phase == WRITES_RUNNING && w->opts->requests != 0 && w->res->sent == w->opts->requests && w->inflight == 0)
        writes_finish(w);
    else if (!eof) /* after the server's close, what we sent would only be lost */
        writes_fill(wc);
    return (ssize_t)used;
}

static void writes_on_close(bench_conn_t *conn, const char *err)
{
    writes_conn_t *wc = (writes_conn_t *)conn;
    writes_t *w = wc->w;
    if (w->phase != WRITES_DONE) {
        if (wc->inflight != 0) {
            w->res->errors += wc->inflight;
            bench_note_error(w->res, "requests lost with their connection", err != NULL ? err : "closed by the server");
        } else if (!wc->opened) {
            ++w->res->connect_errors;
            bench_note_error(w->res, "connection failed", err);
        }
    }
    w->inflight -= wc->inflight;
    wc->inflight = 0;
    wc->head = 0;
    /* a clean close (Connection: close) reconnects at the next tick; an error waits a little, not to spin */
    wc->connect_at = w->loop.now_ns + (err != NULL ? WRITES_RETRY_NS : 0);
    if (w->phase == WRITES_RUNNING && w->opts->requests != 0 && w->res->sent == w->opts->requests && w->inflight == 0)
        writes_finish(w);
}

static const bench_conn_cb_t writes_conn_cb = {
    .on_open = writes_on_open,
    .on_read = writes_on_read,
    .on_close = writes_on_close,
};

static void writes_connect(writes_conn_t *wc)
{
    writes_t *w = wc->w;
    wc->connect_at = w->loop.now_ns;
    wc->opened = 0;
    int r = bench_conn_connect(&wc->conn, &w->opts->addr);
    if (r != 0) {
        ++w->res->connect_errors;
        bench_note_error(w->res, "connect", strerror(-r));
        wc->connect_at = w->loop.now_ns + WRITES_RETRY_NS;
    }
}

static void writes_start(writes_t *w)
{
    w->on_measure_start();
    bench_loop_now(&w->loop);
    w->phase = WRITES_RUNNING;
    w->start_ns = w->last_progress_ns = w->loop.now_ns;
    w->deadline_ns = w->start_ns + (uint64_t)(w->opts->duration_s * 1e9);
    for (unsigned i = 0; i < w->opts->connections; ++i)
        writes_fill(&w->conns[i]);
}

static void writes_tick(bench_loop_t *loop, void *data)
{
    writes_t *w = data;
    const bench_opts_t *o = w->opts;
    uint64_t now = loop->now_ns;
    if (bench_interrupted) {
        writes_finish(w);
        return;
    }
    if (w->phase == WRITES_CONNECTING) {
        unsigned open = 0;
        for (unsigned i = 0; i < o->connections; ++i)
            open += w->conns[i].conn.state == BENCH_CONN_OPEN;
        if (open == o->connections || (now >= w->warmup_deadline && open != 0)) {
            writes_start(w); /* it samples the server, which takes a while: `now` is stale, sweep at the next tick */
            return;
        } else if (now >= w->warmup_deadline) {
            fprintf(stderr, "partyload: no connection opened in %.1f s (%s)\n", o->timeout_s,
                    w->res->first_error[0] != '\0' ? w->res->first_error : "no error seen");
            w->stalled = 1;
            writes_finish(w);
            return;
        }
    } else if (w->phase == WRITES_RUNNING) {
        if (o->requests == 0 && now >= w->deadline_ns) {
            writes_finish(w);
            return;
        }
        if (now > w->last_progress_ns && now - w->last_progress_ns > w->timeout_ns) {
            fprintf(stderr, "partyload: nothing answered or connected for %.1f s; stopping\n", o->timeout_s);
            w->stalled = 1;
            writes_finish(w);
            return;
        }
    }
    for (unsigned i = 0; i < o->connections; ++i) {
        writes_conn_t *wc = &w->conns[i];
        switch (wc->conn.state) {
        case BENCH_CONN_CLOSED:
            if (now >= wc->connect_at)
                writes_connect(wc);
            break;
        case BENCH_CONN_CONNECTING:
            if (now > wc->connect_at && now - wc->connect_at > w->timeout_ns)
                bench_conn_close(&wc->conn, "connect: timed out");
            break;
        case BENCH_CONN_OPEN:
            if (wc->inflight != 0 && now > wc->sent_at[wc->head] && now - wc->sent_at[wc->head] > w->timeout_ns)
                bench_conn_close(&wc->conn, "no response within the timeout");
            else if (wc->inflight == 0)
                writes_fill(wc);
            break;
        }
    }
}

static int writes_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    writes_t *w = bench_xcalloc(1, sizeof(*w));
    w->opts = opts;
    w->res = res;
    w->on_measure_start = on_measure_start;
    w->timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
    snprintf(w->head, sizeof(w->head), "POST /parties/%s/r", opts->party);
    snprintf(w->tail, sizeof(w->tail), " HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 0\r\n\r\n", opts->host, opts->port);
    int r = bench_loop_init(&w->loop);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(w);
        return 1;
    }
    w->conns = bench_xcalloc(opts->connections, sizeof(*w->conns));
    w->sent_at = bench_xcalloc((size_t)opts->connections * opts->pipeline, sizeof(*w->sent_at));
    for (unsigned i = 0; i < opts->connections; ++i) {
        writes_conn_t *wc = &w->conns[i];
        bench_conn_init(&wc->conn, &w->loop, &writes_conn_cb, WRITES_INPUT_MAX, (size_t)opts->pipeline * (WRITES_REQUEST_MAX + 24));
        wc->w = w;
        wc->index = i;
        wc->sent_at = w->sent_at + (size_t)i * opts->pipeline;
    }

    /* connect everything first: the measured phase starts with every connection open */
    w->phase = WRITES_CONNECTING;
    w->warmup_deadline = bench_loop_now(&w->loop) + w->timeout_ns;
    for (unsigned i = 0; i < opts->connections; ++i)
        writes_connect(&w->conns[i]);
    r = bench_loop_run(&w->loop, WRITES_TICK_NS, writes_tick, w);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_wait: %s\n", strerror(-r));
        w->stalled = 1;
        bench_loop_now(&w->loop);
        writes_finish(w);
    }

    res->duration_s = w->start_ns != 0 ? (double)(w->end_ns - w->start_ns) / 1e9 : 0;
    for (unsigned i = 0; i < opts->connections; ++i) {
        bench_conn_close(&w->conns[i].conn, NULL);
        bench_conn_dispose(&w->conns[i].conn);
    }
    int stalled = w->stalled;
    bench_loop_dispose(&w->loop);
    free(w->sent_at);
    free(w->conns);
    free(w);
    return stalled ? 1 : 0;
}

const bench_scenario_t bench_scenario_writes = {
    .name = "writes",
    .summary = "POST /parties/PARTY/rN over keep-alive HTTP/1.1: acknowledged (committed) storage writes per second",
    .party = "counter",
    .output = BENCH_OUT_REQUESTS,
    .run = writes_run,
};
