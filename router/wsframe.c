/*
 * wsframe.c — RFC 6455 frame parsing and server frame headers (see wsframe.h).
 */
#include "wsframe.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"

void wsframe_parser_init(wsframe_parser_t *p)
{
    memset(p, 0, sizeof(*p));
}

void wsframe_parser_dispose(wsframe_parser_t *p)
{
    free(p->msg);
    free(p->ctl);
    wsframe_parser_init(p);
}

static void unmask(uint8_t *d, size_t n, const uint8_t mask[4], uint64_t pos)
{
    size_t i = 0;
    /* rotate the key to where this chunk starts, then go eight bytes at a time */
    uint8_t k[8];
    for (int j = 0; j < 8; ++j)
        k[j] = mask[(pos + j) & 3];
    uint64_t k64;
    memcpy(&k64, k, 8);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, d + i, 8);
        w ^= k64;
        memcpy(d + i, &w, 8);
    }
    for (; i < n; ++i)
        d[i] ^= k[i & 7];
}

static size_t header_need(const wsframe_parser_t *p)
{
    if (p->hdr_len < 2)
        return 2;
    size_t n = 2;
    uint8_t l = p->hdr[1] & 0x7f;
    if (l == 126)
        n += 2;
    else if (l == 127)
        n += 8;
    if (p->hdr[1] & 0x80)
        n += 4;
    return n;
}

static int is_control(int op)
{
    return (op & 0x8) != 0;
}

#define FAIL(c, r)                                                                                                                 \
    do {                                                                                                                           \
        err->code = (c);                                                                                                           \
        err->reason = (r);                                                                                                         \
        return -1;                                                                                                                 \
    } while (0)

/* Decodes a complete header into the parser state; 0 or -1 with *err. */
static int start_frame(wsframe_parser_t *p, size_t max_message, wsframe_error_t *err)
{
    const uint8_t *h = p->hdr;
    int fin = h[0] >> 7, rsv = (h[0] >> 4) & 7, op = h[0] & 0xf, masked = h[1] >> 7;
    uint64_t len = h[1] & 0x7f;
    size_t o = 2;
    if (len == 126) {
        len = (uint64_t)h[2] << 8 | h[3];
        o = 4;
    } else if (len == 127) {
        len = 0;
        for (int i = 0; i < 8; ++i)
            len = len << 8 | h[2 + i];
        o = 10;
        if (len >> 63)
            FAIL(1002, "frame length has its top bit set");
    }
    if (rsv != 0)
        FAIL(1002, "reserved bits set without a negotiated extension");
    if (!(op == WS_OP_CONT || op == WS_OP_TEXT || op == WS_OP_BINARY || op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG))
        FAIL(1002, "unknown opcode");
    if (!masked)
        FAIL(1002, "client frames must be masked");
    if (is_control(op)) {
        if (!fin)
            FAIL(1002, "fragmented control frame");
        if (len > 125)
            FAIL(1002, "control frame longer than 125 bytes");
    } else {
        if (op == WS_OP_CONT && p->msg_opcode == 0)
            FAIL(1002, "continuation frame without a message to continue");
        if (op != WS_OP_CONT && p->msg_opcode != 0)
            FAIL(1002, "new message inside a fragmented message");
        uint64_t so_far = op == WS_OP_CONT ? p->msg_len : 0;
        if (len > max_message || so_far + len > max_message)
            FAIL(1009, "message too big");
        if (op != WS_OP_CONT && !fin) {
            p->msg_opcode = (uint8_t)op;
            p->msg_len = 0;
        }
    }
    memcpy(p->mask, h + o, 4);
    p->opcode = (uint8_t)op;
    p->fin = (uint8_t)fin;
    p->remaining = len;
    p->mask_pos = 0;
    p->in_payload = 1;
    return 0;
}

static void msg_reserve(wsframe_parser_t *p, size_t extra)
{
    if (p->msg_cap - p->msg_len >= extra)
        return;
    size_t cap = p->msg_len + extra;
    if (cap < p->msg_cap * 2)
        cap = p->msg_cap * 2;
    p->msg = xrealloc(p->msg, cap);
    p->msg_cap = cap;
}

