/*
 * storage.c — party.h's storage API over the shard's store (store.h), in the room's range of keys (keys.h). Every
 * write marks the room as gated: what it produces waits for the pass's commit.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room_int.h"

/* ---- party.h: storage ---- */

static int check_key(const void *key, size_t key_len)
{
    if (key == NULL || key_len == 0)
        return -EINVAL;
    return key_len > PARTY_KEY_MAX ? -EMSGSIZE : 0;
}

int party_storage_get(party_room_t *room, const void *key, size_t key_len, void **value, size_t *value_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = room_data_key(room, k, key, key_len);
    char *v;
    if ((r = store_get(rooms.store, k, kl, &v, value_len)) != 0)
        return r;
    *value = v;
    return 0;
}

int party_storage_put(party_room_t *room, const void *key, size_t key_len, const void *value, size_t value_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    if (value_len > PARTY_VALUE_MAX)
        return -EMSGSIZE;
    if (value == NULL && value_len != 0)
        return -EINVAL;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = room_data_key(room, k, key, key_len);
    store_put(rooms.store, k, kl, value != NULL ? value : "", value_len);
    ++room_party_stats(room)->storage_writes;
    room_wrote(room);
    return 0;
}

int party_storage_delete(party_room_t *room, const void *key, size_t key_len)
{
    int r;
    if ((r = check_key(key, key_len)) != 0)
        return r;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = room_data_key(room, k, key, key_len);
    char *v;
    size_t vl;
    r = store_get(rooms.store, k, kl, &v, &vl);
    if (r == -ENOENT)
        return 0;
    if (r != 0)
        return r;
    free(v);
    store_delete(rooms.store, k, kl);
    ++room_party_stats(room)->storage_writes;
    room_wrote(room);
    return 1;
}

static int check_batch(const party_kv_t *kvs, size_t n, int with_values)
{
    if (n > PARTY_BATCH_MAX || (n != 0 && kvs == NULL))
        return -EINVAL;
    for (size_t i = 0; i < n; ++i) {
        int r = check_key(kvs[i].key, kvs[i].key_len);
        if (r != 0)
            return r;
        if (with_values && (kvs[i].value_len > PARTY_VALUE_MAX))
            return -EMSGSIZE;
        if (with_values && kvs[i].value == NULL && kvs[i].value_len != 0)
            return -EINVAL;
    }
    return 0;
}

int party_storage_get_many(party_room_t *room, party_kv_t *kvs, size_t n)
{
    int r;
    if ((r = check_batch(kvs, n, 0)) != 0)
        return r;
    for (size_t i = 0; i < n; ++i) {
        void *v = NULL;
        size_t vl = 0;
        r = party_storage_get(room, kvs[i].key, kvs[i].key_len, &v, &vl);
        if (r != 0 && r != -ENOENT) {
            for (size_t j = 0; j < i; ++j) {
                free((void *)kvs[j].value);
                kvs[j].value = NULL;
            }
            return r;
        }
        kvs[i].value = v;
        kvs[i].value_len = vl;
    }
    return 0;
}

int party_storage_put_many(party_room_t *room, const party_kv_t *kvs, size_t n)
{
    int r;
    if ((r = check_batch(kvs, n, 1)) != 0)
        return r; /* checked up front: all or nothing */
    for (size_t i = 0; i < n; ++i)
        party_storage_put(room, kvs[i].key, kvs[i].key_len, kvs[i].value, kvs[i].value_len);
    return 0;
}

int party_storage_delete_many(party_room_t *room, const party_kv_t *keys, size_t n)
{
    int r;
    if ((r = check_batch(keys, n, 0)) != 0)
        return r;
    int deleted = 0;
    for (size_t i = 0; i < n; ++i) {
        if ((r = party_storage_delete(room, keys[i].key, keys[i].key_len)) < 0)
            return r;
        deleted += r;
    }
    return deleted;
}

