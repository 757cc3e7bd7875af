/*
 * store.c — a shard's RocksDB (see store.h). The only file in partyd that includes rocksdb/c.h.
 */
#include "store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "base.h"

struct st_store_t {
    rocksdb_t *db;
    rocksdb_options_t *options;
    rocksdb_cache_t *cache;
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_writebatch_wi_t *batch;
    size_t pending;
    size_t savepoints[16]; /* pending count at each save point, to restore it on rollback */
    size_t num_savepoints; /* RocksDB's stack of save points, released ones included */
    uint8_t released[64];  /* bit i: save point i was released */
    store_stats_t stats;
    uint64_t generation; /* bumped by every change to the batch: an iterator then seeks again (store_iter_next) */
};

struct st_store_iter_t {
    store_t *s;
    rocksdb_iterator_t *it; /* over the batch with the database as its base */
    uint64_t generation;    /* the batch's generation `it` was made in */
    char *lo, *hi;          /* the range; hi NULL: no upper bound */
    size_t lo_len, hi_len;
    int reverse;
    int valid;
    char *key, *value; /* copies of the current entry: a write to the batch invalidates RocksDB's */
    size_t key_len, value_len, key_cap, value_cap;
    char *err;
};

#define BLOCK_CACHE_BYTES (16 << 20)

static void set_err(char *err, size_t errlen, const char *what, char *rerr)
{
    snprintf(err, errlen, "%s: %s", what, rerr != NULL ? rerr : "unknown error");
    rocksdb_free(rerr);
}

int store_open(const char *path, int sync, store_t **out, char *err, size_t errlen)
{
    store_t *s = xcalloc(1, sizeof(*s));
    s->options = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(s->options, 1);
    /* many small keys, written in small synced batches: the settings C-STACK-NOTES.md measured */
    rocksdb_options_increase_parallelism(s->options, 2);
    rocksdb_options_optimize_level_style_compaction(s->options, 64 << 20);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(s->options, 1);
    rocksdb_options_set_compression(s->options, rocksdb_lz4_compression);
    rocksdb_options_set_bottommost_compression(s->options, rocksdb_zstd_compression);
    rocksdb_options_set_bytes_per_sync(s->options, 1 << 20);
    rocksdb_options_set_wal_bytes_per_sync(s->options, 1 << 20);
    rocksdb_options_set_keep_log_file_num(s->options, 3);
    rocksdb_options_set_max_log_file_size(s->options, 4 << 20);
    rocksdb_options_set_info_log_level(s->options, 2 /* warn: RocksDB's own LOG stays small */);
    /* Not inplace_update_support, although rooms mostly overwrite the same keys and the skip list insert is 25 % of
     * a shard's CPU under the writes benchmark (in alternating runs it gave relaxed 54-70k writes/s against 37-61k,
     * sync no clear difference): RocksDB 7.8 then refuses every backward iteration over the memtable ("Backward
     * iteration not supported if underlying iterator's value cannot be pinned"), i.e. reverse listings (test_scan).
     * A smaller memtable (2 MiB) and memtable_insert_with_hint_prefix_extractor made no difference beyond noise. */
    rocksdb_block_based_table_options_t *t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_filter_policy(t, rocksdb_filterpolicy_create_bloom_full(10));
    s->cache = rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
    rocksdb_block_based_options_set_block_cache(t, s->cache);
    rocksdb_block_based_options_set_cache_index_and_filter_blocks(t, 1);
    rocksdb_block_based_options_set_pin_l0_filter_and_index_blocks_in_cache(t, 1);
    rocksdb_block_based_options_set_format_version(t, 5);
    rocksdb_options_set_block_based_table_factory(s->options, t);
    rocksdb_block_based_options_destroy(t);

    char *rerr = NULL;
    s->db = rocksdb_open(s->options, path, &rerr);
    if (rerr != NULL) {
        set_err(err, errlen, path, rerr);
        rocksdb_cache_destroy(s->cache);
        rocksdb_options_destroy(s->options);
        free(s);
        return -EIO;
    }
    s->wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_set_sync(s->wo, sync);
    s->ro = rocksdb_readoptions_create();
    s->batch = rocksdb_writebatch_wi_create(0, 1 /* overwrite keys: reads see the latest write */);
    *out = s;
    return 0;
}

void store_close(store_t *s)
{
    rocksdb_writebatch_wi_destroy(s->batch);
    rocksdb_readoptions_destroy(s->ro);
    rocksdb_writeoptions_destroy(s->wo);
    rocksdb_close(s->db);
    rocksdb_cache_destroy(s->cache);
    rocksdb_options_destroy(s->options);
    free(s);
}

