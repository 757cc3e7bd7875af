/*
 * wake.c — the "wake" scenario: how long an evicted room takes to answer.
 *
 * Seeds --rooms rooms of the kv party (/parties/PARTY/rN) with --keys keys each (k0, k1, ...; 32-byte values), in
 * POSTs of {"put":{...}} of at most 128 keys (not measured; seed_s). Then, for each iteration: evict a room through
 * partyd's admin listener (POST /admin/rooms/PARTY/rN/evict on --admin-port, waiting for its 200: the room has left
 * memory; not in the latency, but reported as evict_*), then time GET /parties/PARTY/rN?key=k0 from its write to its
 * complete 200, whose body must be the value seeded. That is the wake: the room is loaded back from storage by the
 * request that needs it. --connections workers run iterations side by side (default one: wakes one at a time, on
 * an otherwise idle server), worker w visiting rooms w, w+W, ... in turn; each has one keep-alive connection to the
 * server and one to the admin listener. It runs for --duration, or for --requests wakes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "http.h"
#include "loop.h"

#define WAKE_TICK_NS 5000000u
#define WAKE_RETRY_NS 100000000u
#define WAKE_BATCH 128 /* the kv party's limit per POST */
#define WAKE_VALUE_LEN 32
#define WAKE_REQUEST_MAX (WAKE_BATCH * (16 + WAKE_VALUE_LEN) + 512)

typedef enum en_wake_step_t {
    WAKE_SEED,   /* putting this worker's rooms' keys */
    WAKE_SEEDED, /* waiting for the other workers to finish seeding */
    WAKE_EVICT,
    WAKE_GET,
    WAKE_DONE,
} wake_step_t;

typedef struct st_wake_t wake_t;
typedef struct st_wake_worker_t wake_worker_t;

typedef struct st_wake_link_t {
    bench_conn_t conn; /* first: the loop's callbacks get &conn and cast back */
    wake_worker_t *worker;
    int inflight;     /* a request is waiting for its response */
    int dead;         /* the last response said Connection: close: the next request needs a new connection */
    uint64_t sent_at; /* when it was written */
} wake_link_t;

struct st_wake_worker_t {
    wake_t *wk;
    wake_link_t server, admin;
    unsigned index;
    unsigned nrooms; /* rooms of this worker: index + j × workers for j < nrooms */
    wake_step_t step;
    unsigned j;     /* the room (its j) being seeded or woken */
    unsigned batch; /* seeding: the next batch of keys of room j */
    uint64_t retry_at;
};

struct st_wake_t {
    const bench_opts_t *opts;
    bench_result_t *res;
    void (*on_measure_start)(void);
    bench_loop_t loop;
    wake_worker_t *workers;
    unsigned nworkers, seeding;
    int running, stalled;
    uint64_t started, wakes;
    uint64_t seed_start_ns, start_ns, deadline_ns, last_progress_ns, timeout_ns;
    double seed_s;
    hist_t evict_latency;
    char req[WAKE_REQUEST_MAX];
};

static unsigned worker_room(const wake_worker_t *w)
{
    return w->index + w->j * w->wk->nworkers;
}

/* The value of key k of room r: 32 bytes that say whose they are. */
static void wake_value(char out[WAKE_VALUE_LEN + 1], unsigned room, unsigned key)
{
    int n = snprintf(out, WAKE_VALUE_LEN + 1, "v%u-%u-", room, key);
    memset(out + n, '.', (size_t)(WAKE_VALUE_LEN - n));
    out[WAKE_VALUE_LEN] = '\0';
}

static void wake_error(wake_t *wk, const char *what, const char *detail)
{
    ++wk->res->errors;
    bench_note_error(wk->res, what, detail);
}

