/*
 * churn.c — the "churn" scenario: WebSocket connects and disconnects per second.
 *
 * --connections slots, each in a loop for the duration: connect, upgrade (timed: connect start → 101), with --send
 * one message of --size bytes, then the closing handshake (close 1000), and at once the next connection. As an
 * application does, a slot does not wait for the server's close frame before it opens its next connection: the
 * closing one finishes in the background (the socket is closed when the server's close arrives, or after 100 ms
 * without one — PartyKit's runtime never answers: closes_unanswered counts those), and a slot has up to
 * CHURN_LINGER connections, one opening and the others closing; only when all of them are still closing does it
 * wait. Slot i's k-th connection goes to room (i + k·S) mod R, so the slots visit the rooms in turn (by default
 * R = S: a room per slot). A failed connect, a refused upgrade or a dropped connection is an error, and that slot
 * waits 100 ms before it tries again (a server that is gone is not hammered in a busy loop). The measured phase is the
 * whole run; connections still opening at the end do not count. A run in which upgrades stopped completing for the
 * last second fails (exit 1): the server went away.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "ws.h"

#define CHURN_TICK_NS 5000000u         /* 5 ms: deadlines and retries */
#define CHURN_RETRY_NS 100000000u      /* after an error */
#define CHURN_GONE_NS 1000000000u      /* no upgrade for this long at the end: the server went away */
#define CHURN_LINGER 4                 /* connections per slot: one opening, the others may still be closing */
#define CHURN_CLOSE_WAIT_NS 100000000u /* the "short timeout" for the server's close frame */

typedef struct st_churn_t churn_t;
typedef struct st_churn_slot_t churn_slot_t;

typedef struct st_churn_conn_t {
    bws_conn_t ws; /* first: the callbacks get &ws and cast back */
    churn_slot_t *slot;
} churn_conn_t;

struct st_churn_slot_t {
    churn_t *ch;
    unsigned index;
    churn_conn_t conns[CHURN_LINGER]; /* used in turn: the others may still be closing */
    unsigned cur;                     /* the one connecting or open */
    uint64_t k;                       /* connections this slot made: picks the room */
    uint64_t retry_at;                /* after an error: when to connect again */
};

struct st_churn_t {
    const bench_opts_t *opts;
    bench_result_t *res;
    bench_loop_t loop;
    bws_ctx_t ctx;
    churn_slot_t *slots;
    uint8_t *payload;
    int running;
    uint64_t deadline_ns;
    uint64_t connects, closes, unanswered;
    uint64_t last_connect_ns; /* the last upgrade that completed */
};

/* Starts the slot's next connection, unless its connection for it is still closing (its close ends the wait). */
static void churn_connect(churn_slot_t *s)
{
    churn_t *ch = s->ch;
    churn_conn_t *c = &s->conns[s->cur];
    if (c->ws.state != BWS_CLOSED || !ch->running)
        return;
    char target[200];
    unsigned room = (unsigned)((s->index + s->k * ch->opts->connections) % ch->opts->rooms);
    snprintf(target, sizeof(target), "/parties/%s/r%u?_pk=pl%d-%u", ch->opts->party, room, (int)getpid(), s->index);
    ++s->k;
    int r = bws_connect(&c->ws, target);
    if (r != 0) {
        ++ch->res->errors;
        bench_note_error(ch->res, "connect", strerror(-r));
        s->retry_at = ch->loop.now_ns + CHURN_RETRY_NS;
    }
}

static void churn_on_open(bws_conn_t *ws)
{
    churn_conn_t *c = (churn_conn_t *)ws;
    churn_slot_t *s = c->slot;
    churn_t *ch = s->ch;
    if (!ch->running) {
        bws_close(ws, 1000, "");
        return;
    }
    ++ch->connects;
    ch->last_connect_ns = ws->opened_ns;
    hist_record(&ch->res->latency, ws->opened_ns - ws->started_ns);
    if (ch->opts->send && bws_queue(ws, ch->opts->text ? BWS_OP_TEXT : BWS_OP_BINARY, ch->payload, ch->opts->size) == 0)
        ++ch->res->ws.sent;
    bws_close(ws, 1000, ""); /* the message and the close leave in one write */
    /* as an application would, open the next one without waiting for the server's close */
    s->cur = (s->cur + 1) % CHURN_LINGER;
    churn_connect(s);
}

static void churn_on_message(bws_conn_t *ws, int binary, const uint8_t *data, size_t len)
{
    (void)binary, (void)data, (void)len;
    churn_conn_t *c = (churn_conn_t *)ws;
    ++c->slot->ch->res->ws.delivered; /* another slot's message, relayed while this one was in the room */
}

static void churn_on_close(bws_conn_t *ws, int code, const char *reason, const char *err)
{
    (void)reason;
    churn_conn_t *c = (churn_conn_t *)ws;
    churn_slot_t *s = c->slot;
    churn_t *ch = s->ch;
    if (!ch->running)
        return;
    if (err != NULL) {
        ++ch->res->errors;
        bench_note_error(ch->res, ws->opened_ns != 0 ? "a connection ended badly" : "a connection failed to open", err);
        if (c == &s->conns[s->cur])
            s->retry_at = ch->loop.now_ns + CHURN_RETRY_NS; /* the tick reconnects */
        return;
    }
    ++ch->closes;
    if (code == 0)
        ++ch->unanswered;
    if (c == &s->conns[s->cur] && ch->loop.now_ns >= s->retry_at)
        churn_connect(s); /* the slot was waiting for this one to finish closing */
}

static const bws_cb_t churn_cb = {churn_on_open, churn_on_message, churn_on_close};

