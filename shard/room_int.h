/*
 * room_int.h — the room layer's private header: the structs behind party.h's opaque types, the layer's state, and the
 * functions its files share. Only shard/ files of the room layer include it (never a party).
 *
 * Every function here runs on the shard's single loop. Rooms, connections and requests are owned by the room layer
 * (the registry in `rooms`), freed only by the functions that say so, never by a party; frames passed in are borrowed
 * for the call. Nothing here returns an error to pass on: a failure is answered (an HTTP status to the router, a close
 * code to the client) where it happens; out of memory aborts (base.h).
 *
 * Life cycle. A room is created by its first event (a connection, a request, its alarm) and started (on_start). It is
 * *idle* when it has no connections (or only connections, for a party that hibernates) and no request in flight; idle
 * rooms wait in an LRU list, oldest first, and the sweep (rooms_tick, a slice per tick, never a full scan) evicts those
 * idle for timers.idle_ms: on_stop runs and the party's memory goes. A room without connections is then freed
 * entirely; a hibernating room keeps its connection records (id, tags, state) and its next event starts it again.
 * limits.rooms_in_memory caps the started rooms per shard: the least recently used idle room makes way.
 *
 * Storage. A room's keys live in the shard's RocksDB as keys.h lays them out: a slot's rooms and a room's keys are
 * contiguous ranges; the alarm index, ordered by time, is read from its head for due alarms.
 *
 * Closing. A connection closed by the party from inside a callback is flagged, leaves the room's lookups at once, and
 * is freed (after its on_close) once the event is done, so a party is never handed a freed pointer.
 *
 * The files:
 *   rooms.c     the registry, life cycle, LRU, eviction and the sweep; what the gate's outcome does to rooms
 *   events.c    the frames from the router (open, message, close, request, the router lost) and deferred closes
 *   requests.c  HTTP requests: their copy, their answer, and party.h's request accessors
 *   storage.c   party_storage_* over store.h
 *   alarms.c    party_alarm_* and firing due alarms from the index
 *   access.c    party.h's room and connection accessors, send/broadcast/close, vars and utilities
 *   fetch.c     party_fetch: rooms calling rooms
 *   admin.c, migrate.c  the admin endpoint's and slot moves' use of the room layer, beside their callers
 */
#ifndef PARTYD_ROOM_INT_H
#define PARTYD_ROOM_INT_H

#include <uthash.h>

#include "keys.h"
#include "shard.h"
#include "slots.h"

#define CLOSE_REASON_MAX 123
#define ALARM_TRIES 6
#define ALARMS_PER_TICK 64
#define ALARM_RECHECK_MS 50 /* when due alarms could not be fired now (storage error, their room moving away) */
#define EVICTIONS_PER_TICK 256
/* Evictions and wakes are logged in aggregate, at most this often (and once at shutdown): one line a minute per shard
 * however busy, nothing when nothing happened. */
#define ACTIVITY_LOG_MS 60000

enum { CONN_ACCEPTED = 1, CONN_CLOSED = 2 };

struct st_party_conn_t {
    UT_hash_handle hh_cid; /* rooms.conns_by_cid */
    UT_hash_handle hh_id;  /* room->conns_by_id */
    uint64_t cid;
    party_room_t *room;
    party_conn_t *prev, *next; /* room->conns, join order */
    party_conn_t *next_deferred;
    char *id;
    void *state;
    uint32_t state_len;
    uint8_t flags;
    uint8_t num_tags;
    uint16_t close_code;
    char **tags;
    char *close_reason;
};

struct st_party_request_t {
    uint64_t rid;
    party_room_t *room; /* NULL for an upgrade request */
    party_request_t *prev, *next;
    int responded;
    const char *method, *path, *query;
    size_t num_headers;
    const char **names, **values;
    const char *body;
    size_t body_len;
    proto_header_t *resp_headers;
    size_t num_resp_headers;
};

/* A room's request to another room, waiting for its answer (party_fetch). */
typedef struct st_room_fetch_t {
    UT_hash_handle hh; /* rooms.fetches, by id */
    uint64_t id;
    party_room_t *room;
    party_fetch_cb cb;
    void *arg;
    struct st_room_fetch_t *prev, *next; /* room->fetches */
} room_fetch_t;

