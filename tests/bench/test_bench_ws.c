/*
 * test_bench_ws.c — partyload's WebSocket client: the frame parser fed a server's byte stream split at every byte
 * (fragments with a ping between them, 16- and 64-bit lengths, a close with a code and a reason), masking, the
 * protocol errors a client must refuse, Sec-WebSocket-Accept, and one whole connection over loopback TCP against a
 * scripted server: the upgrade, the pong and the close reply it must send, the error close on bad input.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "ws.h"

#define BIG_LEN 70000 /* over 65535: needs the 64-bit length */
#define MID_LEN 300   /* over 125: needs the 16-bit length */

/* ---- a scripted server's frames (unmasked, as a server sends them) ---- */

static size_t server_frame(uint8_t *out, int b0, const void *payload, size_t len)
{
    size_t h = 0;
    out[h++] = (uint8_t)b0;
    if (len < 126) {
        out[h++] = (uint8_t)len;
    } else if (len <= 0xffff) {
        out[h++] = 126;
        out[h++] = (uint8_t)(len >> 8);
        out[h++] = (uint8_t)len;
    } else {
        out[h++] = 127;
        for (int i = 7; i >= 0; --i)
            out[h++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    memcpy(out + h, payload, len);
    return h + len;
}

static uint8_t mid_payload[MID_LEN], big_payload[BIG_LEN];
static const char close_reason[] = "message too big for this room";

/* The stream of the test: returns its length; *starts gets the offset of each of its 7 frames. */
static size_t build_stream(uint8_t *s, size_t starts[7])
{
    for (size_t i = 0; i < MID_LEN; ++i)
        mid_payload[i] = (uint8_t)(i * 7 + 1);
    for (size_t i = 0; i < BIG_LEN; ++i)
        big_payload[i] = (uint8_t)(i * 13 + (i >> 8));
    uint8_t close_payload[2 + sizeof(close_reason) - 1] = {1009 >> 8, 1009 & 0xff};
    memcpy(close_payload + 2, close_reason, sizeof(close_reason) - 1);
    size_t n = 0, k = 0;
    starts[k++] = n, n += server_frame(s + n, 0x01, "Hel", 3);   /* text, not final */
    starts[k++] = n, n += server_frame(s + n, 0x89, "p1", 2);    /* ping between fragments */
    starts[k++] = n, n += server_frame(s + n, 0x00, "lo, ", 4);  /* continuation */
    starts[k++] = n, n += server_frame(s + n, 0x80, "world", 5); /* continuation, final */
    starts[k++] = n, n += server_frame(s + n, 0x82, mid_payload, MID_LEN);
    starts[k++] = n, n += server_frame(s + n, 0x82, big_payload, BIG_LEN);
    starts[k++] = n, n += server_frame(s + n, 0x88, close_payload, sizeof(close_payload));
    return n;
}

/* ---- recording what the parser reports ---- */

typedef struct st_events_t {
    int n;
    int opcode[16];
    size_t len[16];
    int ok[16]; /* the payload was the expected one */
} events_t;

static int check_payload(int index, const uint8_t *data, size_t len)
{
    switch (index) {
    case 0: /* the ping */
        return len == 2 && memcmp(data, "p1", 2) == 0;
    case 1: /* the reassembled text */
        return len == 12 && memcmp(data, "Hello, world", 12) == 0;
    case 2:
        return len == MID_LEN && memcmp(data, mid_payload, MID_LEN) == 0;
    case 3:
        return len == BIG_LEN && memcmp(data, big_payload, BIG_LEN) == 0;
    case 4: {
        int code;
        const uint8_t *reason;
        size_t rlen;
        return bws_close_parse(data, len, &code, &reason, &rlen) == 0 && code == 1009 && rlen == sizeof(close_reason) - 1 &&
               memcmp(reason, close_reason, rlen) == 0;
    }
    }
    return 0;
}

static int record(void *ctx, int opcode, const uint8_t *data, size_t len)
{
    events_t *e = ctx;
    if (e->n < 16) {
        e->opcode[e->n] = opcode;
        e->len[e->n] = len;
        e->ok[e->n] = check_payload(e->n, data, len);
    }
    ++e->n;
    return 0;
}

static const bws_parser_cb_t record_cb = {record, record};

static void assert_events(const events_t *e)
{
    assert_int_equal(e->n, 5);
    const int opcodes[5] = {BWS_OP_PING, BWS_OP_TEXT, BWS_OP_BINARY, BWS_OP_BINARY, BWS_OP_CLOSE};
    for (int i = 0; i < 5; ++i) {
        assert_int_equal(e->opcode[i], opcodes[i]);
        assert_true(e->ok[i]);
    }
}

/*
 * Parses `s` as a connection does: what a call leaves unconsumed is offered again with the next bytes. The first call
 * sees s[0..split); the prefix is an exact-size copy near a frame header (where an over-read could happen), so that
 * ASan sees a read past it. Returns what was consumed in all (must be everything).
 */
static size_t parse_split(bws_parser_t *p, const uint8_t *s, size_t len, size_t split, const size_t starts[7], events_t *e)
{
    int near_header = split < 1024;
    for (int k = 0; k < 7; ++k)
        if (split >= starts[k] && split - starts[k] <= 16)
            near_header = 1;
    ssize_t c;
    if (near_header) {
        uint8_t *copy = malloc(split != 0 ? split : 1);
        memcpy(copy, s, split);
        c = bws_parse(p, copy, split, &record_cb, e);
        free(copy);
    } else {
        c = bws_parse(p, s, split, &record_cb, e);
    }
    assert_true(c >= 0 && (size_t)c <= split);
    ssize_t d = bws_parse(p, s + c, len - (size_t)c, &record_cb, e);
    assert_true(d >= 0);
    return (size_t)c + (size_t)d;
}

static void test_every_split(void **state)
{
    (void)state;
    size_t starts[7];
    uint8_t *tmp = malloc(BIG_LEN + 1024);
    size_t len = build_stream(tmp, starts);
    uint8_t *s = malloc(len); /* exact size: ASan catches a read past the end */
    memcpy(s, tmp, len);
    free(tmp);

    bws_parser_t p;
    bws_parser_init(&p, BWS_MESSAGE_MAX_DEFAULT);
    for (size_t split = 0; split <= len; ++split) {
        events_t e = {0};
        assert_int_equal(parse_split(&p, s, len, split, starts, &e), len);
        assert_events(&e);
        assert_int_equal(p.msg_opcode, 0);
    }

    /* one byte more per call: every byte is a split, all in one pass */
    events_t e = {0};
    size_t used = 0;
    for (size_t have = 1; have <= len; ++have) {
        ssize_t c = bws_parse(&p, s + used, have - used, &record_cb, &e);
        assert_true(c >= 0);
        used += (size_t)c;
        /* a complete frame is consumed as soon as its last byte is there */
        for (int k = 0; k < 7; ++k)
            if (have == starts[k])
                assert_int_equal(used, have);
    }
    assert_int_equal(used, len);
    assert_events(&e);
    bws_parser_dispose(&p);
    free(s);
}

static void test_rfc_examples(void **state)
{
    (void)state;
    /* RFC 6455 §5.7 */
    static const uint8_t hello[] = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
    static const uint8_t frags[] = {0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f};
    static const uint8_t masked_hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    static const uint8_t len256[] = {0x82, 0x7e, 0x01, 0x00};
    static const uint8_t len64k[] = {0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0};

    bws_parser_t p;
    bws_parser_init(&p, BWS_MESSAGE_MAX_DEFAULT);
    events_t e = {0};
    assert_int_equal(bws_parse(&p, hello, sizeof(hello), &record_cb, &e), sizeof(hello));
    assert_int_equal(e.n, 1);
    assert_int_equal(e.opcode[0], BWS_OP_TEXT);
    assert_int_equal(e.len[0], 5);
    e = (events_t){0};
    assert_int_equal(bws_parse(&p, frags, sizeof(frags), &record_cb, &e), sizeof(frags));
    assert_int_equal(e.n, 1);
    assert_int_equal(e.len[0], 5);
    /* the lengths are read before the payload is there */
    e = (events_t){0};
    assert_int_equal(bws_parse(&p, len256, sizeof(len256), &record_cb, &e), 0);
    assert_int_equal(bws_parse(&p, len64k, sizeof(len64k), &record_cb, &e), 0);
    assert_int_equal(e.n, 0);

    /* a client frame is masked: the RFC's own key gives the RFC's own bytes */
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t out[BWS_HEADER_MAX + 5];
    assert_int_equal(bws_frame_put(out, BWS_OP_TEXT, 1, "Hello", 5, key), sizeof(masked_hello));
    assert_memory_equal(out, masked_hello, sizeof(masked_hello));
    /* and the header lengths are the minimal ones */
    uint8_t *big = calloc(1, BWS_HEADER_MAX + 70000);
    assert_int_equal(bws_frame_put(big, BWS_OP_BINARY, 1, big + 100, 125, key), 2 + 4 + 125);
    assert_int_equal(big[1], 0x80 | 125);
    static uint8_t zeros[70000];
    assert_int_equal(bws_frame_put(big, BWS_OP_BINARY, 1, zeros, 126, key), 4 + 4 + 126);
    assert_int_equal(big[1], 0x80 | 126);
    assert_int_equal(big[2] << 8 | big[3], 126);
    assert_int_equal(bws_frame_put(big, BWS_OP_BINARY, 0, zeros, 70000, key), 10 + 4 + 70000);
    assert_int_equal(big[0], BWS_OP_BINARY); /* not final */
    assert_int_equal(big[1], 0x80 | 127);
    assert_int_equal(big[7] << 16 | big[8] << 8 | big[9], 70000);
    free(big);
    bws_parser_dispose(&p);
}

static void test_mask(void **state)
{
    (void)state;
    uint8_t src[300], masked[300], back[300];
    for (size_t i = 0; i < sizeof(src); ++i)
        src[i] = (uint8_t)(i * 31 + 7);
    static const uint8_t keys[3][4] = {{0x37, 0xfa, 0x21, 0x3d}, {0, 0, 0, 0}, {0xff, 0x01, 0x80, 0x7f}};
    for (int k = 0; k < 3; ++k) {
        /* every length, at every alignment of the source, against the definition byte by byte */
        for (size_t off = 0; off < 8; ++off) {
            for (size_t len = 0; len + off <= 200; ++len) {
                bws_mask(masked, src + off, len, keys[k]);
                for (size_t i = 0; i < len; ++i)
                    assert_int_equal(masked[i], src[off + i] ^ keys[k][i % 4]);
                bws_mask(back, masked, len, keys[k]);
                assert_memory_equal(back, src + off, len);
                /* in place */
                memcpy(back, src + off, len);
                bws_mask(back, back, len, keys[k]);
                assert_memory_equal(back, masked, len);
            }
        }
    }
}

static const char *last_error; /* the reason of the last parse_all that failed */

static ssize_t parse_all(const uint8_t *s, size_t len, size_t max, int *error_code, events_t *e)
{
    bws_parser_t p;
    bws_parser_init(&p, max);
    ssize_t n = bws_parse(&p, s, len, &record_cb, e);
    *error_code = p.error_code;
    last_error = p.error;
    if (n < 0)
        assert_non_null(p.error);
    bws_parser_dispose(&p);
    return n;
}

static void test_protocol_errors(void **state)
{
    (void)state;
    int code;
    events_t e = {0};
    /* a masked frame from the server */
    static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    assert_int_equal(parse_all(masked, sizeof(masked), 1000, &code, &e), -1);
    assert_int_equal(code, 1002);
    assert_non_null(strstr(last_error, "masked"));
    assert_int_equal(parse_all(masked, 2, 1000, &code, &e), -1); /* known from the first two bytes */
    /* each reserved bit (no extension was negotiated) */
    for (int bit = 0x10; bit <= 0x40; bit <<= 1) {
        uint8_t rsv[] = {(uint8_t)(0x81 | bit), 0x01, 'x'};
        assert_int_equal(parse_all(rsv, sizeof(rsv), 1000, &code, &e), -1);
        assert_int_equal(code, 1002);
        assert_non_null(strstr(last_error, "reserved bit"));
    }
    /* a control frame of 126 bytes, refused on its first two bytes, before the payload */
    static const uint8_t ping126[] = {0x89, 0x7e, 0x00, 0x7e};
    assert_int_equal(parse_all(ping126, 2, 1000, &code, &e), -1);
    assert_int_equal(parse_all(ping126, sizeof(ping126), 1000, &code, &e), -1);
    assert_int_equal(code, 1002);
    assert_non_null(strstr(last_error, "125"));
    /* a fragmented control frame */
    static const uint8_t ping_frag[] = {0x09, 0x00};
    assert_int_equal(parse_all(ping_frag, sizeof(ping_frag), 1000, &code, &e), -1);
    assert_non_null(strstr(last_error, "fragmented control"));
    /* a continuation without a message */
    static const uint8_t cont[] = {0x80, 0x01, 'x'};
    assert_int_equal(parse_all(cont, sizeof(cont), 1000, &code, &e), -1);
    assert_int_equal(code, 1002);
    assert_non_null(strstr(last_error, "continuation"));
    /* a new message inside a fragmented one */
    static const uint8_t nested[] = {0x01, 0x01, 'a', 0x81, 0x01, 'b'};
    assert_int_equal(parse_all(nested, sizeof(nested), 1000, &code, &e), -1);
    assert_non_null(strstr(last_error, "inside a fragmented"));
    /* reserved opcodes, data (3-7) and control (0xb-0xf) */
    for (int op = 3; op <= 15; ++op) {
        if (op >= BWS_OP_CLOSE && op <= BWS_OP_PONG)
            continue;
        uint8_t bad[] = {(uint8_t)(0x80 | op), 0x00};
        assert_int_equal(parse_all(bad, sizeof(bad), 1000, &code, &e), -1);
        assert_non_null(strstr(last_error, "reserved opcode"));
    }
    /* a 64-bit length with the top bit set */
    static const uint8_t huge[] = {0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 1};
    assert_int_equal(parse_all(huge, sizeof(huge), 1000, &code, &e), -1);
    assert_non_null(strstr(last_error, "top bit"));
    /* over the cap: one frame, and fragments that add up past it, both before their payload is there */
    static const uint8_t over[] = {0x82, 0x7e, 0x03, 0xe9};
    assert_int_equal(parse_all(over, sizeof(over), 1000, &code, &e), -1);
    assert_int_equal(code, 1009);
    static const uint8_t at_cap[] = {0x82, 0x7e, 0x03, 0xe8};
    assert_int_equal(parse_all(at_cap, sizeof(at_cap), 1000, &code, &e), 0); /* incomplete, not an error */
    uint8_t frags[2 * (4 + 600)];
    static uint8_t zeros[600];
    size_t n = server_frame(frags, 0x02, zeros, 600);
    n += server_frame(frags + n, 0x80, zeros, 600);
    assert_int_equal(parse_all(frags, n - 600, 1000, &code, &e), -1);
    assert_int_equal(code, 1009);
    assert_int_equal(parse_all(frags, n, 1200, &code, &e), (ssize_t)n);

    /* close payloads */
    const uint8_t *reason;
    size_t rlen;
    int c;
    static const uint8_t one[] = {0x03};
    assert_int_equal(bws_close_parse(one, 1, &c, &reason, &rlen), -1);
    static const uint8_t c1005[] = {0x03, 0xed}; /* 1005 must never be sent */
    assert_int_equal(bws_close_parse(c1005, 2, &c, &reason, &rlen), -1);
    static const uint8_t c999[] = {0x03, 0xe7};
    assert_int_equal(bws_close_parse(c999, 2, &c, &reason, &rlen), -1);
    static const uint8_t c4000[] = {0x0f, 0xa0, 'h', 'i'};
    assert_int_equal(bws_close_parse(c4000, 4, &c, &reason, &rlen), 0);
    assert_int_equal(c, 4000);
    assert_int_equal(rlen, 2);
    assert_int_equal(bws_close_parse(NULL, 0, &c, &reason, &rlen), 0);
    assert_int_equal(c, 1005);
}

static void test_accept(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 §1.3's sample; an accept is always 28 characters (20 bytes of SHA-1 in base64) */
    bws_accept_for("dGhlIHNhbXBsZSBub25jZQ==", 24, out);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

/* ---- a whole connection against a scripted server on loopback ---- */

typedef struct st_run_t {
    int opened, messages, closed;
    int close_code;
    char close_reason[128];
    char err[200];
    int msg_ok[4];
    uint64_t deadline;
} run_t;

static run_t run;

static void t_on_open(bws_conn_t *ws)
{
    ++run.opened;
    assert_int_equal(bws_queue(ws, BWS_OP_BINARY, "client says hi", 14), 0);
    bws_flush(ws);
}

static void t_on_message(bws_conn_t *ws, int binary, const uint8_t *data, size_t len)
{
    (void)ws;
    if (run.messages < 4)
        run.msg_ok[run.messages] = (run.messages == 0 && !binary && check_payload(1, data, len)) ||
                                   (run.messages == 1 && binary && check_payload(2, data, len)) ||
                                   (run.messages == 2 && binary && check_payload(3, data, len));
    ++run.messages;
}

static void t_on_close(bws_conn_t *ws, int code, const char *reason, const char *err)
{
    ++run.closed;
    run.close_code = code;
    snprintf(run.close_reason, sizeof(run.close_reason), "%s", reason);
    snprintf(run.err, sizeof(run.err), "%s", err != NULL ? err : "");
    ws->conn.loop->stop = 1;
}

static const bws_cb_t t_cb = {t_on_open, t_on_message, t_on_close};

static void t_tick(bench_loop_t *loop, void *data)
{
    bws_conn_t *ws = data;
    bws_expire(ws, loop->now_ns);
    if (loop->now_ns > run.deadline)
        loop->stop = 1;
}

/* Runs the loop until the conn closes or 5 s pass. */
static void run_loop(bench_loop_t *loop, bws_conn_t *ws)
{
    run.deadline = bench_loop_now(loop) + 5000000000u;
    loop->stop = 0;
    assert_int_equal(bench_loop_run(loop, 1000000, t_tick, ws), 0);
}

/* Runs the loop briefly: until the request or frames the client writes reach the server socket. */
static void run_until_readable(bench_loop_t *loop, bws_conn_t *ws, int fd)
{
    for (int i = 0; i < 500; ++i) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 0) == 1)
            return;
        run.deadline = bench_loop_now(loop) + 10000000u;
        loop->stop = 0;
        bench_loop_run(loop, 1000000, t_tick, ws);
    }
    fail_msg("the client wrote nothing");
}

