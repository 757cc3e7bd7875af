/*
 * ws.c — see ws.h.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/sha.h>

#include "http.h"
#include "ws.h"

/* ---- the codec ---- */

void bws_parser_init(bws_parser_t *p, size_t max_message)
{
    memset(p, 0, sizeof(*p));
    p->max_message = max_message;
}

void bws_parser_dispose(bws_parser_t *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_len = p->msg_cap = 0;
    p->msg_opcode = 0;
}

void bws_parser_reset(bws_parser_t *p)
{
    p->msg_opcode = 0;
    p->msg_len = 0;
    p->error_code = 0;
    p->error = NULL;
}

static ssize_t parse_fail(bws_parser_t *p, int code, const char *why)
{
    p->error_code = code;
    p->error = why;
    return -1;
}

/* Appends a fragment; the caller checked the total against max_message, so the buffer stays under the cap. */
static void msg_append(bws_parser_t *p, const uint8_t *data, size_t len)
{
    if (p->msg_cap - p->msg_len < len) {
        size_t cap = p->msg_cap != 0 ? p->msg_cap : 4096;
        while (cap - p->msg_len < len)
            cap *= 2;
        if (cap > p->max_message)
            cap = p->max_message;
        p->msg = bench_xrealloc(p->msg, cap);
        p->msg_cap = cap;
    }
    memcpy(p->msg + p->msg_len, data, len);
    p->msg_len += len;
}

ssize_t bws_parse(bws_parser_t *p, const uint8_t *data, size_t len, const bws_parser_cb_t *cb, void *ctx)
{
    size_t off = 0;
    while (len - off >= 2) {
        const uint8_t *f = data + off;
        size_t avail = len - off;
        int fin = f[0] >> 7, opcode = f[0] & 0x0f;
        if (f[0] & 0x70)
            return parse_fail(p, 1002, "a frame with a reserved bit set");
        if (f[1] & 0x80)
            return parse_fail(p, 1002, "a masked frame from the server");
        if ((opcode > BWS_OP_BINARY && opcode < BWS_OP_CLOSE) || opcode > BWS_OP_PONG)
            return parse_fail(p, 1002, "a reserved opcode");
        uint64_t plen = f[1] & 0x7f;
        size_t hlen = 2;
        if (opcode >= BWS_OP_CLOSE) {
            if (!fin)
                return parse_fail(p, 1002, "a fragmented control frame");
            if (plen > 125)
                return parse_fail(p, 1002, "a control frame longer than 125 bytes");
        } else if (opcode == BWS_OP_CONT) {
            if (p->msg_opcode == 0)
                return parse_fail(p, 1002, "a continuation frame without a message to continue");
        } else if (p->msg_opcode != 0) {
            return parse_fail(p, 1002, "a new message inside a fragmented one");
        }
        if (plen == 126) {
            if (avail < 4)
                break;
            plen = (uint64_t)f[2] << 8 | f[3];
            hlen = 4;
        } else if (plen == 127) {
            if (avail < 10)
                break;
            plen = 0;
            for (int i = 0; i < 8; ++i)
                plen = plen << 8 | f[2 + i];
            if (plen >> 63)
                return parse_fail(p, 1002, "a 64-bit frame length with the top bit set");
            hlen = 10;
        }
        /* the cap applies to the whole message, checked before its payload is waited for */
        if (opcode < BWS_OP_CLOSE && plen > p->max_message - (opcode == BWS_OP_CONT ? p->msg_len : 0))
            return parse_fail(p, 1009, "a message larger than the cap");
        if (avail - hlen < plen)
            break;
        const uint8_t *payload = f + hlen;
        off += hlen + (size_t)plen;
        int stop = 0;
        if (opcode >= BWS_OP_CLOSE) {
            stop = cb->on_control(ctx, opcode, payload, (size_t)plen);
        } else if (fin && opcode != BWS_OP_CONT) {
            stop = cb->on_message(ctx, opcode, payload, (size_t)plen); /* the common case: no copy */
        } else {
            if (opcode != BWS_OP_CONT) {
                p->msg_opcode = opcode;
                p->msg_len = 0;
            }
            msg_append(p, payload, (size_t)plen);
            if (fin) {
                int op = p->msg_opcode;
                p->msg_opcode = 0;
                stop = cb->on_message(ctx, op, p->msg, p->msg_len);
                p->msg_len = 0;
            }
        }
        if (stop)
            break;
    }
    return (ssize_t)off;
}

