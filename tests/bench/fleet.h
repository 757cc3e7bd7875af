/*
 * fleet.h — the WebSocket clients of one run, in rooms: what broadcast, echo and idle share.
 *
 * Client i joins room i mod R as its (i div R)-th member, on /parties/PARTY/rROOM?_pk=ID with an id unique to the
 * run (partyd's relay leaves out the sender by connection id, so two clients must never share one). Opening them is
 * not measured: at most FLEET_CONNECTING_MAX handshakes are in flight at a time, as a real crowd ramps rather than
 * syn-flooding one listener, and a client that fails to open is an error and stays closed. Once the run is going, a
 * connection that ends is an error too (the server closed it, or broke the protocol); the scenario sees it through
 * its hooks.
 *
 * The fleet owns its loop, its clients and their buffers; the scenario owns the fleet. All on the loop's thread.
 */
#ifndef BENCH_FLEET_H
#define BENCH_FLEET_H

#include <stdint.h>

#include "bench.h"
#include "ws.h"

#define FLEET_CONNECTING_MAX 256
#define FLEET_TICK_NS 1000000u /* 1 ms: the scenarios' send schedule and every deadline */

typedef struct st_fleet_t fleet_t;

typedef struct st_fleet_client_t {
    bws_conn_t ws; /* first: the WebSocket callbacks get &ws and cast back */
    fleet_t *fleet;
    unsigned index; /* 0 .. n-1 */
    unsigned room;  /* index mod rooms */
    unsigned local; /* index div rooms: its place in the room */
} fleet_client_t;

typedef struct st_fleet_hooks_t {
    /* (all optional) a client opened; a message arrived (data borrowed); a client that had opened closed, after the
     * fleet counted it (an error unless the fleet was closing) */
    void (*on_open)(fleet_client_t *c);
    void (*on_message)(fleet_client_t *c, int binary, const uint8_t *data, size_t len);
    void (*on_close)(fleet_client_t *c);
} fleet_hooks_t;

typedef enum en_fleet_phase_t {
    FLEET_CONNECTING,
    FLEET_RUNNING,
    FLEET_CLOSING,
} fleet_phase_t;

struct st_fleet_t {
    const bench_opts_t *opts;
    bench_result_t *res;
    const fleet_hooks_t *hooks;
    void *data; /* the scenario's */
    bench_loop_t loop;
    bws_ctx_t ctx;
    fleet_client_t *clients;
    unsigned n, rooms;
    unsigned open;       /* clients open now */
    unsigned *room_open; /* per room, clients open now */
    fleet_phase_t phase;
    unsigned _next;    /* the next client to connect */
    unsigned _pending; /* handshakes in flight */
    uint64_t _until_ns;
    void (*_tick)(fleet_t *f);
    uint64_t _next_sweep_ns;
};

/*
 * Sets up n clients in `rooms` rooms (nothing connects yet); each may queue up to out_max bytes. `opts`, `res`, `hooks`
 * are borrowed for the fleet's life. Returns 0, or -errno when the loop cannot be created (nothing to dispose then).
 */
int fleet_init(fleet_t *f, const bench_opts_t *opts, bench_result_t *res, unsigned n, unsigned rooms, size_t out_max,
               const fleet_hooks_t *hooks, void *data);
/* Opens every client (bounded by opts->timeout_s for each handshake); sets res->ws.connect_s. Returns how many are
 * open. Interrupted by SIGINT/SIGTERM. */
unsigned fleet_connect_all(fleet_t *f);
/*
 * Runs the loop until `until_ns` (CLOCK_MONOTONIC), an interruption, or `tick` setting f->loop.stop; `tick` (may be
 * NULL) is called every FLEET_TICK_NS. Returns 0, or 1 when epoll failed.
 */
int fleet_run(fleet_t *f, uint64_t until_ns, void (*tick)(fleet_t *f));
/*
 * fleet_run for the wait after the last send, for what is still in flight: it runs even after a ^C (it is short, and
 * ends when everything arrived), or what is in flight would look lost; a second ^C cuts it short. The interruption
 * stays reported either way.
 */
void fleet_drain(fleet_t *f, uint64_t until_ns, void (*tick)(fleet_t *f));
/* Closes every client with 1000 and waits for the replies, up to ctx.close_timeout_ns (1 s), then drops the rest. */
void fleet_close_all(fleet_t *f);
/* Frees everything; the clients must be closed (fleet_close_all). */
void fleet_dispose(fleet_t *f);

#endif
