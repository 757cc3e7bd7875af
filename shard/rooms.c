/*
 * rooms.c — the room registry of a shard: rooms found and created by name, started and stopped, kept in an LRU list
 * while idle and evicted by the sweep or to make way; connection records; what a commit's outcome does to rooms.
 * See room_int.h for the life cycle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room_int.h"

/* ---- lifecycle ---- */

rooms_state_t rooms;

/* The admin deletes answered in this pass: their replies are held for its commit. */
static struct {
    uint64_t *rids;
    size_t n, cap;
} held_admin;

static uint64_t (*clock_mono_ms)(void) = base_now_mono_ms;
static uint64_t (*clock_wall_ms)(void) = base_now_wall_ms;

void rooms_set_clock(uint64_t (*mono_ms)(void), uint64_t (*wall_ms)(void))
{
    clock_mono_ms = mono_ms != NULL ? mono_ms : base_now_mono_ms;
    clock_wall_ms = wall_ms != NULL ? wall_ms : base_now_wall_ms;
}

uint64_t room_mono_ms(void)
{
    return clock_mono_ms();
}

uint64_t room_wall_ms(void)
{
    return clock_wall_ms();
}

void rooms_init(const config_t *conf, store_t *store)
{
    memset(&rooms, 0, sizeof(rooms));
    rooms.conf = conf;
    rooms.reported.at_ms = room_mono_ms();
    rooms.store = store;
    shard_alarms_wake_at(0); /* alarms_from is 0: look through the whole index once */
}

void room_conn_free(party_conn_t *conn)
{
    for (size_t i = 0; i < conn->num_tags; ++i)
        free(conn->tags[i]);
    free(conn->tags);
    free(conn->id);
    free(conn->state);
    free(conn->close_reason);
    free(conn);
}

void room_conn_unlink(party_conn_t *conn)
{
    party_room_t *room = conn->room;
    if (conn->prev != NULL)
        conn->prev->next = conn->next;
    else
        room->conns = conn->next;
    if (conn->next != NULL)
        conn->next->prev = conn->prev;
    else
        room->conns_tail = conn->prev;
    conn->prev = conn->next = NULL;
}

/* Removes the connection from every lookup (but not from the join-order list, see room_conn_unlink). */
void room_conn_forget(party_conn_t *conn)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return;
    conn->flags |= CONN_CLOSED;
    HASH_DELETE(hh_id, conn->room->conns_by_id, conn);
    HASH_DELETE(hh_cid, rooms.conns_by_cid, conn);
    --conn->room->open_count;
    --rooms.num_conns;
    --room_party_stats(conn->room)->connections;
}

void room_lru_remove(party_room_t *room)
{
    if (!room->in_lru)
        return;
    if (room->lru_prev != NULL)
        room->lru_prev->lru_next = room->lru_next;
    else
        rooms.lru = room->lru_next;
    if (room->lru_next != NULL)
        room->lru_next->lru_prev = room->lru_prev;
    else
        rooms.lru_tail = room->lru_prev;
    room->lru_prev = room->lru_next = NULL;
    room->in_lru = 0;
}

void room_lru_append(party_room_t *room)
{
    room->idle_since = room_mono_ms();
    room->lru_prev = rooms.lru_tail;
    room->lru_next = NULL;
    if (rooms.lru_tail != NULL)
        rooms.lru_tail->lru_next = room;
    else
        rooms.lru = room;
    rooms.lru_tail = room;
    room->in_lru = 1;
}

/* Whether the room could leave memory now: nothing waits on it, and no connection (or only connections, when the
 * party hibernates). */
static int room_is_idle(const party_room_t *room)
{
    if (room->requests != NULL || room->connecting != NULL || room->fetches != NULL)
        return 0;
    return room->conns == NULL || (room->hibernates && room->started);
}

/* Puts the room in the idle list, or takes it out, as its state says. */
void room_settle(party_room_t *room)
{
    int idle = room_is_idle(room);
    if (idle && !room->in_lru)
        room_lru_append(room);
    else if (!idle && room->in_lru)
        room_lru_remove(room);
}

/* on_stop, where the room refuses new fetches (party_fetch: -EBUSY), since its waiting fetches are dropped right after
 * and an answer would find the party's state gone (party.h, party_fetch). */
static void room_run_on_stop(party_room_t *room)
{
    room->stopping = 1;
    if (room->party->on_stop != NULL)
        room->party->on_stop(room);
    room->stopping = 0;
    room->data = NULL;
    room_fetches_drop(room);
}

static void room_stop(party_room_t *room)
{
    if (!room->started) {
        room_fetches_drop(room);
        return;
    }
    room->started = 0;
    --rooms.num_started;
    room_run_on_stop(room);
}

