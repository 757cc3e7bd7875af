/*
 * test_store.c — the shard's RocksDB layer on a real database in a temporary directory: reads see uncommitted
 * writes, scans are sorted and bounded both ways, save points roll back, and only committed data survives a reopen.
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

#include "store.h"

static char dir[256];

static store_t *open_store(void)
{
    store_t *s;
    char err[512];
    int r = store_open(dir, 1, &s, err, sizeof(err));
    if (r != 0)
        fail_msg("store_open: %s", err);
    return s;
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/partyd-test-store-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

#define PUT(s, k, v) store_put(s, k, strlen(k), v, strlen(v))

static void assert_value(store_t *s, const char *key, const char *want)
{
    char *v = NULL;
    size_t len;
    int r = store_get(s, key, strlen(key), &v, &len);
    if (want == NULL) {
        assert_int_equal(r, -ENOENT);
        return;
    }
    assert_int_equal(r, 0);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(v, want, len);
    free(v);
}

static void test_read_your_writes_and_commit(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    PUT(s, "a", "1");
    assert_value(s, "a", "1"); /* before the commit */
    assert_int_equal(store_pending(s), 1);
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    assert_int_equal(store_pending(s), 0);
    assert_value(s, "a", "1");
    PUT(s, "a", "2");
    store_delete(s, "a", 1);
    assert_value(s, "a", NULL);
    PUT(s, "b", "uncommitted");
    store_close(s); /* the batch is discarded */
    s = open_store();
    assert_value(s, "a", "1");
    assert_value(s, "b", NULL);
    store_close(s);
}

/* Overwrites of every length, and a put after a delete, read back right, in scans too, and after a reopen that
 * replays them from the WAL. */
static void test_overwrites(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    static const char *const values[] = {"12345", "9", "abcde", "a much longer value than before", "", "xy"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); ++i) {
        PUT(s, "k", values[i]);
        PUT(s, "k2", values[i]);
        assert_int_equal(store_commit(s, err, sizeof(err)), 0);
        assert_value(s, "k", values[i]);
    }
    store_delete(s, "k2", 2);
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    PUT(s, "k2", "back");
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    store_entry_t e[4];
    long n = store_scan(s, "k", 1, "l", 1, 0, e, 4);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].value, "xy");
    assert_string_equal(e[1].value, "back");
    store_entries_free(e, (size_t)n);
    store_close(s);
    s = open_store();
    assert_value(s, "k", "xy");
    assert_value(s, "k2", "back");
    /* and a thousand counter-like overwrites of one key */
    char v[32];
    for (int i = 1; i <= 1000; ++i) {
        snprintf(v, sizeof(v), "%d", i);
        PUT(s, "count", v);
        assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    }
    store_close(s);
    s = open_store();
    assert_value(s, "count", "1000");
    store_close(s);
}

static void test_scan(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    const char *keys[] = {"p/a", "p/b", "p/c", "p/d", "q/a"};
    for (size_t i = 0; i < 5; ++i)
        PUT(s, keys[i], keys[i]);
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    /* an uncommitted write and delete take part in the scan */
    PUT(s, "p/bb", "new");
    store_delete(s, "p/c", 3);
    store_entry_t e[10];
    long n = store_scan(s, "p/", 2, "p0", 2, 0, e, 10);
    assert_int_equal(n, 4);
    assert_string_equal(e[0].key, "p/a");
    assert_string_equal(e[1].key, "p/b");
    assert_string_equal(e[2].key, "p/bb");
    assert_string_equal(e[2].value, "new");
    assert_string_equal(e[3].key, "p/d");
    store_entries_free(e, (size_t)n);
    /* reverse, exclusive upper bound, limit */
    n = store_scan(s, "p/", 2, "p/d", 3, 1, e, 2);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].key, "p/bb");
    assert_string_equal(e[1].key, "p/b");
    store_entries_free(e, (size_t)n);
    /* no upper bound, reverse: from the very last key */
    n = store_scan(s, "p/", 2, NULL, 0, 1, e, 10);
    assert_int_equal(n, 5);
    assert_string_equal(e[0].key, "q/a");
    store_entries_free(e, (size_t)n);
    /* an empty range */
    assert_int_equal(store_scan(s, "x", 1, "y", 1, 0, e, 10), 0);
    assert_int_equal(store_scan(s, "x", 1, "y", 1, 1, e, 10), 0);
    store_close(s);
}

/* Issue 17 item 6: an inner save point released (its transaction succeeded), then the outer one rolled back: every
 * write since the outer one goes, the inner's included, and what came before stays. */
static void test_savepoints_nested_release(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    PUT(s, "k0", "before");
    store_savepoint(s); /* outer */
    PUT(s, "k1", "outer");
    store_savepoint(s); /* inner */
    PUT(s, "k2", "inner");
    assert_int_equal(store_release(s), 0); /* the inner transaction succeeded */
    PUT(s, "k3", "outer again");
    store_savepoint(s); /* a second inner one, rolled back alone */
    PUT(s, "k4", "inner 2");
    assert_int_equal(store_rollback(s), 0);
    assert_value(s, "k4", NULL);
    assert_value(s, "k3", "outer again");
    assert_int_equal(store_rollback(s), 0); /* the outer fails */
    assert_value(s, "k0", "before");
    assert_value(s, "k1", NULL);
    assert_value(s, "k2", NULL);
    assert_value(s, "k3", NULL);
    assert_int_equal(store_pending(s), 1);
    assert_int_equal(store_rollback(s), -EINVAL);
    assert_int_equal(store_release(s), -EINVAL);
    /* released save points do not outlive the pass */
    store_savepoint(s);
    PUT(s, "k5", "kept");
    assert_int_equal(store_release(s), 0);
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    assert_int_equal(store_rollback(s), -EINVAL);
    store_close(s);
    s = open_store();
    assert_value(s, "k0", "before");
    assert_value(s, "k1", NULL);
    assert_value(s, "k5", "kept");
    store_close(s);
}