static size_t read_some(int fd, uint8_t *buf, size_t cap, size_t want)
{
    size_t n = 0;
    while (n < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 2000) != 1)
            break;
        ssize_t r = read(fd, buf + n, cap - n);
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    return n;
}

/* Reads one masked client frame at buf: returns its length, with its opcode and unmasked payload. */
static size_t client_frame(uint8_t *buf, size_t len, int *opcode, uint8_t **payload, size_t *plen)
{
    assert_true(len >= 6);
    assert_true(buf[0] & 0x80);         /* whole messages only */
    assert_true(buf[1] & 0x80);         /* masked, always */
    assert_true((buf[1] & 0x7f) < 126); /* the frames of this test are short */
    *opcode = buf[0] & 0x0f;
    *plen = buf[1] & 0x7f;
    assert_true(len >= 6 + *plen);
    *payload = buf + 6;
    bws_mask(*payload, *payload, *plen, buf + 2);
    return 6 + *plen;
}

static int listener(struct sockaddr_in *addr)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l != -1);
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(l, (struct sockaddr *)addr, sizeof(*addr)), 0);
    socklen_t alen = sizeof(*addr);
    assert_int_equal(getsockname(l, (struct sockaddr *)addr, &alen), 0);
    assert_int_equal(listen(l, 4), 0);
    return l;
}

