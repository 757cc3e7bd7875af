/*
 * test_keys.c — the layout of a shard's storage keys (shard/keys.c): a room's keys and a slot's rooms are contiguous
 * ranges in byte order, the alarm index sorts by time after every room key, and the helpers invert each other.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys.h"
#include "slots.h"
#include "store.h"

static size_t prefix(const char *party, const char *room, unsigned char *out)
{
    char name[BASE_ROOM_KEY_MAX];
    size_t n = keys_room_name(name, proto_str(party, strlen(party)), proto_str(room, strlen(room)));
    return keys_room_prefix(name, n, out);
}

static void test_room_prefix(void **state)
{
    (void)state;
    char name[BASE_ROOM_KEY_MAX];
    size_t n = keys_room_name(name, PROTO_STR("main"), PROTO_STR("lobby"));
    assert_int_equal(n, 10);
    assert_memory_equal(name, "main/lobby", 10);
    unsigned char p[PREFIX_MAX];
    size_t pl = keys_room_prefix(name, n, p);
    assert_int_equal(pl, 14);
    uint16_t slot = slots_of_key("main/lobby", 10);
    assert_int_equal(p[0] << 8 | p[1], slot);
    assert_int_equal(p[2] << 8 | p[3], 10);
    assert_memory_equal(p + 4, "main/lobby", 10);
}

/* A room's data keys lie between its prefix + 'd' and prefix + 'd' + 1, whatever the party's key; another room whose
 * name extends this one's is outside (the length is in the prefix). */
static void test_data_keys_are_one_range(void **state)
{
    (void)state;
    unsigned char p[PREFIX_MAX], q[PREFIX_MAX], k[DATA_KEY_MAX], lo[PREFIX_MAX + 1], hi[PREFIX_MAX + 1], other[DATA_KEY_MAX];
    size_t pl = prefix("main", "a", p), ql = prefix("main", "ab", q);
    size_t lol = keys_tagged(p, pl, TAG_DATA, lo), hil = keys_tagged(p, pl, TAG_DATA + 1, hi);
    const char *keys[] = {"", "\x00", "a", "\xff\xff\xff", "zzzz"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); ++i) {
        size_t kl = keys_data(p, pl, keys[i], i == 1 ? 1 : strlen(keys[i]), k);
        assert_true(keys_cmp(k, kl, lo, lol) >= 0);
        assert_true(keys_cmp(k, kl, hi, hil) < 0);
        int tagp;
        size_t plen = 0;
        tagp = keys_tag((const char *)k, kl, &plen);
        if (kl > pl) {
            assert_int_equal(tagp, TAG_DATA);
            assert_int_equal(plen, pl);
        }
    }
    if (p[0] == q[0] && p[1] == q[1]) {
        size_t ol = keys_data(q, ql, "k", 1, other);
        assert_false(keys_cmp(other, ol, lo, lol) >= 0 && keys_cmp(other, ol, hi, hil) < 0);
    }
    /* a key too short to be a room key has no tag */
    size_t plen;
    assert_int_equal(keys_tag("\x00\x01\x00", 3, &plen), 0);
}

/* Every room key of a slot is within the slot's range; the alarm index ([FF FF]...) is after every room. */
static void test_slot_range_and_alarm_index(void **state)
{
    (void)state;
    unsigned char p[PREFIX_MAX], lo[2], hi[2], idx[ALARM_INDEX_MAX], bound[10];
    size_t pl = prefix("counter", "r1", p);
    uint16_t slot = (uint16_t)(p[0] << 8 | p[1]);
    keys_slot_range(slot, lo, hi);
    assert_true(keys_cmp(p, pl, lo, 2) >= 0);
    assert_true(keys_cmp(p, pl, hi, 2) < 0);
    keys_slot_range(SLOTS_COUNT - 1, lo, hi);
    assert_true(keys_cmp(p, pl, hi, 2) < 0);

    size_t il = keys_alarm_index(p, pl, 5000, idx);
    assert_int_equal(il, 10 + pl);
    assert_true(keys_cmp(idx, il, hi, 2) >= 0); /* after the last slot's range */
    keys_alarm_bound(bound, 5000);
    assert_true(keys_cmp(bound, 10, idx, il) < 0);
    keys_alarm_bound(bound, 5001);
    assert_true(keys_cmp(bound, 10, idx, il) > 0);
    assert_int_equal(store_get_u64(idx + 2), 5000);

    /* from an alarm key and its value back to the index entry */
    unsigned char ak[PREFIX_MAX + 1], value[9], idx2[ALARM_INDEX_MAX];
    size_t akl = keys_tagged(p, pl, TAG_ALARM, ak);
    store_put_u64(value, 5000);
    value[8] = 2;
    size_t plen;
    assert_int_equal(keys_tag((const char *)ak, akl, &plen), TAG_ALARM);
    assert_int_equal(plen, pl);
    size_t il2 = keys_alarm_index_of((const char *)ak, plen, (const char *)value, idx2);
    assert_int_equal(il2, il);
    assert_memory_equal(idx2, idx, il);
}

static void test_successor_and_cmp(void **state)
{
    (void)state;
    unsigned char out[8];
    assert_int_equal(keys_successor((const unsigned char *)"ab", 2, out), 2);
    assert_memory_equal(out, "ac", 2);
    assert_int_equal(keys_successor((const unsigned char *)"a\xff\xff", 3, out), 1);
    assert_memory_equal(out, "b", 1);
    assert_int_equal(keys_successor((const unsigned char *)"\xff\xff", 2, out), 0);
    assert_true(keys_cmp("a", 1, "ab", 2) < 0);
    assert_true(keys_cmp("ab", 2, "a", 1) > 0);
    assert_true(keys_cmp("ab", 2, "ab", 2) == 0);
    assert_true(keys_cmp("\xff", 1, "a", 1) > 0); /* unsigned bytes */
    assert_true(keys_cmp("", 0, "a", 1) < 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_room_prefix),
        cmocka_unit_test(test_data_keys_are_one_range),
        cmocka_unit_test(test_slot_range_and_alarm_index),
        cmocka_unit_test(test_successor_and_cmp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
