/*
 * alarms.c — one durable alarm per room: party_alarm_*, the index ordered by time, and firing the due ones (a bounded
 * batch per call, retried with a doubling delay when on_alarm fails).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room_int.h"

/* ---- party.h: the alarm ---- */

static size_t alarm_index_key(const party_room_t *room, uint64_t at, unsigned char *out)
{
    return keys_alarm_index(room->prefix, room->prefix_len, at, out);
}

/* Every alarm index entry is written here, so that rooms.alarms_from stays at or below the earliest one; the shard
 * is asked to wake then (during a check, rooms_fire_alarms asks once at its end). */
void rooms_alarm_index_put(const unsigned char *idx, size_t idx_len, const uint8_t *tries)
{
    uint64_t at = store_get_u64(idx + 2);
    if (at < rooms.alarms_from) {
        rooms.alarms_from = at;
        if (!rooms.alarms_checking)
            shard_alarms_wake_at(at);
    }
    store_put(rooms.store, idx, idx_len, tries, 1);
}

/* Loads the room's alarm from storage into the struct. */
void room_load_alarm(party_room_t *room)
{
    unsigned char key[PREFIX_MAX + 1];
    char *v;
    size_t len;
    if (store_get(rooms.store, key, keys_tagged(room->prefix, room->prefix_len, TAG_ALARM, key), &v, &len) == 0) {
        if (len == 9) {
            room->alarm_at = store_get_u64((unsigned char *)v);
            room->alarm_tries = (uint8_t)v[8];
        }
        free(v);
    }
}

static void alarm_write(party_room_t *room, uint64_t at, uint8_t tries)
{
    unsigned char key[PREFIX_MAX + 1], idx[10 + PREFIX_MAX];
    memcpy(key, room->prefix, room->prefix_len);
    key[room->prefix_len] = TAG_ALARM;
    if (room->alarm_at != 0)
        store_delete(rooms.store, idx, alarm_index_key(room, room->alarm_at, idx));
    if (at != 0) {
        unsigned char v[9];
        store_put_u64(v, at);
        v[8] = tries;
        store_put(rooms.store, key, room->prefix_len + 1, v, sizeof(v));
        rooms_alarm_index_put(idx, alarm_index_key(room, at, idx), &tries);
    } else {
        store_delete(rooms.store, key, room->prefix_len + 1);
    }
    room->alarm_at = at;
    room->alarm_tries = tries;
    room_wrote(room);
}

int party_alarm_set(party_room_t *room, uint64_t at_ms)
{
    if (at_ms == 0)
        return -EINVAL;
    alarm_write(room, at_ms, 0);
    return 0;
}

int party_alarm_get(party_room_t *room, uint64_t *at_ms)
{
    if (room->alarm_at == 0)
        return -ENOENT;
    *at_ms = room->alarm_at;
    return 0;
}

int party_alarm_delete(party_room_t *room)
{
    if (room->alarm_at != 0)
        alarm_write(room, 0, 0);
    return 0;
}

/* Runs the due alarm whose index key is key[0..len). Returns 1 when it left the entry in place (its room is moving
 * away), else 0. */
