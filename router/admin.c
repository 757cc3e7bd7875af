/*
 * admin.c — the admin listener (loopback by default; a bearer token when one is configured):
 *
 *   GET /health                       200 when every shard is connected, else 503
 *   GET /admin/shards                 [{id, pid, state, restarts, rooms, rooms_hibernating, evictions, connections,
 *                                       messages_in, messages_out, storage_bytes, commits}]
 *   GET /admin/rooms/:party/:room     {party, room, slot, shard, connections, ids}
 *
 * /admin/shards asks every shard for its counters (STATS) and answers when all replied, or after a second with what
 * it has (a shard that is down shows "state":"down" and null counters).
 */
#include <string.h>

#include <jansson.h>

#include "route.h"
#include "router.h"

#define STATS_TIMEOUT_MS 1000

typedef struct st_admin_stats_req_t {
    uint64_t rid;
    h2o_req_t *req;
    int waiting;
    proto_stats_t *stats;
    uint8_t *have;
    h2o_timeout_entry_t timeout;
    struct st_admin_stats_req_t *next;
} admin_stats_req_t;

static struct {
    admin_stats_req_t *stats_reqs;
    h2o_timeout_t timeout;
    int timeout_ready;
} admin;

static void send_json_value(h2o_req_t *req, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    h2o_iovec_t body = h2o_strdup(&req->pool, text, strlen(text));
    free(text);
    http_send_json(req, status, body.base, body.len);
}

static const char *shard_state_name(router_shard_state_t s)
{
    return s == SHARD_UP ? "up" : s == SHARD_STARTING ? "starting" : "down";
}

static void stats_finish(admin_stats_req_t *a)
{
    /* unlink */
    for (admin_stats_req_t **pp = &admin.stats_reqs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == a) {
            *pp = a->next;
            break;
        }
    if (h2o_timeout_is_linked(&a->timeout))
        h2o_timeout_unlink(&a->timeout);
    json_t *list = json_array();
    for (int i = 0; i < router.conf->shards; ++i) {
        router_shard_t *s = &router.shards[i];
        json_t *o = json_pack("{s:i, s:i, s:s, s:i}", "id", i, "pid", s->pid, "state", shard_state_name(s->state), "restarts",
                              (int)s->restarts);
        const proto_stats_t *st = &a->stats[i];
        static const char *const names[] = {"rooms",       "rooms_hibernating", "evictions",     "connections",
                                            "messages_in", "messages_out",      "storage_bytes", "commits"};
        const uint64_t values[] = {st->rooms,       st->rooms_hibernating, st->evictions,     st->connections,
                                   st->messages_in, st->messages_out,      st->storage_bytes, st->commits};
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); ++k)
            json_object_set_new(o, names[k], a->have[i] == 1 ? json_integer((json_int_t)values[k]) : json_null());
        json_array_append_new(list, o);
    }
    send_json_value(a->req, 200, list);
    free(a->stats);
    free(a->have);
    free(a);
}

static void on_stats_timeout(h2o_timeout_entry_t *entry)
{
    stats_finish(H2O_STRUCT_FROM_MEMBER(admin_stats_req_t, timeout, entry));
}

void admin_on_stats_reply(int shard, const proto_msg_t *msg)
{
    for (admin_stats_req_t *a = admin.stats_reqs; a != NULL; a = a->next) {
        if (a->rid != msg->id)
            continue;
        if (!a->have[shard]) {
            a->have[shard] = 1;
            a->stats[shard] = msg->stats;
            if (--a->waiting == 0)
                stats_finish(a);
        }
        return;
    }
}

void admin_on_shard_down(int shard)
{
    for (admin_stats_req_t *a = admin.stats_reqs, *next; a != NULL; a = next) {
        next = a->next;
        if (!a->have[shard] && a->waiting > 0) {
            a->have[shard] = 2; /* answered "down" */
            a->stats[shard] = (proto_stats_t){0};
            if (--a->waiting == 0)
                stats_finish(a);
        }
    }
}

