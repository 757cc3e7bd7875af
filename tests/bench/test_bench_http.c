/*
 * test_bench_http.c — partyload's HTTP response parser and latency histogram: responses split at every byte,
 * chunked bodies, pipelined responses in one buffer, garbage (an error, never a crash or an over-read), and
 * percentiles on known data.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"
#include "http.h"

/* What partyd's counter party answers, byte for byte. */
static const char counter_ok[] = "HTTP/1.1 200 OK\r\n"
                                 "Date: Sun, 29 Nov 2026 17:06:04 GMT\r\n"
                                 "Connection: keep-alive\r\n"
                                 "Content-Length: 22\r\n"
                                 "Server: partyd/0.1.0\r\n"
                                 "content-type: application/json\r\n"
                                 "\r\n"
                                 "{\"room\":\"a\",\"count\":1}";

static const char chunked[] = "HTTP/1.1 200 OK\r\n"
                              "Transfer-Encoding: chunked\r\n"
                              "\r\n"
                              "5\r\nhello\r\n"
                              "1A;ext=1\r\nabcdefghijklmnopqrstuvwxyz\r\n"
                              "0\r\n"
                              "Trailer-Field: x\r\n"
                              "\r\n";

static const char not_found[] = "HTTP/1.1 404 Not Found\r\ncontent-length: 21\r\n\r\n{\"error\":\"no party\"}\n";

static const char no_content[] = "HTTP/1.1 204 No Content\r\n\r\n";

/* A copy in its own allocation of exactly `len` bytes, so that ASan catches any read past the end. */
static char *exact(const char *s, size_t len)
{
    char *p = malloc(len ? len : 1);
    memcpy(p, s, len);
    return p;
}

static ssize_t parse_exact(const char *s, size_t len, int eof, http_response_t *r)
{
    char *p = exact(s, len);
    ssize_t n = http_response_parse(p, len, eof, r);
    free(p);
    return n;
}

/* Every proper prefix is incomplete (never malformed); the whole is complete. */
static void check_every_split(const char *s, size_t len)
{
    http_response_t r;
    for (size_t i = 0; i < len; ++i)
        assert_int_equal(parse_exact(s, i, 0, &r), -2);
    assert_int_equal(parse_exact(s, len, 0, &r), (ssize_t)len);
}

static void test_split_every_byte(void **state)
{
    (void)state;
    check_every_split(counter_ok, sizeof(counter_ok) - 1);
    check_every_split(chunked, sizeof(chunked) - 1);
    check_every_split(not_found, sizeof(not_found) - 1);
    check_every_split(no_content, sizeof(no_content) - 1);

    http_response_t r;
    assert_int_equal(http_response_parse(counter_ok, sizeof(counter_ok) - 1, 0, &r), sizeof(counter_ok) - 1);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.minor_version, 1);
    assert_true(r.keep_alive);
    assert_false(r.chunked);
    assert_int_equal(r.body_len, 22);
    assert_memory_equal(r.body, "{\"room\":\"a\",\"count\":1}", 22);
    assert_int_equal(r.head_len, sizeof(counter_ok) - 1 - 22);

    assert_int_equal(http_response_parse(not_found, sizeof(not_found) - 1, 0, &r), sizeof(not_found) - 1);
    assert_int_equal(r.status, 404);
    assert_int_equal(r.body_len, 21);

    assert_int_equal(http_response_parse(no_content, sizeof(no_content) - 1, 0, &r), sizeof(no_content) - 1);
    assert_int_equal(r.status, 204);
    assert_int_equal(r.body_len, 0);
}