static int fire_alarm(const unsigned char *idx, size_t idx_len)
{
    const unsigned char *prefix = idx + 10;
    size_t prefix_len = idx_len - 10;
    uint64_t at = store_get_u64(idx + 2);
    size_t key_len = prefix_len >= 4 ? (size_t)prefix[2] << 8 | prefix[3] : 0;
    const char *key = (const char *)prefix + 4;
    const char *sep = key_len != 0 ? memchr(key, '/', key_len) : NULL;
    if (prefix_len >= 2 && !rooms_slot_fires((uint16_t)(prefix[0] << 8 | prefix[1])))
        return 1; /* the room is moving away (its new shard fires it), or in, or this shard does not know yet */
    /* this index entry is done with, whatever happens next (a retry writes a new one) */
    store_delete(rooms.store, idx, idx_len);
    if (key_len + 4 != prefix_len || sep == NULL) {
        log_error("alarm index: a malformed entry; dropped it");
        return 0;
    }
    int status;
    const char *why;
    proto_str_t party = proto_str(key, (size_t)(sep - key)), id = proto_str(sep + 1, key_len - (size_t)(sep - key) - 1);
    party_room_t *room = room_get(party, id, &status, &why);
    if (room == NULL) {
        log_warn("alarm for %.*s: %s; dropped it", (int)key_len, key, why);
        return 0;
    }
    shard_event_begin();
    room_enter(room);
    if (room->alarm_at != at) {
        /* a stale entry (the alarm moved, or is gone): nothing to fire */
        room_leave(room);
        shard_event_end();
        return 0;
    }
    uint8_t tries = room->alarm_tries;
    /* cleared before the callback (which may set the next one); committed with whatever the callback writes */
    alarm_write(room, 0, 0);
    int failed, woke = room_wake(room, &why);
    if (woke == 503) {
        /* the room cannot start now (limits.rooms_in_memory): on_alarm did not run, so no try is spent */
        failed = 0;
        alarm_write(room, room_wall_ms() + rooms.conf->timers.alarm_retry_ms, tries);
        log_debug("room %s: %s; its alarm waits %u ms", room->key, why, rooms.conf->timers.alarm_retry_ms);
    } else if (woke != 0) {
        failed = 1;
    } else {
        failed = room->party->on_alarm != NULL ? room->party->on_alarm(room) != 0 : 0;
    }
    if (failed) {
        if (room->alarm_at == 0 && tries + 1 < ALARM_TRIES) {
            uint64_t delay = (uint64_t)rooms.conf->timers.alarm_retry_ms << tries;
            alarm_write(room, room_wall_ms() + delay, (uint8_t)(tries + 1));
            log_info("room %s: alarm failed; retry %u in %llu ms", room->key, tries + 1, (unsigned long long)delay);
        } else if (room->alarm_at == 0) {
            log_warn("room %s: alarm failed %d times; giving up", room->key, ALARM_TRIES);
        }
    }
    rooms_run_deferred();
    room_leave(room);
    shard_event_end();
    return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

/* When an index entry (as scanned) is due; `otherwise` for a malformed one too short to say. */
static uint64_t alarm_index_at(const store_entry_t *e, uint64_t otherwise)
{
    return e->key_len >= 10 ? store_get_u64((const unsigned char *)e->key + 2) : otherwise;
}

/* The time of the earliest index entry due at `from` or later: UINT64_MAX when there is none. -EIO when storage
 * cannot say. */
static int alarm_index_first(uint64_t from, uint64_t *at)
{
    unsigned char lo[10];
    keys_alarm_bound(lo, from);
    store_entry_t e;
    long n = store_scan_keys(rooms.store, lo, sizeof(lo), NULL, 0, &e, 1);
    if (n < 0)
        return -EIO;
    *at = n == 0 ? UINT64_MAX : alarm_index_at(&e, from);
    if (n > 0)
        store_entries_free(&e, 1);
    return 0;
}

/* When the shard wakes for alarms (shard_alarms_wake_at) and on every tick. The scan starts at rooms.alarms_from, not
 * at the start of the index: each alarm that fires or moves deletes its entry, and a scan from the start stepped over
 * all those tombstones until a compaction removed them (after 150k alarms a shard spent 28 ms of every 50 ms tick
 * there). Until the earliest entry is due no scan runs. alarms_from only goes up here, to what this scan proved;
 * rooms_alarm_index_put lowers it, a failed commit resets it. At most ALARMS_PER_TICK fire in one call, which keeps it short;
 * the shard is then woken again at once, so a backlog is worked off pass by pass, between other events. */
void rooms_fire_alarms(void)
{
    uint64_t now = room_wall_ms();
    uint64_t from = rooms.alarms_from;
    if (from > now)
        return;
    unsigned char cur[ALARM_INDEX_MAX + 1], hi[10];
    size_t cur_len = 10;
    keys_alarm_bound(cur, from);
    keys_alarm_bound(hi, now + 1);
    store_entry_t due[ALARMS_PER_TICK];
    rooms.alarms_from = UINT64_MAX; /* every entry before `hi` is scanned below (or further, if the cap is hit) */
    rooms.alarms_checking = 1;
    uint64_t left = UINT64_MAX; /* the earliest entry left in place */
    uint64_t last = UINT64_MAX; /* at the cap: the last one fired */
    long fired = 0, n, scans = 0;
    int failed = 0;
    /* Entries left in place (their slots are frozen) do not count towards the cap: with 64 of them first, a scan of
     * 64 found nothing to fire, asked to be woken at once, and found the same 64 again, spinning at 100 % CPU for the
     * whole move while the alarms after them waited. Past a batch, the scan goes on after its last key. */
    do {
        n = store_scan(rooms.store, cur, cur_len, hi, sizeof(hi), 0, due, ALARMS_PER_TICK);
        if (n < 0) {
            failed = 1;
            break;
        }
        ++scans;
        for (long i = 0; i < n && last == UINT64_MAX; ++i) {
            if (due[i].key_len <= 10)
                continue;
            if (fire_alarm((const unsigned char *)due[i].key, due[i].key_len)) {
                if (left == UINT64_MAX)
                    left = alarm_index_at(&due[i], from);
            } else if (++fired == ALARMS_PER_TICK) {
                last = alarm_index_at(&due[i], from);
            }
        }
        if (n == ALARMS_PER_TICK && last == UINT64_MAX) {
            /* the next batch starts just after this one's last key (the key with a 0 byte appended) */
            cur_len = due[n - 1].key_len < ALARM_INDEX_MAX ? due[n - 1].key_len : ALARM_INDEX_MAX;
            memcpy(cur, due[n - 1].key, cur_len);
            cur[cur_len++] = 0;
        }
        if (n > 0)
            store_entries_free(due, (size_t)n);
    } while (n == ALARMS_PER_TICK && last == UINT64_MAX);
    rooms.alarms_checking = 0;
    if (failed && scans == 0) {
        rooms.alarms_from = min_u64(rooms.alarms_from, from);
        shard_alarms_wake_at(now + ALARM_RECHECK_MS);
        return;
    }
    /* The next call scans from, and the shard wakes for it at, the earliest of: an alarm the callbacks set (`set`); at
     * the cap, the last one fired (more may be due then, after it: at once); else the earliest entry left (`at`), or,
     * when storage cannot say, from here in a while; and those left in place (their rooms are moving away), in a while
     * too, not in a loop. */
    uint64_t set = rooms.alarms_from, later = now + ALARM_RECHECK_MS, at, at_wake;
    if (last != UINT64_MAX) {
        at = at_wake = last;
    } else if (!failed && alarm_index_first(now + 1, &at) == 0) {
        at_wake = at;
    } else {
        at = min_u64(now + 1, from);
        at_wake = later;
    }
    rooms.alarms_from = min_u64(set, min_u64(at, left));
    shard_alarms_wake_at(min_u64(set, min_u64(at_wake, left != UINT64_MAX ? later : UINT64_MAX)));
}