int bws_close_parse(const uint8_t *data, size_t len, int *code, const uint8_t **reason, size_t *reason_len)
{
    if (len == 0) {
        *code = 1005;
        *reason = data;
        *reason_len = 0;
        return 0;
    }
    if (len == 1)
        return -1;
    int c = data[0] << 8 | data[1];
    /* 1004-1006 and 1015 are reserved for reporting, never sent; below 1000 and above 4999 are not codes */
    if (c < 1000 || c > 4999 || (c >= 1004 && c <= 1006) || c == 1015 || (c >= 1016 && c < 3000))
        return -1;
    *code = c;
    *reason = data + 2;
    *reason_len = len - 2;
    return 0;
}

void bws_mask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    /* the key repeated twice in memory order, whatever the byte order: a 64-bit XOR covers 8 payload bytes */
    uint64_t k64 = (uint64_t)k32 << 32 | k32;
    size_t i = 0;
    for (; len - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, src + i, 8);
        w ^= k64;
        memcpy(dst + i, &w, 8);
    }
    for (; i < len; ++i)
        dst[i] = src[i] ^ key[i & 3];
}

size_t bws_frame_put(uint8_t *out, int opcode, int fin, const void *payload, size_t len, const uint8_t key[4])
{
    size_t h = 0;
    out[h++] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
    if (len < 126) {
        out[h++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        out[h++] = 0x80 | 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 0x80 | 127;
        for (int i = 7; i >= 0; --i)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, key, 4);
    h += 4;
    bws_mask(out + h, payload, len, key);
    return h + len;
}

static size_t base64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; len - i >= 3; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = abc[v >> 18];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

void bws_accept_for(const char *key, size_t key_len, char out[29])
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    char buf[128 + sizeof(guid)];
    if (key_len > 128)
        key_len = 128; /* a key is 24 characters; a longer one cannot match anyway */
    memcpy(buf, key, key_len);
    memcpy(buf + key_len, guid, sizeof(guid) - 1);
    uint8_t digest[SHA_DIGEST_LENGTH];
    SHA1((const unsigned char *)buf, key_len + sizeof(guid) - 1, digest);
    base64_encode(digest, sizeof(digest), out);
}

/* ---- the connection ---- */

void bws_ctx_init(bws_ctx_t *ctx)
{
    ctx->max_message = BWS_MESSAGE_MAX_DEFAULT;
    ctx->handshake_timeout_ns = 10000000000u;
    ctx->close_timeout_ns = 1000000000u;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed)) {
        /* without getrandom the keys only need to differ between runs: the clock does */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_sec * 1000000007u ^ (uint64_t)ts.tv_nsec;
    }
    ctx->_rng = seed != 0 ? seed : 0x9e3779b97f4a7c15u; /* xorshift is stuck at zero */
}

uint64_t bws_random(bws_ctx_t *ctx)
{
    uint64_t x = ctx->_rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    ctx->_rng = x;
    return x * 0x2545f4914f6cdd1du;
}

static void random_key(bws_ctx_t *ctx, uint8_t key[4])
{
    uint32_t r = (uint32_t)(bws_random(ctx) >> 32);
    memcpy(key, &r, 4);
}

