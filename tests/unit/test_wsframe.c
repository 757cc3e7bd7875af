/*
 * test_wsframe.c — RFC 6455 parsing of client frames, fed whole and in every split, and server frame headers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "wsframe.h"

/* Under UBSan (the ASan build), a report fails this test instead of scrolling past: the runtime reads these defaults. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void)
{
    return "halt_on_error=1:print_stacktrace=1";
}

/* ---- building client frames ---- */

typedef struct {
    uint8_t data[200000];
    size_t len;
} wire_t;

static void put_frame(wire_t *w, int fin, int rsv, int op, int masked, const void *payload, size_t n)
{
    static const uint8_t key[4] = {0x37, 0xfa, 0x21, 0x3d};
    uint8_t *p = w->data + w->len;
    *p++ = (uint8_t)((fin << 7) | (rsv << 4) | op);
    if (n < 126) {
        *p++ = (uint8_t)((masked << 7) | n);
    } else if (n <= 0xffff) {
        *p++ = (uint8_t)((masked << 7) | 126);
        *p++ = (uint8_t)(n >> 8);
        *p++ = (uint8_t)n;
    } else {
        *p++ = (uint8_t)((masked << 7) | 127);
        for (int i = 7; i >= 0; --i)
            *p++ = (uint8_t)((uint64_t)n >> (8 * i));
    }
    if (masked) {
        memcpy(p, key, 4);
        p += 4;
    }
    for (size_t i = 0; i < n; ++i)
        *p++ = ((const uint8_t *)payload)[i] ^ (masked ? key[i & 3] : 0);
    w->len = (size_t)(p - w->data);
}

/* ---- recording what the parser reports ---- */

typedef struct {
    int ops[64];
    size_t lens[64];
    uint8_t payloads[64][256];
    const uint8_t *ptrs[64];
    int count;
    int stop_after; /* stop parsing after this many events (0: never) */
} events_t;

static int record(void *ctx, int op, uint8_t *data, size_t len)
{
    events_t *e = ctx;
    e->ops[e->count] = op;
    e->lens[e->count] = len;
    e->ptrs[e->count] = data;
    memcpy(e->payloads[e->count], data, len < 256 ? len : 256);
    ++e->count;
    return e->stop_after != 0 && e->count >= e->stop_after;
}

static const wsframe_callbacks_t cb = {record, record};

/* Feeds the wire in chunks of `step` bytes (0: all at once); returns the last result. */
static long feed(const wire_t *w, size_t step, size_t max, events_t *e, wsframe_error_t *err)
{
    wsframe_parser_t p;
    wsframe_parser_init(&p);
    uint8_t *copy = malloc(w->len + 1);
    memcpy(copy, w->data, w->len);
    long r = 0;
    size_t off = 0;
    do {
        size_t n = step == 0 ? w->len - off : (w->len - off < step ? w->len - off : step);
        r = wsframe_parse(&p, copy + off, n, max, &cb, e, err);
        if (r < 0 || (size_t)r < n)
            break;
        off += n;
    } while (off < w->len);
    wsframe_parser_dispose(&p);
    free(copy);
    return r;
}

static void test_single_text_frame_zero_copy(void **state)
{
    (void)state;
    wire_t *w = calloc(1, sizeof(*w));
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "hello", 5);
    events_t e = {0};
    wsframe_error_t err;
    wsframe_parser_t p;
    wsframe_parser_init(&p);
    assert_int_equal(wsframe_parse(&p, w->data, w->len, 1 << 20, &cb, &e, &err), (long)w->len);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.ops[0], WS_OP_TEXT);
    assert_int_equal(e.lens[0], 5);
    assert_memory_equal(e.payloads[0], "hello", 5);
    /* unmasked in place: the reported payload is inside the input */
    assert_ptr_equal(e.ptrs[0], w->data + 6);
    assert_null(p.msg);
    wsframe_parser_dispose(&p);
    free(w);
}