/* A fresh loop, and a client context pointing at a new listener (returned) on a free loopback port. */
static int client_setup(bench_loop_t *loop, bws_ctx_t *ctx)
{
    struct sockaddr_in addr;
    int l = listener(&addr);
    assert_int_equal(bench_loop_init(loop), 0);
    bws_ctx_init(ctx);
    ctx->addr = addr;
    snprintf(ctx->host, sizeof(ctx->host), "127.0.0.1:%d", ntohs(addr.sin_port));
    return l;
}

/* Connects a client, accepts it, reads its upgrade request and answers it (with `accept_ok` 0: a wrong accept). */
static int handshake(bench_loop_t *loop, bws_ctx_t *ctx, bws_conn_t *ws, int l, int accept_ok, const uint8_t *after,
                     size_t after_len)
{
    assert_int_equal(bws_connect(ws, "/parties/relay/r0?_pk=t"), 0);
    int fd = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(fd != -1);
    run_until_readable(loop, ws, fd);
    char req[2048];
    size_t n = read_some(fd, (uint8_t *)req, sizeof(req) - 1, 1);
    req[n] = '\0';
    assert_non_null(strstr(req, "\r\n\r\n"));
    assert_true(strncmp(req, "GET /parties/relay/r0?_pk=t HTTP/1.1\r\n", 38) == 0);
    assert_non_null(strstr(req, "\r\nUpgrade: websocket\r\n"));
    assert_non_null(strstr(req, "\r\nConnection: Upgrade\r\n"));
    assert_non_null(strstr(req, "\r\nSec-WebSocket-Version: 13\r\n"));
    char host[100];
    snprintf(host, sizeof(host), "\r\nHost: %s\r\n", ctx->host);
    assert_non_null(strstr(req, host));
    const char *k = strstr(req, "\r\nSec-WebSocket-Key: ");
    assert_non_null(k);
    k += 21;
    assert_int_equal(strcspn(k, "\r"), 24); /* 16 bytes in base64 */
    char accept[29];
    bws_accept_for(k, 24, accept);
    if (!accept_ok)
        accept[0] = accept[0] == 'A' ? 'B' : 'A';
    uint8_t *resp = malloc(512 + after_len);
    int h = snprintf((char *)resp, 512,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Accept: %s\r\n\r\n",
                     accept);
    memcpy(resp + h, after, after_len);
    /* the frames follow the 101 in the same write: the client must parse what is left after the head */
    size_t total = (size_t)h + after_len, off = 0;
    while (off < total) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 2000);
        ssize_t w = write(fd, resp + off, total - off);
        if (w <= 0)
            break;
        off += (size_t)w;
        /* the socket buffer may not take 70 KB at once: let the client read meanwhile */
        if (off < total) {
            run.deadline = bench_loop_now(loop) + 10000000u;
            loop->stop = 0;
            bench_loop_run(loop, 1000000, t_tick, ws);
        }
    }
    assert_int_equal(off, total);
    free(resp);
    return fd;
}

