/*
 * echo.c — the "echo" scenario: a message's trip through partyd, client → router → shard → router → client, timed.
 *
 * --connections C clients in C/2 rooms of two (/parties/PARTY/rN): in each room one client sends and the other
 * receives what the party relays. --rate is the total, spread evenly over the pairs (and staggered in time, see
 * broadcast.c, whose engine runs this with one sender per room). Latency, loss and duplicates are counted as there.
 * One-way through the server and back out is what a chat message costs, which is the number this measures; both ends
 * are in this process, so the times come from one clock.
 */
#include "bench.h"

static const char *echo_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_ROOMS | BENCH_GIVEN_CLIENTS | BENCH_GIVEN_REQUESTS | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_HOLD |
                    BENCH_GIVEN_KEYS | BENCH_GIVEN_SEND))
        return "echo takes --connections (rooms of two), --rate (in all), --size, --text, --duration";
    if (!(o->given & BENCH_GIVEN_RATE))
        o->rate = 1000;
    if (o->connections < 2 || o->connections % 2 != 0)
        return "--connections: an even number, at least 2 (rooms of two)";
    o->rooms = o->connections / 2;
    o->clients = 2;
    if (o->rate / o->rooms < 0.01)
        return "--rate: below 0.01 messages/s per pair";
    if (o->size < (o->text ? 32 : 16))
        return o->text ? "--size: at least 32 with --text (the header is 32 hex digits)" : "--size: at least 16 (the header)";
    return NULL;
}

static int echo_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    bench_fanout_t plan = {.rooms = opts->rooms, .clients = 2, .senders = 1, .rate = opts->rate / opts->rooms};
    return bench_fanout_run(opts, res, on_measure_start, &plan);
}

const bench_scenario_t bench_scenario_echo = {
    .name = "echo",
    .summary = "C/2 rooms of two WebSocket clients, one sending (--rate in all), one receiving: latency through partyd",
    .party = "relay",
    .output = BENCH_OUT_WS,
    .prepare = echo_prepare,
    .run = echo_run,
};
