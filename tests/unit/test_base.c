/*
 * test_base.c — UTF-8 validation (what decides 1007), code point counting, UUIDs, the byte buffer and the atomic file
 * write.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"

#define V(s) base_utf8_valid(s, sizeof(s) - 1)

static void test_utf8(void **state)
{
    (void)state;
    assert_true(V(""));
    assert_true(V("plain ascii, long enough to take the eight-byte path"));
    assert_true(V("caf\xc3\xa9"));
    assert_true(V("\xe2\x82\xac"));     /* € */
    assert_true(V("\xf0\x9f\x8e\x89")); /* 🎉 */
    assert_true(V("\xf4\x8f\xbf\xbf")); /* U+10FFFF */
    assert_true(V("\xed\x9f\xbf"));     /* U+D7FF */
    assert_true(V("nul\0inside"));      /* U+0000 is valid UTF-8 */
    assert_false(V("\xff"));
    assert_false(V("\xc0\xaf"));         /* overlong '/' */
    assert_false(V("\xc1\xbf"));         /* overlong */
    assert_false(V("\xe0\x80\xaf"));     /* overlong */
    assert_false(V("\xf0\x80\x80\xaf")); /* overlong */
    assert_false(V("\xed\xa0\x80"));     /* surrogate U+D800 */
    assert_false(V("\xf4\x90\x80\x80")); /* > U+10FFFF */
    assert_false(V("\xf5\x80\x80\x80"));
    assert_false(V("caf\xc3")); /* truncated at the end */
    assert_false(V("\xe2\x82"));
    assert_false(V("\x80"));                 /* lone continuation */
    assert_false(V("abcdefgh\xe2\x28\xa1")); /* bad continuation after the fast path */
}

static void test_utf8_count(void **state)
{
    (void)state;
    assert_int_equal(base_utf8_count("", 0), 0);
    assert_int_equal(base_utf8_count("abc", 3), 3);
    assert_int_equal(base_utf8_count("caf\xc3\xa9", 5), 4);
    assert_int_equal(base_utf8_count("\xf0\x9f\x8e\x89\xf0\x9f\x8e\x89", 8), 2);
}

static void test_uuid(void **state)
{
    (void)state;
    char a[37], b[37];
    base_uuid4(a);
    base_uuid4(b);
    assert_int_equal(strlen(a), 36);
    assert_string_not_equal(a, b);
    for (int i = 0; i < 36; ++i) {
        if (i == 8 || i == 13 || i == 18 || i == 23)
            assert_int_equal(a[i], '-');
        else
            assert_non_null(strchr("0123456789abcdef", a[i]));
    }
    assert_int_equal(a[14], '4');
    assert_non_null(strchr("89ab", a[19]));
    /* many in a row stay distinct (the pool refills) */
    char seen[100][37];
    for (int i = 0; i < 100; ++i) {
        base_uuid4(seen[i]);
        for (int j = 0; j < i; ++j)
            assert_string_not_equal(seen[i], seen[j]);
    }
}

static void test_buf(void **state)
{
    (void)state;
    base_buf_t b;
    base_buf_init(&b);
    for (int i = 0; i < 1000; ++i)
        base_buf_append(&b, "0123456789", 10);
    assert_int_equal(base_buf_len(&b), 10000);
    base_buf_consume(&b, 9995);
    assert_int_equal(base_buf_len(&b), 5);
    assert_memory_equal(base_buf_head(&b), "56789", 5);
    base_buf_append(&b, "ab", 2);
    assert_memory_equal(base_buf_head(&b), "56789ab", 7);
    base_buf_consume(&b, 7);
    assert_int_equal(base_buf_len(&b), 0);
    base_buf_shrink(&b, 100);
    assert_null(b.data);
    base_buf_dispose(&b);
}

static void test_hex(void **state)
{
    (void)state;
    const unsigned char raw[] = {0x00, 0x7f, 0x80, 0xff, 'k', 0x04};
    char hex[2 * sizeof(raw) + 1];
    base_hex_encode(raw, sizeof(raw), hex);
    assert_string_equal(hex, "007f80ff6b04");
    unsigned char back[8];
    assert_int_equal(base_hex_decode(hex, strlen(hex), back, sizeof(back)), sizeof(raw));
    assert_memory_equal(back, raw, sizeof(raw));
    assert_int_equal(base_hex_decode("7F80FF", 6, back, sizeof(back)), 3); /* either case */
    assert_int_equal(back[2], 0xff);
    assert_int_equal(base_hex_decode("", 0, back, sizeof(back)), 0);
    assert_int_equal(base_hex_decode("abc", 3, back, sizeof(back)), -1); /* odd */
    assert_int_equal(base_hex_decode("zz", 2, back, sizeof(back)), -1);  /* not hex */
    assert_int_equal(base_hex_decode("0g", 2, back, sizeof(back)), -1);
    assert_int_equal(base_hex_decode("00112233", 8, back, 3), -1); /* over cap */
}

/* A real file in a real folder: replaced whole, no .tmp left behind; a folder that is not there fails with -ENOENT and
 * writes nothing. */
static void test_write_file_atomic(void **state)
{
    (void)state;
    char dir[] = "/tmp/partyd-test-base-XXXXXX", path[64], buf[32];
    assert_non_null(mkdtemp(dir));
    assert_int_equal(base_write_file_atomic(dir, "f", "first version", 13), 0);
    assert_int_equal(base_write_file_atomic(dir, "f", "second", 6), 0);
    snprintf(path, sizeof(path), "%s/f", dir);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf), f);
    fclose(f);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, "second", 6);
    snprintf(path, sizeof(path), "%s/f.tmp", dir);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/none", dir);
    assert_int_equal(base_write_file_atomic(path, "f", "x", 1), -ENOENT);
    snprintf(path, sizeof(path), "%s/f", dir);
    unlink(path);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8), cmocka_unit_test(test_utf8_count), cmocka_unit_test(test_uuid),
        cmocka_unit_test(test_buf),  cmocka_unit_test(test_hex),        cmocka_unit_test(test_write_file_atomic),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