/* The same stream fed in every chunk size gives the same events. */
static void test_every_split(void **state)
{
    (void)state;
    wire_t *w = calloc(1, sizeof(*w));
    uint8_t big[70000];
    for (size_t i = 0; i < sizeof(big); ++i)
        big[i] = (uint8_t)(i * 7);
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "hello", 5);
    put_frame(w, 0, 0, WS_OP_BINARY, 1, "ab", 2);
    put_frame(w, 1, 0, WS_OP_PING, 1, "ping!", 5); /* control frames may come between fragments */
    put_frame(w, 0, 0, WS_OP_CONT, 1, "cd", 2);
    put_frame(w, 1, 0, WS_OP_CONT, 1, "ef", 2);
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "", 0);
    put_frame(w, 1, 0, WS_OP_BINARY, 1, big, 300);
    put_frame(w, 1, 0, WS_OP_BINARY, 1, big, sizeof(big));
    put_frame(w, 1, 0, WS_OP_CLOSE, 1,
              "\x03\xe8"
              "bye",
              5);
    size_t steps[] = {0, 1, 2, 3, 5, 7, 13, 64, 1000, 65536};
    for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); ++s) {
        events_t e = {0};
        wsframe_error_t err;
        long r = feed(w, steps[s], 1 << 20, &e, &err);
        assert_true(r >= 0);
        assert_int_equal(e.count, 7);
        assert_int_equal(e.ops[0], WS_OP_TEXT);
        assert_memory_equal(e.payloads[0], "hello", 5);
        assert_int_equal(e.ops[1], WS_OP_PING);
        assert_memory_equal(e.payloads[1], "ping!", 5);
        assert_int_equal(e.ops[2], WS_OP_BINARY);
        assert_int_equal(e.lens[2], 6);
        assert_memory_equal(e.payloads[2], "abcdef", 6);
        assert_int_equal(e.ops[3], WS_OP_TEXT);
        assert_int_equal(e.lens[3], 0);
        assert_int_equal(e.lens[4], 300);
        assert_memory_equal(e.payloads[4], big, 256);
        assert_int_equal(e.lens[5], sizeof(big));
        assert_memory_equal(e.payloads[5], big, 256);
        assert_int_equal(e.ops[6], WS_OP_CLOSE);
        assert_memory_equal(e.payloads[6],
                            "\x03\xe8"
                            "bye",
                            5);
    }
    free(w);
}

static void expect_error(void (*build)(wire_t *), size_t max, int code)
{
    wire_t *w = calloc(1, sizeof(*w));
    build(w);
    size_t steps[] = {0, 1};
    for (size_t s = 0; s < 2; ++s) {
        events_t e = {0};
        wsframe_error_t err = {0, NULL};
        assert_int_equal(feed(w, steps[s], max, &e, &err), -1);
        assert_int_equal(err.code, code);
        assert_non_null(err.reason);
    }
    free(w);
}

static void b_rsv(wire_t *w)
{
    put_frame(w, 1, 4, WS_OP_TEXT, 1, "x", 1);
}
static void b_unmasked(wire_t *w)
{
    put_frame(w, 1, 0, WS_OP_TEXT, 0, "x", 1);
}
static void b_opcode(wire_t *w)
{
    put_frame(w, 1, 0, 3, 1, "x", 1);
}
static void b_long_ping(wire_t *w)
{
    uint8_t p[126] = {0};
    put_frame(w, 1, 0, WS_OP_PING, 1, p, sizeof(p));
}
static void b_fragmented_ping(wire_t *w)
{
    put_frame(w, 0, 0, WS_OP_PING, 1, "x", 1);
}
static void b_orphan_cont(wire_t *w)
{
    put_frame(w, 1, 0, WS_OP_CONT, 1, "x", 1);
}
static void b_nested_start(wire_t *w)
{
    put_frame(w, 0, 0, WS_OP_TEXT, 1, "x", 1);
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "y", 1);
}
static void b_too_big(wire_t *w)
{
    uint8_t p[101] = {0};
    put_frame(w, 1, 0, WS_OP_BINARY, 1, p, sizeof(p));
}
static void b_too_big_fragmented(wire_t *w)
{
    uint8_t p[60] = {0};
    put_frame(w, 0, 0, WS_OP_BINARY, 1, p, sizeof(p));
    put_frame(w, 1, 0, WS_OP_CONT, 1, p, sizeof(p));
}
static void b_top_bit(wire_t *w)
{
    const uint8_t f[] = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4};
    memcpy(w->data, f, sizeof(f));
    w->len = sizeof(f);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error(b_rsv, 1000, 1002);
    expect_error(b_unmasked, 1000, 1002);
    expect_error(b_opcode, 1000, 1002);
    expect_error(b_long_ping, 1000, 1002);
    expect_error(b_fragmented_ping, 1000, 1002);
    expect_error(b_orphan_cont, 1000, 1002);
    expect_error(b_nested_start, 1000, 1002);
    expect_error(b_too_big, 100, 1009);
    expect_error(b_too_big_fragmented, 100, 1009);
    expect_error(b_top_bit, 1000, 1002);
}

