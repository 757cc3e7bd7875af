/*
 * broadcast.c — the "broadcast" scenario: R rooms × C WebSocket clients on /parties/PARTY/rN, each client sending M
 * messages/s for the duration, every message fanned out by the party (relay: to every other client of the room). Its
 * engine (bench_fanout_run) also runs echo.c, with rooms of two and one sender each.
 *
 * Phases: open every client (fleet.h; not measured, its time is connect_s), send for the duration, stop sending and
 * wait for what is in flight (--drain, 2 s unless --timeout says otherwise, or until every expected delivery came),
 * close every client with 1000.
 *
 * Sending: a sender's k-th message is due at t0 + k/M, t0 staggered over one period across the senders so that they
 * do not all send in the same millisecond. Every 1 ms tick each sender writes what is due, all of it in one write.
 * A message carries its sender's index (u32), the sender's sequence number (u32) and the CLOCK_MONOTONIC time it was
 * written (u64 ns), little-endian, then padding up to --size: binary frames, or with --text the same three numbers
 * as 32 hex digits and '.' padding in text frames (partyd checks text is UTF-8). Latency is receive time minus that
 * time (one process, one clock), for each message a receiver gets for the first time.
 *
 * Checking: each receiver keeps, per sender of its room, the next sequence number it expects and a 64-message window
 * below it. The next one is delivered; a later one is delivered and leaves a gap; an earlier one inside the window
 * not seen yet is delivered late (out_of_order), one already seen is duplicated (as is one older than the window:
 * it cannot be told apart). expected counts, per message sent, the other clients of the sender's room open at that
 * moment; lost = expected − delivered. delivered_per_s is what arrived before the sending stopped, over the sending
 * phase, so a server that only keeps up by queueing does not look faster than it is.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "fleet.h"

#define FANOUT_OUT_MAX (4u << 20)     /* a client's queued output: seconds of its messages; beyond, it falls behind */
#define FANOUT_TRACKS_MAX (16u << 20) /* receiver × sender pairs we track (16 B each) */
#define FANOUT_BURST_MAX 1000         /* messages one sender writes in one tick, catching up after a stall */
#define FANOUT_HEADER_BINARY 16
#define FANOUT_HEADER_TEXT 32

typedef struct st_fanout_track_t {
    uint32_t next;   /* the sequence number expected next */
    uint64_t window; /* bit i: sequence number next-1-i was received */
} fanout_track_t;

typedef struct st_fanout_sender_t {
    uint64_t t0_ns;       /* when its message 0 is due */
    uint64_t next_due_ns; /* when its message `seq` is due */
    uint32_t seq;         /* its next sequence number: messages it sent */
} fanout_sender_t;

typedef struct st_fanout_t {
    fleet_t fleet;
    const bench_opts_t *opts;
    bench_result_t *res;
    bench_fanout_t plan;
    fanout_sender_t *senders; /* per client (only the first plan.senders of each room send) */
    fanout_track_t *tracks;   /* per client, plan.senders of them: what it received from each sender of its room */
    uint8_t *payload;         /* one message, rebuilt for each send (only its header changes) */
    double period_ns;
    uint64_t start_ns, send_until_ns;
    int sending;
} fanout_t;

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; ++i)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; ++i)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static void put_hex(uint8_t *p, uint64_t v, int digits)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; --i, v >>= 4)
        p[i] = (uint8_t)hex[v & 15];
}

/* Reads `digits` hex digits. Returns 0, or -1 on anything else. */
static int get_hex(const uint8_t *p, int digits, uint64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < digits; ++i) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else
            return -1;
        v = v << 4 | (uint64_t)d;
    }
    *out = v;
    return 0;
}

static void fanout_error(fanout_t *fo, const char *what, const char *detail)
{
    ++fo->res->errors;
    bench_note_error(fo->res, what, detail);
}

