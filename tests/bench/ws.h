/*
 * ws.h — partyload's WebSocket client (RFC 6455), on top of a loop connection (loop.h).
 *
 * Two layers:
 *  - the frame codec, pure and without I/O: bws_parse reads server frames, bws_frame_put writes client frames, masked.
 *    The unit test drives it directly (test_bench_ws.c);
 *  - bws_conn_t, a client connection: the upgrade request, the 101 and its Sec-WebSocket-Accept, then frames — pings
 *    answered with pongs, the closing handshake in both directions, protocol errors closed with 1002/1009.
 *
 * The parser keeps no partial frame of its own: it consumes whole frames from the connection's input buffer and leaves
 * an incomplete one there for the next read (as http.c does with responses). A split anywhere is therefore only a
 * shorter input, and a frame that is not fragmented is handed over where it lies, without a copy. Only a fragmented
 * message is copied, into a reassembly buffer that grows to the largest message seen and is then reused: after the
 * first few messages nothing is allocated per message, in either direction.
 *
 * Everything runs on the loop's one thread.
 */
#ifndef BENCH_WS_H
#define BENCH_WS_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"

#define BWS_OP_CONT 0x0
#define BWS_OP_TEXT 0x1
#define BWS_OP_BINARY 0x2
#define BWS_OP_CLOSE 0x8
#define BWS_OP_PING 0x9
#define BWS_OP_PONG 0xa

/* the longest client frame header: 2 bytes, a 64-bit length, the 4-byte masking key */
#define BWS_HEADER_MAX 14
/* the default cap of a message from the server: partyd's default limits.message_bytes (PartyKit's is the same) */
#define BWS_MESSAGE_MAX_DEFAULT (1024 * 1024)

/* ---- the codec ---- */

typedef struct st_bws_parser_t {
    size_t max_message; /* a message (all its fragments) longer than this is a 1009 error */
    /* the fragmented message being reassembled: its opcode (0: none), and the payload so far (owned) */
    int msg_opcode;
    uint8_t *msg;
    size_t msg_len, msg_cap;
    /* after bws_parse returned -1: the close code to send (1002 protocol error, 1009 too big) and why (a constant) */
    int error_code;
    const char *error;
} bws_parser_t;

typedef struct st_bws_parser_cb_t {
    /*
     * A whole data message (opcode BWS_OP_TEXT or BWS_OP_BINARY). `data` is borrowed for the call: it points into the
     * caller's input or into the reassembly buffer. Returns 0 to go on, non-zero to stop after this frame (the
     * connection was closed). Text is not checked for UTF-8: partyload checks the contents it sent instead.
     */
    int (*on_message)(void *ctx, int opcode, const uint8_t *data, size_t len);
    /* A control frame (close, ping, pong): its payload, at most 125 bytes, borrowed. Returns as on_message. */
    int (*on_control)(void *ctx, int opcode, const uint8_t *data, size_t len);
} bws_parser_cb_t;

/* A parser for messages up to max_message bytes. Nothing is allocated until a fragmented message arrives. */
void bws_parser_init(bws_parser_t *p, size_t max_message);
/* Frees the reassembly buffer. */
void bws_parser_dispose(bws_parser_t *p);
/* Forgets a message in progress (a new connection starts clean); keeps the buffer. */
void bws_parser_reset(bws_parser_t *p);
/*
 * Reads the server frames at data[0..len) and calls `cb` for each complete one, in order. Returns the bytes of the
 * complete frames consumed (an incomplete frame at the end is left for the next call, with more bytes after it), or
 * -1 on a protocol error: a masked frame, a reserved bit or opcode, a control frame that is fragmented or longer
 * than 125 bytes, a continuation without a message, a new message inside a fragmented one, a 64-bit length with the
 * top bit set, or a message over max_message (p->error_code and p->error say which). A header is checked as soon as
 * its first bytes are there, before its payload arrives. `data` is borrowed for the call.
 */
ssize_t bws_parse(bws_parser_t *p, const uint8_t *data, size_t len, const bws_parser_cb_t *cb, void *ctx);

/*
 * Reads a close frame's payload: no payload gives code 1005 and an empty reason; otherwise the first two bytes are the
 * code (1000–4999 without the codes RFC 6455 §7.4.1 says must not be sent) and the rest the reason. Returns 0, or -1
 * when the payload is one byte or the code is not one a peer may send. *reason points into `data`.
 */
int bws_close_parse(const uint8_t *data, size_t len, int *code, const uint8_t **reason, size_t *reason_len);

/* XORs data[0..len) with the 4-byte masking key `key` (in network order as it appears in the frame), from src into
 * dst (which may be src). Eight bytes at a time. */
void bws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4]);

/*
 * Writes one client frame into out: header, masking key, payload masked with it. `out` must have room for
 * BWS_HEADER_MAX + len bytes. Returns the frame's length. `fin` 0 makes a fragment (for tests; partyload sends whole
 * messages).
 */
size_t bws_frame_put(uint8_t *out, int opcode, int fin, const void *payload, size_t len, const uint8_t key[4]);

/* Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + the RFC 6455 GUID)), 28 characters and a NUL. */
void bws_accept_for(const char *key, size_t key_len, char out[29]);

