/*
 * partyload.c — partyd's load generator: the command line, the scenario table, server sampling and the JSON line.
 *
 * Scenarios (each in its own file; bench.h says how to add one):
 *   broadcast  R rooms × C WebSocket clients, each sending M messages/s that fan out to the room (broadcast.c)
 *   echo       rooms of two WebSocket clients, one sending, one receiving: latency through router and shard (echo.c)
 *   idle       N WebSocket connections held open: the server's memory per connection (idle.c)
 *   churn      WebSocket connects, upgrades and closes per second (churn.c)
 *   wake       the time an evicted kv room takes to answer (wake.c)
 *   writes     acknowledged storage writes per second through the output gate, over HTTP (writes.c)
 *   increments the same over WebSocket: "increment" to the counter party, one in flight per client (increments.c)
 * The WebSocket scenarios speak plain RFC 6455 (ws.c: masked client frames, pings answered, the closing handshake)
 * to /parties/PARTY/ROOM, so they run against PartyKit's runtime as well as partyd.
 *
 * One process, one thread, one epoll loop; every connection goes to a loopback address (the option parser refuses
 * anything else), because this tool exists to measure a partyd on the same machine and must never load another host.
 * Each run prints one JSON line on stdout: the common fields (scenario, party, connections, rooms, duration_s,
 * errors, first_error, p50_ms/p99_ms/max_ms, client_cpu_s, server_cpu_s, server_rss_kb, server_procs), then the
 * fields of the scenario's kind (usage() lists them), then its own.
 *
 * Exit status: 0 a run was measured; 1 the run failed (nothing acknowledged or delivered, no connection opened, the
 * server went away, or it stalled); 2 bad arguments; 3 no server at the address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "procstat.h"
#include "ws.h"

static const bench_scenario_t *const bench_scenarios[] = {
    &bench_scenario_broadcast, &bench_scenario_echo,   &bench_scenario_idle,       &bench_scenario_churn,
    &bench_scenario_wake,      &bench_scenario_writes, &bench_scenario_increments,
};
#define BENCH_NSCENARIOS (sizeof(bench_scenarios) / sizeof(bench_scenarios[0]))

volatile sig_atomic_t bench_interrupted;

/* the measured phase's start, sampled by on_measure_start; static because the scenario calls back without context */
static bench_opts_t opts;
static bench_result_t result;
static procstat_t server_before, server_after;
static int server_before_ok, server_after_ok, measure_started, measure_stopped;
static struct rusage self_before, self_after;

