/*
 * wsframe.h — RFC 6455 framing, without sockets, so it can be unit-tested and fuzzed.
 *
 * The parser is fed whatever bytes arrived and keeps only what it must between calls: a partial frame header
 * (≤ 14 bytes), the unmasking position, and the message being assembled when a message spans reads or frames.
 * A data frame that arrives whole is unmasked in place and handed over without a copy, so the input must be writable.
 *
 * Client frames must be masked; no extension is negotiated, so RSV bits are errors; control frames are ≤ 125 bytes
 * and never fragmented; a message over `max_message` bytes fails with 1009 before it is buffered.
 *
 * No loop and no global state: a parser belongs to one connection and is used by one thread at a time.
 */
#ifndef PARTYD_WSFRAME_H
#define PARTYD_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xa,
};

typedef struct st_wsframe_parser_t {
    uint8_t hdr[14];
    uint8_t hdr_len;    /* header bytes collected */
    uint8_t in_payload; /* the header is complete, payload bytes follow */
    uint8_t opcode;     /* of the current frame */
    uint8_t fin;
    uint8_t msg_opcode; /* TEXT or BINARY while a fragmented message is being assembled, else 0 */
    uint8_t mask[4];
    uint64_t remaining; /* payload bytes of the current frame still to come */
    uint64_t mask_pos;
    uint8_t *msg; /* assembled payload (a data message spanning frames or reads, or a split control frame) */
    size_t msg_len, msg_cap;
    uint8_t *ctl; /* a control frame split across reads (≤ 125 bytes), NULL otherwise */
    uint8_t ctl_len;
} wsframe_parser_t;

typedef struct st_wsframe_callbacks_t {
    /* A whole message: TEXT (UTF-8 not yet checked) or BINARY. Return 0 to go on, non-zero to stop parsing. */
    int (*on_message)(void *ctx, int opcode, uint8_t *data, size_t len);
    /* A control frame: CLOSE, PING or PONG. Same return convention. */
    int (*on_control)(void *ctx, int opcode, uint8_t *data, size_t len);
} wsframe_callbacks_t;

typedef struct st_wsframe_error_t {
    int code;           /* the close code to fail the connection with: 1002 or 1009 */
    const char *reason; /* static */
} wsframe_error_t;

/* A parser at the start of a stream. Cannot fail (nothing is allocated until a message spans reads). */
void wsframe_parser_init(wsframe_parser_t *p);
/* Frees what the parser buffered (a partial message or control frame); it may be initialised again. */
void wsframe_parser_dispose(wsframe_parser_t *p);

/* Feeds `len` bytes (modified in place). Returns the bytes consumed: `len`, or fewer when a callback stopped the
 * parse; or -1 on a protocol error described by *err (the connection must be failed with err->code). */
long wsframe_parse(wsframe_parser_t *p, uint8_t *data, size_t len, size_t max_message, const wsframe_callbacks_t *cb, void *ctx,
                   wsframe_error_t *err);

/* Writes the header of an unmasked, final server frame into out[0..10); returns its length. */
size_t wsframe_header(uint8_t *out, int opcode, size_t payload_len);

/* Builds a close payload (code in network order, then the reason) into out[0..125]; returns its length. */
size_t wsframe_close_payload(uint8_t *out, int code, const char *reason, size_t reason_len);

/* Whether a close code received from a peer is valid (RFC 6455 7.4). */
int wsframe_close_code_valid(int code);

#endif