/* Writes what is due of one sender's messages, in one write. */
static void fanout_send_due(fanout_t *fo, fleet_client_t *c, uint64_t now)
{
    fanout_sender_t *s = &fo->senders[c->index];
    if (now < s->next_due_ns || c->ws.state != BWS_OPEN)
        return;
    uint64_t due = (uint64_t)((double)(now - s->t0_ns) / fo->period_ns) + 1;
    uint64_t n = due > s->seq ? due - s->seq : 0;
    if (n > FANOUT_BURST_MAX)
        n = FANOUT_BURST_MAX;
    const bench_opts_t *o = fo->opts;
    bench_ws_result_t *w = &fo->res->ws;
    /* the clock once per batch: the messages of a batch leave in the same write anyway */
    uint64_t t = bench_loop_now(&fo->fleet.loop);
    uint64_t peers = fo->fleet.room_open[c->room] - 1;
    for (uint64_t k = 0; k < n; ++k) {
        if (o->text) {
            put_hex(fo->payload, c->index, 8);
            put_hex(fo->payload + 8, s->seq, 8);
            put_hex(fo->payload + 16, t, 16);
        } else {
            put_le32(fo->payload, c->index);
            put_le32(fo->payload + 4, s->seq);
            put_le64(fo->payload + 8, t);
        }
        int r = bws_queue(&c->ws, o->text ? BWS_OP_TEXT : BWS_OP_BINARY, fo->payload, o->size);
        if (r != 0)
            break; /* -ENOBUFS: the server stopped reading from us; the sender falls behind and catches up later */
        ++s->seq;
        ++w->sent;
        w->expected += peers;
    }
    bws_flush(&c->ws);
    s->next_due_ns = s->t0_ns + (uint64_t)((double)s->seq * fo->period_ns);
}

static void fanout_on_message(fleet_client_t *c, int binary, const uint8_t *data, size_t len)
{
    fanout_t *fo = c->fleet->data;
    const bench_opts_t *o = fo->opts;
    bench_ws_result_t *w = &fo->res->ws;
    uint64_t now = c->fleet->loop.now_ns;
    if (len != o->size || binary == o->text) {
        char detail[96];
        snprintf(detail, sizeof(detail), "%s of %zu bytes; partyload sends %s of %u", binary ? "binary" : "text", len,
                 o->text ? "text" : "binary", o->size);
        fanout_error(fo, "a message partyload did not send", detail);
        return;
    }
    uint64_t sender, seq, sent_at;
    if (o->text) {
        if (get_hex(data, 8, &sender) != 0 || get_hex(data + 8, 8, &seq) != 0 || get_hex(data + 16, 16, &sent_at) != 0) {
            fanout_error(fo, "a message partyload did not send", "its header is not hex");
            return;
        }
    } else {
        sender = get_le32(data);
        seq = get_le32(data + 4);
        sent_at = get_le64(data + 8);
    }
    const fleet_client_t *from = sender < fo->fleet.n ? &fo->fleet.clients[sender] : NULL;
    if (from == NULL || from->room != c->room || from->local >= fo->plan.senders || from == c) {
        fanout_error(fo, "a message from no sender of the room", from == c ? "its own" : "another room's, or nobody's");
        return;
    }
    fanout_track_t *t = &fo->tracks[(size_t)c->index * fo->plan.senders + from->local];
    uint32_t s = (uint32_t)seq;
    if (s >= t->next) {
        /* the next one, or a later one past a gap that may still fill in */
        uint32_t shift = s - t->next + 1;
        t->window = shift >= 64 ? 1 : (t->window << shift) | 1;
        t->next = s + 1;
    } else {
        uint32_t back = t->next - 1 - s;
        if (back >= 64 || (t->window >> back & 1)) {
            ++w->duplicated;
            return;
        }
        t->window |= (uint64_t)1 << back;
        ++w->out_of_order;
    }
    ++w->delivered;
    if (fo->sending)
        ++w->delivered_in_phase;
    hist_record(&fo->res->latency, now > sent_at ? now - sent_at : 0);
    uint64_t rx = c->fleet->loop.rx_ns;
    if (rx != 0)
        hist_record(&fo->res->arrival, rx > sent_at ? rx - sent_at : 0);
}

static void fanout_tick(fleet_t *f)
{
    fanout_t *fo = f->data;
    uint64_t now = f->loop.now_ns;
    if (fo->sending) {
        if (now >= fo->send_until_ns || f->open == 0) { /* the end, or the server went away */
            f->loop.stop = 1;
            return;
        }
        for (unsigned i = 0; i < f->n; ++i)
            if (f->clients[i].local < fo->plan.senders)
                fanout_send_due(fo, &f->clients[i], now);
    } else if (fo->res->ws.delivered >= fo->res->ws.expected || f->open == 0) {
        f->loop.stop = 1; /* drained, or nothing more can arrive */
    }
}

static const fleet_hooks_t fanout_hooks = {.on_message = fanout_on_message};