static void usage(FILE *out)
{
    fprintf(out, "usage: partyload SCENARIO --port PORT [options]\n"
                 "\n"
                 "Drives a partyd (or PartyKit's runtime, for the WebSocket scenarios) on this machine and prints one\n"
                 "JSON line with what it measured.\n"
                 "\n"
                 "scenarios:\n");
    for (size_t i = 0; i < BENCH_NSCENARIOS; ++i)
        fprintf(out, "  %-10s %s\n", bench_scenarios[i]->name, bench_scenarios[i]->summary);
    fprintf(out, "\n"
                 "options (a scenario refuses those it does not use):\n"
                 "  --port PORT          the server's port (required)\n"
                 "  --host ADDR          the server's address, a loopback IPv4 address (default 127.0.0.1)\n"
                 "  --connections C      concurrent connections (default 64; idle 1000; wake 1 worker; broadcast:\n"
                 "                       rooms × clients); echo: C/2 rooms of two; increments: one room each\n"
                 "  --rooms R            rooms, spread over the connections (default 1000; broadcast 1; idle 100;\n"
                 "                       churn C; wake 100)\n"
                 "  --clients C          broadcast: clients per room (default 10)\n"
                 "  --rate M             messages/s: broadcast, per client (default 10); echo, in all (default 1000)\n"
                 "  --size B             message payload bytes (default 64; at least 16, or 32 with --text)\n"
                 "  --text               send text frames (the header as hex digits) rather than binary\n"
                 "  --send               churn: send one message on each connection before closing it\n"
                 "  --duration S         measure for S seconds (default 10)\n"
                 "  --requests N         writes: until N requests were answered or failed; wake: N wakes\n"
                 "  --pipeline D         writes: requests in flight per connection (default 1)\n"
                 "  --hold S             idle: hold the connections S seconds (default 5)\n"
                 "  --keys K             wake: keys per room (default 100)\n"
                 "  --admin-port P       wake: partyd's admin port on the same host (required by wake)\n"
                 "  --party NAME         the party (default: relay for WebSocket scenarios, kv for wake, counter for writes\n"
                 "                       and increments)\n"
                 "  --timeout S          a request, connect or upgrade unanswered for S seconds is an error (default 10);\n"
                 "                       broadcast, echo and increments also wait up to S seconds for deliveries\n"
                 "                       after the last send (default 2)\n"
                 "  --pid PID[,PID...]   report the CPU seconds and peak RSS of these processes and their\n"
                 "                       descendants during the run (the partyd supervisor's pid covers all of it)\n"
                 "  --help               this text\n"
                 "\n"
                 "Output, one JSON line. Every scenario: scenario, party, connections, rooms, duration_s, errors,\n"
                 "first_error, p50_ms, p99_ms, max_ms, client_cpu_s, server_cpu_s, server_rss_kb (peak: sum of VmHWM),\n"
                 "server_procs. writes adds pipeline, requests (= ok + non_2xx + errors + unfinished), ok, non_2xx,\n"
                 "unfinished, connect_errors, per_s (ok / duration_s); latency is send to complete response.\n"
                 "WebSocket scenarios add clients_per_room, size, rate, sent, delivered, delivered_per_s, expected,\n"
                 "lost, duplicated, out_of_order, connect_s, server_cpu_us_per_delivery; latency is send to delivery\n"
                 "(churn: connect to 101; increments: increment to its count). broadcast and echo add arrival_p50_ms,\n"
                 "arrival_p99_ms, arrival_max_ms: send to the kernel's stamp of the delivery reaching the receiver's\n"
                 "socket, i.e. latency less partyload's own delay in reading it. increments: sent = increments,\n"
                 "delivered = their counts (committed writes), lost = never acknowledged, delivered_per_s = writes/s.\n"
                 "idle adds connections_open, server_rss_before_kb, server_rss_after_kb, rss_per_conn_bytes (VmRSS),\n"
                 "connect_per_s; churn connects, connects_per_s, closes, closes_unanswered;\n"
                 "wake wakes, wakes_per_s, keys, seed_s, evict_p50_ms, evict_max_ms (latency: the GET of a woken room).\n"
                 "Exit status: 0 measured, 1 the run failed, 2 bad arguments, 3 no server.\n");
}

static void bad_arg(const char *fmt, const char *what)
{
    fprintf(stderr, "partyload: ");
    fprintf(stderr, fmt, what);
    fprintf(stderr, "\n(partyload --help for usage)\n");
    exit(2);
}

static uint64_t parse_uint(const char *name, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno != 0 || v < min || v > max) {
        fprintf(stderr, "partyload: %s: expected an integer from %llu to %llu, got \"%s\"\n", name, (unsigned long long)min,
                (unsigned long long)max, s);
        exit(2);
    }
    return v;
}

/* A positive number (of `unit`) up to max, or exit 2. */
static double parse_positive(const char *name, const char *s, double max, const char *unit)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || !(v > 0) || v > max) {
        fprintf(stderr, "partyload: %s: expected a number of %s above 0 and at most %g, got \"%s\"\n", name, unit, max, s);
        exit(2);
    }
    return v;
}

static double parse_seconds(const char *name, const char *s, double max)
{
    return parse_positive(name, s, max, "seconds");
}