/* Frees a room: its party stops (on_stop), then what is left goes — requests are answered 503, and connections
 * already closed by room_close_all_now are freed only now, since party.h promises their pointers until on_stop. */
void room_destroy(party_room_t *room)
{
    room_stop(room);
    while (room->requests != NULL)
        room_request_answer(room->requests, 503, "the room stopped");
    while (room->conns != NULL) {
        party_conn_t *c = room->conns;
        room_conn_forget(c);
        room_conn_unlink(c);
        room_conn_free(c);
    }
    room_lru_remove(room);
    if (room->gated_pass == shard_pass() + 1) {
        /* it wrote in this pass (an admin eviction, a slot move): the list of rooms to reset must not keep it */
        for (party_room_t **p = &rooms.gated; *p != NULL; p = &(*p)->gated_next) {
            if (*p == room) {
                *p = room->gated_next;
                break;
            }
        }
    }
    if (room->slot_prev != NULL)
        room->slot_prev->slot_next = room->slot_next;
    else
        rooms.by_slot[room->slot] = room->slot_next;
    if (room->slot_next != NULL)
        room->slot_next->slot_prev = room->slot_prev;
    HASH_DEL(rooms.by_key, room);
    --rooms.num_rooms;
    free(room->key);
    free(room->party_name);
    free(room->id);
    free(room);
}

/* Evicts the room: its party leaves memory; the room itself goes too unless connections hibernate in it. */
static void room_evict(party_room_t *room)
{
    ++rooms.evictions;
    room_lru_remove(room);
    if (room->conns == NULL) {
        room_destroy(room);
    } else {
        room_stop(room);
        log_debug("room %s hibernates with %zu connections", room->key, room->open_count);
    }
}

/* The first idle room that may leave memory now (not one with writes waiting for this pass's commit). */
static party_room_t *rooms_evictable(void)
{
    for (party_room_t *r = rooms.lru; r != NULL; r = r->lru_next)
        if (r->gated_pass != shard_pass() + 1)
            return r;
    return NULL;
}

/* Finds the room, creating its struct when needed (not started). NULL with an HTTP status when it cannot be. */
party_room_t *room_get(proto_str_t party, proto_str_t id, int *status, const char **why)
{
    if (party.len == 0 || party.len > 64 || id.len == 0 || id.len > 256) {
        *status = 400;
        *why = "bad party or room name";
        return NULL;
    }
    char key[BASE_ROOM_KEY_MAX];
    size_t key_len = keys_room_name(key, party, id);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    if (room != NULL)
        return room;

    const partydef_t *pdef = partydefs_find(shard_partydefs(), party.base, party.len);
    if (pdef == NULL) {
        *status = 404;
        *why = "unknown party";
        return NULL;
    }
    room = xcalloc(1, sizeof(*room));
    room->key = xstrndup(key, key_len);
    room->key_len = key_len;
    room->party_name = xstrndup(party.base, party.len);
    room->id = xstrndup(id.base, id.len);
    room->conf = pdef->conf;
    room->party = pdef->party;
    room->hibernates = pdef->hibernate;
    room->prefix_len = keys_room_prefix(key, key_len, room->prefix);
    uint16_t slot = (uint16_t)(room->prefix[0] << 8 | room->prefix[1]);
    HASH_ADD_KEYPTR(hh, rooms.by_key, room->key, room->key_len, room);
    room->slot = slot;
    room->slot_next = rooms.by_slot[slot];
    if (room->slot_next != NULL)
        room->slot_next->slot_prev = room;
    rooms.by_slot[slot] = room;
    ++rooms.num_rooms;
    room_load_alarm(room);
    return room;
}

/* Starts the room when its party is not in memory. 0, or an HTTP status. */
int room_wake(party_room_t *room, const char **why)
{
    if (room->started)
        return 0;
    if (rooms.num_started >= rooms.conf->limits.rooms_in_memory) {
        party_room_t *victim = rooms_evictable();
        if (victim != NULL && victim != room) {
            room_evict(victim);
        } else if (room->conns == NULL) {
            *why = "too many rooms in memory on this shard";
            return 503;
        }
        /* else a hibernating room with live connections wakes above the cap rather than drop them; the sweep brings
         * the count back down */
    }
    room->started = 1;
    ++rooms.num_started;
    uint64_t t0 = base_now_mono_us();
    shard_beat_room(room->key, room->key_len); /* on_start may run before room_enter */
    int failed = room->party->on_start != NULL && room->party->on_start(room) != 0;
    base_hist_observe(&rooms.wake, (double)(base_now_mono_us() - t0) / 1e6);
    if (failed) {
        log_warn("room %s failed to start", room->key);
        room->started = 0;
        --rooms.num_started;
        /* a fetch made in on_start is dropped too: its callback must not run in a room that never started */
        room_run_on_stop(room);
        *why = "the room failed to start";
        return 500;
    }
    return 0;
}