static void churn_tick(bench_loop_t *loop, void *data)
{
    churn_t *ch = data;
    uint64_t now = loop->now_ns;
    if (ch->running && (now >= ch->deadline_ns || bench_interrupted)) {
        loop->stop = 1;
        return;
    }
    unsigned busy = 0;
    for (unsigned i = 0; i < ch->opts->connections; ++i) {
        churn_slot_t *s = &ch->slots[i];
        for (unsigned k = 0; k < CHURN_LINGER; ++k) {
            bws_expire(&s->conns[k].ws, now);
            busy += s->conns[k].ws.state != BWS_CLOSED;
        }
        if (ch->running && s->conns[s->cur].ws.state == BWS_CLOSED && now >= s->retry_at)
            churn_connect(s);
    }
    if (!ch->running && busy == 0)
        loop->stop = 1;
}

static const char *churn_prepare(bench_opts_t *o)
{
    if (o->given & (BENCH_GIVEN_CLIENTS | BENCH_GIVEN_RATE | BENCH_GIVEN_REQUESTS | BENCH_GIVEN_PIPELINE | BENCH_GIVEN_KEYS |
                    BENCH_GIVEN_HOLD))
        return "churn takes --connections, --rooms, --duration, --send, --size, --text";
    if (!(o->given & BENCH_GIVEN_ROOMS))
        o->rooms = o->connections;
    o->rate = 0;
    return NULL;
}

static int churn_run(const bench_opts_t *opts, bench_result_t *res, void (*on_measure_start)(void))
{
    churn_t *ch = bench_xcalloc(1, sizeof(*ch));
    ch->opts = opts;
    ch->res = res;
    int r = bench_loop_init(&ch->loop);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_create1: %s\n", strerror(-r));
        free(ch);
        return 1;
    }
    bws_ctx_init(&ch->ctx);
    ch->ctx.addr = opts->addr;
    snprintf(ch->ctx.host, sizeof(ch->ctx.host), "%s:%d", opts->host, opts->port);
    ch->ctx.handshake_timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
    ch->payload = bench_xcalloc(1, opts->size);
    memset(ch->payload, opts->text ? 'x' : 0x5a, opts->size);
    ch->ctx.close_timeout_ns = CHURN_CLOSE_WAIT_NS;
    ch->slots = bench_xcalloc(opts->connections, sizeof(*ch->slots));
    for (unsigned i = 0; i < opts->connections; ++i) {
        churn_slot_t *s = &ch->slots[i];
        s->ch = ch;
        s->index = i;
        for (unsigned k = 0; k < CHURN_LINGER; ++k) {
            bws_conn_init(&s->conns[k].ws, &ch->loop, &ch->ctx, &churn_cb, 2 * (opts->size + BWS_HEADER_MAX) + 4096);
            s->conns[k].slot = s;
        }
    }
    res->ws.clients_per_room = (opts->connections + opts->rooms - 1) / opts->rooms;

    on_measure_start();
    uint64_t start = bench_loop_now(&ch->loop);
    ch->deadline_ns = start + (uint64_t)(opts->duration_s * 1e9);
    ch->running = 1;
    for (unsigned i = 0; i < opts->connections; ++i)
        churn_connect(&ch->slots[i]);
    int status = 0;
    r = bench_loop_run(&ch->loop, CHURN_TICK_NS, churn_tick, ch);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_wait: %s\n", strerror(-r));
        status = 1;
    }
    uint64_t end = bench_loop_now(&ch->loop);
    res->duration_s = (double)(end - start) / 1e9;
    bench_measure_stop();

    /* the teardown: what is open closes cleanly, what is opening is dropped; at most the close timeout */
    ch->running = 0;
    for (unsigned i = 0; i < opts->connections; ++i)
        for (unsigned k = 0; k < CHURN_LINGER; ++k)
            bws_close(&ch->slots[i].conns[k].ws, 1000, "");
    ch->loop.stop = 0;
    bench_loop_run(&ch->loop, CHURN_TICK_NS, churn_tick, ch);
    for (unsigned i = 0; i < opts->connections; ++i) {
        for (unsigned k = 0; k < CHURN_LINGER; ++k) {
            bws_abort(&ch->slots[i].conns[k].ws, "dropped at the end of the run");
            bws_conn_dispose(&ch->slots[i].conns[k].ws);
        }
    }

    bench_field(res, "\"connects\":%llu,\"connects_per_s\":%.1f", (unsigned long long)ch->connects,
                res->duration_s > 0 ? (double)ch->connects / res->duration_s : 0.0);
    bench_field(res, "\"closes\":%llu,\"closes_unanswered\":%llu", (unsigned long long)ch->closes,
                (unsigned long long)ch->unanswered);
    if (ch->connects == 0) {
        fprintf(stderr, "partyload: no connection completed its upgrade (%s)\n",
                res->first_error[0] != '\0' ? res->first_error : "no error seen");
        status = 1;
    } else if (end - ch->last_connect_ns > CHURN_GONE_NS && !bench_interrupted) {
        /* connects stopped working before the end: what was measured does not describe the whole duration */
        fprintf(stderr, "partyload: no upgrade completed in the last %.1f s of the run (%s)\n",
                (double)(end - ch->last_connect_ns) / 1e9, res->first_error[0] != '\0' ? res->first_error : "no error seen");
        status = 1;
    }
    bench_loop_dispose(&ch->loop);
    free(ch->slots);
    free(ch->payload);
    free(ch);
    return status;
}

const bench_scenario_t bench_scenario_churn = {
    .name = "churn",
    .summary = "C slots each connecting, upgrading, (sending one message,) closing, again: connects per second",
    .party = "relay",
    .output = BENCH_OUT_WS,
    .prepare = churn_prepare,
    .run = churn_run,
};
