/*
 * crash.c — a shard that dies of a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) says where, on stderr, before
 * it goes: the party and room and the callback that was running (the heartbeat page, ipc/beat.h, already records them
 * for the supervisor) and a backtrace. Then the signal's default action runs, so the process still dies of it and the
 * supervisor restarts it and blames the room as before (node/node.c, strikes.c).
 *
 * The handler runs in whatever state the crash left: it only write(2)s preformatted bytes, reads the beat page (its
 * own, written by this thread), and calls backtrace()/backtrace_symbols_fd(), which crash_install warms up once so that
 * libgcc is loaded (no malloc in the handler). It runs on its own stack (sigaltstack) so that a stack overflow reports.
 */
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shard.h"

#define CRASH_FRAMES 64

static struct {
    const beat_t *beat;
    char prefix[64]; /* "shard N (pid P): " */
    size_t prefix_len;
} crash;

static void put(const char *s, size_t len)
{
    while (len > 0) {
        ssize_t n = write(2, s, len);
        if (n <= 0)
            return;
        s += n;
        len -= (size_t)n;
    }
}

static void puts_(const char *s)
{
    put(s, strlen(s));
}

/* a string of the beat page: bounded, whatever the page holds */
static void put_field(const char *s, size_t cap)
{
    size_t n = 0;
    while (n < cap && s[n] != '\0')
        ++n;
    put(s, n);
}

static const char *signame(int sig)
{
    switch (sig) {
    case SIGSEGV:
        return "11 (SIGSEGV)";
    case SIGBUS:
        return "7 (SIGBUS)";
    case SIGILL:
        return "4 (SIGILL)";
    case SIGFPE:
        return "8 (SIGFPE)";
    case SIGABRT:
        return "6 (SIGABRT)";
    default:
        return "(another)";
    }
}

static void on_fatal(int sig)
{
    put(crash.prefix, crash.prefix_len);
    puts_("fatal signal ");
    puts_(signame(sig));
    const beat_t *b = crash.beat;
    if (b != NULL && b->callback[0] != '\0') {
        puts_(" in ");
        put_field(b->callback, sizeof(b->callback));
        if (b->room[0] != '\0') {
            puts_(" of room ");
            put_field(b->room, sizeof(b->room));
        }
    } else {
        puts_(" outside any room's event");
    }
    puts_("; backtrace:\n");
    void *frames[CRASH_FRAMES];
    int n = backtrace(frames, CRASH_FRAMES);
    backtrace_symbols_fd(frames, n, 2);
    /* the default action, with the signal as the exit status the supervisor reads */
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

void crash_install(int index, const beat_t *beat)
{
    crash.beat = beat;
    int n = snprintf(crash.prefix, sizeof(crash.prefix), "shard %d (pid %d): ", index, (int)getpid());
    crash.prefix_len = n > 0 && (size_t)n < sizeof(crash.prefix) ? (size_t)n : 0;
    void *warm[2];
    backtrace(warm, 2); /* loads libgcc's unwinder now, not in the handler */

    /* owned by the process for its whole life: the handler may need it at any time */
    static char *altstack;
    size_t size = 64 * 1024;
    if (altstack == NULL && (altstack = malloc(size)) != NULL) {
        stack_t ss = {.ss_sp = altstack, .ss_size = size};
        sigaltstack(&ss, NULL);
    }
    struct sigaction sa = {.sa_handler = on_fatal, .sa_flags = SA_ONSTACK | SA_RESETHAND};
    sigemptyset(&sa.sa_mask);
    static const int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); ++i)
        sigaction(sigs[i], &sa, NULL);
}
