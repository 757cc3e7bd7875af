/*
 * shard.h — one shard process: one event loop running many rooms (see room_int.h), talking to the router over one link
 * (proto.h frames) and to the supervisor over a control socket.
 *
 * Where things are:
 *   shard.c     the process: loop (ipc/loop.h), control socket, the router link, decoding frames and dispatching them
 *               to rooms
 *   room_int.h  the room layer's private header: its structs and state, the life cycle, the files below
 *   gate.h      the output gate's interface (gate.c)
 *   store.h     the storage interface (store.c)
 *   keys.h      the key layout's functions (keys.c)
 *   module.h    resolving the configured parties (module.c), called by node/ before the fork
 *   rooms.c     the room registry, life cycle, LRU, eviction and the idle sweep
 *   events.c    the frames from the router handled by rooms (open, message, close, request, router lost)
 *   requests.c  HTTP requests to rooms and party.h's request accessors
 *   storage.c   party_storage_* (party.h) over store.c
 *   alarms.c    party_alarm_* and firing due alarms
 *   access.c    party.h's room and connection accessors, send/broadcast/close, vars, utilities
 *   fetch.c     party_fetch: rooms calling rooms
 *   keys.c      the layout of storage keys, as pure functions (keys.h)
 *   gate.c      the output gate: events, what they hold, the end-of-pass commit and the release or the failure path
 *   store.c     the shard's RocksDB, written with one batch per loop pass (the only file including rocksdb/c.h)
 *   admin.c     the admin endpoint's operations, with the room layer's rooms_admin_*
 *   migrate.c   a shard's half of a slot move, with the room layer's rooms_slot_*
 *   module.c    the configured parties resolved to their code: built-in kinds, modules (tried in a child first)
 *   json.c      party.h's JSON writer and string escaping (party_json_*)
 *   crash.c     the fatal-signal handler: the room, callback and a backtrace on stderr before the shard dies
 *   parties/    the built-in parties (relay, chat, counter, kv), written against party.h only
 *   meson.build the shard's sources (one static library; store.c alone gets RocksDB's headers)
 *
 * A shard runs on ipc/loop.h's loop, not h2o's. shard/ may include api/, proto/, config/ and ipc/, never router/ or
 * node/ (docs/architecture.md).
 *
 * Unless a declaration says otherwise: a shard process has one thread and one loop, and every function here is
 * called on it (never from a signal handler). Pointers passed in, frames (proto_msg_t) included, are borrowed for the
 * call: whatever must outlive it is copied. What a function returns is the callee's (the config, the store, the
 * histograms are the process's, valid until it exits), except the json_t results of rooms_admin_*, which the caller
 * owns (json_decref). Failures are "0 or -errno"; a frame handler cannot fail (it answers or closes instead); out of
 * memory aborts (base.h).
 */
#ifndef PARTYD_SHARD_H
#define PARTYD_SHARD_H

#include "beat.h"
#include "config.h"
#include "partydefs.h"
#include "party.h"
#include "proto.h"
#include "store.h"

/* Runs shard `index` until the supervisor tells it to stop or goes away. `ctl_fd` is the shard's end of its control
 * socket; `beat` the heartbeat page the supervisor watches (ipc/beat.h: shared memory the supervisor owns; NULL for
 * none). Returns the process exit status. */
int shard_main(const config_t *conf, const partydefs_t *defs, int index, int ctl_fd, beat_t *beat);

/* ---- between shard.c and the room layer (one shard per process, so these act on the process's shard) ---- */

/* The room an event runs in, for the heartbeat page (room_enter: its "party/room" key; room_leave: NULL). A few
 * stores; nothing else happens. */
void shard_beat_room(const char *key, size_t len);
/* The caps of this node (limits.*). */
const config_t *shard_config(void);
/* crash.c: from now on a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT) first writes "shard INDEX (pid P):
 * fatal signal N (NAME) in CALLBACK of room PARTY/ROOM; backtrace:" and a backtrace to stderr (what `beat` says ran;
 * NULL: no room is named), then kills the process with that signal. Call once, in the shard process. */
void crash_install(int index, const beat_t *beat);
/* The node's parties, resolved to their code. */
const partydefs_t *shard_partydefs(void);

