/*
 * admin.c — the admin listener: what an operator (or partyctl, or the dashboard) sees and does.
 *
 *   GET    /health                          200 when every shard is connected (open: no token)
 *   GET    /ready                           200 when every shard is up and serving (none stalled), and the node is not
 *                                           draining
 *   GET    /metrics                         Prometheus text
 *   GET    /admin/                          the dashboard (one page)
 *   GET    /admin/node                      version, uptime, configuration summary
 *   GET    /admin/shards                    per shard: pid, state, slots, rooms, connections, messages, storage, why it
 *                                           was last restarted (last_exit), ...
 *   POST   /admin/shards                    add a shard; slots move to it live (router/migrate.c)
 *   POST   /admin/shards/:id/drain          move a shard's slots to the others, then retire it (router/migrate.c)
 *   GET    /admin/rooms?party=&prefix=&cursor=&limit=     a page of rooms (never a full dump)
 *   GET    /admin/rooms/:party/:room[?cursor=&limit=]     one room: shard, slot, connections, alarm, a page of keys
 *   POST   /admin/rooms/:party/:room/evict  the room leaves memory now (its clients reconnect, 1012)
 *   DELETE /admin/rooms/:party/:room?confirm=ROOM         deletes the room's data
 *   GET    /admin/quarantine                rooms quarantined for crashing their shard, and the time each has left
 *   DELETE /admin/quarantine/:party/:room   lifts a quarantine now (the supervisor forgets the room's crashes too)
 *   POST   /admin/backup {"dir": "/abs/path" | "name"}    a RocksDB checkpoint of every shard into that directory,
 *                                                         inside admin.backup_dir (adminguard.c)
 *
 * Every path but /health and /ready passes admin_guard first (adminguard.c: loopback Host without a token, no
 * foreign Origin, changes only by non-simple requests, wrong tokens throttled).
 * With a token configured every path but /health and /ready needs `Authorization: Bearer TOKEN` (401 otherwise).
 * Operations that need the shards are ADMIN frames (shard/admin.c): sent, then answered when every shard asked has
 * replied, or after ADMIN_TIMEOUT_MS with what came (a shard that is down or silent shows as such).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "admin_int.h"
#include "ctl.h"
#include "route.h"

#define ADMIN_TIMEOUT_MS 2000

static struct {
    admin_call_t *calls;
    h2o_timeout_t timeout;
    int timeout_ready;
    uint64_t node_started_ms;
} admin;

/* ---- answering ---- */

static void send_value(h2o_req_t *req, int status, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    h2o_iovec_t body = h2o_strdup(&req->pool, text, strlen(text));
    free(text);
    http_send_json(req, status, body.base, body.len);
}

static const char *shard_state_name(const router_shard_t *sh)
{
    router_shard_state_t s = sh->state;
    return s == SHARD_UP ? (sh->stalled ? "stalled" : "up") : s == SHARD_STARTING ? "starting" : "down";
}

size_t admin_num_stalled(void)
{
    size_t n = 0;
    for (int k = 0; k < router.num_shards; ++k)
        n += router.shards[router.ids[k]].stalled;
    return n;
}

/* ---- calls to shards ---- */