/* Queues a frame built in place: no copy of the payload other than the masking one. */
static int queue_frame(bws_conn_t *ws, int opcode, const void *payload, size_t len)
{
    uint8_t key[4];
    random_key(ws->ctx, key);
    size_t hlen = len < 126 ? 6 : len <= 0xffff ? 8 : 14;
    uint8_t *out = bench_conn_queue_space(&ws->conn, hlen + len);
    if (out == NULL)
        return ws->conn.state == BENCH_CONN_CLOSED ? -ENOTCONN : -ENOBUFS;
    bws_frame_put(out, opcode, 1, payload, len, key);
    return 0;
}

static void queue_close(bws_conn_t *ws, int code, const char *reason, size_t reason_len)
{
    uint8_t payload[125];
    size_t n = 0;
    if (code != 0) {
        if (reason_len > 123)
            reason_len = 123;
        payload[0] = (uint8_t)(code >> 8);
        payload[1] = (uint8_t)code;
        memcpy(payload + 2, reason, reason_len);
        n = 2 + reason_len;
    }
    queue_frame(ws, BWS_OP_CLOSE, payload, n); /* best effort: a full output is a lost cause already */
}

/* Ends the connection after a protocol error: tells the server why (best effort), then closes the socket. */
static void fail_protocol(bws_conn_t *ws, int code, const char *why)
{
    snprintf(ws->errbuf, sizeof(ws->errbuf), "WebSocket protocol error: %s", why);
    if (ws->state == BWS_OPEN) {
        queue_close(ws, code, "", 0);
        bench_conn_flush(&ws->conn);
    }
    bench_conn_close(&ws->conn, ws->errbuf);
}

static int on_frame_message(void *ctx, int opcode, const uint8_t *data, size_t len)
{
    bws_conn_t *ws = ctx;
    unsigned gen = ws->_gen;
    ws->cb->on_message(ws, opcode == BWS_OP_BINARY, data, len);
    /* the callback may have closed (and even reconnected) the conn: then the input it was parsing is gone */
    return ws->_gen != gen || ws->conn.state == BENCH_CONN_CLOSED;
}

static int on_frame_control(void *ctx, int opcode, const uint8_t *data, size_t len)
{
    bws_conn_t *ws = ctx;
    switch (opcode) {
    case BWS_OP_PING:
        if (ws->state == BWS_OPEN) {
            queue_frame(ws, BWS_OP_PONG, data, len);
            bench_conn_flush(&ws->conn);
            return ws->conn.state == BENCH_CONN_CLOSED; /* a write error closed it */
        }
        return 0;
    case BWS_OP_PONG:
        return 0;
    default: { /* BWS_OP_CLOSE */
        int code;
        const uint8_t *reason;
        size_t reason_len;
        if (bws_close_parse(data, len, &code, &reason, &reason_len) != 0) {
            fail_protocol(ws, 1002, len == 1 ? "a close frame with a one-byte payload" : "a close frame with an invalid code");
            return 1;
        }
        ws->rx_code = code;
        if (reason_len >= sizeof(ws->rx_reason))
            reason_len = sizeof(ws->rx_reason) - 1;
        memcpy(ws->rx_reason, reason, reason_len);
        ws->rx_reason[reason_len] = '\0';
        if (ws->state == BWS_OPEN) {
            /* the server starts the handshake: answer with its code, as RFC 6455 §5.5.1 has it, and we are done */
            queue_close(ws, code == 1005 ? 0 : code, "", 0);
            bench_conn_flush(&ws->conn);
        }
        bench_conn_close(&ws->conn, NULL);
        return 1;
    }
    }
}

static const bws_parser_cb_t conn_frame_cb = {on_frame_message, on_frame_control};

static void conn_on_open(bench_conn_t *conn)
{
    bws_conn_t *ws = (bws_conn_t *)conn;
    uint8_t raw[16];
    uint64_t a = bws_random(ws->ctx), b = bws_random(ws->ctx);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    base64_encode(raw, sizeof(raw), ws->key);
    char req[512];
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "\r\n",
                     ws->target, ws->ctx->host, ws->key);
    ws->state = BWS_HANDSHAKE;
    if (bench_conn_queue(conn, req, (size_t)n) != 0)
        bench_conn_close(conn, "cannot queue the upgrade request");
}

