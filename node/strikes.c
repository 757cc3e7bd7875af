/*
 * strikes.c — which rooms crashed their shard, and when that quarantines them (see node.h). The supervisor's loop only;
 * no I/O, so the rule is unit-tested (tests/unit/test_strikes.c).
 */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base.h"

#define STRIKE_FORGET_MS (3600 * 1000) /* a room that crashed nothing for this long starts again from the base time */
#define MAX_STRIKES 64                 /* rooms remembered; the one that crashed longest ago makes room */

typedef struct st_strike_t {
    char room[BASE_ROOM_KEY_MAX + 1]; /* "" for a free entry */
    uint64_t last_ms;                 /* its last crash */
    unsigned count;                   /* crashes within STRIKES_WINDOW_MS of the one before */
    unsigned level;                   /* quarantines so far: the next lasts base_ms << level */
    uint64_t until_ms;                /* quarantined until (0: not) */
} strike_t;

static strike_t strikes[MAX_STRIKES];

static strike_t *find(const char *room, int create)
{
    strike_t *oldest = &strikes[0];
    for (size_t k = 0; k < MAX_STRIKES; ++k) {
        strike_t *s = &strikes[k];
        if (s->room[0] != '\0' && strcmp(s->room, room) == 0)
            return s;
        if (s->room[0] == '\0' || (oldest->room[0] != '\0' && s->last_ms < oldest->last_ms))
            oldest = s;
    }
    if (!create)
        return NULL;
    memset(oldest, 0, sizeof(*oldest));
    snprintf(oldest->room, sizeof(oldest->room), "%s", room);
    return oldest;
}

uint64_t strikes_crash(const char *room, uint64_t now_ms, unsigned base_ms, unsigned *level)
{
    strike_t *s = find(room, 1);
    if (s->last_ms != 0 && now_ms - s->last_ms >= STRIKE_FORGET_MS)
        s->level = 0;
    if (s->last_ms != 0 && now_ms - s->last_ms >= STRIKES_WINDOW_MS)
        s->count = 0;
    s->last_ms = now_ms;
    if (++s->count < 2)
        return 0;
    uint64_t ms = (uint64_t)base_ms << (s->level < 16 ? s->level : 16);
    if (ms > STRIKES_MAX_MS)
        ms = STRIKES_MAX_MS;
    *level = ++s->level;
    s->count = 1; /* one more crash soon after it is let in again quarantines it again */
    s->until_ms = now_ms + ms;
    return ms;
}

int strikes_forget(const char *room)
{
    strike_t *s = find(room, 0);
    if (s == NULL)
        return -ENOENT;
    memset(s, 0, sizeof(*s));
    return 0;
}

void strikes_each_quarantined(uint64_t now_ms, void (*cb)(const char *room, uint64_t left_ms, void *data), void *data)
{
    for (size_t k = 0; k < MAX_STRIKES; ++k)
        if (strikes[k].room[0] != '\0' && strikes[k].until_ms > now_ms)
            cb(strikes[k].room, strikes[k].until_ms - now_ms, data);
}
