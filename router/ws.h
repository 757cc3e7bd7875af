/*
 * ws.h — the router's WebSocket connection layer: where a client's message enters partyd.
 *
 * h2o parses the upgrade request and writes the 101; then the socket is exported from h2o and owned here. partyd
 * does its own RFC 6455 framing (wsframe.c) on a compact per-connection record, with:
 *  - one 64 KiB read buffer shared by every connection of the loop (a connection holds input only while a message
 *    spans reads);
 *  - output as a queue of references to refcounted frames: a broadcast is encoded once and shared by all recipients;
 *  - writes coalesced per connection and flushed at the end of a loop pass, at most 128 connections per pass
 *    (ws_flush);
 *  - an output cap: a client that stops reading is closed with 1008 and the others go on; and a cap on the output
 *    queued for every connection together: past it, the connections furthest behind are closed first (1008), as
 *    Redis pairs client output limits with maxmemory;
 *  - a pong answers the latest ping only (RFC 6455 5.5.3): a client that sends pings and never reads holds one;
 *  - pings to idle connections, and an incremental sweep (a slice per tick) that drops those that stop answering.
 * The sockets are watched by a private epoll set that is itself one socket of the h2o loop.
 *
 * A connection is created PENDING (the router is waiting for the room to accept it), attached to its socket after the
 * 101, and reported closed exactly once through on_closed. Records are freed at the end of a loop pass, never inside
 * a callback, so a pointer obtained during a pass stays valid for the whole pass.
 *
 * Every function here runs on the router's loop (the one given to ws_init); none is thread-safe. Out of memory
 * aborts (base.h); socket errors close the connection (on_closed), they are never returned.
 */
#ifndef PARTYD_WS_H
#define PARTYD_WS_H

#include <stddef.h>
#include <stdint.h>

#include <h2o/socket.h>

#include "wsframe.h"

/* One encoded server frame (header + payload), shared by reference between connections' queues. */
typedef struct st_ws_frame_t {
    uint32_t refcnt;
    uint32_t len;
    uint8_t data[];
} ws_frame_t;

/* A new frame with one reference, owned by the caller. */
ws_frame_t *ws_frame_new(int opcode, const void *payload, size_t len);
/* Drops one reference; the last one frees the frame. */
void ws_frame_release(ws_frame_t *f);

typedef struct st_ws_conn_t ws_conn_t;

struct st_ws_conn_t {
    /* ---- the router's fields ---- */
    uint64_t cid;
    struct st_router_room_t *room; /* set while the connection is in a room */
    ws_conn_t *room_prev, *room_next;
    struct st_router_pending_t *pending; /* the held upgrade request, until the 101 is written */
    char *id;                            /* the connection id (_pk) */
    uint16_t shard;
    uint8_t shard_knows; /* the shard holds this connection: it must be told when it closes */
    void *client;        /* the router's per-address record, set in on_socket */
    /* ---- private ---- */
    uint8_t _state;
    uint16_t _flags;
    int _fd;             /* a plain connection's socket, taken from h2o; -1 otherwise */
    h2o_socket_t *_sock; /* a TLS connection's socket, left with h2o (it does the TLS) */
    size_t _inflight;    /* TLS: bytes handed to h2o's write in flight */
    uint32_t _qhead, _qlen, _qcap;
    uint32_t _qoff; /* bytes of the head frame already written */
    size_t _qbytes;
    ws_frame_t **_q;
    ws_frame_t *_pong;  /* the queued pong not yet being written: a newer ping rewrites it */
    uint64_t _last_rx;  /* loop time of the last byte received */
    uint64_t _deadline; /* ping answer due, or closing handshake due */
    ws_conn_t *_dirty_next;
    ws_conn_t *_reap_next;
    ws_conn_t *_all_prev, *_all_next;
    wsframe_parser_t _parser;
};

