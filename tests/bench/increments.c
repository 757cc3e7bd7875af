/*
 * increments.c — the "increments" scenario: acknowledged storage writes per second through partyd's output gate, over
 * WebSocket (writes.c measures the same over HTTP POST).
 *
 * --connections C WebSocket clients, each alone in its own room (client i on /parties/PARTY/rI, fleet.h), against the
 * counter party: on connect it sends {"type":"count","count":N}, and the text message "increment" makes the room store
 * count + 1 and broadcast {"type":"count","count":N+1} to every connection of the room, the sender included. partyd's
 * output gate holds that broadcast until the write is committed (fsynced under durability "sync"), so the count coming
 * back is the write's acknowledgement. A client alone in its room gets only the counts its own increments caused.
 *
 * Phases: open every client (not measured, its time is connect_s) and wait for each one's initial count (up to
 * --timeout; a client without one is dropped as an error); then, closed loop, one increment in flight per client: send
 * "increment", wait for its count, record the latency (send → receipt), send the next, until the deadline; then stop
 * sending and wait for the increments still in flight (up to 2 s, or --timeout when given, as broadcast.c), and close
 * every client with 1000.
 *
 * Accounting is strict, per client: the count that acknowledges an increment must be exactly the previous count + 1
 * (the previous being the initial count, then each acknowledged one). A count equal to the previous one is duplicated,
 * a lower one out_of_order; neither acknowledges anything. A higher one means the acknowledgement of the increment in
 * flight was lost: that increment is settled unacknowledged (it counts as lost) and the client goes on from the new
 * count. A count arriving while no increment is in flight was caused by someone else (another client of the room, a
 * POST): an error, as are {"type":"error",...} (it settles the increment in flight, unacknowledged) and anything that
 * is not a count. sent = increments sent, delivered = increments acknowledged, expected = sent, so lost = increments
 * never acknowledged: answered by an error, lost with their connection, past --timeout (the client is dropped), or
 * still in flight when the drain ended. delivered_per_s counts the acknowledgements received before the deadline,
 * over the measured phase: committed writes per second.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fleet.h"

#define INCR_MESSAGE "increment"
#define INCR_MESSAGE_LEN (sizeof(INCR_MESSAGE) - 1)
#define INCR_OUT_MAX 4096        /* a client queues one increment at a time, pongs and its close */
#define INCR_SWEEP_NS 100000000u /* 100 ms between sweeps for increments past --timeout */
#define INCR_COUNT_DIGITS_MAX 18 /* a count below 10^18 fits a long long with room for + 1 */

typedef struct st_incr_client_t {
    long long count;  /* the initial count, then the last acknowledged (or skipped-to) one */
    uint64_t sent_at; /* when the increment in flight was written */
    int ready;        /* the initial count arrived */
    int inflight;     /* an increment waits for its count */
} incr_client_t;

typedef struct st_incr_t {
    fleet_t fleet;
    const bench_opts_t *opts;
    bench_result_t *res;
    incr_client_t *clients; /* per fleet client */
    unsigned ready;         /* open clients that have their initial count */
    uint64_t inflight;      /* increments waiting for their count, over every client */
    uint64_t start_ns, send_until_ns, next_sweep_ns, timeout_ns;
    int sending;
} incr_t;

/*
 * Reads a counter message, as counter.c writes it: {"type":"count","count":N} exactly (N in decimal, no sign, no
 * leading zero, at most 18 digits) sets *count and returns 0; anything starting {"type":"error" returns 1; anything else
 * -1. `data` is borrowed.
 */
static int incr_parse(const uint8_t *data, size_t len, long long *count)
{
    static const char head[] = "{\"type\":\"count\",\"count\":", error[] = "{\"type\":\"error\"";
    const size_t hlen = sizeof(head) - 1;
    if (len >= sizeof(error) - 1 && memcmp(data, error, sizeof(error) - 1) == 0)
        return 1;
    if (len < hlen + 2 || memcmp(data, head, hlen) != 0 || data[len - 1] != '}')
        return -1;
    const uint8_t *p = data + hlen, *end = data + len - 1;
    size_t digits = (size_t)(end - p);
    if (digits > INCR_COUNT_DIGITS_MAX || (digits > 1 && p[0] == '0'))
        return -1;
    long long v = 0;
    for (; p < end; ++p) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (*p - '0');
    }
    *count = v;
    return 0;
}

static void incr_error(incr_t *ic, const char *what, const char *detail)
{
    ++ic->res->errors;
    bench_note_error(ic->res, what, detail);
}