static void call_free(admin_call_t *c)
{
    for (admin_call_t **pp = &admin.calls; *pp != NULL; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (h2o_timeout_is_linked(&c->timeout))
        h2o_timeout_unlink(&c->timeout);
    for (int i = 0; i < c->num; ++i)
        json_decref(c->result[i]);
    free(c->result);
    free(c->status);
    json_decref(c->acc);
    json_decref(c->args);
    free(c);
}

static void call_finish(admin_call_t *c)
{
    if (h2o_timeout_is_linked(&c->timeout))
        h2o_timeout_unlink(&c->timeout);
    c->done(c);
    call_free(c);
}

static void on_call_timeout(h2o_timeout_entry_t *entry)
{
    call_finish(H2O_STRUCT_FROM_MEMBER(admin_call_t, timeout, entry));
}

/* Asks shard `shard` (-1: every shard) for `op` with `args` (owned by the call from now on); `done` runs once. */
static admin_call_t *call_start(h2o_req_t *req, const char *op, json_t *args, int shard, admin_done_cb done, json_t *acc)
{
    if (!admin.timeout_ready) {
        h2o_timeout_init(router.loop, &admin.timeout, ADMIN_TIMEOUT_MS);
        admin.timeout_ready = 1;
    }
    admin_call_t *c = xcalloc(1, sizeof(*c));
    c->req = req;
    c->rid = ++router.next_rid;
    if (shard < 0) {
        memcpy(c->ids, router.ids, (size_t)router.num_shards * sizeof(int));
        c->num = router.num_shards;
    } else {
        c->ids[0] = shard;
        c->num = 1;
    }
    c->result = xcalloc((size_t)c->num, sizeof(*c->result));
    c->status = xcalloc((size_t)c->num, sizeof(*c->status));
    c->done = done;
    c->timeout.cb = on_call_timeout;
    c->acc = acc;
    c->args = args != NULL ? args : json_object();
    c->next = admin.calls;
    admin.calls = c;
    char *text = json_dumps(c->args, JSON_COMPACT);
    proto_msg_t m = {.type = PROTO_ADMIN, .id = c->rid, .method = proto_str(op, strlen(op)), .data = proto_str(text, strlen(text))};
    for (int i = 0; i < c->num; ++i) {
        link_t *link = shards_link((uint16_t)c->ids[i]);
        /* a stalled shard would answer nothing: it shows as down rather than hold every admin call to the timeout */
        if (link != NULL && !router.shards[c->ids[i]].stalled && link_emit(link, &m) == 0)
            ++c->waiting;
        else
            c->status[i] = 503;
    }
    free(text);
    if (c->waiting == 0)
        call_finish(c);
    else
        h2o_timeout_link(router.loop, &admin.timeout, &c->timeout);
    return c;
}

void admin_on_reply(int shard, const proto_msg_t *msg)
{
    for (admin_call_t *c = admin.calls; c != NULL; c = c->next) {
        if (c->rid != msg->id)
            continue;
        int i = 0;
        while (i < c->num && c->ids[i] != shard)
            ++i;
        if (i == c->num || c->status[i] != 0)
            return;
        c->status[i] = msg->status;
        /* JSON_ALLOW_NUL: a room's key may hold a NUL byte, which the shard writes as \u0000 */
        c->result[i] = json_loadb(msg->data.base, msg->data.len, JSON_ALLOW_NUL, NULL);
        if (--c->waiting == 0)
            call_finish(c);
        return;
    }
}

void admin_on_shard_down(int shard)
{
    for (admin_call_t *c = admin.calls, *next; c != NULL; c = next) {
        next = c->next;
        int i = 0;
        while (i < c->num && c->ids[i] != shard)
            ++i;
        if (i < c->num && c->status[i] == 0) {
            c->status[i] = 503;
            if (--c->waiting == 0)
                call_finish(c);
        }
    }
}

void admin_dispose(void)
{
    while (admin.calls != NULL)
        call_finish(admin.calls);
    if (admin.timeout_ready)
        h2o_timeout_dispose(router.loop, &admin.timeout);
}

/* The one shard's answer as the HTTP answer. */
static void done_forward(admin_call_t *c)
{
    if (c->status[0] == 0 || c->result[0] == NULL) {
        http_send_error(c->req, c->status[0] == 0 ? 504 : 503, "the room's shard did not answer");
        return;
    }
    json_t *r = c->result[0];
    c->result[0] = NULL;
    send_value(c->req, c->status[0], r);
}

/* ---- /admin/node, /admin/shards ---- */

static json_t *config_summary(void)
{
    const config_t *conf = router.conf;
    json_t *parties = json_object();
    for (size_t i = 0; i < conf->num_parties; ++i) {
        json_t *p = json_pack("{s:s, s:b}", "kind", router.defs->defs[i].kind, "hibernate", router.defs->defs[i].hibernate);
        if (conf->parties[i].module != NULL)
            json_object_set_new(p, "module", json_string(conf->parties[i].module));
        json_object_set_new(parties, conf->parties[i].name, p);
    }
    return json_pack("{s:s, s:i, s:i, s:s, s:i, s:s, s:s, s:s, s:o, s:{s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, s:I}}", "host",
                     conf->host, "port", router.port, "admin_port", router.admin_port, "prefix", conf->prefix, "shards",
                     conf->shards, "data_dir", conf->data_dir, "durability", conf->durability, "source", conf->source, "parties",
                     parties, "limits", "message_bytes", (json_int_t)conf->limits.message_bytes, "body_bytes",
                     (json_int_t)conf->limits.body_bytes, "output_bytes", (json_int_t)conf->limits.output_bytes,
                     "connections_per_room", (json_int_t)conf->limits.connections_per_room, "rooms_in_memory",
                     (json_int_t)conf->limits.rooms_in_memory, "timers", "idle_ms", (json_int_t)conf->timers.idle_ms, "ping_ms",
                     (json_int_t)conf->timers.ping_ms, "alarm_retry_ms", (json_int_t)conf->timers.alarm_retry_ms, "drain_ms",
                     (json_int_t)conf->timers.drain_ms);
}

static void get_node(h2o_req_t *req)
{
    uint64_t now = base_now_wall_ms();
    json_t *ids = json_array();
    for (int k = 0; k < router.num_shards; ++k)
        json_array_append_new(ids, json_integer(router.ids[k]));
    send_value(req, 200,
               json_pack("{s:s, s:i, s:i, s:I, s:I, s:i, s:b, s:I, s:o, s:o, s:o}", "version", PARTYD_VERSION, "protocol",
                         PROTO_VERSION, "party_abi", PARTY_ABI_VERSION, "started_at", (json_int_t)admin.node_started_ms,
                         "uptime_s", (json_int_t)((now - admin.node_started_ms) / 1000), "router_pid", (int)getpid(),
                         "draining", router.draining, "requests_dropped", (json_int_t)router.requests_dropped, "shard_ids", ids, "migration", migrate_status(), "config", config_summary()));
}

static json_t *shards_json(admin_call_t *c)
{
    size_t owned[CONFIG_MAX_SHARDS] = {0};
    for (size_t s = 0; s < SLOTS_COUNT; ++s)
        ++owned[router.slots.owner[s]];
    json_t *list = json_array();
    for (int k = 0; k < c->num; ++k) {
        int i = c->ids[k];
        router_shard_t *s = &router.shards[i];
        json_t *o = json_pack("{s:i, s:i, s:s, s:i, s:I, s:I}", "id", i, "pid", s->pid, "state", shard_state_name(s),
                              "restarts", (int)s->restarts, "slots", (json_int_t)owned[i], "link_backlog_bytes",
                              (json_int_t)(s->link != NULL ? link_backlog(s->link) : 0));
        json_object_set_new(o, "last_exit",
                            s->last_exit[0] != '\0'
                                ? json_pack("{s:s, s:I}", "reason", s->last_exit, "at", (json_int_t)s->last_exit_at)
                                : json_null());
        json_t *r = c->status[k] == 200 ? c->result[k] : NULL;
        static const char *const counters[] = {"rooms",         "rooms_hibernating", "evictions", "connections",
                                               "messages_in",   "messages_out",      "bytes_in",  "bytes_out",
                                               "storage_bytes", "commits",           "writes",    "failed_commits"};
        for (size_t f = 0; f < sizeof(counters) / sizeof(counters[0]); ++f) {
            json_t *v = r != NULL ? json_object_get(r, counters[f]) : NULL;
            json_object_set(o, counters[f], v != NULL ? v : json_null());
        }
        json_array_append_new(list, o);
    }
    return list;
}

static void done_shards(admin_call_t *c)
{
    send_value(c->req, 200, shards_json(c));
}

/* ---- rooms ---- */

/* A page of rooms walks the shards in order; the cursor is "SHARD:ROOMKEY" ("SHARD:" from the shard's start). */
static void done_rooms_page(admin_call_t *c);

/* The next active shard id after `shard`, or -1. */
static int next_shard(int shard)
{
    for (int k = 0; k < router.num_shards; ++k)
        if (router.ids[k] > shard)
            return router.ids[k];
    return -1;
}

static void rooms_page_ask(h2o_req_t *req, int shard, const char *after, json_t *args_template, json_t *acc)
{
    json_t *args = json_deep_copy(args_template);
    json_object_set_new(args, "after", after != NULL ? json_string(after) : json_null());
    json_object_set_new(args, "shard", json_integer(shard));
    call_start(req, "rooms", args, shard, done_rooms_page, acc);
}

static void done_rooms_page(admin_call_t *c)
{
    json_t *acc = c->acc, *rooms = json_object_get(acc, "rooms");
    int shard = c->ids[0];
    size_t want = (size_t)json_integer_value(json_object_get(acc, "want"));
    if (c->status[0] != 200) {
        http_send_error(c->req, 503, "a shard is down; its rooms cannot be listed now");
        return;
    }
    json_t *page = json_object_get(c->result[0], "rooms"), *next = json_object_get(c->result[0], "next");
    size_t i;
    json_t *r;
    json_array_foreach(page, i, r)
    {
        json_object_set_new(r, "shard", json_integer(shard));
        json_array_append(rooms, r);
    }
    size_t have = json_array_size(rooms);
    char cursor[600];
    if (json_is_string(next)) {
        snprintf(cursor, sizeof(cursor), "%d:%s", shard, json_string_value(next));
    } else if (next_shard(shard) >= 0) {
        snprintf(cursor, sizeof(cursor), "%d:", next_shard(shard));
    } else {
        cursor[0] = '\0';
    }
    if (have < want && cursor[0] != '\0') {
        /* this shard is done, or stopped early: go on for the rest (the next call owns acc from here) */
        json_t *args = json_deep_copy(c->args);
        json_object_set_new(args, "limit", json_integer((json_int_t)(want - have)));
        c->acc = NULL;
        if (json_is_string(next))
            rooms_page_ask(c->req, shard, json_string_value(next), args, acc);
        else
            rooms_page_ask(c->req, next_shard(shard), NULL, args, acc);
        json_decref(args);
        return;
    }
    json_object_del(acc, "want");
    json_object_set_new(acc, "cursor", cursor[0] != '\0' ? json_string(cursor) : json_null());
    c->acc = NULL;
    send_value(c->req, 200, acc);
}

static long query(h2o_req_t *req, const char *name, char *out, size_t cap)
{
    const char *path = req->input.path.base;
    const char *q = memchr(path, '?', req->input.path.len);
    if (q == NULL)
        return -1;
    ++q;
    return base_query_param(q, req->input.path.len - (size_t)(q - path), name, out, cap);
}

static void get_rooms(h2o_req_t *req)
{
    char party[80], prefix[300], cursor[600], num[24];
    json_t *args = json_object();
    if (query(req, "party", party, sizeof(party)) > 0)
        json_object_set_new(args, "party", json_string(party));
    if (query(req, "prefix", prefix, sizeof(prefix)) > 0)
        json_object_set_new(args, "prefix", json_string(prefix));
    long limit = 100;
    if (query(req, "limit", num, sizeof(num)) > 0) {
        char *end;
        limit = strtol(num, &end, 10);
        if (*end != '\0' || limit < 1 || limit > 1000) {
            json_decref(args);
            http_send_error(req, 400, "limit is from 1 to 1000");
            return;
        }
    }
    json_object_set_new(args, "limit", json_integer(limit));
    int shard = router.ids[0];
    const char *after = NULL;
    if (query(req, "cursor", cursor, sizeof(cursor)) > 0) {
        char *colon = strchr(cursor, ':'), *end;
        shard = colon != NULL ? (int)strtol(cursor, &end, 10) : -1;
        if (colon == NULL || end != colon || shard < 0 || shard >= CONFIG_MAX_SHARDS || !router.shards[shard].active) {
            json_decref(args);
            http_send_error(req, 400, "bad cursor");
            return;
        }
        if (colon[1] != '\0')
            after = colon + 1;
    }
    rooms_page_ask(req, shard, after, args, json_pack("{s:[], s:I}", "rooms", "want", (json_int_t)limit));
    json_decref(args);
}

static void done_room(admin_call_t *c)
{
    if (c->status[0] != 200 || c->result[0] == NULL) {
        if (c->result[0] != NULL) {
            send_value(c->req, c->status[0], c->result[0]);
            c->result[0] = NULL;
        } else {
            http_send_error(c->req, 503, "the room's shard did not answer");
        }
        return;
    }
    json_t *r = c->result[0];
    c->result[0] = NULL;
    json_object_set_new(r, "shard", json_integer(c->ids[0]));
    send_value(c->req, 200, r);
}

/* /admin/rooms/:party/:room[/evict] */
/* DELETE /admin/quarantine/:party/:room */
static void lift_quarantine(h2o_req_t *req, const char *path, size_t len, int is_delete)
{
    if (!is_delete) {
        http_send_error(req, 405, "DELETE");
        return;
    }
    route_t r;
    route_parse(&r, path + sizeof("/admin") - 1, len - (sizeof("/admin") - 1), "quarantine");
    if (r.kind != ROUTE_ROOM || r.room + r.room_len != r.path + r.path_len) {
        http_send_error(req, 400, r.error != NULL ? r.error : "bad room path: /admin/quarantine/PARTY/ROOM");
        return;
    }
    char key[BASE_ROOM_KEY_MAX + 1];
    int n = snprintf(key, sizeof(key), "%.*s/%.*s", (int)r.party_len, r.party, (int)r.room_len, r.room);
    if (quarantine_lift(key, (size_t)n) != 0) {
        http_send_error(req, 404, "the room is not quarantined");
        return;
    }
    router_ctl_send_room(CTL_UNQUARANTINE, key, (size_t)n);
    send_value(req, 200, json_pack("{s:s, s:b}", "room", key, "lifted", 1));
}

static void room_path(h2o_req_t *req, const char *path, size_t len, int is_get, int is_post, int is_delete)
{
    route_t r;
    route_parse(&r, path + sizeof("/admin") - 1, len - (sizeof("/admin") - 1), "rooms");
    if (r.kind != ROUTE_ROOM) {
        http_send_error(req, 400, r.error != NULL ? r.error : "bad room path");
        return;
    }
    if (config_find_party(router.conf, r.party, r.party_len) == NULL) {
        http_send_error(req, 404, "unknown party");
        return;
    }
    const char *rest = r.room + r.room_len;
    size_t rest_len = (size_t)(r.path + r.path_len - rest);
    uint16_t shard = shards_owner(r.party, r.party_len, r.room, r.room_len, NULL);
    json_t *args = json_pack("{s:s%, s:s%}", "party", r.party, r.party_len, "room", r.room, r.room_len);
    if (rest_len == 0 && is_get) {
        /* the cursor is a page's "next": the hex of a key of up to PARTY_KEY_MAX bytes */
        char cursor[2 * PARTY_KEY_MAX + 1], num[24];
        long cursor_len = query(req, "cursor", cursor, sizeof(cursor));
        if (cursor_len == -2) {
            json_decref(args);
            http_send_error(req, 400, "cursor: not one this endpoint gave (the \"next\" of a page)");
            return;
        }
        if (cursor_len > 0)
            json_object_set_new(args, "cursor", json_string(cursor));
        if (query(req, "limit", num, sizeof(num)) > 0)
            json_object_set_new(args, "limit", json_integer(strtol(num, NULL, 10)));
        call_start(req, "room", args, shard, done_room, NULL);
    } else if (rest_len == 0 && is_delete) {
        char confirm[300];
        long n = query(req, "confirm", confirm, sizeof(confirm));
        if (n < 0 || (size_t)n != r.room_len || memcmp(confirm, r.room, r.room_len) != 0) {
            json_decref(args);
            http_send_error(req, 400, "deleting a room's data needs ?confirm=ROOM with the room id");
            return;
        }
        call_start(req, "delete", args, shard, done_forward, NULL);
    } else if (h2o_memis(rest, rest_len, H2O_STRLIT("/evict")) && is_post) {
        call_start(req, "evict", args, shard, done_forward, NULL);
    } else {
        json_decref(args);
        http_send_error(req, rest_len == 0 || h2o_memis(rest, rest_len, H2O_STRLIT("/evict")) ? 405 : 404,
                        rest_len == 0 ? "GET or DELETE" : "not found");
    }
}

/* ---- backup ---- */

static void backup_answer(admin_call_t *c);

static void done_backup(admin_call_t *c)
{
    backup_answer(c);
    router.backing_up = 0;
    migrate_reconcile(); /* a move the backup held back */
}

static void backup_answer(admin_call_t *c)
{
    const char *dir = json_string_value(json_object_get(c->args, "dir"));
    json_t *paths = json_array();
    for (int i = 0; i < c->num; ++i) {
        if (c->status[i] != 200) {
            json_decref(paths);
            char why[128];
            snprintf(why, sizeof(why), "shard %d could not write its checkpoint (status %d); the backup is incomplete", c->ids[i],
                     c->status[i]);
            http_send_error(c->req, c->status[i] == 0 || c->status[i] == 503 ? 503 : 500, why);
            return;
        }
        json_array_append(paths, json_object_get(c->result[i], "path"));
    }
    /* the slot table goes with it (which shard holds which rooms: no move ran since the checkpoints began), and the
     * node's record (the shard ids) */
    int r = shards_save_slots_in(dir);
    if (r != 0) {
        json_decref(paths);
        char why[128];
        snprintf(why, sizeof(why), "could not write the slot table into the backup: %s", strerror(-r));
        http_send_error(c->req, 500, why);
        return;
    }
    char src[BASE_PATH_MAX], dst[BASE_PATH_MAX];
    snprintf(src, sizeof(src), "%s/node.json", router.conf->data_dir);
    snprintf(dst, sizeof(dst), "%s/node.json", dir);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    int ok = in != NULL && out != NULL;
    char buf[4096];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        ok = fwrite(buf, 1, n, out) == n;
    if (out != NULL && (fflush(out) != 0 || fsync(fileno(out)) != 0))
        ok = 0;
    if (in != NULL)
        fclose(in);
    if (out != NULL && fclose(out) != 0)
        ok = 0;
    if (!ok) {
        json_decref(paths);
        http_send_error(c->req, 500, "could not copy node.json into the backup");
        return;
    }
    log_info("backup written to %s", dir);
    send_value(c->req, 200, json_pack("{s:s, s:o}", "dir", dir, "shards", paths));
}

static void post_backup(h2o_req_t *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->entity.base, req->entity.len, 0, &jerr);
    const char *asked = json_string_value(json_object_get(body, "dir"));
    char dir[4000], why[PATH_MAX + 200];
    if (asked == NULL || strlen(asked) > 3000) {
        json_decref(body);
        http_send_error(req, 400, "the body is {\"dir\": \"/absolute/path\" or \"name\"}");
        return;
    }
    if (admin_backup_path(asked, dir, sizeof(dir), why, sizeof(why)) != 0) {
        json_decref(body);
        http_send_error(req, 400, why);
        return;
    }
    if (!shards_all_up()) {
        json_decref(body);
        http_send_error(req, 503, "a shard is down; a backup needs every shard");
        return;
    }
    /* the checkpoints and the slot table must agree: no slot may move while they are taken */
    if (migrate_busy() || router.backing_up) {
        json_decref(body);
        http_send_error(req, 409,
                        router.backing_up ? "another backup is under way" : "a shard change is under way; back up once it is done");
        return;
    }
    /* a fresh directory, so a backup never mixes with another */
    if (mkdir(dir, 0750) != 0) {
        snprintf(why, sizeof(why), "cannot create %s: %s (it must not exist yet)", dir, strerror(errno));
        json_decref(body);
        http_send_error(req, 409, why);
        return;
    }
    router.backing_up = 1;
    call_start(req, "backup", json_pack("{s:s}", "dir", dir), -1, done_backup, NULL);
    json_decref(body);
}

