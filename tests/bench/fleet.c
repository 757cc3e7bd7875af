/*
 * fleet.c — see fleet.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fleet.h"

#define FLEET_SWEEP_NS 20000000u /* 20 ms between deadline sweeps: handshakes and closes time out in seconds */

static void fleet_start_more(fleet_t *f);

static void client_on_open(bws_conn_t *ws)
{
    fleet_client_t *c = (fleet_client_t *)ws;
    fleet_t *f = c->fleet;
    ++f->open;
    ++f->room_open[c->room];
    if (f->phase == FLEET_CONNECTING) {
        --f->_pending;
        fleet_start_more(f);
    }
    if (f->hooks->on_open != NULL)
        f->hooks->on_open(c);
}

static void client_on_message(bws_conn_t *ws, int binary, const uint8_t *data, size_t len)
{
    fleet_client_t *c = (fleet_client_t *)ws;
    if (c->fleet->hooks->on_message != NULL)
        c->fleet->hooks->on_message(c, binary, data, len);
}

static void client_on_close(bws_conn_t *ws, int code, const char *reason, const char *err)
{
    fleet_client_t *c = (fleet_client_t *)ws;
    fleet_t *f = c->fleet;
    int was_open = ws->opened_ns != 0;
    if (was_open) {
        --f->open;
        --f->room_open[c->room];
    } else if (f->phase == FLEET_CONNECTING) {
        --f->_pending;
    }
    if (f->phase != FLEET_CLOSING) {
        /* before the teardown, every end is unexpected: a failed handshake, or the server dropping a client */
        ++f->res->errors;
        char detail[200];
        if (err != NULL)
            snprintf(detail, sizeof(detail), "%s", err);
        else
            snprintf(detail, sizeof(detail), "closed by the server with %d \"%s\"", code, reason);
        bench_note_error(f->res, was_open ? "a connection ended during the run" : "a connection failed to open", detail);
    }
    if (f->phase == FLEET_CONNECTING)
        fleet_start_more(f);
    if (was_open && f->hooks->on_close != NULL)
        f->hooks->on_close(c);
}

static const bws_cb_t client_cb = {client_on_open, client_on_message, client_on_close};

int fleet_init(fleet_t *f, const bench_opts_t *opts, bench_result_t *res, unsigned n, unsigned rooms, size_t out_max,
               const fleet_hooks_t *hooks, void *data)
{
    memset(f, 0, sizeof(*f));
    int r = bench_loop_init(&f->loop);
    if (r != 0)
        return r;
    f->opts = opts;
    f->res = res;
    f->hooks = hooks;
    f->data = data;
    f->n = n;
    f->rooms = rooms;
    bws_ctx_init(&f->ctx);
    f->ctx.addr = opts->addr;
    snprintf(f->ctx.host, sizeof(f->ctx.host), "%s:%d", opts->host, opts->port);
    f->ctx.handshake_timeout_ns = (uint64_t)(opts->timeout_s * 1e9);
    f->clients = bench_xcalloc(n, sizeof(*f->clients));
    f->room_open = bench_xcalloc(rooms, sizeof(*f->room_open));
    for (unsigned i = 0; i < n; ++i) {
        fleet_client_t *c = &f->clients[i];
        bws_conn_init(&c->ws, &f->loop, &f->ctx, &client_cb, out_max);
        c->fleet = f;
        c->index = i;
        c->room = i % rooms;
        c->local = i / rooms;
    }
    return 0;
}

/* Starts handshakes up to the cap. */
static void fleet_start_more(fleet_t *f)
{
    /* the pid makes ids unique to this run: a client left over from another run cannot take one over */
    char target[200];
    while (f->_pending < FLEET_CONNECTING_MAX && f->_next < f->n && !bench_interrupted) {
        fleet_client_t *c = &f->clients[f->_next++];
        snprintf(target, sizeof(target), "/parties/%s/r%u?_pk=pl%d-%u", f->opts->party, c->room, (int)getpid(), c->index);
        int r = bws_connect(&c->ws, target);
        if (r != 0) {
            ++f->res->errors;
            bench_note_error(f->res, "connect", strerror(-r));
            continue;
        }
        ++f->_pending;
    }
}

