/*
 * test_strikes.c — node/strikes.c, the rule that quarantines a room that crashes its shard: one crash is only
 * counted; a second within the window quarantines it for the base time; after that one more crash within the window
 * quarantines it again at once, for twice as long, up to the cap; crashes further apart than the window start the count
 * again; an hour without a crash starts the time again from the base; an operator's lift forgets the room; the
 * quarantines in force are listed with the time each has left.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "node.h"

static void test_rule(void **state)
{
    (void)state;
    unsigned level = 0;
    uint64_t t = 1000000;
    assert_int_equal(strikes_crash("p/a", t, 10000, &level), 0);
    assert_int_equal(strikes_crash("p/b", t + 1, 10000, &level), 0); /* another room's crash is its own */
    assert_int_equal(strikes_crash("p/a", t + 5000, 10000, &level), 10000);
    assert_int_equal(level, 1);
    /* let in again after 10 s: the next crash quarantines it at once, for twice as long */
    assert_int_equal(strikes_crash("p/a", t + 20000, 10000, &level), 20000);
    assert_int_equal(level, 2);
    assert_int_equal(strikes_crash("p/a", t + 50000, 10000, &level), 40000);
    /* more than the window since the last crash: counted again from 1, but the level stays */
    t += 50000 + STRIKES_WINDOW_MS;
    assert_int_equal(strikes_crash("p/a", t, 10000, &level), 0);
    assert_int_equal(strikes_crash("p/a", t + 1, 10000, &level), 80000);
    /* capped */
    uint64_t ms = 0;
    for (int i = 0; i < 20; ++i)
        ms = strikes_crash("p/a", t + 2 + (uint64_t)i, 10000, &level);
    assert_int_equal(ms, STRIKES_MAX_MS);
    /* an hour later: from the base time again */
    t += 3600 * 1000 + 100;
    assert_int_equal(strikes_crash("p/a", t, 10000, &level), 0);
    assert_int_equal(strikes_crash("p/a", t + 1, 10000, &level), 10000);
    assert_int_equal(level, 1);
    /* lifted: forgotten */
    assert_int_equal(strikes_forget("p/a"), 0);
    assert_int_equal(strikes_forget("p/a"), -ENOENT);
    assert_int_equal(strikes_crash("p/a", t + 2, 10000, &level), 0);
}

static int seen;
static uint64_t seen_left;

static void on_quarantined(const char *room, uint64_t left_ms, void *data)
{
    assert_string_equal(room, "p/q");
    assert_ptr_equal(data, &seen);
    ++seen;
    seen_left = left_ms;
}

static void test_listed(void **state)
{
    (void)state;
    unsigned level;
    uint64_t t = 50000000;
    strikes_crash("p/q", t, 3000, &level);
    strikes_crash("p/q", t, 3000, &level);
    strikes_each_quarantined(t + 1000, on_quarantined, &seen);
    assert_int_equal(seen, 1);
    assert_int_equal(seen_left, 2000);
    seen = 0;
    strikes_each_quarantined(t + 3000, on_quarantined, &seen);
    assert_int_equal(seen, 0);
}

static void test_many_rooms(void **state)
{
    (void)state;
    /* more rooms than are remembered: the one that crashed longest ago makes room, nothing else breaks */
    unsigned level;
    char room[32];
    for (int i = 0; i < 200; ++i) {
        snprintf(room, sizeof(room), "p/r%d", i);
        assert_int_equal(strikes_crash(room, 90000000 + (uint64_t)i, 1000, &level), 0);
    }
    assert_int_equal(strikes_crash("p/r199", 90000300, 1000, &level), 1000);
    assert_int_equal(strikes_forget("p/r0"), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rule),
        cmocka_unit_test(test_listed),
        cmocka_unit_test(test_many_rooms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