/* ---- the entry point ---- */

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
    if (http_framing_refused(req))
        return 0;
    const char *path = req->input.path.base;
    size_t len = req->input.path.len;
    const char *q = memchr(path, '?', len);
    if (q != NULL)
        len = (size_t)(q - path);
    int is_get = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("GET")),
        is_post = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("POST")),
        is_delete = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("DELETE"));
    if (h2o_memis(path, len, H2O_STRLIT("/health"))) {
        http_send_health(req);
        return 0;
    }
    if (h2o_memis(path, len, H2O_STRLIT("/ready"))) {
        http_send_ready(req);
        return 0;
    }
    if (admin_guard(req))
        return 0; /* Host, Origin, a simple request for a change, the wrong-token throttle (adminguard.c) */
    if ((h2o_memis(path, len, H2O_STRLIT("/admin")) || h2o_memis(path, len, H2O_STRLIT("/admin/"))) && is_get) {
        dashboard_send(req); /* a static page: its API calls carry the token */
        return 0;
    }
    if (!authorized(req)) {
        if (h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) != -1)
            admin_guard_failed();
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        http_send_error(req, 401, "a valid bearer token is required");
        return 0;
    }
    if (h2o_memis(path, len, H2O_STRLIT("/metrics")) && is_get) {
        call_start(req, "stats", NULL, -1, admin_done_metrics, NULL);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/node")) && is_get) {
        get_node(req);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/shards")) && is_get) {
        call_start(req, "stats", NULL, -1, done_shards, NULL);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/shards")) && is_post) {
        migrate_add_shard(req);
    } else if (len > sizeof("/admin/shards/") - 1 && memcmp(path, "/admin/shards/", sizeof("/admin/shards/") - 1) == 0 &&
               len > sizeof("/drain") - 1 && memcmp(path + len - (sizeof("/drain") - 1), "/drain", sizeof("/drain") - 1) == 0) {
        char num[16];
        size_t n = len - (sizeof("/admin/shards/") - 1) - (sizeof("/drain") - 1);
        char *end;
        long id = -1;
        if (n > 0 && n < sizeof(num)) {
            memcpy(num, path + sizeof("/admin/shards/") - 1, n);
            num[n] = '\0';
            id = strtol(num, &end, 10);
            if (*end != '\0')
                id = -1;
        }
        if (!is_post)
            http_send_error(req, 405, "POST");
        else if (id < 0 || id >= CONFIG_MAX_SHARDS || !router.shards[id].active)
            http_send_error(req, 404, "no such shard");
        else
            migrate_drain_shard(req, (int)id);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/rooms")) && is_get) {
        get_rooms(req);
    } else if (len > sizeof("/admin/rooms/") - 1 && memcmp(path, "/admin/rooms/", sizeof("/admin/rooms/") - 1) == 0) {
        room_path(req, path, len, is_get, is_post, is_delete);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/quarantine")) && is_get) {
        send_value(req, 200, json_pack("{s:o}", "rooms", quarantine_json()));
    } else if (len > sizeof("/admin/quarantine/") - 1 &&
               memcmp(path, "/admin/quarantine/", sizeof("/admin/quarantine/") - 1) == 0) {
        lift_quarantine(req, path, len, is_delete);
    } else if (h2o_memis(path, len, H2O_STRLIT("/admin/backup")) && is_post) {
        post_backup(req);
    } else {
        http_send_error(req, 404, "not found");
    }
    return 0;
}

void admin_init(uint64_t node_started_ms)
{
    admin.node_started_ms = node_started_ms;
}
