/*
 * test_slots.c — room placement: slots spread evenly, a new shard takes ≈ 1/(N+1) of the slots and only for itself,
 * weights are honoured, and the answer never depends on the order shards are listed in.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <xxhash.h>

#include "slots.h"

static void counts(const slots_table_t *t, size_t *out, size_t n)
{
    memset(out, 0, n * sizeof(*out));
    for (int s = 0; s < SLOTS_COUNT; ++s)
        ++out[t->owner[s]];
}

static void test_key_hash_is_xxh3(void **state)
{
    (void)state;
    /* the placement is fixed forever: it must be exactly xxh3_64 mod 16384 of "party/room" */
    assert_int_equal(slots_of_key("main/room", 9), XXH3_64bits("main/room", 9) % SLOTS_COUNT);
    assert_int_equal(slots_of_room("main", 4, "room", 4), slots_of_key("main/room", 9));
    assert_int_equal(slots_of_room("relay", 5, "%41", 3), slots_of_key("relay/%41", 9));
    assert_int_not_equal(slots_of_key("main/A", 6), slots_of_key("main/%41", 8));
}

static void test_even_spread(void **state)
{
    (void)state;
    for (size_t n = 2; n <= 8; ++n) {
        slots_shard_t list[8];
        for (size_t i = 0; i < n; ++i)
            list[i] = (slots_shard_t){(uint32_t)i, 1.0};
        slots_table_t t;
        assert_int_equal(slots_build(&t, list, n), 0);
        size_t c[8];
        counts(&t, c, n);
        double ideal = (double)SLOTS_COUNT / (double)n;
        for (size_t i = 0; i < n; ++i) {
            double dev = fabs((double)c[i] - ideal) / ideal;
            if (dev > 0.05)
                fail_msg("%zu shards: shard %zu owns %zu slots, %.1f%% off the ideal %.0f", n, i, c[i], dev * 100, ideal);
        }
    }
}

/* Rooms (not just slots) spread evenly too: 100k room names over 4 shards. */
static void test_rooms_spread(void **state)
{
    (void)state;
    slots_shard_t list[4] = {{0, 1}, {1, 1}, {2, 1}, {3, 1}};
    slots_table_t t;
    slots_build(&t, list, 4);
    size_t c[4] = {0};
    char room[32];
    for (int i = 0; i < 100000; ++i) {
        int n = snprintf(room, sizeof(room), "room-%d", i);
        ++c[t.owner[slots_of_room("main", 4, room, (size_t)n)]];
    }
    for (int i = 0; i < 4; ++i)
        assert_true(c[i] > 25000 * 0.95 && c[i] < 25000 * 1.05);
}

static void test_adding_a_shard_moves_its_share_only(void **state)
{
    (void)state;
    for (size_t n = 1; n <= 7; ++n) {
        slots_shard_t list[8];
        for (size_t i = 0; i <= n; ++i)
            list[i] = (slots_shard_t){(uint32_t)i, 1.0};
        slots_table_t before, after;
        slots_build(&before, list, n);
        slots_build(&after, list, n + 1);
        size_t moved = 0;
        for (int s = 0; s < SLOTS_COUNT; ++s) {
            if (before.owner[s] == after.owner[s])
                continue;
            ++moved;
            if (after.owner[s] != n)
                fail_msg("slot %d moved from %u to %u, not to the new shard %zu", s, before.owner[s], after.owner[s], n);
        }
        double share = (double)moved / SLOTS_COUNT, ideal = 1.0 / (double)(n + 1);
        if (fabs(share - ideal) / ideal > 0.05)
            fail_msg("adding shard %zu moved %.2f%% of slots; ideal %.2f%%", n, share * 100, ideal * 100);
    }
}

static void test_removing_a_shard_moves_only_its_slots(void **state)
{
    (void)state;
    slots_shard_t all[5] = {{0, 1}, {1, 1}, {2, 1}, {3, 1}, {4, 1}}, without2[4] = {{0, 1}, {1, 1}, {3, 1}, {4, 1}};
    slots_table_t before, after;
    slots_build(&before, all, 5);
    slots_build(&after, without2, 4);
    for (int s = 0; s < SLOTS_COUNT; ++s) {
        if (before.owner[s] != 2)
            assert_int_equal(before.owner[s], after.owner[s]);
        else
            assert_int_not_equal(after.owner[s], 2);
    }
}

static void test_weights(void **state)
{
    (void)state;
    slots_shard_t list[3] = {{0, 2.0}, {1, 1.0}, {2, 1.0}};
    slots_table_t t;
    slots_build(&t, list, 3);
    size_t c[3];
    counts(&t, c, 3);
    double share0 = (double)c[0] / SLOTS_COUNT;
    if (fabs(share0 - 0.5) > 0.02)
        fail_msg("a shard of weight 2 among weights 2,1,1 owns %.1f%% of slots, expected 50%%", share0 * 100);
}

static void test_order_independent_and_invalid(void **state)
{
    (void)state;
    slots_shard_t a[3] = {{0, 1}, {1, 1}, {2, 1}}, b[3] = {{2, 1}, {0, 1}, {1, 1}};
    slots_table_t ta, tb;
    slots_build(&ta, a, 3);
    slots_build(&tb, b, 3);
    assert_memory_equal(&ta, &tb, sizeof(ta));
    slots_shard_t bad[1] = {{0, 0.0}};
    assert_int_not_equal(slots_build(&ta, bad, 1), 0);
    assert_int_not_equal(slots_build(&ta, a, 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_hash_is_xxh3),
        cmocka_unit_test(test_even_spread),
        cmocka_unit_test(test_rooms_spread),
        cmocka_unit_test(test_adding_a_shard_moves_its_share_only),
        cmocka_unit_test(test_removing_a_shard_moves_only_its_slots),
        cmocka_unit_test(test_weights),
        cmocka_unit_test(test_order_independent_and_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
