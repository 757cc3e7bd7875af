/*
 * ring.c — the machine's own floor for a message's trip through several processes, with no partyd in it.
 *
 *   build/tests/bench/ring [HOPS [RATE [SECONDS]]]      (defaults 4 hops, 2000 round trips/s, 8 s)
 *
 * HOPS − 1 child processes and this one form a ring of pipes; this process writes one byte into the ring RATE times a
 * second (on a fixed schedule) and times each byte's way round. Four hops are echo's path (client → router → shard →
 * router → client) with nothing but a wake-up and a one-byte read and write per hop: whatever latency this shows —
 * in particular the maxima — partyd cannot beat on the same machine. Prints one line: p50, p99, p99.9 and max.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RING_HOPS_MAX 16

static uint64_t ring_now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int ring_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* A child: passes every byte on until it reads 'q' (passed on too, so the next child stops) or the ring breaks. */
static void ring_relay(int in, int out)
{
    char c;
    while (read(in, &c, 1) == 1) {
        if (write(out, &c, 1) != 1 || c == 'q')
            break;
    }
    _exit(0);
}

int main(int argc, char **argv)
{
    int hops = argc > 1 ? atoi(argv[1]) : 4;
    double rate = argc > 2 ? atof(argv[2]) : 2000;
    double seconds = argc > 3 ? atof(argv[3]) : 8;
    if (hops < 1 || hops > RING_HOPS_MAX || !(rate > 0 && rate <= 1e6) || !(seconds > 0 && seconds <= 3600)) {
        fprintf(stderr, "usage: ring [HOPS (1-%d) [RATE (round trips/s) [SECONDS]]]\n", RING_HOPS_MAX);
        return 2;
    }
    int p[RING_HOPS_MAX][2];
    for (int i = 0; i < hops; ++i) {
        if (pipe(p[i]) != 0) {
            fprintf(stderr, "ring: pipe: %s\n", strerror(errno));
            return 1;
        }
    }
    for (int i = 1; i < hops; ++i) {
        pid_t pid = fork();
        if (pid == -1) {
            fprintf(stderr, "ring: fork: %s\n", strerror(errno));
            return 1;
        }
        if (pid == 0)
            ring_relay(p[i - 1][0], p[i][1]);
    }
    size_t n = (size_t)(rate * seconds);
    if (n == 0)
        n = 1;
    uint64_t *lat = malloc(n * sizeof(*lat));
    if (lat == NULL) {
        fprintf(stderr, "ring: out of memory\n");
        return 1;
    }
    /* a fixed schedule, as partyload's senders keep: a late round trip does not push the next ones back */
    uint64_t period = (uint64_t)(1e9 / rate), next = ring_now_ns();
    int failed = 0;
    for (size_t k = 0; k < n; ++k) {
        next += period;
        struct timespec ts = {.tv_sec = (time_t)(next / 1000000000u), .tv_nsec = (long)(next % 1000000000u)};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
            ;
        uint64_t t0 = ring_now_ns();
        char c = 'x';
        if (write(p[0][1], &c, 1) != 1 || read(p[hops - 1][0], &c, 1) != 1) {
            fprintf(stderr, "ring: the ring broke after %zu round trips\n", k);
            n = k;
            failed = 1;
            break;
        }
        lat[k] = ring_now_ns() - t0;
    }
    char q = 'q';
    if (write(p[0][1], &q, 1) != 1)
        failed = 1;
    while (wait(NULL) > 0)
        ;
    if (n > 0) {
        qsort(lat, n, sizeof(*lat), ring_cmp);
        printf("{\"hops\":%d,\"rate\":%.0f,\"round_trips\":%zu,\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"p999_ms\":%.3f,\"max_ms\":%.3f}\n",
               hops, rate, n, lat[n / 2] / 1e6, lat[n * 99 / 100] / 1e6, lat[n * 999 / 1000] / 1e6, lat[n - 1] / 1e6);
    }
    free(lat);
    return failed;
}
