/*
 * keys.h — the layout of a shard's RocksDB keys, as pure functions (no state, no I/O: unit-tested in test_keys.c).
 *
 *   [slot u16][length u16][party/room][tag][...]   a room's keys; tag 'd': the party's key follows, 'a': the alarm
 *                                                   (value: due time u64 + tries u8)
 *   [FF FF][time u64][room prefix]                   the alarm index, ordered by time (value: tries u8)
 *
 * A room's keys, and a slot's rooms, are contiguous ranges. Every `out` buffer is the caller's and must hold the
 * maximum the function documents (the *_MAX sizes below). No function fails or allocates; any thread may call them.
 */
#ifndef PARTYD_KEYS_H
#define PARTYD_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "party.h"
#include "proto.h"

#define PREFIX_MAX (4 + BASE_ROOM_KEY_MAX) /* [slot][length][party/room] */
#define DATA_KEY_MAX (PREFIX_MAX + 1 + PARTY_KEY_MAX)
#define ALARM_INDEX_MAX (10 + PREFIX_MAX)
#define TAG_DATA 'd'
#define TAG_ALARM 'a'

/* "party/room" into buf (BASE_ROOM_KEY_MAX); returns its length. The lengths are the caller's to check. */
size_t keys_room_name(char *buf, proto_str_t party, proto_str_t room);
/* The storage prefix of the room named key[0..key_len) ("party/room", ≤ BASE_ROOM_KEY_MAX) into out (PREFIX_MAX). */
size_t keys_room_prefix(const char *key, size_t key_len, unsigned char *out);
/* prefix + tag into out (PREFIX_MAX + 1): the room's alarm key, or (TAG_DATA + 1) the end of its data range. */
size_t keys_tagged(const unsigned char *prefix, size_t prefix_len, int tag, unsigned char *out);
/* The storage key of a party's key (≤ PARTY_KEY_MAX bytes) into out (DATA_KEY_MAX). */
size_t keys_data(const unsigned char *prefix, size_t prefix_len, const void *key, size_t key_len, unsigned char *out);
/* The tag of a room key in storage, or 0 when the key is not one; *prefix_len is set to the room prefix's length. */
int keys_tag(const char *key, size_t len, size_t *prefix_len);
/* The storage range of a slot: [slot] ≤ key < [slot + 1]. */
void keys_slot_range(uint16_t slot, unsigned char lo[2], unsigned char hi[2]);

/* The alarm index key that sorts before every entry due at `at` or later. */
void keys_alarm_bound(unsigned char out[10], uint64_t at);
/* The index entry of an alarm at `at` for the room whose prefix is prefix[0..prefix_len), into out (ALARM_INDEX_MAX). */
size_t keys_alarm_index(const void *prefix, size_t prefix_len, uint64_t at, unsigned char *out);
/* The index entry that an alarm key (its storage key, the prefix's length, and its 9-byte value) stands for. */
size_t keys_alarm_index_of(const char *key, size_t prefix_len, const char *value, unsigned char *out);

/* The smallest byte string greater than every string starting with s[0..len), into out (len bytes); 0 when there is
 * none (s is all FF). */
size_t keys_successor(const unsigned char *s, size_t len, unsigned char *out);
/* Byte-wise comparison, a shorter prefix first (RocksDB's default order). */
int keys_cmp(const void *a, size_t alen, const void *b, size_t blen);

#endif
