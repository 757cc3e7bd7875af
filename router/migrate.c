/*
 * migrate.c — moving slots between shards while the node serves: adding a shard, draining one, and bringing a node to
 * its configured shard count after a restart (DESIGN.md, "Scaling out").
 *
 * The slot table is the router's (DATA_DIR/slots); in steady state it is the rendezvous table over the active shards,
 * so a move is "make the table equal that again": after a shard is added (it wins ≈ 1/(N+1) of the slots, all of which
 * move to it), or with a drained shard left out (its slots spread over the others). Slots move a batch at a time:
 *
 *   1. freeze the batch's slots here: their rooms take no new request or connection (503, Retry-After: a brief
 *      pause), and their open connections close with 1012 (clients reconnect, to the new owner once it has flipped)
 *   2. "export" to the source shard: it freezes the slots too (no event, no alarm runs in their rooms), evicts their
 *      rooms and streams their key ranges back in chunks; each chunk goes on to the destination as "import"
 *   3. the destination clears what it held of those slots (a stale copy of an interrupted move), writes the chunks,
 *      and acks the last one only once it is committed (its output gate holds the ack until the fsync)
 *   4. flip: the new owners go into the table, which is written (fsync) before anything else happens; then the slots
 *      unfreeze here and the source drops its copy
 *
 * A crash at any step leaves exactly one owner: until the table file says otherwise the source owns the slot and
 * still has its data (it deletes it only after the flip). Each shard whose link comes up is told which slots it owns
 * ("owned", shards.c) and deletes what it holds of the others — a destination's partial copy, a source's copy whose
 * "drop" was lost — and unfreezes its slots (until then they stay frozen, their alarms waiting). The next router to
 * see every shard up finishes the move (migrate_reconcile). Retiring a drained shard happens only after its last slot
 * flipped.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "ctl.h"
#include "router.h"

#define BATCH 64
/* How long a new shard may take to come up (fork, open its RocksDB, say hello) before the add gives up on it. The
 * supervisor answers a spawn it cannot do (CTL_SPAWN_FAILED) at once; this is for one that never answers at all. */
#define SPAWN_TIMEOUT_MS 30000

typedef enum { MIG_IDLE = 0, MIG_SPAWNING, MIG_MOVING } mig_phase_t;

typedef struct st_mig_move_t {
    uint16_t slot, src, dst;
    uint64_t export_rid, import_rid;
    int acked;
} mig_move_t;

static struct {
    mig_phase_t phase;
    const char *what; /* "add", "drain", "rebalance" */
    h2o_req_t *req;   /* the admin request waiting, or NULL when the router started the move itself */
    int retire;       /* the shard to retire when its slots are gone, or -1 */
    int added;        /* the shard an "add" started, or -1 */
    slots_table_t target;
    uint32_t next_slot;
    mig_move_t batch[BATCH];
    size_t batch_n, batch_acked;
    uint8_t frozen[SLOTS_COUNT];
    size_t moved;
    uint64_t started_ms;
    int target_shards; /* the shard count to reach once after the node started; 0 when there is none */
    char last_error[256];
    h2o_timeout_t spawn_timeout; /* initialized on the first add */
    h2o_timeout_entry_t spawn_entry;
    int spawn_timeout_ready;
} mig;

int migrate_frozen(uint16_t slot)
{
    return mig.frozen[slot];
}

int migrate_busy(void)
{
    return mig.phase != MIG_IDLE;
}

/* ---- answering ---- */