static void parse_pids(const char *s)
{
    char copy[1024];
    if (strlen(s) >= sizeof(copy))
        bad_arg("--pid: list too long: %s", s);
    strcpy(copy, s);
    char *save;
    for (char *t = strtok_r(copy, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (opts.npids == BENCH_PIDS_MAX)
            bad_arg("--pid: more than 64 pids in %s", s);
        pid_t pid = (pid_t)parse_uint("--pid", t, 1, 4194304);
        if (kill(pid, 0) == -1 && errno == ESRCH)
            bad_arg("--pid: no process with pid %s", t);
        opts.pids[opts.npids++] = pid;
    }
    if (opts.npids == 0)
        bad_arg("--pid: no pid in \"%s\"", s);
}

static void parse_args(const bench_scenario_t *scenario, int argc, char **argv)
{
    enum {
        O_PORT = 256,
        O_HOST,
        O_CONNECTIONS,
        O_ROOMS,
        O_DURATION,
        O_REQUESTS,
        O_PIPELINE,
        O_PARTY,
        O_TIMEOUT,
        O_PID,
        O_CLIENTS,
        O_RATE,
        O_SIZE,
        O_TEXT,
        O_SEND,
        O_HOLD,
        O_KEYS,
        O_ADMIN_PORT,
        O_HELP
    };
    static const struct option longopts[] = {
        {"port", required_argument, NULL, O_PORT},
        {"host", required_argument, NULL, O_HOST},
        {"connections", required_argument, NULL, O_CONNECTIONS},
        {"rooms", required_argument, NULL, O_ROOMS},
        {"duration", required_argument, NULL, O_DURATION},
        {"requests", required_argument, NULL, O_REQUESTS},
        {"pipeline", required_argument, NULL, O_PIPELINE},
        {"party", required_argument, NULL, O_PARTY},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"pid", required_argument, NULL, O_PID},
        {"clients", required_argument, NULL, O_CLIENTS},
        {"rate", required_argument, NULL, O_RATE},
        {"size", required_argument, NULL, O_SIZE},
        {"text", no_argument, NULL, O_TEXT},
        {"send", no_argument, NULL, O_SEND},
        {"hold", required_argument, NULL, O_HOLD},
        {"keys", required_argument, NULL, O_KEYS},
        {"admin-port", required_argument, NULL, O_ADMIN_PORT},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    opts.connections = 64;
    opts.rooms = 1000;
    opts.duration_s = 10;
    opts.pipeline = 1;
    opts.timeout_s = 10;
    opts.size = 64;
    opts.hold_s = 5;
    opts.drain_s = 2;
    strcpy(opts.party, scenario->party);
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", longopts, NULL)) != -1) {
        switch (c) {
        case O_PORT:
            opts.port = (int)parse_uint("--port", optarg, 1, 65535);
            break;
        case O_HOST:
            host = optarg;
            break;
        case O_CONNECTIONS:
            opts.connections = (unsigned)parse_uint("--connections", optarg, 1, 100000);
            opts.given |= BENCH_GIVEN_CONNECTIONS;
            break;
        case O_ROOMS:
            opts.rooms = (unsigned)parse_uint("--rooms", optarg, 1, 100000000);
            opts.given |= BENCH_GIVEN_ROOMS;
            break;
        case O_DURATION:
            opts.duration_s = parse_seconds("--duration", optarg, 86400);
            opts.given |= BENCH_GIVEN_DURATION;
            break;
        case O_REQUESTS:
            opts.requests = parse_uint("--requests", optarg, 1, UINT64_MAX / 2);
            opts.given |= BENCH_GIVEN_REQUESTS;
            break;
        case O_PIPELINE:
            opts.pipeline = (unsigned)parse_uint("--pipeline", optarg, 1, 1024);
            opts.given |= BENCH_GIVEN_PIPELINE;
            break;
        case O_PARTY: {
            size_t n = strlen(optarg);
            if (n == 0 || n > 64 || strspn(optarg, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != n)
                bad_arg("--party: \"%s\" is not a party name (1-64 of A-Z a-z 0-9 _ -)", optarg);
            strcpy(opts.party, optarg);
            break;
        }
        case O_TIMEOUT:
            opts.timeout_s = parse_seconds("--timeout", optarg, 3600);
            opts.drain_s = opts.timeout_s;
            opts.given |= BENCH_GIVEN_TIMEOUT;
            break;
        case O_PID:
            parse_pids(optarg);
            break;
        case O_CLIENTS:
            opts.clients = (unsigned)parse_uint("--clients", optarg, 1, 100000);
            opts.given |= BENCH_GIVEN_CLIENTS;
            break;
        case O_RATE:
            opts.rate = parse_positive("--rate", optarg, 1e7, "messages per second");
            opts.given |= BENCH_GIVEN_RATE;
            break;
        case O_SIZE:
            opts.size = (unsigned)parse_uint("--size", optarg, 1, BWS_MESSAGE_MAX_DEFAULT);
            opts.given |= BENCH_GIVEN_SIZE;
            break;
        case O_TEXT:
            opts.text = 1;
            opts.given |= BENCH_GIVEN_TEXT;
            break;
        case O_SEND:
            opts.send = 1;
            opts.given |= BENCH_GIVEN_SEND;
            break;
        case O_HOLD:
            opts.hold_s = parse_seconds("--hold", optarg, 86400);
            opts.given |= BENCH_GIVEN_HOLD;
            break;
        case O_KEYS:
            opts.keys = (unsigned)parse_uint("--keys", optarg, 1, 1000000);
            opts.given |= BENCH_GIVEN_KEYS;
            break;
        case O_ADMIN_PORT:
            opts.admin_port = (int)parse_uint("--admin-port", optarg, 1, 65535);
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        case ':':
            bad_arg("%s needs a value", argv[optind - 1]);
            break;
        default:
            bad_arg("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        bad_arg("unexpected argument \"%s\"", argv[optind]);
    if (opts.port == 0)
        bad_arg("%s", "--port is required");
    if ((opts.given & BENCH_GIVEN_DURATION) && opts.requests != 0)
        bad_arg("%s", "--duration and --requests exclude each other");

    /* loopback only: a load generator pointed at another host by mistake is an attack */
    if (strlen(host) >= sizeof(opts.host) || inet_pton(AF_INET, host, &opts.addr.sin_addr) != 1)
        bad_arg("--host: \"%s\" is not an IPv4 address", host);
    if ((ntohl(opts.addr.sin_addr.s_addr) >> 24) != 127)
        bad_arg("--host: %s is not a loopback address; partyload only connects to 127.0.0.0/8", host);
    strcpy(opts.host, host);
    opts.addr.sin_family = AF_INET;
    opts.addr.sin_port = htons((uint16_t)opts.port);
    opts.admin_addr = opts.addr;
    opts.admin_addr.sin_port = htons((uint16_t)opts.admin_port);

    if (scenario->prepare != NULL) {
        const char *why = scenario->prepare(&opts);
        if (why != NULL)
            bad_arg("%s", why);
    } else if (opts.given & ~(BENCH_GIVEN_CONNECTIONS | BENCH_GIVEN_ROOMS | BENCH_GIVEN_DURATION | BENCH_GIVEN_REQUESTS |
                              BENCH_GIVEN_PIPELINE | BENCH_GIVEN_TIMEOUT)) {
        bad_arg("%s takes --connections, --rooms, --duration or --requests, --pipeline", scenario->name);
    }
}

/* Raises the descriptor limit to what the connections need, or says why it cannot. */
static void ensure_fd_limit(unsigned per_connection)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)opts.connections * per_connection + 32;
    if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        fprintf(stderr, "partyload: --connections %u needs %llu file descriptors; the hard limit is %llu (ulimit -Hn)\n",
                opts.connections, (unsigned long long)need, (unsigned long long)rl.rlim_max);
        exit(2);
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
        fprintf(stderr, "partyload: setrlimit(RLIMIT_NOFILE, %llu): %s\n", (unsigned long long)need, strerror(errno));
        exit(2);
    }
}