static void test_chunked(void **state)
{
    (void)state;
    http_response_t r;
    assert_int_equal(http_response_parse(chunked, sizeof(chunked) - 1, 0, &r), sizeof(chunked) - 1);
    assert_int_equal(r.status, 200);
    assert_true(r.chunked);
    assert_int_equal(r.body_len, 5 + 26);
    assert_true(r.keep_alive);

    /* bare LFs, uppercase hex, a space before the extension, no trailers, TE listing gzip before chunked */
    static const char lf[] = "HTTP/1.1 200 OK\nTransfer-Encoding: gzip, Chunked\n\nA ;x\n0123456789\n0\n\n";
    assert_int_equal(http_response_parse(lf, sizeof(lf) - 1, 0, &r), sizeof(lf) - 1);
    assert_int_equal(r.body_len, 10);

    /* Transfer-Encoding wins over Content-Length */
    static const char both[] = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
    assert_int_equal(http_response_parse(both, sizeof(both) - 1, 0, &r), sizeof(both) - 1);
    assert_int_equal(r.body_len, 3);

    /* a chunk whose data is followed by something else than CRLF */
    static const char bad_end[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n";
    assert_int_equal(http_response_parse(bad_end, sizeof(bad_end) - 1, 0, &r), -1);
    static const char bad_size[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    assert_int_equal(http_response_parse(bad_size, sizeof(bad_size) - 1, 0, &r), -1);
    static const char huge[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n";
    assert_int_equal(http_response_parse(huge, sizeof(huge) - 1, 0, &r), -1);
    /* truncated by the server's close */
    assert_int_equal(http_response_parse(chunked, sizeof(chunked) - 5, 1, &r), -1);
}

/* Like a connection's input buffer: bytes arrive in two reads split at `split`; complete responses are consumed. */
static void check_pipelined(const char *all, size_t len, size_t split, const int *statuses, size_t nstatus)
{
    char *buf = malloc(len);
    size_t have = 0, got = 0, start = 0;
    size_t cuts[2] = {split, len};
    for (int read = 0; read < 2; ++read) {
        memcpy(buf + have, all + have, cuts[read] - have);
        have = cuts[read];
        for (;;) {
            http_response_t r;
            ssize_t n = http_response_parse(buf + start, have - start, 0, &r);
            if (have == start) {
                assert_int_equal(n, -2);
                break;
            }
            assert_int_not_equal(n, -1);
            if (n == -2)
                break;
            assert_true(got < nstatus);
            assert_int_equal(r.status, statuses[got]);
            ++got;
            start += (size_t)n;
        }
    }
    assert_int_equal(got, nstatus);
    assert_int_equal(start, len);
    free(buf);
}

static void test_pipelined(void **state)
{
    (void)state;
    char all[2048];
    size_t len = 0;
    const char *parts[] = {counter_ok, "HTTP/1.1 100 Continue\r\n\r\n", chunked, not_found, no_content, counter_ok};
    const int statuses[] = {200, 100, 200, 404, 204, 200};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); ++i) {
        memcpy(all + len, parts[i], strlen(parts[i]));
        len += strlen(parts[i]);
    }
    /* one buffer holding them all */
    check_pipelined(all, len, len, statuses, 6);
    /* and every way of receiving it in two reads */
    for (size_t split = 0; split <= len; ++split)
        check_pipelined(all, len, split, statuses, 6);
}

static void test_connection_and_close_delimited(void **state)
{
    (void)state;
    http_response_t r;
    static const char close[] = "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_response_parse(close, sizeof(close) - 1, 0, &r), sizeof(close) - 1);
    assert_false(r.keep_alive);
    static const char v10[] = "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_response_parse(v10, sizeof(v10) - 1, 0, &r), sizeof(v10) - 1);
    assert_false(r.keep_alive);
    static const char v10ka[] = "HTTP/1.0 200 OK\r\nConnection: foo, Keep-Alive\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_response_parse(v10ka, sizeof(v10ka) - 1, 0, &r), sizeof(v10ka) - 1);
    assert_true(r.keep_alive);
    /* no length: the body runs to the close */
    static const char eof[] = "HTTP/1.1 200 OK\r\nX: y\r\n\r\nthe rest";
    assert_int_equal(http_response_parse(eof, sizeof(eof) - 1, 0, &r), -2);
    assert_int_equal(http_response_parse(eof, sizeof(eof) - 1, 1, &r), sizeof(eof) - 1);
    assert_false(r.keep_alive);
    assert_int_equal(r.body_len, 8);
    assert_memory_equal(r.body, "the rest", 8);
    /* a Content-Length body cut by the close */
    assert_int_equal(http_response_parse(counter_ok, sizeof(counter_ok) - 2, 1, &r), -1);
    /* the same length twice is fine */
    static const char twice[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
    assert_int_equal(http_response_parse(twice, sizeof(twice) - 1, 0, &r), sizeof(twice) - 1);
    /* a status line without a reason phrase */
    static const char bare[] = "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(http_response_parse(bare, sizeof(bare) - 1, 0, &r), sizeof(bare) - 1);
}

static void test_garbage(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "GET / HTTP/1.1\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 abc OK\r\n\r\n",
        "HTTP/1.1 099 Low\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
        "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        "\r\n",
        "x",
    };
    http_response_t r;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        size_t len = strlen(bad[i]);
        assert_int_equal(parse_exact(bad[i], len, 0, &r), -1);
        assert_int_equal(parse_exact(bad[i], len, 1, &r), -1);
    }
    /* a head that never ends is malformed once it passes the cap, not buffered forever */
    size_t big = HTTP_MAX_HEAD + 16;
    char *p = malloc(big);
    memcpy(p, "HTTP/1.1 200 OK\r\nX: ", 20);
    memset(p + 20, 'a', big - 20);
    assert_int_equal(http_response_parse(p, big, 0, &r), -1);
    free(p);

    /* random bytes, and valid responses with random bytes changed: any answer in range, no crash, no over-read
     * (the buffers are exactly sized for ASan) */
    uint64_t seed = 0x9e3779b97f4a7c15u;
    for (int round = 0; round < 20000; ++round) {
        seed = seed * 6364136223846793005u + 1442695040888963407u;
        size_t len = (size_t)(seed >> 33) % 200;
        char *buf = malloc(len + 1);
        const char *base = round % 2 ? chunked : counter_ok;
        size_t base_len = strlen(base);
        for (size_t i = 0; i < len; ++i) {
            seed = seed * 6364136223846793005u + 1442695040888963407u;
            if (round % 4 == 3 || i >= base_len)
                buf[i] = (char)(seed >> 56);
            else
                buf[i] = (seed >> 58) == 0 ? (char)(seed >> 40) : base[i];
        }
        ssize_t n = http_response_parse(buf, len, round % 3 == 0, &r);
        assert_true(n == -1 || n == -2 || (n > 0 && (size_t)n <= len));
        free(buf);
    }
}

