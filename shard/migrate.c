/*
 * migrate.c — a shard's half of moving a slot to another shard (the router drives it: router/migrate.c).
 *
 *   export   the slot is frozen here (its rooms run no event), its rooms leave memory, and its keys go to the router
 *            as SLOT_REPLY "chunk" frames, the last one flagged
 *   import   chunks of a slot coming in; the first clears what the slot held here (a stale copy of an interrupted
 *            move); after the last, "ack" — held by the output gate until the pass is committed, so the router flips
 *            the slot's owner only once its data is durable here
 *   drop     after the flip: the slot's data is deleted here, and it is unfrozen; "ack" once committed
 *   adopt    after the flip, to the destination: the slot is this shard's now, its alarms may fire
 *   unfreeze the move was abandoned: the slot serves here again
 *   owned    the slots this shard owns (a bitmap in `data`), sent by every router when the shard's link comes up:
 *            what this shard holds of any other slot is stale and is deleted — the source's copy of a slot whose
 *            "drop" was lost with a router or a restart, the destination's part of an abandoned import — and every
 *            slot unfreezes
 *
 * Alarms fire only in the slots this shard owns, not frozen (rooms_slot_fires): none before the first "owned" (after a
 * restart this shard does not know which slots are its own), none in a slot being imported, whose alarm keys arrive
 * before the data of their rooms. Frozen slots stay frozen when the router goes away, until the next router's "owned":
 * a source whose "drop" never came must not run its stale rooms' alarms in between.
 *
 * The room layer's side (rooms_slot_*: freezing, evicting, exporting, importing and dropping a slot's rooms and keys)
 * is here too, beside its only caller.
 *
 * A new router (after a restart) unfreezes everything: a move in flight is its predecessor's, and starts over.
 *
 * An export waits for the pass's commit when a room of the slot wrote in this pass: it reads the store, which includes
 * the uncommitted batch, and a batch whose commit then failed would have shipped writes that were answered 500.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "room_int.h"

#define CHUNK_BYTES (256 * 1024)

/* ---- the room layer for slot moves (shard.h) ---- */

static struct {
    uint8_t owned[SLOTS_COUNT]; /* as the router last said */
    int known;                  /* the router said (else nothing is owned) */
    struct {
        uint64_t rid;
        uint16_t slot;
    } * exports; /* waiting for the pass's commit */
    size_t num_exports, cap_exports;
    /* import acks held by the output gate for this pass's commit: if it fails they are dropped with the held output,
     * and the router, which has no other word of the import, would wait for them for good */
    struct {
        uint64_t rid;
        uint16_t slot;
    } * acks;
    size_t num_acks, cap_acks;
} own;

void rooms_slot_freeze(uint16_t slot, int frozen)
{
    rooms.frozen[slot] = (uint8_t)(frozen != 0);
}

void rooms_slots_unfreeze_all(void)
{
    memset(rooms.frozen, 0, sizeof(rooms.frozen));
}

int rooms_slot_fires(uint16_t slot)
{
    return own.known && own.owned[slot] && !rooms.frozen[slot];
}

/* Slots that became this shard's: their due alarms may fire now. */
static void alarms_look_again(void)
{
    rooms.alarms_from = 0;
    shard_alarms_wake_at(0);
}

