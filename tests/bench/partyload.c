/*
 * partyload.c — partyd's load generator: the command line, the scenario table, server sampling and the JSON line.
 *
 * One process, one thread, one epoll loop; every connection goes to a loopback address (the option parser refuses
 * anything else), because this tool exists to measure a partyd on the same machine and must never load another host.
 *
 * Exit status: 0 a run was measured; 1 the run failed (nothing acknowledged, or it stalled); 2 bad arguments;
 * 3 no server at the address.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "procstat.h"

static const bench_scenario_t *const bench_scenarios[] = {
    &bench_scenario_writes,
};
#define BENCH_NSCENARIOS (sizeof(bench_scenarios) / sizeof(bench_scenarios[0]))

volatile sig_atomic_t bench_interrupted;

/* the measured phase's start, sampled by on_measure_start; static because the scenario calls back without context */
static bench_opts_t opts;
static bench_result_t result;
static procstat_t server_before;
static int server_before_ok;
static struct rusage self_before;

static void usage(FILE *out)
{
    fprintf(out, "usage: partyload SCENARIO --port PORT [options]\n"
                 "\n"
                 "Drives a partyd on this machine and prints one JSON line with what it measured.\n"
                 "\n"
                 "scenarios:\n");
    for (size_t i = 0; i < BENCH_NSCENARIOS; ++i)
        fprintf(out, "  %-10s %s\n", bench_scenarios[i]->name, bench_scenarios[i]->summary);
    fprintf(out, "\n"
                 "options:\n"
                 "  --port PORT          the server's port (required)\n"
                 "  --host ADDR          the server's address, a loopback IPv4 address (default 127.0.0.1)\n"
                 "  --connections C      concurrent connections (default 64)\n"
                 "  --rooms R            rooms, spread over the connections (default 1000)\n"
                 "  --duration S         measure for S seconds (default 10)\n"
                 "  --requests N         or until N requests were answered or failed\n"
                 "  --pipeline D         requests in flight per connection (default 1)\n"
                 "  --party NAME         the party (default counter)\n"
                 "  --timeout S          a request or connect unanswered for S seconds is an error (default 10)\n"
                 "  --pid PID[,PID...]   report the CPU seconds and peak RSS of these processes and their\n"
                 "                       descendants during the run (the partyd supervisor's pid covers all of it)\n"
                 "  --help               this text\n"
                 "\n"
                 "Output fields: requests = ok + non_2xx + errors + unfinished; per_s = ok / duration_s; latency\n"
                 "from send to complete response; server_rss_kb sums VmHWM over the processes.\n"
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

static double parse_seconds(const char *name, const char *s, double max)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (s[0] == '\0' || *end != '\0' || errno != 0 || !(v > 0) || v > max) {
        fprintf(stderr, "partyload: %s: expected a number of seconds above 0 and at most %g, got \"%s\"\n", name, max, s);
        exit(2);
    }
    return v;
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

static void parse_args(int argc, char **argv)
{
    enum { O_PORT = 256, O_HOST, O_CONNECTIONS, O_ROOMS, O_DURATION, O_REQUESTS, O_PIPELINE, O_PARTY, O_TIMEOUT, O_PID, O_HELP };
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
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    const char *host = "127.0.0.1";
    int have_duration = 0;
    opts.connections = 64;
    opts.rooms = 1000;
    opts.duration_s = 10;
    opts.pipeline = 1;
    opts.timeout_s = 10;
    strcpy(opts.party, "counter");
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
            break;
        case O_ROOMS:
            opts.rooms = (unsigned)parse_uint("--rooms", optarg, 1, 100000000);
            break;
        case O_DURATION:
            opts.duration_s = parse_seconds("--duration", optarg, 86400);
            have_duration = 1;
            break;
        case O_REQUESTS:
            opts.requests = parse_uint("--requests", optarg, 1, UINT64_MAX / 2);
            break;
        case O_PIPELINE:
            opts.pipeline = (unsigned)parse_uint("--pipeline", optarg, 1, 1024);
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
            break;
        case O_PID:
            parse_pids(optarg);
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
    if (have_duration && opts.requests != 0)
        bad_arg("%s", "--duration and --requests exclude each other");

    /* loopback only: a load generator pointed at another host by mistake is an attack */
    if (strlen(host) >= sizeof(opts.host) || inet_pton(AF_INET, host, &opts.addr.sin_addr) != 1)
        bad_arg("--host: \"%s\" is not an IPv4 address", host);
    if ((ntohl(opts.addr.sin_addr.s_addr) >> 24) != 127)
        bad_arg("--host: %s is not a loopback address; partyload only connects to 127.0.0.0/8", host);
    strcpy(opts.host, host);
    opts.addr.sin_family = AF_INET;
    opts.addr.sin_port = htons((uint16_t)opts.port);
}

/* Raises the descriptor limit to what the connections need, or says why it cannot. */
static void ensure_fd_limit(void)
{
    struct rlimit rl;
    rlim_t need = (rlim_t)opts.connections + 32;
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
    if (opts.npids != 0)
        server_before_ok = procstat_sample(opts.pids, opts.npids, &server_before) == 0;
    getrusage(RUSAGE_SELF, &self_before);
}

static double ms(uint64_t ns)
{
    return (double)ns / 1e6;
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
    parse_args(argc - 1, argv + 1);
    ensure_fd_limit();

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
    int status = scenario->run(&opts, &result, on_measure_start);
    if (status != 0 && status != 1)
        return status;

    struct rusage self_after;
    getrusage(RUSAGE_SELF, &self_after);
    procstat_t server_after = {0};
    int server_ok = opts.npids != 0 && server_before_ok && procstat_sample(opts.pids, opts.npids, &server_after) == 0;

    const bench_result_t *res = &result;
    uint64_t requests = res->ok + res->non_2xx + res->errors + res->unfinished;
    if (requests != res->sent)
        fprintf(stderr, "partyload: warning: %llu requests sent but %llu accounted for\n", (unsigned long long)res->sent,
                (unsigned long long)requests);
    printf("{\"scenario\":\"%s\",\"party\":\"%s\",\"connections\":%u,\"rooms\":%u,\"pipeline\":%u,\"duration_s\":%.3f,"
           "\"requests\":%llu,\"ok\":%llu,\"non_2xx\":%llu,\"errors\":%llu,\"unfinished\":%llu,\"connect_errors\":%llu,"
           "\"per_s\":%.1f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"client_cpu_s\":%.2f,",
           scenario->name, opts.party, opts.connections, opts.rooms, opts.pipeline, res->duration_s, (unsigned long long)res->sent,
           (unsigned long long)res->ok, (unsigned long long)res->non_2xx, (unsigned long long)res->errors,
           (unsigned long long)res->unfinished, (unsigned long long)res->connect_errors,
           res->duration_s > 0 ? (double)res->ok / res->duration_s : 0.0, ms(hist_percentile(&res->latency, 50)),
           ms(hist_percentile(&res->latency, 99)), ms(hist_percentile(&res->latency, 100)),
           rusage_cpu_s(&self_after) - rusage_cpu_s(&self_before));
    if (server_ok)
        printf("\"server_cpu_s\":%.2f,\"server_rss_kb\":%llu,\"server_procs\":%u}\n", server_after.cpu_s - server_before.cpu_s,
               (unsigned long long)server_after.hwm_kb, server_after.procs);
    else
        printf("\"server_cpu_s\":null,\"server_rss_kb\":null,\"server_procs\":null}\n");
    fflush(stdout);

    if (res->errors != 0 || res->non_2xx != 0 || res->connect_errors != 0)
        fprintf(stderr, "partyload: %llu errors, %llu non-2xx, %llu failed connects; first: %s\n", (unsigned long long)res->errors,
                (unsigned long long)res->non_2xx, (unsigned long long)res->connect_errors, res->first_error);
    if (opts.npids != 0 && !server_ok)
        fprintf(stderr, "partyload: --pid: the server's processes could not be sampled (gone?)\n");
    if (status == 0 && res->ok == 0) {
        fprintf(stderr, "partyload: no request was acknowledged\n");
        status = 1;
    }
    return status;
}
