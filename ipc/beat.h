/*
 * beat.h — a shard's heartbeat page: a small record in memory shared between a shard and the supervisor, so that the
 * supervisor can see a shard whose loop stopped turning without asking it (a stuck shard answers nothing), and can
 * read, after a shard died, which room's event was running when it did.
 *
 * The supervisor maps one page per shard id (beat_map, MAP_SHARED | MAP_ANONYMOUS) before it forks anything, so every
 * shard inherits the mapping and writes the same physical page the supervisor reads; nothing is named on disk. The
 * supervisor resets a shard's record (beat_reset) before each (re)start of that shard.
 *
 * Writer: the shard's loop thread only, with plain stores — a few per loop pass and per event (beat_turn, beat_event,
 * beat_room, beat_idle), nothing that can block. Reader: the supervisor (beat_read), racing the writer. Why that is
 * fine: the numbers are single aligned 64-bit stores (never torn on the platforms we build for; written and read with
 * relaxed atomics), and the strings are guarded by a sequence number the writer makes odd while it writes them; the
 * reader retries a copy whose sequence was odd or changed, and gives up with the strings empty after a few tries. The
 * cases that matter are the stable ones anyway: a shard stuck in a callback, or dead, writes nothing more.
 */
#ifndef PARTYD_BEAT_H
#define PARTYD_BEAT_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

#define BEAT_CALLBACK_MAX 23

typedef struct st_beat_t {
    uint64_t pass;      /* loop passes; 0 until the loop first turned (opening the storage is not a stall) */
    uint64_t turned_ms; /* base_now_mono_ms() when the loop last turned (CLOCK_MONOTONIC is one clock for every process) */
    uint64_t since_ms;  /* when the running event began */
    uint32_t stopping;  /* the loop has ended: the shard is shutting down, the drain's deadline applies instead */
    uint32_t seq;       /* odd while callback/room are being written */
    char callback[BEAT_CALLBACK_MAX + 1]; /* the event running ("on_message", ...); "" between events */
    char room[BASE_ROOM_KEY_MAX + 1];     /* "party/room" of the room it runs in; "" when none */
} beat_t;

/* Supervisor: `n` zeroed records in one shared anonymous mapping, inherited by every child forked after. NULL on
 * failure (errno set). Never unmapped (it lives as long as the supervisor). */
beat_t *beat_map(size_t n);
/* Supervisor: zeroes a record before its shard is (re)started. */
void beat_reset(beat_t *b);

/* A copy of a record, as beat_read takes it. */
typedef struct st_beat_snapshot_t {
    uint64_t pass, turned_ms, since_ms;
    int stopping;
    char callback[BEAT_CALLBACK_MAX + 1];
    char room[BASE_ROOM_KEY_MAX + 1];
} beat_snapshot_t;
/* Supervisor: reads `b` racily (see above) into `out`; the strings are "" when no consistent copy could be had. */
void beat_read(const beat_t *b, beat_snapshot_t *out);

/* Shard (its loop thread). `b` may be NULL (a shard started without a supervisor's page): they do nothing then. */
/* The loop turned: one more pass, now. */
void beat_turn(beat_t *b);
/* An event begins: `callback` names it (a static string, cut at BEAT_CALLBACK_MAX bytes); no room yet. */
void beat_event(beat_t *b, const char *callback);
/* The event now runs in room `key` (len bytes, cut at BASE_ROOM_KEY_MAX); NULL: in no room. */
void beat_room(beat_t *b, const char *key, size_t len);
/* The event is over. */
void beat_idle(beat_t *b);
/* The loop has ended (shutting down). */
void beat_stopping(beat_t *b);

#endif