static void test_hist_known(void **state)
{
    (void)state;
    hist_t *h = malloc(sizeof(*h));
    hist_init(h);
    assert_int_equal(hist_percentile(h, 50), 0);
    /* 1..100 (exact buckets), shuffled by a stride */
    for (uint64_t i = 0; i < 100; ++i)
        hist_record(h, (i * 37) % 100 + 1);
    assert_int_equal(h->count, 100);
    assert_int_equal(hist_percentile(h, 0), 1);
    assert_int_equal(hist_percentile(h, 1), 1);
    assert_int_equal(hist_percentile(h, 50), 50);
    assert_int_equal(hist_percentile(h, 90), 90);
    assert_int_equal(hist_percentile(h, 99), 99);
    assert_int_equal(hist_percentile(h, 99.5), 100);
    assert_int_equal(hist_percentile(h, 100), 100);

    /* one value: every percentile is that value, though its bucket is wider */
    hist_init(h);
    hist_record(h, 123456789);
    assert_int_equal(hist_percentile(h, 50), 123456789);
    assert_int_equal(hist_percentile(h, 99), 123456789);

    /* 1..1000 ms in ns: within a bucket's width (1/128) of the true value, never below it */
    hist_init(h);
    for (uint64_t i = 1000; i >= 1; --i)
        hist_record(h, i * 1000000);
    double ps[] = {10, 50, 90, 99, 99.9};
    uint64_t want[] = {100000000, 500000000, 900000000, 990000000, 999000000};
    for (size_t i = 0; i < 5; ++i) {
        uint64_t got = hist_percentile(h, ps[i]);
        assert_true(got >= want[i]);
        assert_true((double)(got - want[i]) <= (double)want[i] / 128);
    }
    assert_int_equal(hist_percentile(h, 100), 1000000000);
    assert_int_equal(hist_percentile(h, 0), 1000000);

    /* 99 fast and 1 slow: p99 is fast, p99.01 and max the slow one */
    hist_init(h);
    for (int i = 0; i < 99; ++i)
        hist_record(h, 200000);
    hist_record(h, 50000000);
    assert_true(hist_percentile(h, 99) >= 200000 && hist_percentile(h, 99) <= 200000 + 200000 / 128);
    assert_int_equal(hist_percentile(h, 99.01), 50000000);
    assert_int_equal(hist_percentile(h, 100), 50000000);

    /* merge adds counts and keeps the extremes */
    hist_t *g = malloc(sizeof(*g));
    hist_init(g);
    hist_record(g, 7);
    hist_merge(g, h);
    assert_int_equal(g->count, 101);
    assert_int_equal(g->min, 7);
    assert_int_equal(g->max, 50000000);
    free(g);
    free(h);
}

static void test_hist_buckets(void **state)
{
    (void)state;
    /* indexes are dense, in range and ordered; each bucket holds its values and is at most 1/128 wide */
    unsigned prev = 0;
    for (unsigned bit = 0; bit < 64; ++bit) {
        uint64_t p2 = (uint64_t)1 << bit;
        uint64_t vs[] = {p2 - 1, p2, p2 + 1, p2 + p2 / 3};
        for (size_t j = 0; j < 4; ++j) {
            uint64_t v = vs[j];
            unsigned i = hist_index(v);
            assert_true(i < HIST_BUCKETS);
            assert_true(hist_bucket_high(i) >= v);
            if (i > 0)
                assert_true(hist_bucket_high(i - 1) < v);
            if (v >= 256)
                assert_true((double)(hist_bucket_high(i) - v) <= (double)v / 128);
        }
        assert_true(hist_index(p2) >= prev);
        prev = hist_index(p2);
    }
    for (uint64_t v = 0; v < 100000; ++v) {
        assert_true(hist_index(v + 1) - hist_index(v) <= 1);
        assert_int_equal(hist_bucket_high(hist_index(v)) >= v, 1);
    }
    assert_int_equal(hist_index(UINT64_MAX), HIST_BUCKETS - 1);
    assert_true(hist_bucket_high(HIST_BUCKETS - 1) == UINT64_MAX);
    hist_t *h = malloc(sizeof(*h));
    hist_init(h);
    hist_record(h, UINT64_MAX);
    hist_record(h, 0);
    assert_true(hist_percentile(h, 100) == UINT64_MAX);
    assert_int_equal(hist_percentile(h, 50), 0);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_every_byte), cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_pipelined),        cmocka_unit_test(test_connection_and_close_delimited),
        cmocka_unit_test(test_garbage),          cmocka_unit_test(test_hist_known),
        cmocka_unit_test(test_hist_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