/* Checks the response to the upgrade. Returns its length (> 0), 0 when incomplete, or -1 after closing the conn. */
static ssize_t handshake_read(bws_conn_t *ws, const char *data, size_t len, int eof)
{
    http_response_t r;
    ssize_t n = http_response_parse(data, len, eof, &r);
    if (n == -2)
        return 0;
    if (n == -1) {
        bench_conn_close(&ws->conn, eof ? "the server closed the connection before the 101" : "a malformed upgrade response");
        return -1;
    }
    if (r.status != 101) {
        /* the body of a refusal says why (partyd: a JSON error): keep the start of it */
        size_t blen = r.body != NULL ? r.body_len : 0;
        if (blen > 80)
            blen = 80;
        snprintf(ws->errbuf, sizeof(ws->errbuf), "the upgrade was refused: HTTP %d %.*s", r.status, (int)blen,
                 blen != 0 ? r.body : "");
        for (char *c = ws->errbuf; *c != '\0'; ++c)
            if (*c == '\r' || *c == '\n')
                *c = ' ';
        bench_conn_close(&ws->conn, ws->errbuf);
        return -1;
    }
    size_t vlen;
    const char *v = http_header_find(data, r.head_len, "upgrade", &vlen);
    if (v == NULL || !http_list_has(v, vlen, "websocket")) {
        bench_conn_close(&ws->conn, "a 101 without Upgrade: websocket");
        return -1;
    }
    v = http_header_find(data, r.head_len, "connection", &vlen);
    if (v == NULL || !http_list_has(v, vlen, "upgrade")) {
        bench_conn_close(&ws->conn, "a 101 without Connection: upgrade");
        return -1;
    }
    char want[29];
    bws_accept_for(ws->key, strlen(ws->key), want);
    v = http_header_find(data, r.head_len, "sec-websocket-accept", &vlen);
    if (v == NULL || vlen != 28 || memcmp(v, want, 28) != 0) {
        bench_conn_close(&ws->conn, "a 101 with a wrong Sec-WebSocket-Accept");
        return -1;
    }
    /* no extension or subprotocol was offered, so none may be chosen: frames with RSV bits would follow */
    if (http_header_find(data, r.head_len, "sec-websocket-extensions", &vlen) != NULL) {
        bench_conn_close(&ws->conn, "a 101 with an extension that was not offered");
        return -1;
    }
    return n;
}

static ssize_t conn_on_read(bench_conn_t *conn, const char *data, size_t len, int eof)
{
    bws_conn_t *ws = (bws_conn_t *)conn;
    unsigned gen = ws->_gen;
    size_t used = 0;
    if (ws->state == BWS_HANDSHAKE) {
        ssize_t n = handshake_read(ws, data, len, eof);
        if (n <= 0)
            return n;
        used = (size_t)n;
        ws->state = BWS_OPEN;
        ws->opened_ns = conn->loop->now_ns;
        ws->cb->on_open(ws);
        if (ws->_gen != gen || conn->state == BENCH_CONN_CLOSED)
            return 0; /* closed inside on_open: the loop drops what is left */
    }
    if (used == len)
        return (ssize_t)used;
    ssize_t n = bws_parse(&ws->parser, (const uint8_t *)data + used, len - used, &conn_frame_cb, ws);
    if (ws->_gen != gen || conn->state == BENCH_CONN_CLOSED)
        return 0;
    if (n < 0) {
        fail_protocol(ws, ws->parser.error_code, ws->parser.error);
        return 0;
    }
    return (ssize_t)(used + (size_t)n);
}