/* An event for the room begins: it is no longer idle, and its output joins the gate when it wrote in this pass. */
void room_enter(party_room_t *room)
{
    shard_beat_room(room->key, room->key_len); /* a stall or a crash from here on is this room's */
    room_lru_remove(room);
    if (room->gated_pass == shard_pass() + 1)
        shard_gate_event();
}

void room_leave(party_room_t *room)
{
    room_settle(room);
    shard_beat_room(NULL, 0);
}

/* ---- emitting to the router ---- */

void room_emit_close_conn(uint64_t cid, int code, const char *reason)
{
    proto_msg_t m = {.type = PROTO_CLOSE_CONN, .id = cid, .code = code, .reason = proto_str(reason, strlen(reason))};
    shard_emit_close(&m);
}

void room_emit_reject(uint64_t cid, int status, const char *why)
{
    proto_msg_t m = {.type = PROTO_REJECT, .id = cid, .status = status, .data = proto_str(why, strlen(why))};
    shard_emit_verdict(&m);
}

/* Closes every connection of the room at once, without callbacks: the clients get `code` and `why` and reconnect to
 * find the room started afresh (from storage). The caller then drops the room (room_destroy), which frees the
 * connection records after on_stop (party.h: their pointers stay valid until then).
 *
 * When the room wrote in this pass, the ATTACH and ACCEPT of a connection that joined in it may be held by the gate:
 * the closes are then held too, as an event of their own, so the router gets them after those and never a close
 * before the connection's ATTACH. The caller's event goes on unheld after them (an operator evict's reply, a slot's
 * export chunks), as it was. Called outside an event only by the failure path, which clears gated_pass first. */
void room_close_all_now(party_room_t *room, int code, const char *why)
{
    rooms_run_deferred();
    int hold = room->gated_pass == shard_pass() + 1;
    if (hold) {
        shard_event_end();
        shard_event_begin();
        shard_gate_event();
    }
    for (party_conn_t *c = room->conns; c != NULL; c = c->next) {
        if ((c->flags & CONN_CLOSED) == 0)
            room_emit_close_conn(c->cid, code, why);
        room_conn_forget(c);
    }
    if (hold) {
        shard_event_end();
        shard_event_begin();
    }
}

/* The room cannot run (its start failed, or its writes were lost): its connections are closed with 1011, without
 * callbacks, its requests answered 500, and the room is dropped; its next event starts it afresh from storage. */
void room_fail(party_room_t *room, const char *why)
{
    room_close_all_now(room, 1011, why);
    while (room->requests != NULL)
        room_request_answer(room->requests, 500, why);
    room_destroy(room);
}

static void log_activity(uint64_t now_ms)
{
    uint64_t evicted = rooms.evictions - rooms.reported.evictions, woken = rooms.wake.count - rooms.reported.wakes;
    if (evicted != 0 || woken != 0)
        log_info("rooms: %llu woken, %llu evicted in the last %llu s; %zu in memory, %zu hibernating, %zu connections",
                 (unsigned long long)woken, (unsigned long long)evicted,
                 (unsigned long long)((now_ms - rooms.reported.at_ms + 500) / 1000), rooms.num_started,
                 rooms.num_rooms - rooms.num_started, rooms.num_conns);
    rooms.reported.at_ms = now_ms;
    rooms.reported.evictions = rooms.evictions;
    rooms.reported.wakes = rooms.wake.count;
}

void rooms_dispose(void)
{
    free(held_admin.rids);
    held_admin.rids = NULL;
    held_admin.n = held_admin.cap = 0;
    log_activity(room_mono_ms());
    rooms_run_deferred();
    party_room_t *room, *tmp;
    HASH_ITER(hh, rooms.by_key, room, tmp)
    {
        /* connections still here at shutdown are told in on_close; a hibernating room is not woken for it */
        while (room->conns != NULL) {
            party_conn_t *c = room->conns;
            if (room->started) {
                room_conn_close_now(c, 1001, "shard shutting down", 0, NULL);
            } else {
                room_conn_forget(c);
                room_conn_unlink(c);
                room_conn_free(c);
            }
            rooms_run_deferred();
        }
        room_destroy(room);
    }
}

void rooms_stats(rooms_stats_t *stats)
{
    stats->rooms = rooms.num_started;
    /* room records without their party: hibernating rooms (and, for an instant, rooms being created) */
    stats->rooms_hibernating = rooms.num_rooms - rooms.num_started;
    stats->evictions = rooms.evictions;
    stats->connections = rooms.num_conns;
    stats->messages_in = rooms.messages_in;
    stats->messages_out = rooms.messages_out;
    stats->bytes_in = rooms.bytes_in;
    stats->bytes_out = rooms.bytes_out;
    stats->wake = rooms.wake;
}

