/*
 * quarantine.c — rooms the supervisor quarantined (CTL_QUARANTINE): a room whose events crashed its shard twice gets
 * 503 with Retry-After for its requests and upgrades until the time is up, so the shard's other rooms keep serving.
 *
 * The supervisor decides (it sees the shards die and reads what ran from their heartbeat pages, ipc/beat.h) and how
 * long; the router only keeps the list, because it routes. A restarted router is told the quarantines in force again.
 * An operator lifts one with DELETE /admin/quarantine/PARTY/ROOM (partyctl unquarantine), which the supervisor is told
 * of (CTL_UNQUARANTINE) so the room's crashes are forgotten too.
 */
#include "router.h"

#include <errno.h>
#include <jansson.h>

typedef struct st_quarantined_t {
    UT_hash_handle hh;
    uint64_t until; /* h2o_now */
    char key[];     /* "party/room" */
} quarantined_t;

static struct {
    quarantined_t *rooms;
    uint64_t total;
} q;

static void drop(quarantined_t *e)
{
    HASH_DEL(q.rooms, e);
    free(e);
}

static void expire(void)
{
    uint64_t now = h2o_now(router.loop);
    quarantined_t *e, *tmp;
    HASH_ITER(hh, q.rooms, e, tmp)
    if (e->until <= now)
        drop(e);
}

void quarantine_add(const char *key, uint32_t ms)
{
    size_t len = strlen(key);
    quarantined_t *e;
    HASH_FIND(hh, q.rooms, key, len, e);
    if (e == NULL) {
        e = xmalloc(sizeof(*e) + len + 1);
        memcpy(e->key, key, len + 1);
        HASH_ADD_KEYPTR(hh, q.rooms, e->key, len, e);
    }
    e->until = h2o_now(router.loop) + ms;
    ++q.total;
    log_warn("room %s is quarantined for %u ms: its events crashed its shard", key, ms);
}

int quarantine_lift(const char *key, size_t len)
{
    expire();
    quarantined_t *e;
    HASH_FIND(hh, q.rooms, key, len, e);
    if (e == NULL)
        return -ENOENT;
    log_info("room %s: quarantine lifted by an operator", e->key);
    drop(e);
    return 0;
}

uint64_t quarantine_left(const char *party, size_t party_len, const char *room, size_t room_len)
{
    if (q.rooms == NULL)
        return 0;
    char key[BASE_ROOM_KEY_MAX + 1];
    if (party_len + 1 + room_len > BASE_ROOM_KEY_MAX)
        return 0;
    memcpy(key, party, party_len);
    key[party_len] = '/';
    memcpy(key + party_len + 1, room, room_len);
    quarantined_t *e;
    HASH_FIND(hh, q.rooms, key, party_len + 1 + room_len, e);
    if (e == NULL)
        return 0;
    uint64_t now = h2o_now(router.loop);
    if (e->until <= now) {
        drop(e);
        return 0;
    }
    return e->until - now;
}

void quarantine_refuse(h2o_req_t *req, uint64_t left_ms)
{
    char secs[24];
    int n = snprintf(secs, sizeof(secs), "%llu", (unsigned long long)((left_ms + 999) / 1000));
    static const char body[] = "{\"error\":\"the room is quarantined: its events crashed its shard; try again later\"}";
    http_count_status(req, 503);
    req->res.status = 503;
    req->res.reason = http_status_reason(503);
    req->res.content_length = sizeof(body) - 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, h2o_strdup(&req->pool, secs, (size_t)n).base,
                   (size_t)n);
    h2o_send_inline(req, body, sizeof(body) - 1);
}

size_t quarantine_count(void)
{
    expire();
    return HASH_COUNT(q.rooms);
}

uint64_t quarantine_total(void)
{
    return q.total;
}

struct json_t *quarantine_json(void)
{
    expire();
    uint64_t now = h2o_now(router.loop);
    json_t *list = json_array();
    for (quarantined_t *e = q.rooms; e != NULL; e = e->hh.next)
        json_array_append_new(list, json_pack("{s:s, s:I}", "room", e->key, "remaining_ms", (json_int_t)(e->until - now)));
    return list;
}

void quarantine_dispose(void)
{
    quarantined_t *e, *tmp;
    HASH_ITER(hh, q.rooms, e, tmp)
    drop(e);
}