int store_get(store_t *s, const void *key, size_t klen, char **val, size_t *vlen)
{
    char *rerr = NULL;
    size_t len = 0;
    char *v = rocksdb_writebatch_wi_get_from_batch_and_db(s->batch, s->db, s->ro, key, klen, &len, &rerr);
    if (rerr != NULL) {
        log_error("store: get: %s", rerr);
        rocksdb_free(rerr);
        return -EIO;
    }
    if (v == NULL)
        return -ENOENT;
    /* hand out memory the caller frees with free(), whatever allocator RocksDB uses */
    *val = xmalloc(len + 1);
    memcpy(*val, v, len);
    (*val)[len] = '\0';
    *vlen = len;
    rocksdb_free(v);
    return 0;
}

void store_put(store_t *s, const void *key, size_t klen, const void *val, size_t vlen)
{
    ++s->generation;
    rocksdb_writebatch_wi_put(s->batch, key, klen, val, vlen);
    ++s->pending;
}

void store_delete(store_t *s, const void *key, size_t klen)
{
    ++s->generation;
    rocksdb_writebatch_wi_delete(s->batch, key, klen);
    ++s->pending;
}

static int key_cmp(const char *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}

static long scan(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, int reverse, store_entry_t *out,
                 size_t max, int with_values)
{
    rocksdb_iterator_t *base = rocksdb_create_iterator(s->db, s->ro);
    rocksdb_iterator_t *it = rocksdb_writebatch_wi_create_iterator_with_base(s->batch, base);
    if (!reverse) {
        rocksdb_iter_seek(it, lo, lolen);
    } else if (hi != NULL) {
        rocksdb_iter_seek_for_prev(it, hi, hilen);
        /* seek_for_prev lands on a key ≤ hi; the upper bound is exclusive */
        size_t kl;
        while (rocksdb_iter_valid(it)) {
            const char *k = rocksdb_iter_key(it, &kl);
            if (key_cmp(k, kl, hi, hilen) < 0)
                break;
            rocksdb_iter_prev(it);
        }
    } else {
        rocksdb_iter_seek_to_last(it);
    }
    size_t n = 0;
    while (n < max && rocksdb_iter_valid(it)) {
        size_t kl, vl;
        const char *k = rocksdb_iter_key(it, &kl);
        if (key_cmp(k, kl, lo, lolen) < 0 || (hi != NULL && key_cmp(k, kl, hi, hilen) >= 0))
            break;
        const char *v = rocksdb_iter_value(it, &vl);
        out[n].key = xstrndup(k, kl);
        out[n].key_len = kl;
        out[n].value = with_values ? xstrndup(v, vl) : NULL;
        out[n].value_len = vl;
        ++n;
        if (reverse)
            rocksdb_iter_prev(it);
        else
            rocksdb_iter_next(it);
    }
    char *rerr = NULL;
    rocksdb_iter_get_error(it, &rerr);
    rocksdb_iter_destroy(it);
    if (rerr != NULL) {
        log_error("store: scan: %s", rerr);
        rocksdb_free(rerr);
        store_entries_free(out, n);
        return -EIO;
    }
    return (long)n;
}

long store_scan(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, int reverse, store_entry_t *out, size_t max)
{
    return scan(s, lo, lolen, hi, hilen, reverse, out, max, 1);
}

long store_scan_keys(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, store_entry_t *out, size_t max)
{
    return scan(s, lo, lolen, hi, hilen, 0, out, max, 0);
}

/* ---- iterators ---- */

static char *copy_into(char *buf, size_t *cap, const char *src, size_t len)
{
    if (len + 1 > *cap) {
        *cap = len + 1 > 2 * *cap ? len + 1 : 2 * *cap;
        buf = xrealloc(buf, *cap);
    }
    if (len != 0)
        memcpy(buf, src, len);
    buf[len] = '\0';
    return buf;
}

static void iter_renew(store_iter_t *i)
{
    if (i->it != NULL) {
        char *rerr = NULL;
        rocksdb_iter_get_error(i->it, &rerr);
        if (rerr != NULL && i->err == NULL)
            i->err = rerr;
        else
            rocksdb_free(rerr);
        rocksdb_iter_destroy(i->it);
    }
    rocksdb_iterator_t *base = rocksdb_create_iterator(i->s->db, i->s->ro);
    i->it = rocksdb_writebatch_wi_create_iterator_with_base(i->s->batch, base);
    i->generation = i->s->generation;
}