void rooms_slots_owned(const uint8_t *bitmap)
{
    for (size_t s = 0; s < SLOTS_COUNT; ++s)
        own.owned[s] = bitmap == NULL || (bitmap[s / 8] >> (s % 8) & 1);
    own.known = 1;
    alarms_look_again();
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
    own.owned[slot] = 0;
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

/* Whether a room of the slot wrote in this pass: its writes are in the uncommitted batch. (Only those matter: the
 * previous batch's "drop", which comes in the same pass as the next export, must not make every export wait for a
 * sync.) */
static int slot_wrote_this_pass(uint16_t slot)
{
    for (party_room_t *r = rooms.by_slot[slot]; r != NULL; r = r->slot_next)
        if (r->gated_pass == shard_pass() + 1)
            return 1;
    return 0;
}

static void export_now(uint64_t rid, uint16_t slot)
{
    export_t x = {rid, slot};
    if (rooms_slot_export(slot, on_chunk, &x, CHUNK_BYTES) < 0) {
        log_error("slot %u: export failed", slot);
        reply(rid, "chunk", slot, 1, 500, PROTO_STR(""));
    }
}

void shard_slots_after_commit(int failed)
{
    for (size_t i = 0; failed && i < own.num_acks; ++i)
        reply(own.acks[i].rid, "ack", own.acks[i].slot, 1, 500, PROTO_STR(""));
    own.num_acks = 0;
    /* the batch is empty now, committed or discarded: the store is what is durable */
    for (size_t i = 0; i < own.num_exports; ++i)
        if (rooms.frozen[own.exports[i].slot])
            export_now(own.exports[i].rid, own.exports[i].slot);
    own.num_exports = 0;
}

void shard_slots_router_gone(void)
{
    own.num_exports = 0; /* the router that asked is gone; frozen slots stay so until the next one's "owned" */
}

/* The "owned" frame: what this shard holds of slots it does not own is stale (see above). */
static void on_owned(proto_str_t bitmap)
{
    if (bitmap.len != SLOTS_COUNT / 8) {
        log_error("an \"owned\" frame of %zu bytes; ignored", bitmap.len);
        return;
    }
    rooms_slots_unfreeze_all();
    own.num_exports = 0;
    /* one pass over the slots' keys, jumping from each slot found to the next one: the slots that hold keys here */
    uint16_t *stale = xmalloc(SLOTS_COUNT * sizeof(*stale));
    size_t cleared = 0;
    unsigned char lo[2], hi[2], unused[2];
    keys_slot_range(0, lo, unused);
    keys_slot_range(SLOTS_COUNT - 1, unused, hi);
    store_iter_t *it = store_iter_open(rooms.store, lo, 2, hi, 2, 0);
    while (store_iter_valid(it)) {
        size_t kl;
        const unsigned char *k = (const unsigned char *)store_iter_key(it, &kl);
        if (kl < 2) {
            store_iter_next(it);
            continue;
        }
        uint16_t slot = (uint16_t)(k[0] << 8 | k[1]);
        if (!((unsigned char)bitmap.base[slot / 8] >> (slot % 8) & 1))
            stale[cleared++] = slot;
        if (slot + 1 >= SLOTS_COUNT)
            break;
        keys_slot_range((uint16_t)(slot + 1), lo, unused);
        store_iter_seek(it, lo, 2);
    }
    if (store_iter_close(it) != 0)
        log_error("cannot list the slots held here; stale copies stay until the next router");
    for (size_t i = 0; i < cleared; ++i) {
        rooms_slot_evict(stale[i]);
        if (slot_clear(stale[i]) < 0)
            log_error("slot %u: cannot delete the stale copy held here", stale[i]);
    }
    free(stale);
    if (cleared != 0)
        log_info("deleted the stale data of %zu slots that are not this shard's (a move finished or abandoned)", cleared);
    rooms_slots_owned((const uint8_t *)bitmap.base);
}

void shard_slot(const proto_msg_t *msg)
{
    if (msg->slot < 0 || msg->slot >= SLOTS_COUNT) {
        reply(msg->id, "ack", 0, 1, 400, PROTO_STR(""));
        return;
    }
    uint16_t slot = (uint16_t)msg->slot;
#define OP(name) (msg->method.len == sizeof(name) - 1 && memcmp(msg->method.base, name, sizeof(name) - 1) == 0)
    if (OP("owned")) {
        on_owned(msg->data);
    } else if (OP("export")) {
        int wrote = slot_wrote_this_pass(slot);
        rooms_slot_freeze(slot, 1);
        rooms_slot_evict(slot);
        if (!wrote) {
            export_now(msg->id, slot);
        } else {
            if (own.num_exports == own.cap_exports) {
                own.cap_exports = own.cap_exports != 0 ? 2 * own.cap_exports : 64;
                own.exports = xrealloc(own.exports, own.cap_exports * sizeof(*own.exports));
            }
            own.exports[own.num_exports].rid = msg->id;
            own.exports[own.num_exports++].slot = slot;
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
            if (own.num_acks == own.cap_acks) {
                own.cap_acks = own.cap_acks != 0 ? 2 * own.cap_acks : 64;
                own.acks = xrealloc(own.acks, own.cap_acks * sizeof(*own.acks));
            }
            own.acks[own.num_acks].rid = msg->id;
            own.acks[own.num_acks++].slot = slot;
        }
    } else if (OP("drop")) {
        long n = rooms_slot_drop(slot);
        shard_gate_event();
        reply(msg->id, "ack", slot, 1, n < 0 ? 500 : 200, PROTO_STR(""));
    } else if (OP("adopt")) {
        own.owned[slot] = 1;
        rooms_slot_freeze(slot, 0);
        alarms_look_again();
    } else if (OP("unfreeze")) {
        rooms_slot_freeze(slot, 0);
    } else {
        reply(msg->id, "ack", slot, 1, 400, PROTO_STR(""));
    }
#undef OP
}