static void get_shards(h2o_req_t *req)
{
    if (!admin.timeout_ready) {
        h2o_timeout_init(router.loop, &admin.timeout, STATS_TIMEOUT_MS);
        admin.timeout_ready = 1;
    }
    int n = router.conf->shards;
    admin_stats_req_t *a = xcalloc(1, sizeof(*a));
    a->rid = ++router.next_rid;
    a->req = req;
    a->stats = xcalloc((size_t)n, sizeof(*a->stats));
    a->have = xcalloc((size_t)n, 1);
    a->timeout.cb = on_stats_timeout;
    a->next = admin.stats_reqs;
    admin.stats_reqs = a;
    proto_msg_t m = {.type = PROTO_STATS, .id = a->rid};
    for (int i = 0; i < n; ++i)
        if (router.shards[i].link != NULL && link_emit(router.shards[i].link, &m) == 0)
            ++a->waiting;
    if (a->waiting == 0) {
        stats_finish(a);
        return;
    }
    h2o_timeout_link(router.loop, &admin.timeout, &a->timeout);
}

static void get_room(h2o_req_t *req, const route_t *r)
{
    char key[64 + 1 + 256];
    memcpy(key, r->party, r->party_len);
    key[r->party_len] = '/';
    memcpy(key + r->party_len + 1, r->room, r->room_len);
    size_t key_len = r->party_len + 1 + r->room_len;
    router_room_t *room = shards_find_room(key, key_len);
    json_t *ids = json_array();
    for (ws_conn_t *c = room != NULL ? room->conns : NULL; c != NULL; c = c->room_next)
        json_array_append_new(ids, json_string(c->id));
    uint16_t slot = slots_of_room(r->party, r->party_len, r->room, r->room_len);
    send_json_value(req, 200,
                    json_pack("{s:s%, s:s%, s:i, s:i, s:I, s:o}", "party", r->party, r->party_len, "room", r->room, r->room_len,
                              "slot", (int)slot, "shard", (int)router.slots.owner[slot], "connections",
                              (json_int_t)(room != NULL ? room->count : 0), "ids", ids));
}

static int authorized(h2o_req_t *req)
{
    const char *token = router.conf->admin_token;
    if (token == NULL)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (i == -1)
        return 0;
    const h2o_iovec_t *v = &req->headers.entries[i].value;
    size_t tl = strlen(token);
    if (v->len != 7 + tl || !h2o_lcstris(v->base, 7, H2O_STRLIT("bearer ")))
        return 0;
    /* constant time: the comparison does not stop at the first difference */
    unsigned char diff = 0;
    for (size_t k = 0; k < tl; ++k)
        diff |= (unsigned char)(v->base[7 + k] ^ token[k]);
    return diff == 0;
}

int admin_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    const char *path = req->input.path.base;
    size_t len = req->input.path.len;
    const char *q = memchr(path, '?', len);
    if (q != NULL)
        len = (size_t)(q - path);
    if (h2o_memis(path, len, H2O_STRLIT("/health"))) {
        http_send_health(req);
        return 0;
    }
    if (!authorized(req)) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        http_send_error(req, 401, "a valid bearer token is required");
        return 0;
    }
    int is_get = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("GET"));
    if (h2o_memis(path, len, H2O_STRLIT("/admin/shards"))) {
        if (!is_get)
            http_send_error(req, 405, "method not allowed");
        else
            get_shards(req);
        return 0;
    }
    if (len > sizeof("/admin/rooms/") - 1 && memcmp(path, "/admin/rooms/", sizeof("/admin/rooms/") - 1) == 0) {
        /* /admin/rooms/:party/:room is the room path /<prefix>/:party/:room under another prefix */
        route_t r;
        route_parse(&r, path + sizeof("/admin") - 1, len - (sizeof("/admin") - 1), "rooms");
        if (r.kind != ROUTE_ROOM) {
            http_send_error(req, 400, r.error != NULL ? r.error : "bad room path");
            return 0;
        }
        if (config_find_party(router.conf, r.party, r.party_len) == NULL) {
            http_send_error(req, 404, "unknown party");
            return 0;
        }
        if (!is_get)
            http_send_error(req, 405, "method not allowed");
        else
            get_room(req, &r);
        return 0;
    }
    http_send_error(req, 404, "not found");
    return 0;
}

void admin_dispose(void)
{
    while (admin.stats_reqs != NULL)
        stats_finish(admin.stats_reqs);
    if (admin.timeout_ready)
        h2o_timeout_dispose(router.loop, &admin.timeout);
}