int bench_fanout_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void), const bench_fanout_t *plan)
{
    unsigned n = plan->rooms * plan->clients;
    if ((uint64_t)n * plan->senders > FANOUT_TRACKS_MAX) {
        fprintf(stderr, "partyload: %u clients × %u senders per room is more than partyload tracks (%u pairs)\n", n, plan->senders,
                FANOUT_TRACKS_MAX);
        return 1;
    }
    fanout_t *fo = bench_xcalloc(1, sizeof(*fo));
    fo->opts = opts;
    fo->res = res;
    fo->plan = *plan;
    fo->period_ns = 1e9 / plan->rate;
    size_t out_max = FANOUT_OUT_MAX;
    if (out_max < (size_t)16 * (opts->size + BWS_HEADER_MAX))
        out_max = (size_t)16 * (opts->size + BWS_HEADER_MAX);
    int r = fleet_init(&fo->fleet, opts, res, n, plan->rooms, out_max, &fanout_hooks, fo);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(fo);
        return 1;
    }
    fo->fleet.loop.rx_stamps = 1;
    fo->senders = bench_xcalloc(n, sizeof(*fo->senders));
    fo->tracks = bench_xcalloc((size_t)n * plan->senders, sizeof(*fo->tracks));
    fo->payload = bench_xcalloc(1, opts->size);
    /* padding: the same bytes for every message, written once */
    unsigned header = opts->text ? FANOUT_HEADER_TEXT : FANOUT_HEADER_BINARY;
    for (unsigned i = header; i < opts->size; ++i)
        fo->payload[i] = opts->text ? '.' : (uint8_t)i;
    res->ws.accounted = 1;
    res->ws.clients_per_room = plan->clients;

    int status = 0;
    unsigned open = fleet_connect_all(&fo->fleet);
    if (open == 0) {
        fprintf(stderr, "partyload: no connection opened (%s)\n", res->first_error[0] != '\0' ? res->first_error : "interrupted");
        status = 1;
    } else if (!bench_interrupted) {
        on_measure_start();
        fo->start_ns = bench_loop_now(&fo->fleet.loop);
        fo->send_until_ns = fo->start_ns + (uint64_t)(opts->duration_s * 1e9);
        unsigned nsenders = plan->rooms * plan->senders, k = 0;
        for (unsigned i = 0; i < n; ++i) {
            if (fo->fleet.clients[i].local >= plan->senders)
                continue;
            fanout_sender_t *s = &fo->senders[i];
            s->t0_ns = fo->start_ns + (uint64_t)(fo->period_ns * k++ / nsenders);
            s->next_due_ns = s->t0_ns;
        }
        fo->sending = 1;
        status = fleet_run(&fo->fleet, fo->send_until_ns + FLEET_TICK_NS, fanout_tick);
        uint64_t end = bench_loop_now(&fo->fleet.loop);
        res->duration_s = (double)(end - fo->start_ns) / 1e9;
        fo->sending = 0;
        if (fo->fleet.open == 0) {
            fprintf(stderr, "partyload: every connection was lost during the run (%s)\n", res->first_error);
            status = 1;
        }
        if (status == 0 && fo->fleet.open != 0)
            fleet_drain(&fo->fleet, end + (uint64_t)(opts->drain_s * 1e9), fanout_tick);
        bench_measure_stop();
    }
    fleet_close_all(&fo->fleet);
    fleet_dispose(&fo->fleet);
    free(fo->senders);
    free(fo->tracks);
    free(fo->payload);
    free(fo);
    return status;
}

static const char *broadcast_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_CONNECTIONS | BENCH_GIVEN_REQUESTS | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_HOLD | BENCH_GIVEN_KEYS |
                    BENCH_GIVEN_SEND))
        return "broadcast takes --rooms, --clients, --rate, --size, --text, --duration (connections = rooms × clients)";
    if (!(o->given & BENCH_GIVEN_ROOMS))
        o->rooms = 1;
    if (!(o->given & BENCH_GIVEN_CLIENTS))
        o->clients = 10;
    if (!(o->given & BENCH_GIVEN_RATE))
        o->rate = 10;
    if (o->clients < 2)
        return "--clients: a room needs two clients for a message to reach anyone";
    if ((uint64_t)o->rooms * o->clients > 100000)
        return "--rooms × --clients: at most 100000 connections";
    o->connections = o->rooms * o->clients;
    if (o->size < (o->text ? FANOUT_HEADER_TEXT : FANOUT_HEADER_BINARY))
        return o->text ? "--size: at least 32 with --text (the header is 32 hex digits)" : "--size: at least 16 (the header)";
    return NULL;
}

static int broadcast_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    bench_fanout_t plan = {.rooms = opts->rooms, .clients = opts->clients, .senders = opts->clients, .rate = opts->rate};
    return bench_fanout_run(opts, res, on_measure_start, &plan);
}

const bench_scenario_t bench_scenario_broadcast = {
    .name = "broadcast",
    .summary = "R rooms × C WebSocket clients, each sending M msgs/s; every message fans out to its room",
    .party = "relay",
    .output = BENCH_OUT_WS,
    .prepare = broadcast_prepare,
    .run = broadcast_run,
};
