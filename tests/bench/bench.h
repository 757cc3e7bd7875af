/*
 * bench.h — what partyload's scenarios share: the options, the result, and the scenario table.
 *
 * A scenario is a function that drives a running partyd through the loop (loop.h) with the options it is given and
 * fills a result; partyload.c parses the command line, samples the server's processes around the run and prints the
 * result as one JSON line. To add a scenario: write NAME.c with a `const bench_scenario_t bench_scenario_NAME`, list
 * it in bench_scenarios (partyload.c) and in meson.build; add any option it needs to bench_opts_t and the parser.
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"

#define BENCH_PIDS_MAX 64

typedef struct st_bench_opts_t {
    struct sockaddr_in addr; /* the server: a loopback address, never another host */
    char host[64];           /* as given, for the Host header */
    int port;
    unsigned connections;
    unsigned rooms;
    double duration_s; /* run this long (when requests is 0) */
    uint64_t requests; /* or run until this many requests were answered or failed */
    unsigned pipeline; /* requests in flight per connection */
    char party[65];
    double timeout_s; /* a request (or a connect) unanswered this long is an error */
    pid_t pids[BENCH_PIDS_MAX];
    size_t npids;
} bench_opts_t;

typedef struct st_bench_result_t {
    double duration_s; /* of the measured phase: from the first request to the stop */
    /* sent == ok + non_2xx + errors + unfinished */
    uint64_t sent;      /* requests written */
    uint64_t responses; /* complete final responses */
    uint64_t ok;        /* 2xx among them: for writes, acknowledged (committed) writes */
    uint64_t non_2xx;
    uint64_t errors;         /* requests that got no response: connection lost, timeout, malformed response */
    uint64_t unfinished;     /* requests still in flight when the run ended (neither answered nor failed) */
    uint64_t connect_errors; /* connection attempts that failed (no request is lost by them) */
    hist_t latency;          /* nanoseconds from send to complete response, for every final response */
    char first_error[160];
} bench_result_t;

typedef struct st_bench_scenario_t {
    const char *name;
    const char *summary; /* one line for --help */
    /*
     * Runs the scenario. `res` is zeroed with an empty histogram before the call. `on_measure_start` must be
     * called once, right before the measured phase starts (after connections are set up), so that the server's CPU
     * is sampled around that phase only. `opts` and `res` are borrowed for the call. Returns 0, or 1 when the run
     * failed (stalled, no connection opened) after printing why; `res` is printed either way.
     */
    int (*run)(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void));
} bench_scenario_t;

/* Set by SIGINT/SIGTERM: scenarios stop as at their deadline and report what they measured. */
extern volatile sig_atomic_t bench_interrupted;

/* Records the first error of a run in res->first_error (later ones are only counted). */
void bench_note_error(bench_result_t *res, const char *what, const char *detail);

/*
 * Connects to the server once, blocking up to timeout_ms, to tell "no server" (exit 3) from a failing run.
 * Returns 0 or -errno.
 */
int bench_probe(const struct sockaddr_in *addr, int timeout_ms);

extern const bench_scenario_t bench_scenario_writes;

#endif