/* The output gate (gate.h; these act on the shard's gate). An event — a frame from the router, an alarm, a room's share
 * of the router going away — runs between shard_event_begin and shard_event_end, each called once on its path.
 * Frames are emitted with shard_emit, or, when the router waits for them as the answer to request msg->id or the
 * verdict on connection msg->id, with shard_emit_answer (RESPONSE) or shard_emit_verdict (ACCEPT, REJECT): what the
 * gate must answer itself if a commit fails. When the event writes storage, shard_gate_event holds back everything
 * the event emitted and emits until the pass's writes are committed: then the held frames go out; if the commit
 * fails they are dropped (rooms_on_commit_failed). A room whose earlier event in this pass was gated gates every later
 * one too (room_enter), so its frames never overtake each other. The emits return 0, -ENOTCONN when no router is
 * connected (the frame is dropped: there is no client to see it), -EMSGSIZE when it is over the link's frame cap. */
void shard_event_begin(void);
void shard_event_end(void);
void shard_gate_event(void);
int shard_emit(const proto_msg_t *msg);
int shard_emit_answer(const proto_msg_t *msg);
int shard_emit_verdict(const proto_msg_t *msg);
/* A CLOSE_CONN for a connection that has left the room: sent again by rooms_on_commit_failed if it is dropped. */
int shard_emit_close(const proto_msg_t *msg);
/* alarms.c: call rooms_fire_alarms at `wall_ms` (CLOCK_REALTIME ms; at once when that has passed; UINT64_MAX: no alarm
 * is pending). Each call replaces the last. */
void shard_alarms_wake_at(uint64_t wall_ms);
/* Increases by one every loop pass (rooms use it to know whether they wrote in this pass). */
uint64_t shard_pass(void);
/* This shard's number, its storage, and the histogram of event latency: from a frame's arrival to the release of
 * what handling it produced (after the pass's commit). */
int shard_index(void);
store_t *shard_store(void);
const base_hist_t *shard_latency(void);

/* admin.c: an ADMIN frame from the router. */
void shard_admin(const proto_msg_t *msg);
/* migrate.c: a SLOT frame from the router. */
void shard_slot(const proto_msg_t *msg);

/* The room layer (room_int.h): entry points for the frames the router sends. */
void rooms_init(const config_t *conf, store_t *store);
/* The clocks the room layer reads (monotonic ms for idleness, wall ms for alarms and party_now_ms); NULL: the real
 * ones. For unit tests, which drive time instead of sleeping. */
void rooms_set_clock(uint64_t (*mono_ms)(void), uint64_t (*wall_ms)(void));
void rooms_dispose(void);
void rooms_on_open(const proto_msg_t *msg);
void rooms_on_message(const proto_msg_t *msg);
void rooms_on_close(const proto_msg_t *msg);
void rooms_on_request(const proto_msg_t *msg);
/* The router went away: every connection is gone (their on_close runs with 1006), rooms stay. */
void rooms_on_router_lost(void);
/* A room's fetch was answered (FETCH_REPLY): its callback runs. */
void rooms_on_fetch_reply(const proto_msg_t *msg);
/* The node drains: what closes now is the node letting go (party_node_stopping). */
void rooms_node_stopping(void);
/* Runs the on_close callbacks that party_conn_close deferred. Each event handler calls it before it leaves its room. */
void rooms_run_deferred(void);
/* What the room layer counts (shard/admin.c reports it). */
typedef struct st_rooms_stats_t {
    uint64_t rooms;             /* rooms in memory (started) */
    uint64_t rooms_hibernating; /* room records whose party is not in memory (hibernating connections) */
    uint64_t evictions;         /* rooms evicted since the shard started */
    uint64_t connections;
    uint64_t messages_in, bytes_in;   /* messages delivered to rooms, and their payload bytes */
    uint64_t messages_out, bytes_out; /* messages sent by rooms, per recipient, and their payload bytes */
    base_hist_t wake;                 /* how long on_start took when a room started (seconds) */
} rooms_stats_t;
void rooms_stats(rooms_stats_t *stats);
/* The same figures per party (the /metrics `party` label), indexed as the config's parties. */
typedef struct st_rooms_party_stats_t {
    uint64_t connections;
    uint64_t messages_in, bytes_in;
    uint64_t messages_out, bytes_out;
    uint64_t storage_writes; /* puts and deletes the party's rooms staged (a failed commit still counts them) */
} rooms_party_stats_t;
/* The party's figures, or NULL past the config's parties. Read-only; owned by the room layer. */
const rooms_party_stats_t *rooms_party_stats(size_t party_index);