static void conn_on_close(bench_conn_t *conn, const char *err)
{
    bws_conn_t *ws = (bws_conn_t *)conn;
    bws_state_t state = ws->state;
    ws->state = BWS_CLOSED;
    bws_parser_reset(&ws->parser);
    if (err == NULL && ws->rx_code == 0) {
        /* the socket ended without a close frame: fine once we sent ours (PartyKit's runtime just drops it) */
        if (state == BWS_OPEN)
            err = "the server closed the connection without a close frame";
        else if (state == BWS_HANDSHAKE || state == BWS_CONNECTING)
            err = "the server closed the connection before the 101";
    }
    ws->cb->on_close(ws, ws->rx_code, ws->rx_reason, err);
}

static const bench_conn_cb_t conn_cb = {conn_on_open, conn_on_read, conn_on_close};

void bws_conn_init(bws_conn_t *ws, bench_loop_t *loop, bws_ctx_t *ctx, const bws_cb_t *cb, size_t out_max)
{
    memset(ws, 0, sizeof(*ws));
    /* room for the largest frame, or a whole response head */
    size_t in_max = ctx->max_message + BWS_HEADER_MAX;
    if (in_max < HTTP_MAX_HEAD)
        in_max = HTTP_MAX_HEAD;
    bench_conn_init(&ws->conn, loop, &conn_cb, in_max, out_max);
    ws->ctx = ctx;
    ws->cb = cb;
    bws_parser_init(&ws->parser, ctx->max_message);
}

void bws_conn_dispose(bws_conn_t *ws)
{
    bench_conn_dispose(&ws->conn);
    bws_parser_dispose(&ws->parser);
}

int bws_connect(bws_conn_t *ws, const char *target)
{
    if (ws->state != BWS_CLOSED)
        return -EISCONN;
    size_t n = strlen(target);
    if (n >= sizeof(ws->target))
        return -ENAMETOOLONG;
    memcpy(ws->target, target, n + 1);
    int r = bench_conn_connect(&ws->conn, &ws->ctx->addr);
    if (r != 0)
        return r;
    ++ws->_gen;
    ws->state = BWS_CONNECTING;
    ws->rx_code = 0;
    ws->rx_reason[0] = '\0';
    ws->started_ns = bench_loop_now(ws->conn.loop);
    ws->opened_ns = 0;
    ws->deadline_ns = ws->started_ns + ws->ctx->handshake_timeout_ns;
    return 0;
}

int bws_queue(bws_conn_t *ws, int opcode, const void *payload, size_t len)
{
    if (ws->state != BWS_OPEN)
        return -ENOTCONN;
    return queue_frame(ws, opcode, payload, len);
}

void bws_flush(bws_conn_t *ws)
{
    bench_conn_flush(&ws->conn);
}

void bws_close(bws_conn_t *ws, int code, const char *reason)
{
    switch (ws->state) {
    case BWS_CONNECTING:
    case BWS_HANDSHAKE:
        bench_conn_close(&ws->conn, "closed before the handshake completed");
        break;
    case BWS_OPEN:
        queue_close(ws, code, reason, strlen(reason));
        ws->state = BWS_CLOSING;
        ws->deadline_ns = ws->conn.loop->now_ns + ws->ctx->close_timeout_ns;
        bench_conn_flush(&ws->conn);
        break;
    default:
        break;
    }
}

void bws_abort(bws_conn_t *ws, const char *err)
{
    bench_conn_close(&ws->conn, err);
}

void bws_expire(bws_conn_t *ws, uint64_t now)
{
    if (now < ws->deadline_ns)
        return;
    if (ws->state == BWS_CONNECTING || ws->state == BWS_HANDSHAKE)
        bench_conn_close(&ws->conn, ws->state == BWS_CONNECTING ? "connect timed out" : "no 101 within the timeout");
    else if (ws->state == BWS_CLOSING)
        bench_conn_close(&ws->conn, NULL);
}