/* Settles the client's increment in flight: acknowledged or not, the client may send the next one. */
static void incr_settle(incr_t *ic, incr_client_t *s)
{
    if (s->inflight) {
        s->inflight = 0;
        --ic->inflight;
    }
}

/* Sends the client's next increment while the measured phase runs. */
static void incr_send(incr_t *ic, fleet_client_t *c)
{
    incr_client_t *s = &ic->clients[c->index];
    if (!ic->sending || c->fleet->loop.now_ns >= ic->send_until_ns || s->inflight || c->ws.state != BWS_OPEN)
        return;
    if (bws_queue(&c->ws, BWS_OP_TEXT, INCR_MESSAGE, INCR_MESSAGE_LEN) != 0)
        return; /* cannot happen: one small frame in flight, far below INCR_OUT_MAX */
    s->inflight = 1;
    s->sent_at = c->fleet->loop.now_ns;
    ++ic->inflight;
    ++ic->res->ws.sent;
    /* one write per increment: in a closed loop nothing else would share it; a write error settles it (on_close) */
    bws_flush(&c->ws);
}

/* Quotes a message the counter should not have sent, shortened, for first_error. */
static void incr_quote(char *buf, size_t size, int binary, const uint8_t *data, size_t len)
{
    if (binary)
        snprintf(buf, size, "a binary message of %zu bytes", len);
    else
        snprintf(buf, size, "%.*s", len > 100 ? 100 : (int)len, (const char *)data);
}

static void incr_on_message(fleet_client_t *c, int binary, const uint8_t *data, size_t len)
{
    incr_t *ic = c->fleet->data;
    incr_client_t *s = &ic->clients[c->index];
    bench_ws_result_t *w = &ic->res->ws;
    uint64_t now = c->fleet->loop.now_ns;
    long long n = 0;
    int r = binary ? -1 : incr_parse(data, len, &n);
    if (r != 0) {
        char detail[112];
        incr_quote(detail, sizeof(detail), binary, data, len);
        if (!s->ready) {
            /* a client that cannot start has nothing to measure: dropped, and the fleet counts the error */
            bench_note_error(ic->res, "the first message was not a count", detail);
            bws_abort(&c->ws, "no initial count");
            return;
        }
        incr_error(ic, r == 1 ? "the counter answered with an error" : "a message that is not a count", detail);
        /* the counter answers an increment with its count or with this: the increment is settled, unacknowledged */
        incr_settle(ic, s);
        incr_send(ic, c);
        return;
    }
    if (!s->ready) {
        s->ready = 1;
        s->count = n;
        ++ic->ready;
        return;
    }
    if (n <= s->count) {
        if (n == s->count)
            ++w->duplicated;
        else
            ++w->out_of_order;
        return;
    }
    if (!s->inflight) {
        char detail[64];
        snprintf(detail, sizeof(detail), "%lld after %lld", n, s->count);
        incr_error(ic, "a count partyload did not cause (another writer in the room?)", detail);
        s->count = n;
        return;
    }
    if (n == s->count + 1) {
        ++w->delivered;
        if (ic->sending && now < ic->send_until_ns)
            ++w->delivered_in_phase;
        hist_record(&ic->res->latency, now > s->sent_at ? now - s->sent_at : 0);
    }
    /* else the count skipped past ours: its acknowledgement was lost, and the increment stays unacknowledged (lost) */
    s->count = n;
    incr_settle(ic, s);
    incr_send(ic, c);
}

static void incr_on_close(fleet_client_t *c)
{
    incr_t *ic = c->fleet->data;
    incr_client_t *s = &ic->clients[c->index];
    incr_settle(ic, s); /* lost with its connection */
    if (s->ready) {
        s->ready = 0;
        --ic->ready;
    }
}

static const fleet_hooks_t incr_hooks = {.on_message = incr_on_message, .on_close = incr_on_close};

static void ready_tick(fleet_t *f)
{
    incr_t *ic = f->data;
    if (ic->ready == f->open)
        f->loop.stop = 1; /* every open client has its count (or none is open) */
}

/* Drops the clients whose increment waited past --timeout: the fleet counts each as an error, the increment as lost. */
static void incr_sweep(incr_t *ic, uint64_t now)
{
    fleet_t *f = &ic->fleet;
    for (unsigned i = 0; i < f->n; ++i) {
        incr_client_t *s = &ic->clients[i];
        if (s->inflight && now - s->sent_at > ic->timeout_ns)
            bws_abort(&f->clients[i].ws, "no count within --timeout after an increment");
    }
}