/* ---- the room layer for slot moves (in shard/migrate.c) ---- */
/* A frozen slot's rooms run no event: connections and requests get 503, alarms wait. */
void rooms_slot_freeze(uint16_t slot, int frozen);
void rooms_slots_unfreeze_all(void);
/* Takes the slot's rooms out of memory (a connection still there is closed with 1012). */
void rooms_slot_evict(uint16_t slot);
/* Passes the slot's keys and values as packed pairs (proto_pairs_add) to emit, in chunks of about chunk_bytes, the
 * last with last = 1 (possibly empty). Returns the number of pairs, or -EIO. */
long rooms_slot_export(uint16_t slot, void (*emit)(void *arg, base_buf_t *chunk, int last), void *arg, size_t chunk_bytes);
/* Writes one chunk of a slot coming in; the first chunk first clears whatever the slot held here. 0, -EINVAL (a key of
 * another slot, malformed pairs), -EIO. */
int rooms_slot_import(uint16_t slot, proto_str_t data, int first);
/* Deletes the slot's data here (it moved away) and unfreezes it. Returns the keys deleted, or -EIO. */
long rooms_slot_drop(uint16_t slot);
/* Which slots this shard owns (bit s of bitmap[s / 8], SLOTS_COUNT bits; NULL: all of them), as the router says when
 * the link comes up: alarms fire only in owned slots that are not frozen (rooms_slot_fires), and none before this is
 * first called. Unit tests call it with NULL. */
void rooms_slots_owned(const uint8_t *bitmap);
int rooms_slot_fires(uint16_t slot);
/* shard.c: after each pass's commit (exports that waited for it run; if it failed, the import acks it held are
 * answered 500), and when the router goes away. */
void shard_slots_after_commit(int failed);
void shard_slots_router_gone(void);

/* ---- the room layer for the admin operations (in shard/admin.c); results are JSON (jansson) ---- */
struct json_t;
/* Rooms in storage order (slot, then "party/room"), strictly after the room `after` ("party/room"; NULL: from the
 * start), of `party` and with ids starting with `prefix` (NULL: any), at most `limit`: rooms with stored data and
 * rooms in memory. Returns {"rooms":[{party,room,slot,in_memory,hibernating,connections,stored}],"next":KEY|null};
 * "next" is where to go on (a bounded number of rooms is examined per call). */
struct json_t *rooms_admin_list(const char *after, const char *party, const char *prefix, size_t limit);
/* One room: {party,room,slot,in_memory,hibernating,connections:N,ids:[ID],clients:[{id,tags,state_bytes}],alarmAt,
 * keys:[{key,bytes}],next}, keys paged after the key `cursor` (raw bytes; NULL: from the first). A key that is not
 * UTF-8 shows as null with key_hex; `next` is the hex of the page's last key (or null), any bytes. NULL when the party
 * is unknown. */
struct json_t *rooms_admin_room(proto_str_t party, proto_str_t room, const void *cursor, size_t cursor_len, size_t limit);
/* Takes the room out of memory now: its connections are closed with 1012 (reconnect), on_stop runs. With `delete_data`
 * every key and the alarm go too. Returns the number of keys deleted (0 without delete_data), or -ENOENT for an
 * unknown party, -EIO. */
long rooms_admin_evict(proto_str_t party, proto_str_t room, int delete_data);
/* Periodic work (every 50 ms): alarms that are due, and a slice of the eviction sweep. */
void rooms_tick(void);
/* Fires the alarms that are due (a bounded batch), then says when to call it next through shard_alarms_wake_at. */
void rooms_fire_alarms(void);
/* After the end-of-pass commit: every gated room's writes are durable now. */
void rooms_on_committed(void);
/* The commit failed: the held frames are gone. Every room that wrote in this pass is reset (its connections closed
 * with 1011, its held requests and upgrades answered 500, its memory dropped: the next event starts it from disk);
 * the connections whose held close was dropped (held_closed) are closed again, with 1011. */
void rooms_on_commit_failed(const uint64_t *held_rids, size_t num_rids, const uint64_t *held_cids, size_t num_cids,
                            const uint64_t *held_closed, size_t num_closed);

#endif