static void answer(int status, json_t *body)
{
    if (mig.req == NULL) {
        json_decref(body);
        return;
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    h2o_iovec_t b = h2o_strdup(&mig.req->pool, text, strlen(text));
    free(text);
    http_send_json(mig.req, status, b.base, b.len);
    mig.req = NULL;
}

static json_t *ids_json(void)
{
    json_t *ids = json_array();
    for (int k = 0; k < router.num_shards; ++k)
        json_array_append_new(ids, json_integer(router.ids[k]));
    return ids;
}

static void rendezvous_table(slots_table_t *table, int exclude);

/* The slots whose owner is not the one the rendezvous table over the active shards names: 0 in steady state; more
 * while a move is under way or after one was interrupted, until the router finishes it. */
static size_t unbalanced_slots(void)
{
    slots_table_t *want = xmalloc(sizeof(*want)); /* 32 KiB: not on the stack */
    rendezvous_table(want, -1);
    size_t n = 0;
    for (size_t s = 0; s < SLOTS_COUNT; ++s)
        n += want->owner[s] != router.slots.owner[s];
    free(want);
    return n;
}

json_t *migrate_status(void)
{
    static const char *const phases[] = {"idle", "spawning", "moving"};
    return json_pack("{s:s, s:s?, s:I, s:I, s:s?}", "phase", phases[mig.phase], "what", mig.phase != MIG_IDLE ? mig.what : NULL,
                     "moved_slots", (json_int_t)mig.moved, "unbalanced_slots", (json_int_t)unbalanced_slots(), "last_error",
                     mig.last_error[0] != '\0' ? mig.last_error : NULL);
}

/* ---- the table ---- */

/* The table the active shards (less `exclude`) would have at rest. */
static void rendezvous_table(slots_table_t *table, int exclude)
{
    slots_shard_t list[CONFIG_MAX_SHARDS];
    size_t n = 0;
    for (int k = 0; k < router.num_shards; ++k)
        if (router.ids[k] != exclude)
            list[n++] = (slots_shard_t){(uint32_t)router.ids[k], 1.0};
    slots_build(table, list, n);
}

static void unfreeze_batch(int tell_sources)
{
    for (size_t i = 0; i < mig.batch_n; ++i) {
        mig_move_t *m = &mig.batch[i];
        mig.frozen[m->slot] = 0;
        link_t *src = shards_link(m->src);
        if (tell_sources && src != NULL) {
            proto_msg_t f = {.type = PROTO_SLOT, .id = ++router.next_rid, .method = PROTO_STR("unfreeze"), .slot = m->slot};
            link_emit(src, &f);
        }
    }
    mig.batch_n = mig.batch_acked = 0;
}

static void spawn_timer_stop(void)
{
    if (mig.spawn_timeout_ready && h2o_timeout_is_linked(&mig.spawn_entry))
        h2o_timeout_unlink(&mig.spawn_entry);
}

static void fail_with(int status, const char *why)
{
    log_error("moving slots (%s): %s; %zu slots moved before that, nothing is lost", mig.what, why, mig.moved);
    snprintf(mig.last_error, sizeof(mig.last_error), "%s", why);
    spawn_timer_stop();
    unfreeze_batch(1);
    mig.phase = MIG_IDLE;
    answer(status, json_pack("{s:s, s:I}", "error", why, "moved_slots", (json_int_t)mig.moved));
}

static void fail(const char *why)
{
    fail_with(503, why);
}

static void next_batch(void);

static void finish(void)
{
    if (mig.retire >= 0) {
        /* it owns no slot now: it leaves the node (the supervisor stops it and deletes its data) */
        int id = mig.retire;
        shards_set_active(id, 0);
        router_ctl_send(CTL_RETIRE_SHARD, id);
    }
    log_info("moving slots (%s): done, %zu slots moved in %llu ms", mig.what, mig.moved,
             (unsigned long long)(base_now_mono_ms() - mig.started_ms));
    mig.phase = MIG_IDLE;
    json_t *body = json_pack("{s:s, s:I, s:o}", "done", mig.what, "moved_slots", (json_int_t)mig.moved, "shards", ids_json());
    if (mig.added >= 0)
        json_object_set_new(body, "shard", json_integer(mig.added));
    else if (mig.retire >= 0)
        json_object_set_new(body, "shard", json_integer(mig.retire));
    answer(200, body);
    migrate_reconcile(); /* more to do, towards the configured count */
}

static void start_moving(void)
{
    mig.phase = MIG_MOVING;
    mig.next_slot = 0;
    mig.batch_n = 0;
    next_batch();
}

/* Freezes and exports the next batch of slots whose owner differs from the target. */
static void next_batch(void)
{
    mig.batch_n = mig.batch_acked = 0;
    while (mig.next_slot < SLOTS_COUNT && mig.batch_n < BATCH) {
        uint16_t s = (uint16_t)mig.next_slot++;
        uint16_t src = router.slots.owner[s], dst = mig.target.owner[s];
        if (src == dst)
            continue;
        if (shards_link(src) == NULL || shards_link(dst) == NULL) {
            fail("a shard of the move is down");
            return;
        }
        mig.batch[mig.batch_n++] = (mig_move_t){.slot = s, .src = src, .dst = dst};
    }
    if (mig.batch_n == 0) {
        finish();
        return;
    }
    for (size_t i = 0; i < mig.batch_n; ++i)
        mig.frozen[mig.batch[i].slot] = 1;
    /* the rooms of these slots: their connections reconnect (1012) and will find the new owner */
    router_room_t *room, *tmp;
    HASH_ITER(hh, router.rooms, room, tmp)
    {
        if (!mig.frozen[room->slot])
            continue;
        for (size_t i = 0, n = room->count; i < n; ++i) {
            ws_conn_t *c = room->conns;
            ws_conn_close(c, 1012, "the room is moving to another shard; reconnect");
            if (c->room != NULL)
                shards_on_ws_closed(c, 1012, "the room is moving", 1);
        }
    }
    for (size_t i = 0; i < mig.batch_n; ++i) {
        mig_move_t *m = &mig.batch[i];
        m->export_rid = ++router.next_rid;
        proto_msg_t f = {.type = PROTO_SLOT, .id = m->export_rid, .method = PROTO_STR("export"), .slot = m->slot};
        link_emit(shards_link(m->src), &f);
    }
}

/* Every move of the batch is committed at its destination: the table changes, durably, then the slots serve there. */
static void flip_batch(void)
{
    for (size_t i = 0; i < mig.batch_n; ++i)
        router.slots.owner[mig.batch[i].slot] = mig.batch[i].dst;
    int r = shards_save_slots();
    if (r != 0) {
        for (size_t i = 0; i < mig.batch_n; ++i)
            router.slots.owner[mig.batch[i].slot] = mig.batch[i].src;
        char why[128];
        snprintf(why, sizeof(why), "cannot write the slot table: %s", strerror(-r));
        fail(why);
        return;
    }
    /* the destination may fire the slot's alarms from now on; the source deletes its copy. Either frame lost (a
     * restart of the shard or of this router) is made up for by the "owned" every router sends a shard whose link
     * comes up (shards.c) */
    for (size_t i = 0; i < mig.batch_n; ++i) {
        mig_move_t *m = &mig.batch[i];
        mig.frozen[m->slot] = 0;
        link_t *src = shards_link(m->src), *dst = shards_link(m->dst);
        if (dst != NULL) {
            proto_msg_t f = {.type = PROTO_SLOT, .id = ++router.next_rid, .method = PROTO_STR("adopt"), .slot = m->slot};
            link_emit(dst, &f);
        }
        if (src != NULL) {
            proto_msg_t f = {.type = PROTO_SLOT, .id = ++router.next_rid, .method = PROTO_STR("drop"), .slot = m->slot};
            link_emit(src, &f);
        }
    }
    mig.moved += mig.batch_n;
    mig.batch_n = 0;
    next_batch();
}

void migrate_on_slot_reply(int shard, const proto_msg_t *msg)
{
    if (mig.phase != MIG_MOVING)
        return;
    for (size_t i = 0; i < mig.batch_n; ++i) {
        mig_move_t *m = &mig.batch[i];
        if (msg->id == m->export_rid && shard == m->src && h2o_memis(msg->method.base, msg->method.len, H2O_STRLIT("chunk"))) {
            if (msg->status != 200) {
                fail("the source shard could not export a slot");
                return;
            }
            if (m->import_rid == 0)
                m->import_rid = ++router.next_rid;
            proto_msg_t f = {.type = PROTO_SLOT,
                             .id = m->import_rid,
                             .method = PROTO_STR("import"),
                             .slot = m->slot,
                             .last = msg->last,
                             .data = msg->data};
            if (link_emit(shards_link(m->dst), &f) != 0)
                fail("could not send a slot to its new shard");
            return;
        }
        if (msg->id == m->import_rid && shard == m->dst) {
            if (msg->status != 200) {
                fail("the destination shard could not store a slot");
                return;
            }
            if (!m->acked) {
                m->acked = 1;
                if (++mig.batch_acked == mig.batch_n)
                    flip_batch();
            }
            return;
        }
    }
    /* drop acks, and answers to an abandoned batch: nothing to do */
}

/* ---- operations ---- */

static int begin(h2o_req_t *req, const char *what)
{
    if (mig.phase != MIG_IDLE || router.backing_up) {
        /* (a move the router starts itself waits for the backup: migrate_reconcile runs again when it is done) */
        if (req != NULL)
            http_send_error(req, 409, router.backing_up ? "a backup is under way" : "another shard change is under way");
        return -1;
    }
    if (router.draining) {
        if (req != NULL)
            http_send_error(req, 503, "the node is shutting down");
        return -1;
    }
    mig.what = what;
    mig.req = req;
    mig.retire = -1;
    mig.added = -1;
    mig.moved = 0;
    mig.started_ms = base_now_mono_ms();
    mig.last_error[0] = '\0';
    return 0;
}

static void on_spawn_timeout(h2o_timeout_entry_t *entry)
{
    (void)entry;
    if (mig.phase == MIG_SPAWNING)
        fail_with(500, "the new shard did not come up in time (see the node's log); if it comes up later, its slots move "
                       "to it then");
}

static void add_shard(h2o_req_t *req)
{
    if (begin(req, "add") != 0)
        return;
    if (router.num_shards >= CONFIG_MAX_SHARDS || router_ctl_send(CTL_SPAWN_SHARD, -1) != 0) {
        mig.phase = MIG_IDLE;
        answer(503, json_pack("{s:s}", "error", "the supervisor cannot start another shard"));
        return;
    }
    log_info("adding a shard");
    mig.phase = MIG_SPAWNING;
    /* without an answer the router would wait in "spawning" for good, refusing every later shard change */
    if (!mig.spawn_timeout_ready) {
        h2o_timeout_init(router.loop, &mig.spawn_timeout, SPAWN_TIMEOUT_MS);
        mig.spawn_entry.cb = on_spawn_timeout;
        mig.spawn_timeout_ready = 1;
    }
    h2o_timeout_link(router.loop, &mig.spawn_timeout, &mig.spawn_entry);
}

void migrate_on_spawn_failed(int shard, int err)
{
    if (mig.phase != MIG_SPAWNING)
        return; /* answered already (timed out) */
    char why[200];
    if (shard < 0 || err == ERANGE)
        snprintf(why, sizeof(why),
                 "the supervisor cannot start another shard: no shard id is left (ids are never reused; "
                 "the limit is %d)",
                 CONFIG_MAX_SHARDS);
    else
        snprintf(why, sizeof(why), "the supervisor cannot start shard %d: cannot record it in node.json: %s", shard, strerror(err));
    fail_with(500, why);
}

void migrate_dispose(void)
{
    if (mig.spawn_timeout_ready) {
        spawn_timer_stop();
        h2o_timeout_dispose(router.loop, &mig.spawn_timeout);
        mig.spawn_timeout_ready = 0;
    }
}

void migrate_add_shard(h2o_req_t *req)
{
    add_shard(req);
}

static void drain_shard(h2o_req_t *req, int id)
{
    if (router.num_shards <= 1) {
        if (req != NULL)
            http_send_error(req, 409, "the last shard cannot be drained");
        return;
    }
    if (begin(req, "drain") != 0)
        return;
    log_info("draining shard %d", id);
    mig.retire = id;
    rendezvous_table(&mig.target, id);
    start_moving();
}

void migrate_drain_shard(h2o_req_t *req, int id)
{
    drain_shard(req, id);
}

void migrate_on_shard_up(int shard, int is_new)
{
    if (mig.phase == MIG_SPAWNING && is_new) {
        spawn_timer_stop();
        log_info("shard %d is up; moving its slots to it", shard);
        mig.added = shard;
        rendezvous_table(&mig.target, -1);
        start_moving();
    }
}

void migrate_on_shard_down(int shard)
{
    if (mig.phase == MIG_SPAWNING) {
        /* the new shard will come back (the supervisor restarts it) and is_new will be 0: give up on this one; the
         * reconcile moves slots to it once every shard is up */
        fail("the new shard went down before it got its slots");
        return;
    }
    if (mig.phase != MIG_MOVING)
        return;
    for (size_t i = 0; i < mig.batch_n; ++i)
        if (mig.batch[i].src == shard || mig.batch[i].dst == shard) {
            char why[128];
            snprintf(why, sizeof(why), "shard %d went down during the move", shard);
            fail(why);
            return;
        }
}

void migrate_reconcile(void)
{
    if (mig.phase != MIG_IDLE || router.draining || !shards_all_up())
        return;
    /* a move left unfinished (by a crash, or a shard that went down): finish it */
    rendezvous_table(&mig.target, -1);
    if (memcmp(&mig.target, &router.slots, sizeof(mig.target)) != 0) {
        if (begin(NULL, "rebalance") == 0) {
            log_info("the slot table is not the rendezvous table of the shards: moving slots to finish an earlier move");
            start_moving();
        }
        return;
    }
    /* after the node started: the count the configuration asks for (not after a router restart: an operator may have
     * added or drained shards since, and the running node keeps them) */
    if (mig.target_shards == 0)
        return;
    if (router.num_shards < mig.target_shards) {
        add_shard(NULL);
    } else if (router.num_shards > mig.target_shards) {
        drain_shard(NULL, router.ids[router.num_shards - 1]);
    } else {
        log_info("the node has the %d shards its configuration asks for", mig.target_shards);
        mig.target_shards = 0;
    }
}

void migrate_init(int target_shards)
{
    mig.target_shards = target_shards;
}

void migrate_on_drain(void)
{
    if (mig.phase != MIG_IDLE)
        fail("the node is shutting down");
}