static void run_tick(fleet_t *f)
{
    incr_t *ic = f->data;
    uint64_t now = f->loop.now_ns;
    if (now >= ic->send_until_ns || f->open == 0) { /* the end, or the server went away */
        f->loop.stop = 1;
        return;
    }
    if (now >= ic->next_sweep_ns) {
        ic->next_sweep_ns = now + INCR_SWEEP_NS;
        incr_sweep(ic, now);
    }
}

static void drain_tick(fleet_t *f)
{
    incr_t *ic = f->data;
    if (ic->inflight == 0 || f->open == 0)
        f->loop.stop = 1; /* drained, or nothing more can arrive */
}

static int incr_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    incr_t *ic = bench_xcalloc(1, sizeof(*ic));
    fleet_t *f = &ic->fleet;
    ic->opts = opts;
    ic->res = res;
    ic->timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
    int r = fleet_init(f, opts, res, opts->connections, opts->rooms, INCR_OUT_MAX, &incr_hooks, ic);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(ic);
        return 1;
    }
    ic->clients = bench_xcalloc(opts->connections, sizeof(*ic->clients));
    res->ws.accounted = 1;
    res->ws.clients_per_room = 1;

    int status = 0;
    unsigned open = fleet_connect_all(f);
    if (open != 0 && !bench_interrupted && ic->ready != f->open) {
        /* the initial counts mostly came with the handshakes; wait for the rest, then drop who has none */
        fleet_run(f, bench_loop_now(&f->loop) + ic->timeout_ns, ready_tick);
        for (unsigned i = 0; i < f->n; ++i)
            if (f->clients[i].ws.state == BWS_OPEN && !ic->clients[i].ready && !bench_interrupted)
                bws_abort(&f->clients[i].ws, "no initial count within --timeout");
    }
    if (open == 0 || (ic->ready == 0 && !bench_interrupted)) {
        fprintf(stderr, "partyload: %s (%s)\n", open == 0 ? "no connection opened" : "no client got its initial count",
                res->first_error[0] != '\0' ? res->first_error : "interrupted");
        status = 1;
    } else if (!bench_interrupted) {
        on_measure_start();
        ic->start_ns = bench_loop_now(&f->loop);
        ic->send_until_ns = ic->start_ns + (uint64_t)(opts->duration_s * 1e9);
        ic->next_sweep_ns = ic->start_ns + INCR_SWEEP_NS;
        ic->sending = 1;
        for (unsigned i = 0; i < f->n; ++i)
            if (ic->clients[i].ready)
                incr_send(ic, &f->clients[i]);
        status = fleet_run(f, ic->send_until_ns + FLEET_TICK_NS, run_tick);
        uint64_t end = bench_loop_now(&f->loop);
        /* the phase is what delivered_in_phase counted: up to the deadline, or to the interruption or the last loss */
        res->duration_s = (double)((end < ic->send_until_ns ? end : ic->send_until_ns) - ic->start_ns) / 1e9;
        ic->sending = 0;
        if (f->open == 0) {
            fprintf(stderr, "partyload: every connection was lost during the run (%s)\n", res->first_error);
            status = 1;
        }
        if (status == 0 && ic->inflight != 0)
            fleet_drain(f, end + (uint64_t)(opts->drain_s * 1e9), drain_tick);
        res->ws.expected = res->ws.sent;
        bench_measure_stop();
    }
    fleet_close_all(f);
    fleet_dispose(f);
    free(ic->clients);
    free(ic);
    return status;
}

static const char *incr_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_ROOMS | BENCH_GIVEN_CLIENTS | BENCH_GIVEN_RATE | BENCH_GIVEN_SIZE | BENCH_GIVEN_TEXT |
                    BENCH_GIVEN_REQUESTS | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_HOLD | BENCH_GIVEN_KEYS | BENCH_GIVEN_SEND))
        return "increments takes --connections (one room each), --duration, --timeout";
    /* what the JSON line reports: one client per room, closed loop (no rate), "increment" as the payload */
    o->rooms = o->connections;
    o->clients = 1;
    o->rate = 0;
    o->size = (unsigned)INCR_MESSAGE_LEN;
    return NULL;
}

const bench_scenario_t bench_scenario_increments = {
    .name = "increments",
    .summary = "C WebSocket clients, one room each, sending \"increment\" to the counter, one in flight: acknowledged writes/s",
    .party = "counter",
    .output = BENCH_OUT_WS,
    .prepare = incr_prepare,
    .run = incr_run,
};
