/*
 * keys.c — the layout of a shard's keys (see keys.h). Pure functions: no globals, no storage.
 */
#include "keys.h"

#include <string.h>

#include "slots.h"
#include "store.h"

size_t keys_room_name(char *buf, proto_str_t party, proto_str_t room)
{
    memcpy(buf, party.base, party.len);
    buf[party.len] = '/';
    memcpy(buf + party.len + 1, room.base, room.len);
    return party.len + 1 + room.len;
}

size_t keys_room_prefix(const char *key, size_t key_len, unsigned char *out)
{
    uint16_t slot = slots_of_key(key, key_len);
    out[0] = (unsigned char)(slot >> 8);
    out[1] = (unsigned char)slot;
    out[2] = (unsigned char)(key_len >> 8);
    out[3] = (unsigned char)key_len;
    memcpy(out + 4, key, key_len);
    return 4 + key_len;
}

size_t keys_tagged(const unsigned char *prefix, size_t prefix_len, int tag, unsigned char *out)
{
    memcpy(out, prefix, prefix_len);
    out[prefix_len] = (unsigned char)tag;
    return prefix_len + 1;
}

size_t keys_data(const unsigned char *prefix, size_t prefix_len, const void *key, size_t key_len, unsigned char *out)
{
    size_t n = keys_tagged(prefix, prefix_len, TAG_DATA, out);
    if (key_len != 0)
        memcpy(out + n, key, key_len);
    return n + key_len;
}

int keys_tag(const char *key, size_t len, size_t *prefix_len)
{
    if (len < 5)
        return 0;
    size_t klen = (size_t)(unsigned char)key[2] << 8 | (unsigned char)key[3];
    if (4 + klen >= len)
        return 0;
    *prefix_len = 4 + klen;
    return (unsigned char)key[4 + klen];
}

void keys_slot_range(uint16_t slot, unsigned char lo[2], unsigned char hi[2])
{
    lo[0] = (unsigned char)(slot >> 8);
    lo[1] = (unsigned char)slot;
    hi[0] = (unsigned char)((slot + 1) >> 8);
    hi[1] = (unsigned char)(slot + 1);
}

void keys_alarm_bound(unsigned char out[10], uint64_t at)
{
    out[0] = out[1] = 0xff;
    store_put_u64(out + 2, at);
}

size_t keys_alarm_index(const void *prefix, size_t prefix_len, uint64_t at, unsigned char *out)
{
    keys_alarm_bound(out, at);
    memcpy(out + 10, prefix, prefix_len);
    return 10 + prefix_len;
}

size_t keys_alarm_index_of(const char *key, size_t prefix_len, const char *value, unsigned char *out)
{
    return keys_alarm_index(key, prefix_len, store_get_u64((const unsigned char *)value), out);
}

size_t keys_successor(const unsigned char *s, size_t len, unsigned char *out)
{
    while (len > 0 && s[len - 1] == 0xff)
        --len;
    if (len == 0)
        return 0;
    memcpy(out, s, len);
    out[len - 1]++;
    return len;
}

int keys_cmp(const void *a, size_t alen, const void *b, size_t blen)
{
    int c = memcmp(a, b, alen < blen ? alen : blen);
    return c != 0 ? c : (alen > blen) - (alen < blen);
}
