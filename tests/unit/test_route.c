/*
 * test_route.c — PartyKit's URL scheme and `_pk` decoding.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "route.h"

static route_t parse(const char *target, const char *prefix)
{
    route_t r;
    route_parse(&r, target, strlen(target), prefix);
    return r;
}

static void assert_span(const char *p, size_t len, const char *want)
{
    assert_int_equal(len, strlen(want));
    assert_memory_equal(p, want, len);
}

static void test_rooms(void **state)
{
    (void)state;
    route_t r = parse("/parties/chat/lobby", "parties");
    assert_int_equal(r.kind, ROUTE_ROOM);
    assert_span(r.party, r.party_len, "chat");
    assert_span(r.room, r.room_len, "lobby");
    assert_span(r.query, r.query_len, "");

    r = parse("/party/doc-1?_pk=abc&x=1", "parties");
    assert_int_equal(r.kind, ROUTE_ROOM);
    assert_span(r.party, r.party_len, "main");
    assert_span(r.room, r.room_len, "doc-1");
    assert_span(r.path, r.path_len, "/party/doc-1");
    assert_span(r.query, r.query_len, "_pk=abc&x=1");

    r = parse("/parties/relay/r1/sub/path?q", "parties");
    assert_int_equal(r.kind, ROUTE_ROOM);
    assert_span(r.room, r.room_len, "r1");
    assert_span(r.path, r.path_len, "/parties/relay/r1/sub/path");

    /* the room id is the raw segment */
    r = parse("/parties/main/%41b%20c", "parties");
    assert_int_equal(r.kind, ROUTE_ROOM);
    assert_span(r.room, r.room_len, "%41b%20c");

    /* a configured prefix replaces "parties"; /party/:room stays */
    r = parse("/rooms/main/x", "rooms");
    assert_int_equal(r.kind, ROUTE_ROOM);
    assert_int_equal(parse("/parties/main/x", "rooms").kind, ROUTE_NONE);
    assert_int_equal(parse("/party/x", "rooms").kind, ROUTE_ROOM);
}

static void test_not_rooms(void **state)
{
    (void)state;
    const char *none[] = {"/", "/health", "/partiesx/main/r", "/partyx/r", "", "parties/main/r", "/index.html"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); ++i)
        assert_int_equal(parse(none[i], "parties").kind, ROUTE_NONE);
}

static void test_bad_names(void **state)
{
    (void)state;
    const char *bad[] = {"/parties",       "/parties/",         "/parties/main",         "/parties/main/",
                         "/parties//room", "/parties/a.b/room", "/parties/main//x",      "/party/",
                         "/party",         "/parties/ma in/r",  "/parties/main/a%00\x01"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); ++i) {
        route_t r = parse(bad[i], "parties");
        if (r.kind != ROUTE_BAD)
            fail_msg("%s: expected ROUTE_BAD, got %d", bad[i], r.kind);
        assert_non_null(r.error);
    }
    char path[600];
    /* party: 64 ok, 65 bad */
    strcpy(path, "/parties/");
    memset(path + 9, 'p', 64);
    strcpy(path + 9 + 64, "/r");
    assert_int_equal(parse(path, "parties").kind, ROUTE_ROOM);
    memset(path + 9, 'p', 65);
    strcpy(path + 9 + 65, "/r");
    assert_int_equal(parse(path, "parties").kind, ROUTE_BAD);
    /* room: 256 ok, 257 bad */
    strcpy(path, "/party/");
    memset(path + 7, 'r', 256);
    path[7 + 256] = '\0';
    assert_int_equal(parse(path, "parties").kind, ROUTE_ROOM);
    memset(path + 7, 'r', 257);
    path[7 + 257] = '\0';
    assert_int_equal(parse(path, "parties").kind, ROUTE_BAD);
    /* raw invalid UTF-8 and DEL */
    assert_int_equal(parse("/party/\xff", "parties").kind, ROUTE_BAD);
    assert_int_equal(parse("/party/a\x7f", "parties").kind, ROUTE_BAD);
    assert_int_equal(parse("/party/caf\xc3\xa9", "parties").kind, ROUTE_ROOM);
}

static long param(const char *q, const char *name, char *out, size_t cap)
{
    return route_query_param(q, strlen(q), name, out, cap);
}

static void test_query_param(void **state)
{
    (void)state;
    char out[130];
    assert_int_equal(param("_pk=abc", "_pk", out, sizeof(out)), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(param("x=1&_pk=a+b%21&_pk=second", "_pk", out, sizeof(out)), 4);
    assert_string_equal(out, "a b!");
    assert_int_equal(param("x=1", "_pk", out, sizeof(out)), -1);
    assert_int_equal(param("", "_pk", out, sizeof(out)), -1);
    assert_int_equal(param("_pk", "_pk", out, sizeof(out)), 0);
    assert_int_equal(param("_pk=", "_pk", out, sizeof(out)), 0);
    /* a malformed escape stays as it is, as URLSearchParams leaves it */
    assert_int_equal(param("_pk=%zz%4", "_pk", out, sizeof(out)), 5);
    assert_string_equal(out, "%zz%4");
    /* the key is decoded too */
    assert_int_equal(param("%5Fpk=k", "_pk", out, sizeof(out)), 1);
    assert_string_equal(out, "k");
    /* UTF-8 through percent-encoding */
    assert_int_equal(param("_pk=%C3%A9", "_pk", out, sizeof(out)), 2);
    assert_string_equal(out, "\xc3\xa9");
    /* bytes that are not UTF-8 become U+FFFD, one for each maximal subpart, as URLSearchParams decodes them */
    assert_int_equal(param("_pk=%ff", "_pk", out, sizeof(out)), 3);
    assert_string_equal(out, "\xef\xbf\xbd");
    assert_int_equal(param("_pk=a%E2%82b%C3", "_pk", out, sizeof(out)), 8);
    assert_string_equal(out, "a\xef\xbf\xbd"
                             "b\xef\xbf\xbd");
    assert_int_equal(param("_pk=%ED%A0%80", "_pk", out, sizeof(out)), 9); /* a surrogate: three */
    assert_string_equal(out, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    /* the cap counts the replaced bytes: 43 × %ff is 129 bytes decoded */
    char f[400] = "_pk=";
    for (int i = 0; i < 43; ++i)
        memcpy(f + 4 + 3 * i, "%ff", 4);
    assert_int_equal(param(f, "_pk", out, 129), -2);
    f[4 + 3 * 42] = '\0';
    assert_int_equal(param(f, "_pk", out, 129), 126);
    /* the cap: 128 bytes fit in 129, 129 do not */
    char q[400] = "_pk=";
    memset(q + 4, 'a', 128);
    q[4 + 128] = '\0';
    assert_int_equal(param(q, "_pk", out, 129), 128);
    q[4 + 128] = 'a';
    q[4 + 129] = '\0';
    assert_int_equal(param(q, "_pk", out, 129), -2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rooms),
        cmocka_unit_test(test_not_rooms),
        cmocka_unit_test(test_bad_names),
        cmocka_unit_test(test_query_param),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