static void test_connection(void **state)
{
    (void)state;
    bench_loop_t loop;
    bws_ctx_t ctx;
    int l = client_setup(&loop, &ctx);
    bws_conn_t ws;
    bws_conn_init(&ws, &loop, &ctx, &t_cb, 1 << 20);

    /* 1: the test's stream after the 101: three messages, a ping to answer, a close 1009 to answer */
    size_t starts[7];
    uint8_t *stream = malloc(BIG_LEN + 1024);
    size_t len = build_stream(stream, starts);
    memset(&run, 0, sizeof(run));
    int fd = handshake(&loop, &ctx, &ws, l, 1, stream, len);
    run_loop(&loop, &ws);
    assert_int_equal(run.opened, 1);
    assert_int_equal(run.messages, 3);
    assert_true(run.msg_ok[0] && run.msg_ok[1] && run.msg_ok[2]);
    assert_int_equal(run.closed, 1);
    assert_int_equal(run.close_code, 1009);
    assert_string_equal(run.close_reason, close_reason);
    assert_string_equal(run.err, "");
    assert_int_equal(ws.state, BWS_CLOSED);
    /* what the server got: the client's message, the pong (with the ping's payload), the close echoing 1009 */
    uint8_t in[1024];
    size_t n = read_some(fd, in, sizeof(in), 6 + 14 + 6 + 2 + 6 + 2), off = 0;
    int opcode;
    uint8_t *payload;
    size_t plen;
    off += client_frame(in + off, n - off, &opcode, &payload, &plen);
    assert_int_equal(opcode, BWS_OP_BINARY);
    assert_memory_equal(payload, "client says hi", 14);
    off += client_frame(in + off, n - off, &opcode, &payload, &plen);
    assert_int_equal(opcode, BWS_OP_PONG);
    assert_int_equal(plen, 2);
    assert_memory_equal(payload, "p1", 2);
    off += client_frame(in + off, n - off, &opcode, &payload, &plen);
    assert_int_equal(opcode, BWS_OP_CLOSE);
    assert_int_equal(plen, 2);
    assert_int_equal(payload[0] << 8 | payload[1], 1009);
    assert_int_equal(off, n);
    close(fd);

    /* 2: a wrong Sec-WebSocket-Accept ends the connection with an error before on_open */
    memset(&run, 0, sizeof(run));
    fd = handshake(&loop, &ctx, &ws, l, 0, NULL, 0);
    run_loop(&loop, &ws);
    assert_int_equal(run.opened, 0);
    assert_int_equal(run.closed, 1);
    assert_non_null(strstr(run.err, "Sec-WebSocket-Accept"));
    close(fd);

    /* 3: a protocol error (a masked server frame) is answered with close 1002 and reported */
    memset(&run, 0, sizeof(run));
    static const uint8_t masked[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    fd = handshake(&loop, &ctx, &ws, l, 1, masked, sizeof(masked));
    run_loop(&loop, &ws);
    assert_int_equal(run.opened, 1);
    assert_int_equal(run.closed, 1);
    assert_int_equal(run.close_code, 0);
    assert_non_null(strstr(run.err, "masked"));
    n = read_some(fd, in, sizeof(in), 6 + 14 + 6 + 2);
    off = client_frame(in, n, &opcode, &payload, &plen); /* "client says hi" */
    off += client_frame(in + off, n - off, &opcode, &payload, &plen);
    assert_int_equal(opcode, BWS_OP_CLOSE);
    assert_int_equal(payload[0] << 8 | payload[1], 1002);
    close(fd);

    /* 4: our close, answered: clean, with the server's code; then our close unanswered: clean after the timeout */
    for (int answer = 1; answer >= 0; --answer) {
        memset(&run, 0, sizeof(run));
        ctx.close_timeout_ns = 200000000u;
        fd = handshake(&loop, &ctx, &ws, l, 1, NULL, 0);
        run_until_readable(&loop, &ws, fd); /* on_open ran: "client says hi" is on its way */
        bws_close(&ws, 1000, "bye");
        assert_int_equal(ws.state, BWS_CLOSING);
        n = read_some(fd, in, sizeof(in), 6 + 14 + 6 + 5);
        off = client_frame(in, n, &opcode, &payload, &plen);
        off += client_frame(in + off, n - off, &opcode, &payload, &plen);
        assert_int_equal(opcode, BWS_OP_CLOSE);
        assert_int_equal(plen, 5);
        assert_int_equal(payload[0] << 8 | payload[1], 1000);
        assert_memory_equal(payload + 2, "bye", 3);
        if (answer) {
            static const uint8_t reply[] = {0x88, 0x02, 0x03, 0xe8};
            assert_int_equal(write(fd, reply, sizeof(reply)), sizeof(reply));
        }
        run_loop(&loop, &ws);
        assert_int_equal(run.closed, 1);
        assert_int_equal(run.close_code, answer ? 1000 : 0);
        assert_string_equal(run.err, "");
        close(fd);
    }

    /* 5: the server drops the connection without a close frame: an error */
    memset(&run, 0, sizeof(run));
    fd = handshake(&loop, &ctx, &ws, l, 1, NULL, 0);
    run_until_readable(&loop, &ws, fd);
    read_some(fd, in, sizeof(in), 6 + 14); /* unread bytes would make the close a reset */
    close(fd);
    run_loop(&loop, &ws);
    assert_int_equal(run.closed, 1);
    assert_non_null(strstr(run.err, "without a close frame"));

    bws_conn_dispose(&ws);
    bench_loop_dispose(&loop);
    close(l);
    free(stream);
}

/* rx_stamps: what a message reports is when its bytes reached the socket, not when partyload read them */
static uint64_t stamp_rx, stamp_now;

static void s_on_open(bws_conn_t *ws)
{
    (void)ws;
}

static void s_on_message(bws_conn_t *ws, int binary, const uint8_t *data, size_t len)
{
    (void)binary, (void)data, (void)len;
    stamp_rx = ws->conn.loop->rx_ns;
    stamp_now = ws->conn.loop->now_ns;
    ws->conn.loop->stop = 1;
}

static void s_on_close(bws_conn_t *ws, int code, const char *reason, const char *err)
{
    (void)code, (void)reason, (void)err;
    ws->conn.loop->stop = 1;
}

static const bws_cb_t s_cb = {s_on_open, s_on_message, s_on_close};

static void test_arrival_stamps(void **state)
{
    (void)state;
    bench_loop_t loop;
    bws_ctx_t ctx;
    int l = client_setup(&loop, &ctx);
    loop.rx_stamps = 1;
    bws_conn_t ws;
    bws_conn_init(&ws, &loop, &ctx, &s_cb, 1 << 16);
    memset(&run, 0, sizeof(run));
    int fd = handshake(&loop, &ctx, &ws, l, 1, NULL, 0);
    run.deadline = bench_loop_now(&loop) + 200000000u;
    loop.stop = 0;
    bench_loop_run(&loop, 1000000, t_tick, &ws); /* reads the 101 */
    assert_int_equal(ws.state, BWS_OPEN);

    for (int i = 0; i < 3; ++i) {
        uint8_t frame[16];
        size_t n = server_frame(frame, 0x82, "stamped", 7);
        uint64_t before = bench_loop_now(&loop);
        assert_int_equal(write(fd, frame, n), (ssize_t)n);
        uint64_t after = bench_loop_now(&loop);
        usleep(20000); /* the message waits in the socket, as behind 999 others */
        stamp_rx = stamp_now = 0;
        run.deadline = bench_loop_now(&loop) + 2000000000u;
        loop.stop = 0;
        assert_int_equal(bench_loop_run(&loop, 1000000, t_tick, &ws), 0);
        /* on loopback the bytes reach the socket inside write(); 1 ms of slack for the clock conversion */
        assert_true(stamp_rx != 0);
        assert_true(stamp_rx + 1000000 >= before);
        assert_true(stamp_rx <= after + 1000000);
        assert_true(stamp_now >= stamp_rx + 15000000);
    }
    close(fd);
    run.deadline = bench_loop_now(&loop) + 2000000000u;
    loop.stop = 0;
    bench_loop_run(&loop, 1000000, t_tick, &ws);
    assert_int_equal(ws.state, BWS_CLOSED);
    bws_conn_dispose(&ws);
    bench_loop_dispose(&loop);
    close(l);
}

/* Without epoll_pwait2 (a seccomp filter answers ENOSYS, as an old kernel would) the loop still ticks. */
static int ticks_seen;

static void count_tick(bench_loop_t *loop, void *data)
{
    (void)data;
    if (++ticks_seen == 20)
        loop->stop = 1;
}

static int ticks_without_pwait2(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_epoll_pwait2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof(filter) / sizeof(filter[0]), .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
        return 2;
    bench_loop_t loop;
    if (bench_loop_init(&loop) != 0)
        return 3;
    int r = bench_loop_run(&loop, 1000000, count_tick, NULL);
    return r == 0 && ticks_seen == 20 && loop._ms_timeouts ? 0 : 1;
}

static void test_ticks_without_pwait2(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid != -1);
    if (pid == 0)
        _exit(ticks_without_pwait2());
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_split),    cmocka_unit_test(test_rfc_examples),
        cmocka_unit_test(test_mask),           cmocka_unit_test(test_protocol_errors),
        cmocka_unit_test(test_accept),         cmocka_unit_test(test_connection),
        cmocka_unit_test(test_arrival_stamps), cmocka_unit_test(test_ticks_without_pwait2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
