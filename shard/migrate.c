/*
 * migrate.c — a shard's half of moving a slot to another shard (the router drives it: router/migrate.c).
 *
 *   export   the slot is frozen here (its rooms run no event), its rooms leave memory, and its keys go to the router
 *            as SLOT_REPLY "chunk" frames, the last one flagged
 *   import   chunks of a slot coming in; the first clears what the slot held here (a stale copy of an interrupted
 *            move); after the last, "ack" — held by the output gate until the pass is committed, so the router flips
 *            the slot's owner only once its data is durable here
 *   drop     after the flip: the slot's data is deleted here, and it is unfrozen; "ack" once committed
 *   unfreeze the move was abandoned: the slot serves here again
 *
 * The room layer's side (rooms_slot_*: freezing, evicting, exporting, importing and dropping a slot's rooms and keys)
 * is here too, beside its only caller.
 *
 * A new router (after a restart) unfreezes everything: a move in flight is its predecessor's, and starts over.
 */
#include <errno.h>
#include <string.h>

#include "room_int.h"

#define CHUNK_BYTES (256 * 1024)

/* ---- the room layer for slot moves (shard.h) ---- */

void rooms_slot_freeze(uint16_t slot, int frozen)
{
    rooms.frozen[slot] = (uint8_t)(frozen != 0);
}

void rooms_slots_unfreeze_all(void)
{
    memset(rooms.frozen, 0, sizeof(rooms.frozen));
}

void rooms_slot_evict(uint16_t slot)
{
    while (rooms.by_slot[slot] != NULL) {
        party_room_t *room = rooms.by_slot[slot];
        /* the router closed these connections before asking; any left (a race with a new one) reconnect */
        room_close_all_now(room, 1012, "the room is moving to another shard; reconnect");
        ++rooms.evictions;
        room_destroy(room);
    }
}

long rooms_slot_export(uint16_t slot, void (*emit)(void *arg, base_buf_t *chunk, int last), void *arg, size_t chunk_bytes)
{
    unsigned char lo[2], hi[2];
    keys_slot_range(slot, lo, hi);
    base_buf_t chunk;
    base_buf_init(&chunk);
    long pairs = 0;
    store_iter_t *it = store_iter_open(rooms.store, lo, 2, hi, 2, 0);
    for (; store_iter_valid(it); store_iter_next(it)) {
        size_t kl, vl;
        const char *k = store_iter_key(it, &kl), *v = store_iter_value(it, &vl);
        proto_pairs_add(&chunk, k, kl, v, vl);
        ++pairs;
        if (base_buf_len(&chunk) >= chunk_bytes) {
            emit(arg, &chunk, 0);
            base_buf_consume(&chunk, base_buf_len(&chunk));
        }
    }
    if (store_iter_close(it) != 0) {
        base_buf_dispose(&chunk);
        return -EIO;
    }
    emit(arg, &chunk, 1);
    base_buf_dispose(&chunk);
    return pairs;
}

/* Deletes every key of the slot's range (and the alarm index entries of its rooms). */
static long slot_clear(uint16_t slot)
{
    unsigned char lo[2], hi[2];
    keys_slot_range(slot, lo, hi);
    long deleted = 0;
    store_iter_t *it = store_iter_open(rooms.store, lo, 2, hi, 2, 0);
    for (; store_iter_valid(it); store_iter_next(it)) {
        size_t kl, vl, plen;
        const char *k = store_iter_key(it, &kl), *v = store_iter_value(it, &vl);
        if (keys_tag(k, kl, &plen) == TAG_ALARM && vl == 9) {
            unsigned char idx[ALARM_INDEX_MAX];
            store_delete(rooms.store, idx, keys_alarm_index_of(k, plen, v, idx));
        }
        store_delete(rooms.store, k, kl);
        ++deleted;
    }
    return store_iter_close(it) != 0 ? -EIO : deleted;
}