/* The answer handed to a fetch's callback: the FETCH_REPLY's fields, header names and values NUL-terminated. */
struct st_party_fetch_t {
    int status;
    size_t num_headers;
    char **names, **values;
    const void *body;
    size_t body_len;
};

struct st_party_room_t {
    UT_hash_handle hh; /* rooms.by_key */
    char *key;         /* "party/room" */
    size_t key_len;
    char *party_name;
    char *id;
    const config_party_t *conf;
    const party_t *party;
    void *data;
    party_conn_t *conns; /* head; doubly linked in join order, including closed-but-deferred ones */
    party_conn_t *conns_tail;
    party_conn_t *conns_by_id;
    size_t open_count;
    party_request_t *requests; /* outstanding HTTP requests */
    room_fetch_t *fetches;     /* its requests to other rooms, waiting for their answers */
    party_conn_t *connecting;  /* the connection whose on_connect runs */
    /* storage */
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len;
    uint64_t alarm_at; /* wall ms; 0: none */
    uint8_t alarm_tries;
    /* life cycle */
    uint8_t started;
    uint8_t in_lru;
    uint8_t hibernates;
    uint8_t stopping; /* on_stop runs: party_fetch is refused */
    party_room_t *lru_prev, *lru_next;
    party_room_t *slot_prev, *slot_next; /* rooms.by_slot[slot] */
    uint16_t slot;
    uint64_t idle_since; /* monotonic ms */
    /* output gate */
    uint64_t gated_pass; /* the pass in which it last wrote, plus one (0: never) */
    party_room_t *gated_next;
};

/* The room layer's state: one per shard process. */
typedef struct st_rooms_state_t {
    const config_t *conf;
    store_t *store;
    party_room_t *by_key;
    party_conn_t *conns_by_cid;
    party_conn_t *deferred; /* closed by the party, on_close pending */
    room_fetch_t *fetches;  /* every room's fetches waiting for an answer, by id */
    char refusal[257];      /* the reason on_connect gave for refusing (party_conn_refusal) */
    int node_stopping;      /* the router said the node drains (party_node_stopping) */
    uint64_t next_fetch_id;
    party_room_t *lru, *lru_tail; /* idle rooms, least recently used first */
    party_room_t *gated;          /* rooms that wrote in this pass */
    size_t num_rooms;             /* structs */
    size_t num_started;           /* party in memory */
    size_t num_conns;
    uint64_t evictions;
    uint64_t messages_in, bytes_in;   /* messages delivered to rooms, and their payload bytes */
    uint64_t messages_out, bytes_out; /* per recipient */
    base_hist_t wake;
    rooms_party_stats_t by_party[CONFIG_MAX_PARTIES]; /* indexed as rooms.conf->parties (room_party_stats) */
    struct {
        uint64_t at_ms, evictions, wakes;
    } reported;                         /* the figures of the last activity log line */
    party_room_t *by_slot[SLOTS_COUNT]; /* rooms in memory, per slot: what a slot move must evict */
    uint8_t frozen[SLOTS_COUNT];        /* slots being moved away: no event may run in their rooms */
    uint64_t alarms_from;               /* no alarm index entry is earlier (wall ms): see rooms_fire_alarms */
    int alarms_checking;                /* rooms_fire_alarms is running */
} rooms_state_t;

extern rooms_state_t rooms;

/* The room's party's counters (a party's config entry lies in rooms.conf->parties; one that does not, as a unit test
 * may build, counts into a sink nobody reports). */
static inline rooms_party_stats_t *room_party_stats(const party_room_t *room)
{
    static rooms_party_stats_t sink;
    const config_party_t *p = room->conf, *first = rooms.conf->parties;
    if (p < first || p >= first + rooms.conf->num_parties)
        return &sink;
    return &rooms.by_party[p - first];
}

/* ---- the clock (settable by unit tests: rooms_set_clock in shard.h) ---- */
/* Monotonic ms (idleness, the sweep) and CLOCK_REALTIME ms (alarms, party_now_ms). */
uint64_t room_mono_ms(void);
uint64_t room_wall_ms(void);

