/*
 * slots.h — where a room lives. Placement is two fixed steps (DESIGN.md, "Scaling out"):
 *
 *   slot  = xxh3_64(party + "/" + room) % SLOTS_COUNT
 *   shard = the slot table's entry for that slot, built by weighted rendezvous hashing (HRW) over the shards
 *
 * HRW gives every (slot, shard) pair a score and the highest score wins, so adding a shard moves only the slots the
 * new shard wins (≈ 1/(N+1) of them, all to the new shard) and removing one moves only its own slots. Every process
 * that builds a table from the same shard list gets the same table; lookups are an array read.
 *
 * Pure functions: no loop, no allocation, no global state; callable from any process and thread.
 */
#ifndef PARTYD_SLOTS_H
#define PARTYD_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#define SLOTS_COUNT 16384
#define SLOTS_MAX_SHARDS 1024

typedef struct st_slots_shard_t {
    uint32_t id;   /* stable shard id; it, not the position in the list, seeds the scores */
    double weight; /* > 0; a shard of weight 2 owns about twice the slots of a shard of weight 1 */
} slots_shard_t;

typedef struct st_slots_table_t {
    uint16_t owner[SLOTS_COUNT]; /* shard id owning each slot */
} slots_table_t;

/* The slot of a room key (party + "/" + room). */
uint16_t slots_of_key(const void *key, size_t len);
/* The slot of a party and room, without building the key. A party over BASE_PARTY_MAX or a room over BASE_ROOM_MAX
 * bytes (which the router refuses before) gets slot 0. */
uint16_t slots_of_room(const char *party, size_t party_len, const char *room, size_t room_len);

/* Fills `table` for `n` shards (1 ≤ n ≤ SLOTS_MAX_SHARDS). Returns 0, or -EINVAL for an empty list or a weight ≤ 0. */
int slots_build(slots_table_t *table, const slots_shard_t *shards, size_t n);

#endif