long party_storage_list(party_room_t *room, const party_list_t *o,
                        int (*cb)(void *arg, const void *key, size_t key_len, const void *value, size_t value_len), void *arg)
{
    if (o == NULL || cb == NULL || o->prefix_len > PARTY_KEY_MAX || o->start_len > PARTY_KEY_MAX || o->end_len > PARTY_KEY_MAX)
        return -EINVAL;
    /* the range in the party's key space: [max(start, prefix), min(end, keys_successor(prefix))) */
    const unsigned char *lo = (const unsigned char *)"";
    size_t lo_len = 0;
    if (o->prefix != NULL) {
        lo = o->prefix;
        lo_len = o->prefix_len;
    }
    if (o->start != NULL && keys_cmp(o->start, o->start_len, lo, lo_len) > 0) {
        lo = o->start;
        lo_len = o->start_len;
    }
    unsigned char succ[PARTY_KEY_MAX];
    const unsigned char *hi = NULL;
    size_t hi_len = 0;
    if (o->prefix != NULL && o->prefix_len != 0 && (hi_len = keys_successor(o->prefix, o->prefix_len, succ)) != 0)
        hi = succ;
    if (o->end != NULL && (hi == NULL || keys_cmp(o->end, o->end_len, hi, hi_len) < 0)) {
        hi = o->end;
        hi_len = o->end_len;
    }

    /* the same range in the store: the room's data tag, then the party's key */
    unsigned char lo_key[DATA_KEY_MAX + 1], hi_key[DATA_KEY_MAX + 1];
    size_t lo_kl = room_data_key(room, lo_key, lo, lo_len), hi_kl;
    if (hi != NULL) {
        hi_kl = room_data_key(room, hi_key, hi, hi_len);
    } else {
        memcpy(hi_key, room->prefix, room->prefix_len);
        hi_key[room->prefix_len] = TAG_DATA + 1;
        hi_kl = room->prefix_len + 1;
    }
    if (keys_cmp(lo_key, lo_kl, hi_key, hi_kl) >= 0)
        return 0;

    /* the iterator sees what cb writes past the current key (party.h) */
    long visited = 0;
    size_t skip = room->prefix_len + 1;
    store_iter_t *it = store_iter_open(rooms.store, lo_key, lo_kl, hi_key, hi_kl, o->reverse);
    for (; store_iter_valid(it) && (o->limit == 0 || (size_t)visited < o->limit); store_iter_next(it)) {
        size_t kl, vl;
        const char *k = store_iter_key(it, &kl), *v = store_iter_value(it, &vl);
        ++visited;
        if (cb(arg, k + skip, kl - skip, v, vl) != 0)
            break;
    }
    return store_iter_close(it) != 0 ? -EIO : visited;
}

static int delete_cb(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)value, (void)value_len;
    party_room_t *room = arg;
    unsigned char k[DATA_KEY_MAX];
    size_t kl = room_data_key(room, k, key, key_len);
    store_delete(rooms.store, k, kl);
    return 0;
}

long party_storage_delete_all(party_room_t *room)
{
    party_list_t all = {0};
    long n = party_storage_list(room, &all, delete_cb, room);
    if (n > 0)
        room_wrote(room);
    return n;
}

int party_storage_transaction(party_room_t *room, int (*fn)(party_room_t *room, void *arg), void *arg)
{
    /* the alarm lives in storage and, as alarm_at, in the struct: a rollback puts both back (an alarm set or deleted
     * in a failed transaction would otherwise be reported, and indexed, as it is not stored) */
    uint64_t alarm_at = room->alarm_at;
    uint8_t alarm_tries = room->alarm_tries;
    store_savepoint(rooms.store);
    int r = fn(room, arg);
    if (r != 0) {
        store_rollback(rooms.store);
        room->alarm_at = alarm_at;
        room->alarm_tries = alarm_tries;
    } else {
        store_release(rooms.store); /* an enclosing transaction that fails must roll these writes back too */
    }
    return r;
}
