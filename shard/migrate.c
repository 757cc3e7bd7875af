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
 * A new router (after a restart) unfreezes everything: a move in flight is its predecessor's, and starts over.
 */
#include <errno.h>
#include <string.h>

#include "shard.h"
#include "slots.h"

#define CHUNK_BYTES (256 * 1024)

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