typedef struct st_ws_callbacks_t {
    /* A whole message from the client (text is valid UTF-8). */
    void (*on_message)(ws_conn_t *conn, int binary, const uint8_t *data, size_t len);
    /* The connection left: the client closed it (clean = 1 after a close handshake), it failed (1002 protocol error,
     * 1006 lost, 1007 bad UTF-8, 1008 slow consumer, 1009 too big), or ws_conn_close was called. Exactly once. */
    void (*on_closed)(ws_conn_t *conn, int code, const char *reason, int clean);
    /* A plain connection's socket `fd` is now the layer's (open = 1: from ws_conn_attach), or is being closed
     * (open = 0, once, before close(2)). TLS sockets stay h2o's and are not reported. May be NULL. */
    void (*on_socket)(ws_conn_t *conn, int fd, int open);
} ws_callbacks_t;

typedef struct st_ws_config_t {
    size_t max_message;
    size_t max_output;       /* per connection */
    size_t max_output_total; /* every connection's queued output together (a shared frame counts for each); 0: none */
    uint32_t ping_ms;
} ws_config_t;

/* Sets the layer up on `loop`; `cb` and `conf` must outlive it. */
void ws_init(h2o_evloop_t *loop, const ws_config_t *conf, const ws_callbacks_t *cb);
/* Closes every socket at once and frees every record (after ws_close_all had its chance). */
void ws_dispose(void);

/* A new PENDING connection, owned by the layer (freed at the end of the pass after it closed or was aborted). Its cid
 * is unique for the life of the process: a table index (O(1) lookups) plus a sequence number, so a stale cid never
 * finds a newer connection. NULL (logged) when 2^24 records are alive: the caller refuses the upgrade. */
ws_conn_t *ws_conn_new(void);
/* The live record with this cid, or NULL; the pointer stays valid until the end of the loop pass. */
ws_conn_t *ws_conn_find(uint64_t cid);
/* The socket is ours after the 101: `leftover` holds bytes h2o read past the request. Output queued while pending is
 * written now. on_closed may run inside this call (the client already sent a close frame, or garbage). */
void ws_conn_attach(ws_conn_t *conn, int fd, uint8_t *leftover, size_t len);
/* The same for a TLS connection: the socket stays an h2o socket (h2o decrypts and encrypts); bytes h2o read past the
 * request are in sock->input (the request itself already consumed). */
void ws_conn_attach_tls(ws_conn_t *conn, h2o_socket_t *sock);
/* Drops a connection that never got its socket (refused, or the client left before the 101). No on_closed. */
void ws_conn_abort(ws_conn_t *conn);
/* Queues a frame (adds a reference). Ignored once a close was queued. May close the connection (1008) when its
 * output passes the cap; on_closed runs inside the call then. */
void ws_conn_send(ws_conn_t *conn, ws_frame_t *frame);
/* Starts the closing handshake with this code and reason; on_closed runs inside the call. Before the socket is
 * attached the close frame is queued and goes out after the 101. */
void ws_conn_close(ws_conn_t *conn, int code, const char *reason);
/* Stops reading from the client (backpressure: its shard is behind) / starts again. */
void ws_conn_pause(ws_conn_t *conn);
void ws_conn_resume(ws_conn_t *conn);
/* Whether the connection can still be sent to (not closing). */
int ws_conn_is_open(const ws_conn_t *conn);

/* End of a loop pass: writes the queued frames of the connections first in line (at most 128 per pass: a big room's
 * fan-out is spread over passes, so that the loop reads in between), frees closed records. */
void ws_flush(void);
/* Bytes queued for every connection together (what max_output_total bounds). */
size_t ws_output_total(void);
/* Connections still wait to be written: the next pass must not sleep. */
int ws_has_output(void);
/* Starts closing every connection (drain). */
void ws_close_all(int code, const char *reason);
/* Records alive (any state). */
size_t ws_count(void);

typedef struct st_ws_stats_t {
    uint64_t open;     /* attached and not yet closed */
    uint64_t accepted; /* attached, ever */
    uint64_t messages_in, messages_out;
    uint64_t bytes_in, bytes_out;
    uint64_t slow_consumers; /* closed with 1008 at their own cap or at the total */
} ws_stats_t;
/* The layer's counters (for /metrics and /admin/node), owned by ws.c and updated in place. */
const ws_stats_t *ws_stats(void);

#endif