/* Writes the request of the worker's current step on the link it needs (connecting it if closed). */
static void worker_send(wake_worker_t *w)
{
    wake_t *wk = w->wk;
    const bench_opts_t *o = wk->opts;
    unsigned room = worker_room(w);
    wake_link_t *l;
    int n;
    switch (w->step) {
    case WAKE_SEED: {
        l = &w->server;
        char body[WAKE_REQUEST_MAX - 256];
        size_t b = (size_t)snprintf(body, sizeof(body), "{\"put\":{");
        unsigned first = w->batch * WAKE_BATCH, last = first + WAKE_BATCH < o->keys ? first + WAKE_BATCH : o->keys;
        for (unsigned k = first; k < last; ++k) {
            char v[WAKE_VALUE_LEN + 1];
            wake_value(v, room, k);
            b += (size_t)snprintf(body + b, sizeof(body) - b, "%s\"k%u\":\"%s\"", k == first ? "" : ",", k, v);
        }
        b += (size_t)snprintf(body + b, sizeof(body) - b, "}}");
        n = snprintf(wk->req, sizeof(wk->req),
                     "POST /parties/%s/r%u HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     o->party, room, o->host, o->port, b, body);
        break;
    }
    case WAKE_EVICT:
        l = &w->admin;
        n = snprintf(wk->req, sizeof(wk->req),
                     /* X-Partyd-Admin: a change on a node without a token must be a request no web page sends */
                     "POST /admin/rooms/%s/r%u/evict HTTP/1.1\r\nHost: %s:%d\r\nX-Partyd-Admin: 1\r\nContent-Length: 0\r\n\r\n",
                     o->party, room, o->host, o->admin_port);
        break;
    case WAKE_GET:
        l = &w->server;
        n = snprintf(wk->req, sizeof(wk->req), "GET /parties/%s/r%u?key=k0 HTTP/1.1\r\nHost: %s:%d\r\n\r\n", o->party, room,
                     o->host, o->port);
        break;
    default:
        return;
    }
    if (l->dead) {
        l->dead = 0;
        bench_conn_close(&l->conn, NULL);
    }
    if (l->conn.state == BENCH_CONN_CLOSED) {
        int r = bench_conn_connect(&l->conn, l == &w->admin ? &o->admin_addr : &o->addr);
        if (r != 0) {
            wake_error(wk, l == &w->admin ? "connect to the admin port" : "connect", strerror(-r));
            w->retry_at = wk->loop.now_ns + WAKE_RETRY_NS;
            return;
        }
    }
    /* a connecting conn sends its queue once it opens */
    if (bench_conn_write(&l->conn, wk->req, (size_t)n) != 0) {
        wake_error(wk, "a request did not fit the output buffer", NULL);
        w->retry_at = wk->loop.now_ns + WAKE_RETRY_NS;
        return;
    }
    if (l->conn.state == BENCH_CONN_CLOSED) /* the write failed and closed it: on_close planned the retry */
        return;
    l->inflight = 1;
    l->sent_at = bench_loop_now(&wk->loop);
    w->retry_at = 0;
}

/* Moves the worker to its next step and sends it, unless the run is over. */
static void worker_next(wake_worker_t *w)
{
    wake_t *wk = w->wk;
    const bench_opts_t *o = wk->opts;
    switch (w->step) {
    case WAKE_SEED:
        if (++w->batch * WAKE_BATCH < o->keys)
            break;
        w->batch = 0;
        if (++w->j < w->nrooms)
            break;
        w->j = 0;
        w->step = WAKE_SEEDED;
        --wk->seeding;
        return; /* the tick starts the run once every worker is here */
    case WAKE_EVICT:
        w->step = WAKE_GET;
        break;
    case WAKE_GET:
        w->j = (w->j + 1) % w->nrooms;
        /* the next iteration, if the run goes on */
        __attribute__((fallthrough));
    case WAKE_SEEDED:
        if (!wk->running || (o->requests != 0 && wk->started >= o->requests)) {
            w->step = WAKE_DONE;
            return;
        }
        ++wk->started;
        w->step = WAKE_EVICT;
        break;
    default:
        return;
    }
    worker_send(w);
}

/* A complete response on link l for the worker's current step. */
static void worker_on_response(wake_worker_t *w, wake_link_t *l, const http_response_t *r)
{
    wake_t *wk = w->wk;
    uint64_t took = wk->loop.now_ns - l->sent_at;
    char detail[160];
    wk->last_progress_ns = wk->loop.now_ns;
    if (r->status != 200) {
        size_t blen = r->body != NULL && r->body_len < 80 ? r->body_len : 0;
        snprintf(detail, sizeof(detail), "HTTP %d %.*s%s", r->status, (int)blen, blen ? r->body : "",
                 r->status == 401 ? " (the admin listener wants a token)" : "");
        wake_error(wk, w->step == WAKE_SEED ? "seeding" : w->step == WAKE_EVICT ? "evict" : "the woken room's answer", detail);
        if (w->step == WAKE_SEED) {
            /* a room without its keys would make every later wake fail: stop now */
            wk->stalled = 1;
            wk->loop.stop = 1;
            return;
        }
    } else if (w->step == WAKE_EVICT) {
        hist_record(&wk->evict_latency, took);
    } else if (w->step == WAKE_GET) {
        char v[WAKE_VALUE_LEN + 1];
        wake_value(v, worker_room(w), 0);
        if (r->body == NULL || r->body_len != WAKE_VALUE_LEN || memcmp(r->body, v, WAKE_VALUE_LEN) != 0) {
            snprintf(detail, sizeof(detail), "r%u k0 is not the value seeded", worker_room(w));
            wake_error(wk, "the woken room's answer", detail);
        } else {
            hist_record(&wk->res->latency, took);
            ++wk->wakes;
        }
    }
    worker_next(w);
}

static ssize_t link_on_read(bench_conn_t *conn, const char *data, size_t len, int eof)
{
    wake_link_t *l = (wake_link_t *)conn;
    wake_worker_t *w = l->worker;
    http_response_t r;
    ssize_t n = http_response_parse(data, len, eof, &r);
    if (n == -2)
        return 0;
    if (n == -1) {
        bench_conn_close(conn, eof ? "the connection closed before a complete response" : "a malformed HTTP response");
        return -1;
    }
    if (!l->inflight) {
        bench_conn_close(conn, "a response that answers no request");
        return -1;
    }
    l->inflight = 0;
    /* the response stays valid while it is handled: a next request on this link closes it first (worker_send) */
    l->dead = !r.keep_alive;
    worker_on_response(w, l, &r);
    if (l->dead) {
        l->dead = 0;
        bench_conn_close(conn, NULL);
    }
    return n; /* ignored by the loop when the conn was closed (or reconnected) meanwhile */
}

static void link_on_open(bench_conn_t *conn)
{
    (void)conn;
}

static void link_on_close(bench_conn_t *conn, const char *err)
{
    wake_link_t *l = (wake_link_t *)conn;
    wake_worker_t *w = l->worker;
    if (l->inflight) {
        /* the request is lost with the connection: send it again after a pause */
        l->inflight = 0;
        wake_error(w->wk, l == &w->admin ? "the admin connection ended" : "the connection ended",
                   err != NULL ? err : "closed by the server");
        w->retry_at = w->wk->loop.now_ns + WAKE_RETRY_NS;
    }
}

static const bench_conn_cb_t link_cb = {link_on_open, link_on_read, link_on_close};

static void wake_tick(bench_loop_t *loop, void *data)
{
    wake_t *wk = data;
    const bench_opts_t *o = wk->opts;
    uint64_t now = loop->now_ns;
    if (bench_interrupted) {
        loop->stop = 1;
        return;
    }
    if (wk->seeding == 0 && !wk->running && wk->start_ns == 0) {
        wk->seed_s = (double)(now - wk->seed_start_ns) / 1e9;
        wk->on_measure_start();
        wk->start_ns = wk->last_progress_ns = bench_loop_now(loop);
        wk->deadline_ns = wk->start_ns + (uint64_t)(o->duration_s * 1e9);
        wk->running = 1;
        for (unsigned i = 0; i < wk->nworkers; ++i)
            worker_next(&wk->workers[i]);
        return;
    }
    if (wk->running && o->requests == 0 && now >= wk->deadline_ns)
        wk->running = 0; /* iterations in flight finish; no new one starts */
    unsigned busy = 0;
    for (unsigned i = 0; i < wk->nworkers; ++i) {
        wake_worker_t *w = &wk->workers[i];
        wake_link_t *links[2] = {&w->server, &w->admin};
        for (int k = 0; k < 2; ++k)
            if (links[k]->inflight && now - links[k]->sent_at > wk->timeout_ns)
                bench_conn_close(&links[k]->conn, "no response within the timeout");
        if (w->retry_at != 0 && now >= w->retry_at)
            worker_send(w);
        busy += w->step != WAKE_DONE && w->step != WAKE_SEEDED;
    }
    if (wk->start_ns != 0 && busy == 0)
        loop->stop = 1;
    else if (now - wk->last_progress_ns > wk->timeout_ns) {
        fprintf(stderr, "partyload: nothing answered for %.1f s; stopping\n", o->timeout_s);
        wk->stalled = 1;
        loop->stop = 1;
    }
}

static const char *wake_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_CLIENTS | BENCH_GIVEN_RATE | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_HOLD | BENCH_GIVEN_SEND |
                    BENCH_GIVEN_SIZE | BENCH_GIVEN_TEXT))
        return "wake takes --admin-port, --rooms, --keys, --connections, --duration or --requests";
    if (o->admin_port == 0)
        return "wake needs --admin-port (partyd's admin listener, to evict rooms)";
    if (!(o->given & BENCH_GIVEN_CONNECTIONS))
        o->connections = 1;
    if (!(o->given & BENCH_GIVEN_ROOMS))
        o->rooms = 100;
    if (!(o->given & BENCH_GIVEN_KEYS))
        o->keys = 100;
    if (o->connections > o->rooms)
        return "--connections: at most --rooms (a room is woken by one worker at a time)";
    o->rate = 0;
    return NULL;
}