/* ---- the connection ---- */

/* What the connections of a run share. Fill addr and host, then call bws_ctx_init. */
typedef struct st_bws_ctx_t {
    struct sockaddr_in addr;
    char host[80];                 /* the Host header: "127.0.0.1:PORT" */
    size_t max_message;            /* cap of a server message */
    uint64_t handshake_timeout_ns; /* connect start → 101 (bws_expire enforces it) */
    uint64_t close_timeout_ns;     /* our close frame → the server's (bws_expire enforces it) */
    uint64_t _rng;                 /* xorshift64* state: masking keys and Sec-WebSocket-Keys */
} bws_ctx_t;

/* Seeds the generator from getrandom(2) and sets the defaults (1 MiB messages, 10 s handshake, 1 s close). */
void bws_ctx_init(bws_ctx_t *ctx);
/* 64 random bits (not for secrets: masking keys exist to confuse proxies, not to keep anything from anyone). */
uint64_t bws_random(bws_ctx_t *ctx);

typedef enum en_bws_state_t {
    BWS_CLOSED = 0,
    BWS_CONNECTING, /* TCP connect in progress */
    BWS_HANDSHAKE,  /* upgrade request sent, waiting for the 101 */
    BWS_OPEN,
    BWS_CLOSING, /* our close frame is sent: waiting for the server's */
} bws_state_t;

typedef struct st_bws_conn_t bws_conn_t;

typedef struct st_bws_cb_t {
    /* The 101 arrived and its Sec-WebSocket-Accept is right: the connection may send. */
    void (*on_open)(bws_conn_t *ws);
    /* A message (binary 0 for text). `data` is borrowed for the call. */
    void (*on_message)(bws_conn_t *ws, int binary, const uint8_t *data, size_t len);
    /*
     * The connection is closed (the socket too), once per bws_connect that returned 0. `code` is the close code the
     * server sent (1005 when its close frame had none), or 0 when no close frame came. `err` is NULL for a clean end —
     * a closing handshake either way, or our close left unanswered past close_timeout_ns (PartyKit's runtime never
     * answers one) — else why it ended (a constant or ws->errbuf). The conn may be reconnected from here.
     */
    void (*on_close)(bws_conn_t *ws, int code, const char *reason, const char *err);
} bws_cb_t;

struct st_bws_conn_t {
    bench_conn_t conn; /* first: the loop's callbacks get &conn and cast back */
    bws_ctx_t *ctx;
    const bws_cb_t *cb;
    bws_state_t state;
    bws_parser_t parser;
    uint64_t started_ns;  /* when bws_connect was called */
    uint64_t opened_ns;   /* when the 101 arrived */
    uint64_t deadline_ns; /* handshake or close reply due */
    int rx_code;          /* the server's close code, 0 when none came */
    char rx_reason[124];  /* its reason, NUL-terminated (shortened if needed) */
    char errbuf[160];
    char target[200]; /* the request target: "/parties/relay/r0?_pk=..." */
    char key[25];     /* our Sec-WebSocket-Key */
    unsigned _gen;    /* counts connects: a callback that reconnected is detected by the caller */
};

/*
 * Prepares a closed connection. Input grows up to the message cap plus a header; output up to out_max (frames queued
 * beyond it are refused with -ENOBUFS). `ctx` and `cb` are borrowed and must outlive the conn, which is owned by the
 * caller and disposed of with bws_conn_dispose once closed.
 */
void bws_conn_init(bws_conn_t *ws, bench_loop_t *loop, bws_ctx_t *ctx, const bws_cb_t *cb, size_t out_max);
void bws_conn_dispose(bws_conn_t *ws);
/*
 * Connects (a closed conn only) and upgrades `target` (copied; at most 199 bytes). Returns 0 (on_open or on_close
 * follows, from the loop), or -errno and nothing follows.
 */
int bws_connect(bws_conn_t *ws, const char *target);
/*
 * Queues one whole message (opcode BWS_OP_TEXT, BWS_OP_BINARY or BWS_OP_PING), masked with a fresh key; it goes out
 * with the next bws_flush (or when the socket is writable). Queue several and flush once to coalesce them into one
 * write. Returns 0, -ENOTCONN when not open, -ENOBUFS when the output is full (the server is not reading).
 */
int bws_queue(bws_conn_t *ws, int opcode, const void *payload, size_t len);
void bws_flush(bws_conn_t *ws);
/*
 * Starts the closing handshake: sends a close frame with `code` (and `reason`, at most 123 bytes) and waits for the
 * server's, up to ctx->close_timeout_ns (see bws_expire). A conn that is not open yet is dropped at once, with
 * on_close(0, "", "closed before the handshake completed"). Nothing happens on a closed or closing conn.
 */
void bws_close(bws_conn_t *ws, int code, const char *reason);
/* Closes the socket now: on_close(ws, 0, "", err) follows inside the call. Nothing happens on a closed conn. */
void bws_abort(bws_conn_t *ws, const char *err);
/* Enforces the deadlines at `now`: a handshake past ctx->handshake_timeout_ns is aborted (an error), a close past
 * ctx->close_timeout_ns is finished (not an error). Call it from a tick. */
void bws_expire(bws_conn_t *ws, uint64_t now);

#endif
