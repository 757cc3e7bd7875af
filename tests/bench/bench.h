/*
 * bench.h — what partyload's scenarios share: the options, the result, and the scenario table.
 *
 * A scenario is a function that drives a running partyd (or PartyKit's runtime, for the WebSocket scenarios) through
 * the loop (loop.h) with the options it is given and fills a result; partyload.c parses the command line, samples
 * the server's processes around the measured phase and prints the result as one JSON line.
 *
 * To add a scenario: write NAME.c with a `const bench_scenario_t bench_scenario_NAME` (its default party, which
 * groups of JSON fields it fills, a `prepare` that checks the options and fills in its own defaults), declare it
 * below, list it in bench_scenarios (partyload.c) and in meson.build; add any option it needs to bench_opts_t, the
 * parser and the usage text. Fields only it reports go through bench_field. WebSocket clients are bws_conn_t (ws.h);
 * many of them in rooms are a fleet (fleet.h).
 */
#ifndef BENCH_BENCH_H
#define BENCH_BENCH_H

#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <sys/types.h>

#include "hist.h"

#define BENCH_PIDS_MAX 64

/* bench_opts_t.given: the options that were on the command line (the others hold defaults) */
enum {
    BENCH_GIVEN_CONNECTIONS = 1 << 0,
    BENCH_GIVEN_ROOMS = 1 << 1,
    BENCH_GIVEN_DURATION = 1 << 2,
    BENCH_GIVEN_REQUESTS = 1 << 3,
    BENCH_GIVEN_PIPELINE = 1 << 4,
    BENCH_GIVEN_TIMEOUT = 1 << 5,
    BENCH_GIVEN_CLIENTS = 1 << 6,
    BENCH_GIVEN_RATE = 1 << 7,
    BENCH_GIVEN_SIZE = 1 << 8,
    BENCH_GIVEN_HOLD = 1 << 9,
    BENCH_GIVEN_KEYS = 1 << 10,
    BENCH_GIVEN_SEND = 1 << 11,
    BENCH_GIVEN_TEXT = 1 << 12,
};

typedef struct st_bench_opts_t {
    struct sockaddr_in addr; /* the server: a loopback address, never another host */
    char host[64];           /* as given, for the Host header */
    int port;
    unsigned connections; /* for broadcast, derived: rooms × clients */
    unsigned rooms;
    double duration_s; /* run this long (when requests is 0) */
    uint64_t requests; /* or run until this many requests were answered or failed (writes), or wakes (wake) */
    unsigned pipeline; /* requests in flight per connection */
    char party[65];
    double timeout_s; /* a request (or a connect) unanswered this long is an error */
    pid_t pids[BENCH_PIDS_MAX];
    size_t npids;
    /* the WebSocket scenarios */
    unsigned clients; /* broadcast: clients per room */
    double rate;      /* messages/s: per client (broadcast), in all (echo) */
    unsigned size;    /* bytes per message payload */
    int text;         /* send text frames rather than binary */
    int send;         /* churn: one message per connection before it closes */
    double hold_s;    /* idle: how long the connections are held */
    double drain_s;   /* broadcast, echo, increments: how long to wait for deliveries after the last send */
    unsigned keys;    /* wake: keys per room */
    int admin_port;   /* wake: partyd's admin listener (0: none) */
    struct sockaddr_in admin_addr;
    uint32_t given; /* BENCH_GIVEN_* */
} bench_opts_t;

/* What the WebSocket scenarios count (bench_scenario_t.output has BENCH_OUT_WS). */
typedef struct st_bench_ws_result_t {
    int accounted;               /* expected/lost/duplicated/out_of_order are meaningful (broadcast, echo, increments); else null */
    unsigned clients_per_room;   /* the most clients a room has */
    uint64_t sent;               /* messages queued to the server */
    uint64_t delivered;          /* distinct messages received (each sender's message counts once per receiver) */
    uint64_t delivered_in_phase; /* of them, received before the sending stopped: delivered_per_s is these / duration */
    uint64_t expected;           /* deliveries due: per message sent, the other clients of its room open then */
    uint64_t duplicated;         /* a message received again by the same receiver */
    uint64_t out_of_order;       /* a message received after a later one of the same sender (delivered, late) */
    double connect_s;            /* opening every connection (before the measured phase) */
} bench_ws_result_t;