static int wake_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    wake_t *wk = bench_xcalloc(1, sizeof(*wk));
    wk->opts = opts;
    wk->res = res;
    wk->on_measure_start = on_measure_start;
    wk->timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
    hist_init(&wk->evict_latency);
    int r = bench_loop_init(&wk->loop);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(wk);
        return 1;
    }
    wk->nworkers = opts->connections;
    wk->workers = bench_xcalloc(wk->nworkers, sizeof(*wk->workers));
    for (unsigned i = 0; i < wk->nworkers; ++i) {
        wake_worker_t *w = &wk->workers[i];
        w->wk = wk;
        w->index = i;
        w->nrooms = (opts->rooms - i + wk->nworkers - 1) / wk->nworkers;
        bench_conn_init(&w->server.conn, &wk->loop, &link_cb, 1 << 20, WAKE_REQUEST_MAX);
        bench_conn_init(&w->admin.conn, &wk->loop, &link_cb, 1 << 20, WAKE_REQUEST_MAX);
        w->server.worker = w->admin.worker = w;
    }

    wk->seed_start_ns = wk->last_progress_ns = bench_loop_now(&wk->loop);
    wk->seeding = wk->nworkers;
    for (unsigned i = 0; i < wk->nworkers; ++i)
        worker_send(&wk->workers[i]);
    r = bench_loop_run(&wk->loop, WAKE_TICK_NS, wake_tick, wk);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_wait: %s\n", strerror(-r));
        wk->stalled = 1;
    }
    if (wk->start_ns != 0) {
        res->duration_s = (double)(bench_loop_now(&wk->loop) - wk->start_ns) / 1e9;
        bench_measure_stop();
    } else if (!wk->stalled && !bench_interrupted) {
        wk->stalled = 1;
    }
    for (unsigned i = 0; i < wk->nworkers; ++i) {
        bench_conn_close(&wk->workers[i].server.conn, NULL);
        bench_conn_close(&wk->workers[i].admin.conn, NULL);
        bench_conn_dispose(&wk->workers[i].server.conn);
        bench_conn_dispose(&wk->workers[i].admin.conn);
    }

    bench_field(res, "\"wakes\":%llu,\"wakes_per_s\":%.1f,\"keys\":%u,\"seed_s\":%.3f", (unsigned long long)wk->wakes,
                res->duration_s > 0 ? (double)wk->wakes / res->duration_s : 0.0, opts->keys, wk->seed_s);
    bench_field(res, "\"evict_p50_ms\":%.3f,\"evict_max_ms\":%.3f", (double)hist_percentile(&wk->evict_latency, 50) / 1e6,
                (double)hist_percentile(&wk->evict_latency, 100) / 1e6);
    int status = wk->stalled ? 1 : 0;
    if (wk->start_ns == 0 && !bench_interrupted)
        fprintf(stderr, "partyload: seeding did not finish (%s)\n", res->first_error[0] != '\0' ? res->first_error : "?");
    if (status == 0 && wk->wakes == 0 && !bench_interrupted) {
        fprintf(stderr, "partyload: no room was woken\n");
        status = 1;
    }
    bench_loop_dispose(&wk->loop);
    free(wk->workers);
    free(wk);
    return status;
}

const bench_scenario_t bench_scenario_wake = {
    .name = "wake",
    .summary = "evict a kv room (admin), then time the GET that loads it back from storage",
    .party = "kv",
    .output = 0,
    .prepare = wake_prepare,
    .run = wake_run,
};