int rooms_slot_import(uint16_t slot, proto_str_t data, int first)
{
    if (first) {
        /* what an earlier, interrupted move left here is stale: the source is the truth */
        rooms_slot_evict(slot);
        if (slot_clear(slot) < 0)
            return -EIO;
    }
    size_t off = 0;
    proto_str_t k, v;
    int r;
    while ((r = proto_pairs_next(data, &off, &k, &v)) == 1) {
        if (k.len < 2 || (size_t)((unsigned char)k.base[0] << 8 | (unsigned char)k.base[1]) != slot)
            return -EINVAL; /* a key of another slot: refuse the whole chunk */
        store_put(rooms.store, k.base, k.len, v.base, v.len);
        size_t plen;
        if (keys_tag(k.base, k.len, &plen) == TAG_ALARM && v.len == 9) {
            unsigned char idx[10 + PREFIX_MAX];
            rooms_alarm_index_put(idx, keys_alarm_index_of(k.base, plen, v.base, idx), (const uint8_t *)v.base + 8);
        }
    }
    return r == 0 ? 0 : -EINVAL;
}

long rooms_slot_drop(uint16_t slot)
{
    rooms_slot_evict(slot);
    long n = slot_clear(slot);
    rooms.frozen[slot] = 0;
    return n;
}

/* ---- the SLOT frames ---- */

static uint64_t import_rid[SLOTS_COUNT]; /* the move each slot's import belongs to */

static void reply(uint64_t rid, const char *what, uint16_t slot, int last, int status, proto_str_t data)
{
    proto_msg_t m = {.type = PROTO_SLOT_REPLY,
                     .id = rid,
                     .method = proto_str(what, strlen(what)),
                     .slot = slot,
                     .last = last,
                     .status = status,
                     .data = data};
    shard_emit(&m);
}

typedef struct st_export_t {
    uint64_t rid;
    uint16_t slot;
} export_t;

static void on_chunk(void *arg, base_buf_t *chunk, int last)
{
    export_t *x = arg;
    reply(x->rid, "chunk", x->slot, last, 200, proto_str(base_buf_head(chunk), base_buf_len(chunk)));
}

void shard_slot(const proto_msg_t *msg)
{
    if (msg->slot < 0 || msg->slot >= SLOTS_COUNT) {
        reply(msg->id, "ack", 0, 1, 400, PROTO_STR(""));
        return;
    }
    uint16_t slot = (uint16_t)msg->slot;
#define OP(name) (msg->method.len == sizeof(name) - 1 && memcmp(msg->method.base, name, sizeof(name) - 1) == 0)
    if (OP("export")) {
        rooms_slot_freeze(slot, 1);
        rooms_slot_evict(slot);
        export_t x = {msg->id, slot};
        if (rooms_slot_export(slot, on_chunk, &x, CHUNK_BYTES) < 0) {
            log_error("slot %u: export failed", slot);
            reply(msg->id, "chunk", slot, 1, 500, PROTO_STR(""));
        }
    } else if (OP("import")) {
        int first = import_rid[slot] != msg->id;
        import_rid[slot] = msg->id;
        int r = rooms_slot_import(slot, msg->data, first);
        if (r != 0) {
            log_error("slot %u: import failed (%d)", slot, r);
            import_rid[slot] = 0;
            reply(msg->id, "ack", slot, 1, r == -EIO ? 500 : 400, PROTO_STR(""));
        } else if (msg->last) {
            import_rid[slot] = 0;
            shard_gate_event(); /* the ack leaves once the slot's data is committed */
            reply(msg->id, "ack", slot, 1, 200, PROTO_STR(""));
        }
    } else if (OP("drop")) {
        long n = rooms_slot_drop(slot);
        shard_gate_event();
        reply(msg->id, "ack", slot, 1, n < 0 ? 500 : 200, PROTO_STR(""));
    } else if (OP("unfreeze")) {
        rooms_slot_freeze(slot, 0);
    } else {
        reply(msg->id, "ack", slot, 1, 400, PROTO_STR(""));
    }
#undef OP
}