/* Copies the entry RocksDB's iterator is on when it is in the range, else ends the iteration. */
static void iter_settle(store_iter_t *i)
{
    i->valid = 0;
    if (i->err != NULL || !rocksdb_iter_valid(i->it))
        return;
    size_t kl, vl;
    const char *k = rocksdb_iter_key(i->it, &kl);
    if (key_cmp(k, kl, i->lo, i->lo_len) < 0 || (i->hi != NULL && key_cmp(k, kl, i->hi, i->hi_len) >= 0))
        return;
    const char *v = rocksdb_iter_value(i->it, &vl);
    i->key = copy_into(i->key, &i->key_cap, k, kl);
    i->key_len = kl;
    i->value = copy_into(i->value, &i->value_cap, v, vl);
    i->value_len = vl;
    i->valid = 1;
}

/* Positions RocksDB's iterator on the first key ≥ key (forward) or the last key < key (reverse; key NULL: the last
 * key of all). */
static void iter_position(store_iter_t *i, const void *key, size_t len)
{
    if (!i->reverse) {
        rocksdb_iter_seek(i->it, key, len);
    } else if (key != NULL) {
        rocksdb_iter_seek_for_prev(i->it, key, len);
        /* seek_for_prev lands on a key ≤ key; the bound is exclusive */
        size_t kl;
        while (rocksdb_iter_valid(i->it)) {
            const char *k = rocksdb_iter_key(i->it, &kl);
            if (key_cmp(k, kl, key, len) < 0)
                break;
            rocksdb_iter_prev(i->it);
        }
    } else {
        rocksdb_iter_seek_to_last(i->it);
    }
}

store_iter_t *store_iter_open(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, int reverse)
{
    store_iter_t *i = xcalloc(1, sizeof(*i));
    i->s = s;
    i->lo = xmalloc(lolen + 1);
    if (lolen != 0)
        memcpy(i->lo, lo, lolen);
    i->lo_len = lolen;
    if (hi != NULL) {
        i->hi = xmalloc(hilen + 1);
        memcpy(i->hi, hi, hilen);
        i->hi_len = hilen;
    }
    i->reverse = reverse;
    iter_renew(i);
    if (!reverse)
        iter_position(i, i->lo, i->lo_len);
    else
        iter_position(i, i->hi, i->hi_len);
    iter_settle(i);
    return i;
}

void store_iter_seek(store_iter_t *i, const void *key, size_t len)
{
    if (i->generation != i->s->generation)
        iter_renew(i);
    if (!i->reverse && key_cmp(key, len, i->lo, i->lo_len) < 0) {
        key = i->lo;
        len = i->lo_len;
    } else if (i->reverse && i->hi != NULL && key_cmp(key, len, i->hi, i->hi_len) > 0) {
        key = i->hi;
        len = i->hi_len;
    }
    iter_position(i, key, len);
    iter_settle(i);
}

int store_iter_valid(const store_iter_t *i)
{
    return i->valid;
}

void store_iter_next(store_iter_t *i)
{
    if (!i->valid)
        return;
    if (i->generation != i->s->generation) {
        /* the batch changed under the iterator: RocksDB's would not see a write between its position and the next
         * entry it already looked at, so seek again from the current key */
        iter_renew(i);
        if (!i->reverse) {
            rocksdb_iter_seek(i->it, i->key, i->key_len);
            size_t kl;
            if (rocksdb_iter_valid(i->it)) {
                const char *k = rocksdb_iter_key(i->it, &kl);
                if (key_cmp(k, kl, i->key, i->key_len) == 0)
                    rocksdb_iter_next(i->it);
            }
        } else {
            iter_position(i, i->key, i->key_len);
        }
    } else if (!i->reverse) {
        rocksdb_iter_next(i->it);
    } else {
        rocksdb_iter_prev(i->it);
    }
    iter_settle(i);
}

const char *store_iter_key(const store_iter_t *i, size_t *len)
{
    *len = i->key_len;
    return i->key;
}

const char *store_iter_value(const store_iter_t *i, size_t *len)
{
    *len = i->value_len;
    return i->value;
}