static void test_savepoints(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    PUT(s, "k1", "kept");
    store_savepoint(s);
    PUT(s, "k2", "rolled back");
    store_delete(s, "k1", 2);
    assert_value(s, "k1", NULL);
    assert_int_equal(store_rollback(s), 0);
    assert_value(s, "k1", "kept");
    assert_value(s, "k2", NULL);
    assert_int_equal(store_pending(s), 1);
    assert_int_equal(store_rollback(s), -EINVAL); /* no save point left */
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    store_close(s);
    s = open_store();
    assert_value(s, "k1", "kept");
    assert_value(s, "k2", NULL);
    store_close(s);
}

static void test_binary_keys_and_big_values(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[256];
    const char key[] = {0, 1, 0, 2, (char)0xff};
    char *big = malloc(128 * 1024);
    memset(big, 'v', 128 * 1024);
    store_put(s, key, sizeof(key), big, 128 * 1024);
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    char *v;
    size_t len;
    assert_int_equal(store_get(s, key, sizeof(key), &v, &len), 0);
    assert_int_equal(len, 128 * 1024);
    assert_memory_equal(v, big, len);
    free(v);
    free(big);
    store_stats_t st;
    store_stats(s, &st);
    assert_true(st.commits >= 1);
    assert_true(st.live_bytes > 0);
    store_close(s);
}

/* Collects the keys an iterator visits, calling `step` (which may write) after each. */
static size_t walk(store_t *s, int reverse, void (*step)(store_t *s, const char *key), char out[][8], size_t max)
{
    store_iter_t *it = store_iter_open(s, "k", 1, "l", 1, reverse);
    size_t n = 0;
    for (; store_iter_valid(it) && n < max; store_iter_next(it)) {
        size_t kl;
        const char *k = store_iter_key(it, &kl);
        assert_true(kl < 8);
        memcpy(out[n], k, kl);
        out[n][kl] = '\0';
        ++n;
        if (step != NULL)
            step(s, out[n - 1]);
    }
    assert_int_equal(store_iter_close(it), 0);
    return n;
}

/* On k2: deletes k4 (ahead, committed), writes k3 (ahead, new), deletes k1 (behind). */
static void write_ahead(store_t *s, const char *key)
{
    if (strcmp(key, "k2") == 0) {
        store_delete(s, "k4", 2);
        PUT(s, "k3", "new");
        store_delete(s, "k1", 2);
    }
}

/* Reverse, on k4: deletes k2 (ahead, committed), writes k3 (ahead, new). */
static void write_ahead_reverse(store_t *s, const char *key)
{
    if (strcmp(key, "k4") == 0) {
        store_delete(s, "k2", 2);
        PUT(s, "k3", "new");
    }
}

/* Deletes the key it is on (a delete-all). */
static void delete_current(store_t *s, const char *key)
{
    store_delete(s, key, strlen(key));
}

/* An iterator sees the writes made while it is open (issue 17: listing in chunks of 128 visited a key deleted ahead
 * of it and skipped a new one): a key deleted ahead is not visited, one written ahead is, both ways; and deleting the
 * current key at every step visits every key once. */
static void test_iterator_sees_writes_made_during_it(void **state)
{
    (void)state;
    store_t *s = open_store();
    char err[512];
    PUT(s, "k1", "1");
    PUT(s, "k2", "2");
    PUT(s, "k4", "4");
    PUT(s, "k5", "5");
    PUT(s, "z", "outside");
    assert_int_equal(store_commit(s, err, sizeof(err)), 0);
    PUT(s, "k6", "pending"); /* uncommitted: seen too */

    char keys[16][8];
    size_t n = walk(s, 0, write_ahead, keys, 16);
    assert_int_equal(n, 5);
    const char *want[] = {"k1", "k2", "k3", "k5", "k6"};
    for (size_t i = 0; i < n; ++i)
        assert_string_equal(keys[i], want[i]);
    store_discard(s);

    n = walk(s, 1, write_ahead_reverse, keys, 16);
    const char *want_rev[] = {"k5", "k4", "k3", "k1"};
    assert_int_equal(n, 4);
    for (size_t i = 0; i < n; ++i)
        assert_string_equal(keys[i], want_rev[i]);
    store_discard(s);

    /* the values are the iterator's copies: still there after a write to the current key */
    store_iter_t *it = store_iter_open(s, "k", 1, "l", 1, 0);
    assert_true(store_iter_valid(it));
    PUT(s, "k1", "overwritten");
    size_t vl;
    const char *v = store_iter_value(it, &vl);
    assert_int_equal(vl, 1);
    assert_memory_equal(v, "1", 1);
    store_iter_seek(it, "k3", 2);
    assert_true(store_iter_valid(it));
    assert_memory_equal(store_iter_key(it, &vl), "k4", 2);
    assert_int_equal(store_iter_close(it), 0);
    store_discard(s);

    n = walk(s, 0, delete_current, keys, 16);
    assert_int_equal(n, 4);
    n = walk(s, 0, NULL, keys, 16);
    assert_int_equal(n, 0);
    assert_value(s, "z", "outside");
    store_close(s);
}

static void test_open_failure(void **state)
{
    (void)state;
    store_t *s;
    char err[512];
    assert_int_equal(store_open("/proc/no/such/dir", 1, &s, err, sizeof(err)), -EIO);
    assert_true(strlen(err) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_read_your_writes_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overwrites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_scan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_savepoints_nested_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_binary_keys_and_big_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_iterator_sees_writes_made_during_it, setup, teardown),
        cmocka_unit_test(test_open_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