void bench_field(bench_result_t *res, const char *fmt, ...)
{
    size_t room = sizeof(res->fields) - res->fields_len;
    if (res->fields_len != 0 && room > 1) {
        res->fields[res->fields_len++] = ',';
        --room;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(res->fields + res->fields_len, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        /* a scenario's fields are fixed and short: running out is a bug, not something to print half of */
        fprintf(stderr, "partyload: bench_field: the scenario's fields do not fit\n");
        abort();
    }
    res->fields_len += (size_t)n;
}

int64_t bench_server_rss_kb(void)
{
    procstat_t ps;
    if (opts.npids == 0 || procstat_sample(opts.pids, opts.npids, &ps) != 0)
        return -1;
    return (int64_t)ps.rss_kb;
}

void bench_note_error(bench_result_t *res, const char *what, const char *detail)
{
    if (res->first_error[0] != '\0')
        return;
    if (detail != NULL)
        snprintf(res->first_error, sizeof(res->first_error), "%s: %s", what, detail);
    else
        snprintf(res->first_error, sizeof(res->first_error), "%s", what);
}

int bench_probe(const struct sockaddr_in *addr, int timeout_ms)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int err = 0;
    if (connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) == -1) {
        if (errno != EINPROGRESS) {
            err = errno;
        } else {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int n = poll(&p, 1, timeout_ms);
            if (n == 0) {
                err = ETIMEDOUT;
            } else if (n == -1) {
                err = errno;
            } else {
                socklen_t len = sizeof(err);
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
                    err = errno;
            }
        }
    }
    close(fd);
    return -err;
}