/* ---- rooms.c ---- */
/* Frees a connection record already out of its room's lists and lookups (its id, tags, state). */
void room_conn_free(party_conn_t *conn);
/* Takes the connection off its room's join-order list. */
void room_conn_unlink(party_conn_t *conn);
/* Removes the connection from every lookup (but not from the join-order list, see room_conn_unlink). */
void room_conn_forget(party_conn_t *conn);
/* Takes the room out of the idle list / puts it at its end (most recently used); only room_settle decides which. */
void room_lru_remove(party_room_t *room);
void room_lru_append(party_room_t *room);
/* Puts the room in the idle list, or takes it out, as its state says. */
void room_settle(party_room_t *room);
/* Frees the room: on_stop when it is started, then its requests are answered 503 and its connection records freed
 * (only ones already closed: a caller with open connections closes them first, room_close_all_now). */
void room_destroy(party_room_t *room);
/* Finds the room, creating its struct when needed (not started). NULL with an HTTP status when it cannot be. */
party_room_t *room_get(proto_str_t party, proto_str_t id, int *status, const char **why);
/* Starts the room when its party is not in memory. 0, or an HTTP status. */
int room_wake(party_room_t *room, const char **why);
/* An event for the room begins: it is no longer idle, and its output joins the gate when it wrote in this pass. */
void room_enter(party_room_t *room);
/* The event is done with the room: it settles (idle or not, see room_settle). */
void room_leave(party_room_t *room);
/* The room wrote: its output waits for the commit at the end of this pass. */
void room_wrote(party_room_t *room);
/* Tells the router to close connection `cid` with code and reason / to refuse its upgrade with an HTTP status (a
 * router that is gone drops the frame: there is no client left to tell). */
void room_emit_close_conn(uint64_t cid, int code, const char *reason);
void room_emit_reject(uint64_t cid, int status, const char *why);
/* The reply to admin request `rid` (a delete) is held for this pass's commit: if the commit fails, it is answered 500
 * (nothing was deleted) instead of never. */
void room_admin_held(uint64_t rid);
/* Closes every connection of the room at once, without callbacks: the clients get `code` and `why` and reconnect to
 * find the room started afresh (from storage). The caller then drops the room. */
void room_close_all_now(party_room_t *room, int code, const char *why);
/* The room cannot run (its start failed, or its writes were lost): its connections are closed with 1011, without
 * callbacks, its requests answered 500, and the room is dropped; its next event starts it afresh from storage. */
void room_fail(party_room_t *room, const char *why);
/* The storage key of a party's key in this room (into DATA_KEY_MAX bytes). */
static inline size_t room_data_key(const party_room_t *room, unsigned char *out, const void *key, size_t key_len)
{
    return keys_data(room->prefix, room->prefix_len, key, key_len, out);
}

/* ---- events.c ---- */
/* The connection number names the same connection in the router; a reused one is the router's bug. */
party_conn_t *room_conn_by_cid(uint64_t cid);
/* The connection leaves now: out of the room, then error and close callbacks (waking a hibernating room), freed. */
void room_conn_close_now(party_conn_t *conn, int code, const char *reason, int clean, const char *error);

/* ---- requests.c ---- */
/* Copies the request fields of `msg` into one allocation with NUL-terminated strings. */
party_request_t *room_request_new(const proto_msg_t *msg);
/* Frees the copy (unlink it from its room first). */
void room_request_free(party_request_t *req);
/* Takes the request off its room; returns the room (NULL for an upgrade request). */
party_room_t *room_request_unlink(party_request_t *req);
/* Answers request `rid` with {"error": msg}. */
void room_respond_simple(uint64_t rid, int status, const char *msg);
/* Answers with room_respond_simple, unlinks and frees the request. */
void room_request_answer(party_request_t *req, int status, const char *msg);

/* ---- alarms.c ---- */
/* Loads the room's alarm from storage into the struct. */
void room_load_alarm(party_room_t *room);
/* Writes an alarm index entry (every one is written here: see alarms.c). */
void rooms_alarm_index_put(const unsigned char *idx, size_t idx_len, const uint8_t *tries);

/* ---- fetch.c ---- */
/* Drops the room's fetches still waiting for an answer (their callbacks never run). */
void room_fetches_drop(party_room_t *room);

#endif