const rooms_party_stats_t *rooms_party_stats(size_t party_index)
{
    return party_index < rooms.conf->num_parties ? &rooms.by_party[party_index] : NULL;
}

/* ---- the output gate ---- */

/* The room wrote: its output waits for the commit at the end of this pass. */
void room_wrote(party_room_t *room)
{
    if (room->gated_pass != shard_pass() + 1) {
        room->gated_pass = shard_pass() + 1;
        room->gated_next = rooms.gated;
        rooms.gated = room;
    }
    shard_gate_event();
}

void room_admin_held(uint64_t rid)
{
    if (held_admin.n == held_admin.cap) {
        held_admin.cap = held_admin.cap == 0 ? 8 : 2 * held_admin.cap;
        held_admin.rids = xrealloc(held_admin.rids, held_admin.cap * sizeof(*held_admin.rids));
    }
    held_admin.rids[held_admin.n++] = rid;
}

void rooms_on_committed(void)
{
    rooms.gated = NULL;
    held_admin.n = 0;
}

static int id_in(uint64_t id, const uint64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; ++i)
        if (ids[i] == id)
            return 1;
    return 0;
}

/* What a client whose write was in a pass whose commit failed is told: the WAL record may have reached the disk (its
 * sync failed, not its write), and RocksDB may replay it when the shard reopens its storage (docs/failure.md). */
#define STORAGE_FAILED                                                                                                 \
    "the room's storage failed: this write's outcome is unknown (it may still be applied after a restart); read it back " \
    "before retrying"

void rooms_on_commit_failed(const uint64_t *held_rids, size_t num_rids, const uint64_t *held_cids, size_t num_cids,
                            const uint64_t *held_closed, size_t num_closed)
{
    /* answers that never left: the router still waits for them */
    for (size_t i = 0; i < num_rids; ++i)
        room_respond_simple(held_rids[i], 500, STORAGE_FAILED);
    static const char failed_json[] = "{\"error\":\"the storage failed before the delete was committed; retry it\"}";
    for (size_t i = 0; i < held_admin.n; ++i) {
        proto_msg_t m = {.type = PROTO_ADMIN_REPLY, .id = held_admin.rids[i], .status = 500, .data = PROTO_STR(failed_json)};
        shard_emit(&m);
    }
    held_admin.n = 0;
    for (size_t i = 0; i < num_cids; ++i) {
        party_conn_t *c = room_conn_by_cid(held_cids[i]);
        if (c != NULL) {
            /* its ACCEPT was dropped: refuse it instead, and let room_fail skip it */
            room_emit_reject(c->cid, 500, STORAGE_FAILED);
            room_conn_forget(c);
        } else {
            room_emit_reject(held_cids[i], 500, STORAGE_FAILED);
        }
    }
    /* closes that never left, of connections that already left their room (a party_conn_close, a `_pk` replacement,
     * an evict): without them the router would keep the socket open in the room for good. One refused above needs
     * none. */
    for (size_t i = 0; i < num_closed; ++i)
        if (!id_in(held_closed[i], held_cids, num_cids) && room_conn_by_cid(held_closed[i]) == NULL)
            room_emit_close_conn(held_closed[i], 1011, "the room's storage failed");
    /* the pass's deletes of due alarms' index entries are lost too: look through the whole index again */
    rooms.alarms_from = 0;
    shard_alarms_wake_at(0);
    while (rooms.gated != NULL) {
        party_room_t *room = rooms.gated;
        rooms.gated = room->gated_next;
        room->gated_pass = 0; /* off the list; its closes go out at once (room_close_all_now) */
        log_warn("room %s: its writes of this pass were lost; resetting it", room->key);
        room_fail(room, "the room's storage failed");
    }
}

/* ---- the sweep ---- */

static void evict_idle(void)
{
    uint64_t now = room_mono_ms(), wall = room_wall_ms();
    party_room_t *room = rooms.lru;
    for (int i = 0; i < EVICTIONS_PER_TICK && room != NULL; ++i) {
        if (now - room->idle_since < rooms.conf->timers.idle_ms)
            break; /* the rest are younger */
        party_room_t *next = room->lru_next;
        if (room->gated_pass == shard_pass() + 1) {
            /* its writes are not committed yet; next pass */
        } else if (room->alarm_at != 0 && room->alarm_at <= wall + rooms.conf->timers.idle_ms) {
            /* its alarm is due soon: stay, and look again later */
            room_lru_remove(room);
            room_lru_append(room);
        } else {
            room_evict(room);
        }
        room = next;
    }
}

void rooms_tick(void)
{
    rooms_fire_alarms(); /* as well: where the shard has no timer to wake it, and after a storage error */
    evict_idle();
    uint64_t now = room_mono_ms();
    if (now - rooms.reported.at_ms >= ACTIVITY_LOG_MS)
        log_activity(now);
}