static void on_signal(int sig)
{
    (void)sig;
    bench_interrupted = 1;
}

static double rusage_cpu_s(const struct rusage *ru)
{
    return (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 + (double)ru->ru_stime.tv_sec +
           (double)ru->ru_stime.tv_usec / 1e6;
}

static void on_measure_start(void)
{
    measure_started = 1;
    if (opts.npids != 0)
        server_before_ok = procstat_sample(opts.pids, opts.npids, &server_before) == 0;
    getrusage(RUSAGE_SELF, &self_before);
}

void bench_measure_stop(void)
{
    if (measure_stopped)
        return;
    measure_stopped = 1;
    getrusage(RUSAGE_SELF, &self_after);
    server_after_ok = opts.npids != 0 && server_before_ok && procstat_sample(opts.pids, opts.npids, &server_after) == 0;
}

/* Prints s as a JSON string (or null). */
static void print_json_string(const char *s)
{
    if (s == NULL || s[0] == '\0') {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; ++p) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

/* "PREFIXp50_ms":…,"PREFIXp99_ms":…,"PREFIXmax_ms":…, — null each when nothing was timed (idle), not "0 ms" */
static void print_percentiles(const char *prefix, const hist_t *h)
{
    if (h->count == 0) {
        printf("\"%sp50_ms\":null,\"%sp99_ms\":null,\"%smax_ms\":null,", prefix, prefix, prefix);
        return;
    }
    printf("\"%sp50_ms\":%.3f,\"%sp99_ms\":%.3f,\"%smax_ms\":%.3f,", prefix, ms(hist_percentile(h, 50)), prefix,
           ms(hist_percentile(h, 99)), prefix, ms(hist_percentile(h, 100)));
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const bench_scenario_t *scenario = NULL;
    for (size_t i = 0; i < BENCH_NSCENARIOS; ++i)
        if (strcmp(argv[1], bench_scenarios[i]->name) == 0)
            scenario = bench_scenarios[i];
    if (scenario == NULL)
        bad_arg("unknown scenario \"%s\"", argv[1]);
    parse_args(scenario, argc - 1, argv + 1);
    /* a wake worker also holds an admin connection; a churn slot may have 4 connections (3 of them closing) */
    ensure_fd_limit(scenario == &bench_scenario_wake ? 2 : scenario == &bench_scenario_churn ? 4 : 1);

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int r = bench_probe(&opts.addr, (int)(opts.timeout_s * 1000));
    if (r != 0) {
        fprintf(stderr, "partyload: no server at %s:%d (%s)\n", opts.host, opts.port, strerror(-r));
        return 3;
    }

    hist_init(&result.latency);
    hist_init(&result.arrival);
    getrusage(RUSAGE_SELF, &self_before); /* in case the run fails before its measured phase */
    int status = scenario->run(&opts, &result, on_measure_start);
    if (status != 0 && status != 1)
        return status;
    bench_measure_stop();

    const bench_result_t *res = &result;
    const bench_ws_result_t *ws = &res->ws;
    printf("{\"scenario\":\"%s\",\"party\":\"%s\",\"connections\":%u,\"rooms\":%u,\"duration_s\":%.3f,", scenario->name, opts.party,
           opts.connections, opts.rooms, res->duration_s);
    if (scenario->output & BENCH_OUT_REQUESTS) {
        uint64_t requests = res->ok + res->non_2xx + res->errors + res->unfinished;
        if (requests != res->sent)
            fprintf(stderr, "partyload: warning: %llu requests sent but %llu accounted for\n", (unsigned long long)res->sent,
                    (unsigned long long)requests);
        printf("\"pipeline\":%u,\"requests\":%llu,\"ok\":%llu,\"non_2xx\":%llu,\"unfinished\":%llu,\"connect_errors\":%llu,"
               "\"per_s\":%.1f,",
               opts.pipeline, (unsigned long long)res->sent, (unsigned long long)res->ok, (unsigned long long)res->non_2xx,
               (unsigned long long)res->unfinished, (unsigned long long)res->connect_errors,
               res->duration_s > 0 ? (double)res->ok / res->duration_s : 0.0);
    }
    uint64_t lost = ws->expected > ws->delivered ? ws->expected - ws->delivered : 0;
    if (scenario->output & BENCH_OUT_WS) {
        printf("\"clients_per_room\":%u,\"size\":%u,\"rate\":%g,\"sent\":%llu,\"delivered\":%llu,\"delivered_per_s\":%.1f,",
               ws->clients_per_room, opts.size, opts.rate, (unsigned long long)ws->sent, (unsigned long long)ws->delivered,
               res->duration_s > 0 ? (double)(ws->accounted ? ws->delivered_in_phase : ws->delivered) / res->duration_s : 0.0);
        if (ws->accounted)
            printf("\"expected\":%llu,\"lost\":%llu,\"duplicated\":%llu,\"out_of_order\":%llu,", (unsigned long long)ws->expected,
                   (unsigned long long)lost, (unsigned long long)ws->duplicated, (unsigned long long)ws->out_of_order);
        else
            printf("\"expected\":null,\"lost\":null,\"duplicated\":null,\"out_of_order\":null,");
        printf("\"connect_s\":%.3f,", ws->connect_s);
        if (server_after_ok && ws->delivered != 0)
            printf("\"server_cpu_us_per_delivery\":%.3f,",
                   (server_after.cpu_s - server_before.cpu_s) * 1e6 / (double)ws->delivered);
        else
            printf("\"server_cpu_us_per_delivery\":null,");
    }
    if (res->fields_len != 0)
        printf("%s,", res->fields);
    printf("\"errors\":%llu,\"first_error\":", (unsigned long long)res->errors);
    print_json_string(res->first_error);
    putchar(',');
    print_percentiles("", &res->latency);
    if (res->arrival.count != 0)
        print_percentiles("arrival_", &res->arrival);
    printf("\"client_cpu_s\":%.2f,", rusage_cpu_s(&self_after) - rusage_cpu_s(&self_before));
    if (server_after_ok)
        printf("\"server_cpu_s\":%.2f,\"server_rss_kb\":%llu,\"server_procs\":%u}\n", server_after.cpu_s - server_before.cpu_s,
               (unsigned long long)server_after.hwm_kb, server_after.procs);
    else
        printf("\"server_cpu_s\":null,\"server_rss_kb\":null,\"server_procs\":null}\n");
    fflush(stdout);

    if (scenario->output & BENCH_OUT_REQUESTS) {
        if (res->errors != 0 || res->non_2xx != 0 || res->connect_errors != 0)
            fprintf(stderr, "partyload: %llu errors, %llu non-2xx, %llu failed connects; first: %s\n",
                    (unsigned long long)res->errors, (unsigned long long)res->non_2xx, (unsigned long long)res->connect_errors,
                    res->first_error);
        if (status == 0 && res->ok == 0) {
            fprintf(stderr, "partyload: no request was acknowledged\n");
            status = 1;
        }
    } else if (res->errors != 0) {
        fprintf(stderr, "partyload: %llu errors; first: %s\n", (unsigned long long)res->errors, res->first_error);
    }
    if (ws->accounted) {
        if (lost != 0 || ws->duplicated != 0 || ws->out_of_order != 0)
            fprintf(stderr, "partyload: MESSAGES WRONG: %llu lost, %llu duplicated, %llu out of order (of %llu expected)\n",
                    (unsigned long long)lost, (unsigned long long)ws->duplicated, (unsigned long long)ws->out_of_order,
                    (unsigned long long)ws->expected);
        if (status == 0 && ws->expected != 0 && ws->delivered == 0) {
            fprintf(stderr, "partyload: no message was delivered\n");
            status = 1;
        }
    }
    if (opts.npids != 0 && measure_started && !server_after_ok)
        fprintf(stderr, "partyload: --pid: the server's processes could not be sampled (gone?)\n");
    return status;
}
