/*
 * idle.c — the "idle" scenario: what N open, silent WebSocket connections cost the server in memory.
 *
 * Samples the resident memory of the server's processes (VmRSS summed over --pid and its descendants), opens
 * --connections clients spread over --rooms rooms (fleet.h: not measured, its time is connect_s), waits for the
 * server to settle (the memory stops moving: two samples 250 ms apart within 1 %, after 1 s and at most 5 s),
 * samples again, then holds every connection open for --hold seconds without sending anything (pings from the
 * server are answered) and checks that all are still open. rss_per_conn_bytes = (after − before) × 1024 / open
 * connections. VmRSS is the processes' user-space memory: the kernel's socket buffers are not in it.
 * The measured phase (server_cpu_s) is the hold: what idle connections cost in CPU.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fleet.h"

#define IDLE_SAMPLE_NS 250000000u
#define IDLE_SETTLE_MIN_NS 1000000000u
#define IDLE_SETTLE_MAX_NS 5000000000u

typedef struct st_idle_t {
    fleet_t fleet;
    uint64_t settle_start, next_sample;
    int64_t last_rss;
} idle_t;

static void settle_tick(fleet_t *f)
{
    idle_t *id = f->data;
    uint64_t now = f->loop.now_ns;
    if (now < id->next_sample)
        return;
    int64_t rss = bench_server_rss_kb();
    bench_loop_now(&f->loop); /* the sample reads /proc for a while */
    id->next_sample = f->loop.now_ns + IDLE_SAMPLE_NS;
    int64_t diff = rss > id->last_rss ? rss - id->last_rss : id->last_rss - rss;
    if (rss < 0 || (now - id->settle_start >= IDLE_SETTLE_MIN_NS && diff * 100 <= id->last_rss))
        f->loop.stop = 1;
    id->last_rss = rss;
}

static void hold_tick(fleet_t *f)
{
    if (f->open == 0)
        f->loop.stop = 1; /* the server went away: nothing left to hold */
}

static const fleet_hooks_t idle_hooks = {0};

static const char *idle_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_CLIENTS | BENCH_GIVEN_RATE | BENCH_GIVEN_REQUESTS | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_KEYS |
                    BENCH_GIVEN_SEND | BENCH_GIVEN_DURATION | BENCH_GIVEN_SIZE | BENCH_GIVEN_TEXT))
        return "idle takes --connections, --rooms, --hold";
    if (!(o->given & BENCH_GIVEN_CONNECTIONS))
        o->connections = 1000;
    if (!(o->given & BENCH_GIVEN_ROOMS))
        o->rooms = 100;
    if (o->rooms > o->connections)
        o->rooms = o->connections;
    o->rate = 0;
    return NULL;
}

static int idle_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    idle_t *id = bench_xcalloc(1, sizeof(*id));
    fleet_t *f = &id->fleet;
    /* an idle client queues nothing but pongs and a close */
    int r = fleet_init(f, opts, res, opts->connections, opts->rooms, 4096, &idle_hooks, id);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(id);
        return 1;
    }
    res->ws.clients_per_room = (opts->connections + opts->rooms - 1) / opts->rooms;
    int64_t before = bench_server_rss_kb(), after = -1;
    if (before < 0)
        fprintf(stderr, "partyload: idle: without --pid the server's memory is not measured\n");
    int status = 0;
    unsigned opened = fleet_connect_all(f), open = opened;
    uint64_t settle_ns = 0;
    if (opened == 0) {
        fprintf(stderr, "partyload: no connection opened (%s)\n", res->first_error[0] != '\0' ? res->first_error : "interrupted");
        status = 1;
    } else if (!bench_interrupted) {
        id->settle_start = bench_loop_now(&f->loop);
        if (before >= 0) {
            id->last_rss = bench_server_rss_kb();
            id->next_sample = bench_loop_now(&f->loop) + IDLE_SAMPLE_NS;
            fleet_run(f, id->settle_start + IDLE_SETTLE_MAX_NS, settle_tick);
            after = bench_server_rss_kb();
        }
        settle_ns = bench_loop_now(&f->loop) - id->settle_start;
        open = f->open; /* what the memory sample saw */
        on_measure_start();
        uint64_t start = bench_loop_now(&f->loop);
        if (!bench_interrupted)
            status = fleet_run(f, start + (uint64_t)(opts->hold_s * 1e9), hold_tick);
        res->duration_s = (double)(bench_loop_now(&f->loop) - start) / 1e9;
        bench_measure_stop();
        if (f->open == 0) {
            fprintf(stderr, "partyload: every connection was lost during the hold (%s)\n", res->first_error);
            status = 1;
        }
    }
    bench_field(res, "\"connections_open\":%u", f->open);
    bench_field(res, "\"connect_per_s\":%.1f", res->ws.connect_s > 0 ? (double)opened / res->ws.connect_s : 0.0);
    bench_field(res, "\"hold_s\":%.3f,\"settle_s\":%.3f", res->duration_s, (double)settle_ns / 1e9);
    if (before >= 0 && after >= 0 && open != 0) {
        bench_field(res, "\"server_rss_before_kb\":%lld,\"server_rss_after_kb\":%lld", (long long)before, (long long)after);
        bench_field(res, "\"rss_per_conn_bytes\":%.0f", (double)(after - before) * 1024.0 / open);
    } else {
        bench_field(res, "\"server_rss_before_kb\":null,\"server_rss_after_kb\":null,\"rss_per_conn_bytes\":null");
    }
    fleet_close_all(f);
    fleet_dispose(f);
    free(id);
    return status;
}

const bench_scenario_t bench_scenario_idle = {
    .name = "idle",
    .summary = "N WebSocket connections held open and silent: the server's memory per connection",
    .party = "relay",
    .output = BENCH_OUT_WS,
    .prepare = idle_prepare,
    .run = idle_run,
};