static void msg_release(wsframe_parser_t *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
}

long wsframe_parse(wsframe_parser_t *p, uint8_t *data, size_t len, size_t max_message, const wsframe_callbacks_t *cb, void *ctx,
                   wsframe_error_t *err)
{
    static uint8_t empty[1];
    size_t i = 0;
    while (i < len) {
        if (!p->in_payload) {
            size_t need;
            while (p->hdr_len < (need = header_need(p)) && i < len)
                p->hdr[p->hdr_len++] = data[i++];
            if (p->hdr_len < need)
                return (long)len;
            if (start_frame(p, max_message, err) != 0)
                return -1;
        }
        size_t avail = p->remaining < len - i ? (size_t)p->remaining : len - i;
        uint8_t *here = data + i;
        int whole_here = p->mask_pos == 0 && avail == p->remaining; /* the entire payload is in this chunk */
        int zero_copy;
        if (is_control(p->opcode)) {
            zero_copy = whole_here;
            if (!zero_copy) {
                if (p->ctl == NULL) {
                    p->ctl = xmalloc(125);
                    p->ctl_len = 0;
                }
                memcpy(p->ctl + p->ctl_len, here, avail);
                unmask(p->ctl + p->ctl_len, avail, p->mask, p->mask_pos);
                p->ctl_len += (uint8_t)avail;
            }
        } else {
            zero_copy = whole_here && p->fin && p->opcode != WS_OP_CONT;
            if (!zero_copy) {
                /* a message spanning reads or frames: buffer it (a single frame reserves exactly its size) */
                msg_reserve(p, (size_t)p->remaining);
                /* an empty fragment may come before any buffer exists: memcpy to NULL is undefined even for 0 bytes */
                if (avail != 0) {
                    memcpy(p->msg + p->msg_len, here, avail);
                    unmask(p->msg + p->msg_len, avail, p->mask, p->mask_pos);
                    p->msg_len += avail;
                }
            }
        }
        if (zero_copy)
            unmask(here, avail, p->mask, 0);
        i += avail;
        p->remaining -= avail;
        p->mask_pos += avail;
        if (p->remaining != 0)
            return (long)len;

        /* the frame is complete */
        p->in_payload = 0;
        p->hdr_len = 0;
        int stop;
        if (is_control(p->opcode)) {
            uint8_t *d = zero_copy ? here : p->ctl;
            size_t n = zero_copy ? avail : p->ctl_len;
            stop = cb->on_control(ctx, p->opcode, d != NULL ? d : empty, n);
            free(p->ctl);
            p->ctl = NULL;
            p->ctl_len = 0;
        } else if (!p->fin) {
            continue; /* more fragments follow */
        } else if (zero_copy) {
            stop = cb->on_message(ctx, p->opcode, avail != 0 ? here : empty, avail);
        } else {
            int op = p->msg_opcode != 0 ? p->msg_opcode : p->opcode;
            p->msg_opcode = 0;
            stop = cb->on_message(ctx, op, p->msg != NULL ? p->msg : empty, p->msg_len);
            msg_release(p);
        }
        if (stop)
            return (long)i;
    }
    return (long)len;
}

size_t wsframe_header(uint8_t *out, int opcode, size_t n)
{
    out[0] = (uint8_t)(0x80 | opcode);
    if (n < 126) {
        out[1] = (uint8_t)n;
        return 2;
    }
    if (n <= 0xffff) {
        out[1] = 126;
        out[2] = (uint8_t)(n >> 8);
        out[3] = (uint8_t)n;
        return 4;
    }
    out[1] = 127;
    for (int i = 0; i < 8; ++i)
        out[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
    return 10;
}

size_t wsframe_close_payload(uint8_t *out, int code, const char *reason, size_t reason_len)
{
    if (reason_len > 123)
        reason_len = 123;
    out[0] = (uint8_t)(code >> 8);
    out[1] = (uint8_t)code;
    memcpy(out + 2, reason, reason_len);
    return 2 + reason_len;
}

int wsframe_close_code_valid(int code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}
