/*
 * store.h — a shard's RocksDB: one database per shard, written through one batch per loop pass.
 *
 * Writes go into a WriteBatchWithIndex; reads and scans see the database merged with that batch, so a room reads its
 * own writes before they are committed. store_commit writes the batch at the end of the loop pass — with one WAL sync
 * when durability is "sync" — and only then may the output those writes produced be released (the output gate, see
 * shard.c). Save points let a room roll back its last writes (transactions).
 *
 * This is the only file pair in partyd that knows RocksDB; store.c is the only file that includes rocksdb/c.h.
 * Keys are bytes; the layout (slot, room, tag) is keys.c's business, except for the helpers below.
 *
 * One store per shard, opened and owned by shard.c (shard_store() lends it to the room layer); every call is made on
 * the shard's loop, none is thread-safe. Reads return copies the caller owns; writes cannot fail (they go into the
 * batch in memory): a storage error surfaces at store_commit, and the gate then drops that pass's output.
 */
#ifndef PARTYD_STORE_H
#define PARTYD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct st_store_t store_t;

/* One key/value pair copied out of the store; both buffers are owned by the entry (store_entries_free). */
typedef struct st_store_entry_t {
    char *key;
    size_t key_len;
    char *value;
    size_t value_len;
} store_entry_t;

typedef struct st_store_stats_t {
    uint64_t live_bytes; /* RocksDB's estimate of live data (SST files + memtables) */
    uint64_t commits;
    uint64_t writes; /* puts and deletes committed */
    uint64_t failed_commits;
} store_stats_t;

/* Opens (creating) the database in directory `path`. `sync`: fsync the WAL on every commit. On failure returns
 * -EIO and writes RocksDB's reason into err. */
int store_open(const char *path, int sync, store_t **out, char *err, size_t errlen);
/* Closes the database; an uncommitted batch is discarded. */
void store_close(store_t *s);

/* Reads a key: 0 with a malloc'ed copy in *val (the caller frees it), -ENOENT, or -EIO. */
int store_get(store_t *s, const void *key, size_t klen, char **val, size_t *vlen);
void store_put(store_t *s, const void *key, size_t klen, const void *val, size_t vlen);
void store_delete(store_t *s, const void *key, size_t klen);

/* Copies up to `max` entries with lo ≤ key < hi (hi NULL: no upper bound) into out[], ascending or (reverse)
 * descending. Returns the number copied, or -EIO. */
long store_scan(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, int reverse, store_entry_t *out,
                size_t max);
/* The same for the keys alone: value is NULL and value_len the value's size. */
long store_scan_keys(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, store_entry_t *out, size_t max);
/* An iterator over lo ≤ key < hi (hi NULL: no upper bound), ascending or (reverse) descending, over the database
 * merged with the uncommitted batch. It sees writes made while it is open: after a write it seeks again from the
 * current key, so a key deleted ahead of it is not visited and one written ahead of it is. The iterator owns copies
 * of the current key and value (valid until the next store_iter_next, store_iter_seek or store_iter_close). Opened
 * positioned on the first entry; store_iter_valid says whether there is one. An error ends the iteration (not valid)
 * and store_iter_close reports it: 0, or -EIO. Close every iterator before store_close. */
typedef struct st_store_iter_t store_iter_t;
store_iter_t *store_iter_open(store_t *s, const void *lo, size_t lolen, const void *hi, size_t hilen, int reverse);
/* Moves to the first key ≥ key (reverse: the last key < key), within the range. */
void store_iter_seek(store_iter_t *it, const void *key, size_t len);
int store_iter_valid(const store_iter_t *it);
void store_iter_next(store_iter_t *it);
const char *store_iter_key(const store_iter_t *it, size_t *len);
const char *store_iter_value(const store_iter_t *it, size_t *len);
int store_iter_close(store_iter_t *it);
/* A consistent copy of the committed data in a new directory `dir` (RocksDB checkpoint: hard links where it can).
 * 0, or -EIO with the reason in err. */
int store_checkpoint(store_t *s, const char *dir, char *err, size_t errlen);
void store_entries_free(store_entry_t *e, size_t n);

/* Save points in the uncommitted batch, nested: store_rollback undoes every write since the innermost save point not
 * yet released or rolled back, and ends it; store_release ends it keeping its writes (they belong to the enclosing
 * save point from then on, if there is one). Both return 0, or -EINVAL when no save point is open; rollback -EIO. */
void store_savepoint(store_t *s);
int store_rollback(store_t *s);
int store_release(store_t *s);

/* Writes in the uncommitted batch. */
size_t store_pending(const store_t *s);
/* Writes the batch (fsynced when the store was opened with sync) and clears it. 0, or -EIO with the reason in err: the
 * batch is discarded then, and nothing of it is in the database. */
int store_commit(store_t *s, char *err, size_t errlen);
/* Drops the uncommitted batch. */
void store_discard(store_t *s);

/* The counters since the store was opened, and RocksDB's estimate of its live data, copied into *out. */
void store_stats(store_t *s, store_stats_t *out);

/* ---- key helpers ---- */

/* Writes a big-endian u64 / u16. */
static inline void store_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 7; i >= 0; --i, v >>= 8)
        p[i] = (unsigned char)v;
}
static inline uint64_t store_get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i)
        v = v << 8 | p[i];
    return v;
}

#endif
