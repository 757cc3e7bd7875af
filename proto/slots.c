/*
 * slots.c — room → slot → shard (see slots.h).
 */
#include "slots.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <xxhash.h>

#include "base.h"

uint16_t slots_of_key(const void *key, size_t len)
{
    return (uint16_t)(XXH3_64bits(key, len) % SLOTS_COUNT);
}

uint16_t slots_of_room(const char *party, size_t party_len, const char *room, size_t room_len)
{
    char key[BASE_ROOM_KEY_MAX];
    if (party_len > BASE_PARTY_MAX || room_len > BASE_ROOM_MAX)
        return 0;
    memcpy(key, party, party_len);
    key[party_len] = '/';
    memcpy(key + party_len + 1, room, room_len);
    return slots_of_key(key, party_len + 1 + room_len);
}

/* Weighted rendezvous score: -w / ln(u) for u uniform in (0,1) drawn from hash(slot, shard). Taking the maximum picks
 * shard i with probability w_i / Σw (the exponential-race argument), and the score of a pair never depends on the other
 * shards, which is what keeps moves minimal. */
static double score(uint16_t slot, uint32_t shard_id, double weight)
{
    unsigned char in[6] = {slot >> 8, slot & 0xff, shard_id >> 24, shard_id >> 16, shard_id >> 8, shard_id};
    uint64_t h = XXH3_64bits(in, sizeof(in));
    double u = ((double)(h >> 11) + 0.5) / 9007199254740992.0; /* (0,1), 53 bits */
    return -weight / log(u);
}

int slots_build(slots_table_t *table, const slots_shard_t *shards, size_t n)
{
    if (n == 0 || n > SLOTS_MAX_SHARDS)
        return -EINVAL;
    for (size_t i = 0; i < n; ++i)
        if (!(shards[i].weight > 0))
            return -EINVAL;
    for (uint32_t slot = 0; slot < SLOTS_COUNT; ++slot) {
        size_t best = 0;
        double best_score = score(slot, shards[0].id, shards[0].weight);
        for (size_t i = 1; i < n; ++i) {
            double s = score(slot, shards[i].id, shards[i].weight);
            /* ties (astronomically rare) go to the lower id so every process agrees */
            if (s > best_score || (s == best_score && shards[i].id < shards[best].id)) {
                best = i;
                best_score = s;
            }
        }
        table->owner[slot] = (uint16_t)shards[best].id;
    }
    return 0;
}