int store_iter_close(store_iter_t *i)
{
    char *rerr = NULL;
    rocksdb_iter_get_error(i->it, &rerr);
    rocksdb_iter_destroy(i->it);
    int r = 0;
    if (rerr != NULL || i->err != NULL) {
        log_error("store: iterator: %s", i->err != NULL ? i->err : rerr);
        r = -EIO;
    }
    rocksdb_free(rerr);
    rocksdb_free(i->err);
    free(i->lo);
    free(i->hi);
    free(i->key);
    free(i->value);
    free(i);
    return r;
}

int store_checkpoint(store_t *s, const char *dir, char *err, size_t errlen)
{
    char *rerr = NULL;
    rocksdb_checkpoint_t *cp = rocksdb_checkpoint_object_create(s->db, &rerr);
    if (rerr == NULL)
        rocksdb_checkpoint_create(cp, dir, 0 /* flush the memtable: the copy needs no WAL */, &rerr);
    if (cp != NULL)
        rocksdb_checkpoint_object_destroy(cp);
    if (rerr != NULL) {
        set_err(err, errlen, "checkpoint", rerr);
        return -EIO;
    }
    return 0;
}

void store_entries_free(store_entry_t *e, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        free(e[i].key);
        free(e[i].value);
    }
}

static int sp_released(const store_t *s, size_t i)
{
    return i < 8 * sizeof(s->released) && (s->released[i / 8] >> (i % 8) & 1);
}

static void sp_mark(store_t *s, size_t i, int released)
{
    if (i >= 8 * sizeof(s->released))
        return;
    if (released)
        s->released[i / 8] |= (uint8_t)(1u << (i % 8));
    else
        s->released[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

void store_savepoint(store_t *s)
{
    rocksdb_writebatch_wi_set_save_point(s->batch);
    sp_mark(s, s->num_savepoints, 0);
    if (s->num_savepoints < BASE_ARRAY_SIZE(s->savepoints))
        s->savepoints[s->num_savepoints] = s->pending;
    ++s->num_savepoints;
}

/* RocksDB's C API cannot pop a save point (WriteBatchWithIndex has no PopSavePoint there), so a released one stays
 * on its stack, marked. A rollback first rolls back to every released save point above the live one it undoes: those
 * only undo writes made after the live one, which the rollback undoes anyway. Without that, an outer transaction
 * failing after a successful inner one rolled back only to the inner's save point and kept the outer's writes. */
int store_rollback(store_t *s)
{
    size_t live = s->num_savepoints;
    while (live > 0 && sp_released(s, live - 1))
        --live;
    if (live == 0)
        return -EINVAL;
    while (s->num_savepoints >= live) {
        char *rerr = NULL;
        rocksdb_writebatch_wi_rollback_to_save_point(s->batch, &rerr);
        if (rerr != NULL) {
            log_error("store: rollback: %s", rerr);
            rocksdb_free(rerr);
            return -EIO;
        }
        ++s->generation;
        --s->num_savepoints;
        if (s->num_savepoints < BASE_ARRAY_SIZE(s->savepoints))
            s->pending = s->savepoints[s->num_savepoints];
    }
    return 0;
}

int store_release(store_t *s)
{
    size_t live = s->num_savepoints;
    while (live > 0 && sp_released(s, live - 1))
        --live;
    if (live == 0)
        return -EINVAL;
    sp_mark(s, live - 1, 1);
    return 0;
}

size_t store_pending(const store_t *s)
{
    return s->pending;
}

void store_discard(store_t *s)
{
    rocksdb_writebatch_wi_clear(s->batch);
    ++s->generation;
    s->pending = 0;
    s->num_savepoints = 0;
}

int store_commit(store_t *s, char *err, size_t errlen)
{
    if (s->pending == 0 && s->num_savepoints == 0)
        return 0;
    char *rerr = NULL;
    if (s->pending != 0)
        rocksdb_write_writebatch_wi(s->db, s->wo, s->batch, &rerr);
    size_t n = s->pending;
    store_discard(s);
    if (rerr != NULL) {
        set_err(err, errlen, "commit", rerr);
        ++s->stats.failed_commits;
        return -EIO;
    }
    if (n != 0) {
        ++s->stats.commits;
        s->stats.writes += n;
    }
    return 0;
}

static uint64_t property(store_t *s, const char *name)
{
    char *v = rocksdb_property_value(s->db, name);
    uint64_t n = v != NULL ? strtoull(v, NULL, 10) : 0;
    rocksdb_free(v);
    return n;
}

void store_stats(store_t *s, store_stats_t *out)
{
    *out = s->stats;
    out->live_bytes = property(s, "rocksdb.estimate-live-data-size") + property(s, "rocksdb.cur-size-all-mem-tables");
}