typedef struct st_bench_result_t {
    double duration_s; /* of the measured phase: from the first request to the stop */
    /* writes: sent == ok + non_2xx + errors + unfinished */
    uint64_t sent;      /* requests written */
    uint64_t responses; /* complete final responses */
    uint64_t ok;        /* 2xx among them: for writes, acknowledged (committed) writes */
    uint64_t non_2xx;
    /* writes: requests that got no response (connection lost, timeout, malformed response); the other scenarios:
     * everything that went wrong (failed connects and handshakes, connections lost, protocol errors, bad answers) */
    uint64_t errors;
    uint64_t unfinished;     /* requests still in flight when the run ended (neither answered nor failed) */
    uint64_t connect_errors; /* connection attempts that failed (no request is lost by them) */
    hist_t latency;          /* nanoseconds: send → complete response (writes), send → delivery (broadcast, echo), connect →
                                101 (churn), GET → complete 200 of a woken room (wake), increment → its count (increments) */
    hist_t arrival;          /* broadcast, echo: send → the delivery's arrival in the receiver's socket (loop.h rx_ns);
                                latency less the time partyload's one thread took to get round to reading it */
    bench_ws_result_t ws;
    char first_error[160];
    char fields[1024]; /* scenario-specific JSON members, comma-separated, added with bench_field */
    size_t fields_len;
} bench_result_t;

/* bench_scenario_t.output: the groups of JSON fields a scenario fills, besides the common ones */
#define BENCH_OUT_REQUESTS 1 /* pipeline, requests, ok, non_2xx, unfinished, connect_errors, per_s */
#define BENCH_OUT_WS 2       /* clients_per_room, size, rate, sent, delivered, ..., server_cpu_us_per_delivery */

typedef struct st_bench_scenario_t {
    const char *name;
    const char *summary; /* one line for --help */
    const char *party;   /* the default --party */
    unsigned output;     /* BENCH_OUT_* */
    /*
     * Called after the options are parsed (may be NULL): fills in this scenario's defaults for the options that were
     * not given (opts->given) and checks the rest. Returns NULL, or why the options do not fit (exit status 2).
     */
    const char *(*prepare)(bench_opts_t *opts);
    /*
     * Runs the scenario. `res` is zeroed with an empty histogram before the call. `on_measure_start` must be
     * called once, right before the measured phase starts (after connections are set up), so that the server's CPU
     * is sampled around that phase only; bench_measure_stop may end the phase before the run returns (else it ends
     * when the run returns). `opts` and `res` are borrowed for the call. Returns 0, or 1 when the run failed
     * (stalled, no connection opened, the server went away) after printing why; `res` is printed either way.
     */
    int (*run)(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void));
} bench_scenario_t;

/* Set by SIGINT/SIGTERM: scenarios stop as at their deadline and report what they measured. */
extern volatile sig_atomic_t bench_interrupted;

/* Records the first error of a run in res->first_error (later ones are only counted). */
void bench_note_error(bench_result_t *res, const char *what, const char *detail);

/* Appends a member to the scenario-specific JSON fields, e.g. bench_field(res, "\"wakes\":%llu", n). */
void bench_field(bench_result_t *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Ends the measured phase now: samples the server's and partyload's CPU (and the server's memory) for the line. */
void bench_measure_stop(void);

/* The server's processes (--pid): their current resident memory in KiB, summed; -1 without --pid or when gone. */
int64_t bench_server_rss_kb(void);

/*
 * Connects to the server once, blocking up to timeout_ms, to tell "no server" (exit 3) from a failing run.
 * Returns 0 or -errno.
 */
int bench_probe(const struct sockaddr_in *addr, int timeout_ms);

/*
 * broadcast.c's engine, shared with echo.c: `rooms` rooms of `clients` WebSocket clients on /parties/PARTY/rN; the
 * first `senders` clients of each room send `rate` messages/s each for the duration, every client checks what it
 * receives. See broadcast.c.
 */
typedef struct st_bench_fanout_t {
    unsigned rooms, clients, senders;
    double rate;
} bench_fanout_t;
int bench_fanout_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void), const bench_fanout_t *plan);

extern const bench_scenario_t bench_scenario_broadcast;
extern const bench_scenario_t bench_scenario_echo;
extern const bench_scenario_t bench_scenario_idle;
extern const bench_scenario_t bench_scenario_churn;
extern const bench_scenario_t bench_scenario_wake;
extern const bench_scenario_t bench_scenario_writes;
extern const bench_scenario_t bench_scenario_increments;

#endif