/* A frame exactly at the cap is fine. */
static void test_at_cap(void **state)
{
    (void)state;
    wire_t *w = calloc(1, sizeof(*w));
    uint8_t p[100] = {0};
    put_frame(w, 0, 0, WS_OP_BINARY, 1, p, 50);
    put_frame(w, 1, 0, WS_OP_CONT, 1, p, 50);
    events_t e = {0};
    wsframe_error_t err;
    assert_true(feed(w, 0, 100, &e, &err) >= 0);
    assert_int_equal(e.count, 1);
    assert_int_equal(e.lens[0], 100);
    free(w);
}

/* An empty first fragment (FIN=0, no payload) before any buffer exists, then its continuation: one message, and
 * (under UBSan) no memcpy of 0 bytes to NULL. Fed whole and byte by byte. */
static void test_empty_first_fragment(void **state)
{
    (void)state;
    wire_t *w = calloc(1, sizeof(*w));
    put_frame(w, 0, 0, WS_OP_TEXT, 1, "", 0);
    put_frame(w, 0, 0, WS_OP_CONT, 1, "", 0);
    put_frame(w, 1, 0, WS_OP_CONT, 1, "ab", 2);
    put_frame(w, 0, 0, WS_OP_BINARY, 1, "", 0);
    put_frame(w, 1, 0, WS_OP_CONT, 1, "", 0);
    for (size_t step = 0; step <= 1; ++step) {
        events_t e = {0};
        wsframe_error_t err;
        assert_int_equal(feed(w, step, 100, &e, &err), step == 0 ? (long)w->len : 1);
        assert_int_equal(e.count, 2);
        assert_int_equal(e.ops[0], WS_OP_TEXT);
        assert_int_equal(e.lens[0], 2);
        assert_memory_equal(e.payloads[0], "ab", 2);
        assert_int_equal(e.ops[1], WS_OP_BINARY);
        assert_int_equal(e.lens[1], 0);
    }
    free(w);
}

/* A callback can stop the parse; the bytes after it are not consumed. */
static void test_stop(void **state)
{
    (void)state;
    wire_t *w = calloc(1, sizeof(*w));
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "a", 1);
    size_t first = w->len;
    put_frame(w, 1, 0, WS_OP_TEXT, 1, "b", 1);
    events_t e = {.stop_after = 1};
    wsframe_error_t err;
    assert_int_equal(feed(w, 0, 100, &e, &err), (long)first);
    assert_int_equal(e.count, 1);
    free(w);
}

static void test_server_headers(void **state)
{
    (void)state;
    uint8_t h[10];
    assert_int_equal(wsframe_header(h, WS_OP_TEXT, 0), 2);
    assert_int_equal(h[0], 0x81);
    assert_int_equal(h[1], 0);
    assert_int_equal(wsframe_header(h, WS_OP_BINARY, 125), 2);
    assert_int_equal(h[1], 125);
    assert_int_equal(wsframe_header(h, WS_OP_BINARY, 126), 4);
    assert_int_equal(h[1], 126);
    assert_int_equal(h[2] << 8 | h[3], 126);
    assert_int_equal(wsframe_header(h, WS_OP_BINARY, 65535), 4);
    assert_int_equal(wsframe_header(h, WS_OP_BINARY, 65536), 10);
    assert_int_equal(h[1], 127);
    assert_int_equal(h[7], 1);
    assert_int_equal(h[8], 0);
    uint8_t c[125];
    assert_int_equal(wsframe_close_payload(c, 1009, "too big", 7), 9);
    assert_int_equal(c[0] << 8 | c[1], 1009);
    assert_memory_equal(c + 2, "too big", 7);
    assert_true(wsframe_close_code_valid(1000));
    assert_true(wsframe_close_code_valid(4000));
    assert_false(wsframe_close_code_valid(1005));
    assert_false(wsframe_close_code_valid(1006));
    assert_false(wsframe_close_code_valid(999));
    assert_false(wsframe_close_code_valid(5000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_single_text_frame_zero_copy),
        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_at_cap),
        cmocka_unit_test(test_empty_first_fragment),
        cmocka_unit_test(test_stop),
        cmocka_unit_test(test_server_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