static void fleet_sweep(fleet_t *f)
{
    uint64_t now = f->loop.now_ns;
    for (unsigned i = 0; i < f->n; ++i)
        if (f->clients[i].ws.state != BWS_OPEN && f->clients[i].ws.state != BWS_CLOSED)
            bws_expire(&f->clients[i].ws, now);
}

static void fleet_on_tick(bench_loop_t *loop, void *data)
{
    fleet_t *f = data;
    if (bench_interrupted || loop->now_ns >= f->_until_ns) {
        loop->stop = 1;
        return;
    }
    if (loop->now_ns >= f->_next_sweep_ns) {
        f->_next_sweep_ns = loop->now_ns + FLEET_SWEEP_NS;
        fleet_sweep(f);
    }
    if (f->_tick != NULL)
        f->_tick(f);
}

int fleet_run(fleet_t *f, uint64_t until_ns, void (*tick)(fleet_t *f))
{
    f->_until_ns = until_ns;
    f->_tick = tick;
    f->loop.stop = 0;
    int r = bench_loop_run(&f->loop, FLEET_TICK_NS, fleet_on_tick, f);
    if (r != 0) {
        fprintf(stderr, "partyload: epoll_wait: %s\n", strerror(-r));
        return 1;
    }
    return 0;
}

void fleet_drain(fleet_t *f, uint64_t until_ns, void (*tick)(fleet_t *f))
{
    int interrupted = bench_interrupted;
    bench_interrupted = 0;
    fleet_run(f, until_ns, tick);
    bench_interrupted = bench_interrupted || interrupted;
}

static void connect_tick(fleet_t *f)
{
    if (f->_next == f->n && f->_pending == 0)
        f->loop.stop = 1;
}

unsigned fleet_connect_all(fleet_t *f)
{
    f->phase = FLEET_CONNECTING;
    uint64_t start = bench_loop_now(&f->loop);
    fleet_start_more(f);
    /* each handshake has its own deadline; this one only guards against a bug leaving the loop running forever */
    uint64_t bound = start + (uint64_t)((f->opts->timeout_s + 1) * 1e9) * (f->n / FLEET_CONNECTING_MAX + 1);
    if (f->_pending != 0 || f->_next < f->n)
        fleet_run(f, bound, connect_tick);
    f->res->ws.connect_s = (double)(bench_loop_now(&f->loop) - start) / 1e9;
    f->phase = FLEET_RUNNING;
    /* what never started (interrupted) or is still pending (the bound) is dropped */
    for (unsigned i = 0; i < f->n; ++i)
        if (f->clients[i].ws.state != BWS_OPEN)
            bws_abort(&f->clients[i].ws, "not open when the run started");
    return f->open;
}

static void close_tick(fleet_t *f)
{
    if (f->open == 0)
        f->loop.stop = 1;
}

void fleet_close_all(fleet_t *f)
{
    f->phase = FLEET_CLOSING;
    bench_loop_now(&f->loop);
    for (unsigned i = 0; i < f->n; ++i)
        bws_close(&f->clients[i].ws, 1000, "");
    if (f->open != 0) {
        /* PartyKit's runtime never answers: wait for the close timeout at most, then drop what is left */
        int interrupted = bench_interrupted;
        bench_interrupted = 0;
        fleet_run(f, f->loop.now_ns + f->ctx.close_timeout_ns + FLEET_SWEEP_NS * 2, close_tick);
        bench_interrupted = bench_interrupted || interrupted;
    }
    for (unsigned i = 0; i < f->n; ++i)
        bws_abort(&f->clients[i].ws, "dropped at the end of the run");
}

void fleet_dispose(fleet_t *f)
{
    for (unsigned i = 0; i < f->n; ++i)
        bws_conn_dispose(&f->clients[i].ws);
    free(f->clients);
    free(f->room_open);
    bench_loop_dispose(&f->loop);
    f->clients = NULL;
    f->room_open = NULL;
}
