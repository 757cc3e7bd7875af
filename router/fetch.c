/*
 * fetch.c — rooms calling rooms (party_fetch): a shard's FETCH is routed like a client's HTTP request, and the
 * target's RESPONSE goes back to the asking shard as FETCH_REPLY under the id it chose.
 *
 * The router is the one place that knows where every room lives, so a fetch always passes through it, also when the
 * target is on the asking shard: placement, a room on the move and a shard that is down are handled as for clients.
 * Every fetch gets exactly one answer while both shards live: the target's, or 400/404/503 from here at once, 503
 * when the target's shard goes down, 504 after timers.fetch_ms. A fetch whose asking shard went down is forgotten.
 */
#include <stdio.h>
#include <string.h>

#include "route.h"
#include "router.h"

typedef struct st_fetch_t {
    UT_hash_handle hh; /* fetches, by rid */
    uint64_t rid;      /* the REQUEST's id towards the target */
    uint64_t fetch_id; /* the asking shard's id */
    uint16_t origin, target;
    h2o_timeout_entry_t timeout;
} fetch_t;

static struct {
    fetch_t *by_rid;
    h2o_timeout_t timeout;
    int timeout_ready;
} fetches;

static void reply(uint16_t origin, uint64_t fetch_id, int status, const proto_header_t *headers, size_t num_headers,
                  proto_str_t body)
{
    link_t *link = shards_link(origin);
    if (link == NULL)
        return; /* it went down: nobody is waiting */
    proto_msg_t m = {
        .type = PROTO_FETCH_REPLY, .id = fetch_id, .status = status, .headers = headers, .num_headers = num_headers, .data = body};
    if (link_emit(link, &m) != 0) {
        /* an answer over the link's cap (the target answered near limits.body_bytes with many headers) */
        proto_msg_t small = {.type = PROTO_FETCH_REPLY, .id = fetch_id, .status = 502};
        link_emit(link, &small);
    }
}

static void reply_error(uint16_t origin, uint64_t fetch_id, int status, const char *why)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", why); /* our own messages: no quotes to escape */
    proto_header_t h = {PROTO_STR("content-type"), PROTO_STR("application/json")};
    reply(origin, fetch_id, status, &h, 1, proto_str(body, (size_t)n));
}

static void fetch_free(fetch_t *f)
{
    HASH_DEL(fetches.by_rid, f);
    if (h2o_timeout_is_linked(&f->timeout))
        h2o_timeout_unlink(&f->timeout);
    free(f);
}

static void on_timeout(h2o_timeout_entry_t *entry)
{
    fetch_t *f = H2O_STRUCT_FROM_MEMBER(fetch_t, timeout, entry);
    reply_error(f->origin, f->fetch_id, 504, "the room did not answer in time");
    fetch_free(f); /* its answer, if it comes, finds nothing */
}

void fetch_on_request(int origin, const proto_msg_t *m)
{
    uint16_t from = (uint16_t)origin;
    /* the target as a client would write it, parsed by the same rules: a room id is one path segment */
    char target[ROUTE_PARTY_MAX + ROUTE_ROOM_MAX + 8192];
    if (m->party.len > ROUTE_PARTY_MAX || m->room.len > ROUTE_ROOM_MAX || m->path.len + m->query.len > 8000) {
        reply_error(from, m->id, 400, "bad party name, room id or path");
        return;
    }
    const char *prefix = router.conf->prefix;
    int n = snprintf(target, sizeof(target), "/%s/%.*s/%.*s%.*s%s%.*s", prefix, (int)m->party.len, m->party.base, (int)m->room.len,
                     m->room.base, (int)m->path.len, m->path.base, m->query.len != 0 ? "?" : "", (int)m->query.len, m->query.base);
    route_t r;
    route_parse(&r, target, (size_t)n, prefix);
    if (r.kind != ROUTE_ROOM || r.party_len != m->party.len || r.room_len != m->room.len) {
        reply_error(from, m->id, 400, r.kind == ROUTE_BAD ? r.error : "bad party name or room id");
        return;
    }
    if (config_find_party(router.conf, r.party, r.party_len) == NULL) {
        reply_error(from, m->id, 404, "unknown party");
        return;
    }
    if (router.draining) {
        reply_error(from, m->id, 503, "the node is shutting down");
        return;
    }
    if (quarantine_left(r.party, r.party_len, r.room, r.room_len) != 0) {
        reply_error(from, m->id, 503, "the room is quarantined: its events crashed its shard");
        return;
    }
    uint16_t slot, shard = shards_owner(r.party, r.party_len, r.room, r.room_len, &slot);
    link_t *link = shards_link(shard);
    if (migrate_frozen(slot) || link == NULL) {
        reply_error(from, m->id, 503, link == NULL ? "the room's shard is restarting" : "the room is moving to another shard");
        return;
    }
    if (!fetches.timeout_ready) {
        h2o_timeout_init(router.loop, &fetches.timeout, router.conf->timers.fetch_ms);
        fetches.timeout_ready = 1;
    }
    fetch_t *f = xcalloc(1, sizeof(*f));
    f->rid = ++router.next_rid;
    f->fetch_id = m->id;
    f->origin = from;
    f->target = shard;
    f->timeout.cb = on_timeout;
    proto_msg_t req = {.type = PROTO_REQUEST,
                       .id = f->rid,
                       .party = proto_str(r.party, r.party_len),
                       .room = proto_str(r.room, r.room_len),
                       .method = m->method,
                       .path = proto_str(r.path, r.path_len),
                       .query = proto_str(r.query, r.query_len),
                       .headers = m->headers,
                       .num_headers = m->num_headers,
                       .data = m->data};
    if (link_emit(link, &req) != 0) {
        free(f);
        reply_error(from, m->id, 413, "the request is too large");
        return;
    }
    HASH_ADD(hh, fetches.by_rid, rid, sizeof(f->rid), f);
    h2o_timeout_link(router.loop, &fetches.timeout, &f->timeout);
}

int fetch_on_response(int shard, const proto_msg_t *m)
{
    fetch_t *f;
    HASH_FIND(hh, fetches.by_rid, &m->id, sizeof(m->id), f);
    if (f == NULL || f->target != shard)
        return 0;
    reply(f->origin, f->fetch_id, m->status, m->headers, m->num_headers, m->data);
    fetch_free(f);
    return 1;
}

void fetch_on_shard_down(int shard)
{
    fetch_t *f, *tmp;
    HASH_ITER(hh, fetches.by_rid, f, tmp)
    {
        if (f->target == shard && f->origin != shard)
            reply_error(f->origin, f->fetch_id, 503, "the room's shard is restarting");
        if (f->target == shard || f->origin == shard)
            fetch_free(f);
    }
}

void fetch_dispose(void)
{
    fetch_t *f, *tmp;
    HASH_ITER(hh, fetches.by_rid, f, tmp)
    fetch_free(f);
    if (fetches.timeout_ready)
        h2o_timeout_dispose(router.loop, &fetches.timeout);
}
