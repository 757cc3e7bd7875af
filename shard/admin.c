/*
 * admin.c — the operations the router's admin endpoint asks a shard for (PROTO_ADMIN), each a JSON object in and out:
 *
 *   node-stopping                 the node drains: closes from now on are the node letting go (party_node_stopping)
 *   stats                         counters, storage, latency and wake-time histograms
 *   rooms    {after,party,prefix,limit}   a page of the shard's rooms in storage order
 *   room     {party,room,cursor,limit}    one room: connections, alarm, a page of keys
 *   evict    {party,room}                 the room leaves memory now (its clients reconnect)
 *   delete   {party,room}                 the same, and every key and the alarm are deleted
 *   backup   {dir}                        a RocksDB checkpoint of the shard into dir/shard-N
 *
 * The room layer's side of them (rooms_admin_*: listing rooms from memory and storage, one room's details, evicting
 * and deleting a room) is here too, beside its only caller.
 *
 * Answers are ADMIN_REPLY frames: an HTTP-like status and a JSON body. Writes (delete) go through the output gate
 * like any other: the reply leaves once they are committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "room_int.h"

static void reply(uint64_t rid, int status, json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    proto_msg_t m = {.type = PROTO_ADMIN_REPLY, .id = rid, .status = status, .data = proto_str(text, strlen(text))};
    shard_emit(&m);
    free(text);
}

static void fail(uint64_t rid, int status, const char *why)
{
    reply(rid, status, json_pack("{s:s}", "error", why));
}

static json_t *hist_json(const base_hist_t *h)
{
    json_t *counts = json_array();
    for (size_t i = 0; i <= BASE_HIST_NUM; ++i)
        json_array_append_new(counts, json_integer((json_int_t)h->counts[i]));
    return json_pack("{s:o, s:I, s:f}", "counts", counts, "count", (json_int_t)h->count, "sum", h->sum);
}

/* Per party: what the /metrics `party` label shows. */
static json_t *party_stats(void)
{
    const config_t *conf = shard_config();
    json_t *o = json_object();
    for (size_t i = 0; i < conf->num_parties; ++i) {
        const rooms_party_stats_t *p = rooms_party_stats(i);
        if (p == NULL)
            break;
        json_object_set_new(o, conf->parties[i].name,
                            json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "connections", (json_int_t)p->connections, "messages_in",
                                      (json_int_t)p->messages_in, "messages_out", (json_int_t)p->messages_out, "bytes_in",
                                      (json_int_t)p->bytes_in, "bytes_out", (json_int_t)p->bytes_out, "storage_writes",
                                      (json_int_t)p->storage_writes));
    }
    return o;
}

static json_t *stats(void)
{
    rooms_stats_t r;
    rooms_stats(&r);
    store_stats_t st;
    store_stats(shard_store(), &st);
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "rooms", (json_int_t)r.rooms,
                  "rooms_hibernating", (json_int_t)r.rooms_hibernating, "evictions", (json_int_t)r.evictions, "connections",
                  (json_int_t)r.connections, "messages_in", (json_int_t)r.messages_in, "messages_out", (json_int_t)r.messages_out,
                  "bytes_in", (json_int_t)r.bytes_in, "bytes_out", (json_int_t)r.bytes_out, "storage_bytes",
                  (json_int_t)st.live_bytes, "commits", (json_int_t)st.commits, "writes", (json_int_t)st.writes, "failed_commits",
                  (json_int_t)st.failed_commits, "latency", hist_json(shard_latency()), "wake", hist_json(&r.wake));
    json_object_set_new(o, "parties", party_stats());
    return o;
}

/* ---- the room layer for the admin operations (shard.h) ---- */

/* The room's stored alarm (9 bytes: time, tries), its key written into ak: 0 with the value in *v (the caller frees
 * it), or -1 when there is none or it is not 9 bytes (a storage error counts as none, as before). */
static int stored_alarm(const unsigned char *prefix, size_t prefix_len, unsigned char ak[PREFIX_MAX + 1], char **v)
{
    size_t vl;
    if (store_get(rooms.store, ak, keys_tagged(prefix, prefix_len, TAG_ALARM, ak), v, &vl) != 0)
        return -1;
    if (vl != 9) {
        free(*v);
        return -1;
    }
    return 0;
}

#define ADMIN_EXAMINE_MAX 10000

static int matches(const char *key, size_t key_len, const char *party, const char *prefix)
{
    const char *sep = memchr(key, '/', key_len);
    if (sep == NULL)
        return 0;
    size_t plen = (size_t)(sep - key);
    if (party != NULL && (strlen(party) != plen || memcmp(key, party, plen) != 0))
        return 0;
    size_t idlen = key_len - plen - 1;
    return prefix == NULL || (strlen(prefix) <= idlen && memcmp(sep + 1, prefix, strlen(prefix)) == 0);
}

typedef struct st_listed_t {
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len;
    int stored;
} listed_t;

static int listed_cmp(const void *a, const void *b)
{
    const listed_t *x = a, *y = b;
    return keys_cmp(x->prefix, x->prefix_len, y->prefix, y->prefix_len);
}

static json_t *listed_json(const listed_t *l)
{
    size_t key_len = l->prefix_len - 4;
    const char *key = (const char *)l->prefix + 4, *sep = memchr(key, '/', key_len);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    json_t *party = json_stringn(key, (size_t)(sep - key)), *id = json_stringn(sep + 1, key_len - (size_t)(sep - key) - 1);
    return json_pack("{s:o, s:o, s:i, s:b, s:b, s:I, s:b}", "party", party != NULL ? party : json_null(), "room",
                     id != NULL ? id : json_null(), "slot", l->prefix[0] << 8 | l->prefix[1], "in_memory",
                     room != NULL && room->started, "hibernating", room != NULL && !room->started && room->conns != NULL,
                     "connections", (json_int_t)(room != NULL ? room->open_count : 0), "stored", l->stored);
}

json_t *rooms_admin_list(const char *after, const char *party, const char *prefix, size_t limit)
{
    unsigned char from[PREFIX_MAX + 1];
    size_t from_len = 0;
    if (after != NULL && strlen(after) <= BASE_ROOM_KEY_MAX)
        from_len = keys_room_prefix(after, strlen(after), from);

    /* rooms in memory after the cursor, sorted */
    size_t nmem = 0;
    listed_t *mem = xcalloc(rooms.num_rooms + 1, sizeof(*mem));
    for (party_room_t *r = rooms.by_key; r != NULL; r = r->hh.next) {
        if (!matches(r->key, r->key_len, party, prefix) || keys_cmp(r->prefix, r->prefix_len, from, from_len) <= 0)
            continue;
        memcpy(mem[nmem].prefix, r->prefix, r->prefix_len);
        mem[nmem++].prefix_len = r->prefix_len;
    }
    qsort(mem, nmem, sizeof(*mem), listed_cmp);

    /* rooms in storage after the cursor: one seek per room, to the first key past the previous room's keys */
    listed_t *disk = xcalloc(limit + 1, sizeof(*disk));
    listed_t frontier = {.prefix_len = 0}; /* the last room examined in storage */
    size_t ndisk = 0, examined = 0;
    unsigned char lo[PREFIX_MAX + 1], hi[2] = {0xff, 0xff}; /* the alarm index starts at FF FF */
    size_t lo_len = from_len != 0 ? keys_successor(from, from_len, lo) : 0;
    if (from_len == 0)
        lo[lo_len++] = 0;
    int disk_more = 0; /* storage was not read to its end */
    store_iter_t *it = lo_len != 0 ? store_iter_open(rooms.store, lo, lo_len, hi, 2, 0) : NULL;
    while (it != NULL) {
        if (ndisk == limit || ++examined > ADMIN_EXAMINE_MAX) {
            disk_more = 1;
            break;
        }
        if (!store_iter_valid(it))
            break;
        size_t kl;
        const char *k = store_iter_key(it, &kl);
        size_t klen = kl >= 4 ? (size_t)(unsigned char)k[2] << 8 | (unsigned char)k[3] : 0;
        if (klen == 0 || 4 + klen > kl || klen > BASE_ROOM_KEY_MAX)
            break; /* not a room key: past the rooms */
        memcpy(frontier.prefix, k, 4 + klen);
        frontier.prefix_len = 4 + klen;
        frontier.stored = 1;
        if (matches((const char *)frontier.prefix + 4, klen, party, prefix))
            disk[ndisk++] = frontier;
        if ((lo_len = keys_successor(frontier.prefix, frontier.prefix_len, lo)) == 0)
            break;
        store_iter_seek(it, lo, lo_len);
    }
    if (it != NULL)
        store_iter_close(it);

    /* merge the two sorted lists; when storage was cut short, rooms in memory beyond the last room examined there wait
     * for the next page, or the order would break */
    json_t *list = json_array();
    size_t i = 0, j = 0;
    const listed_t *last = NULL;
    while (json_array_size(list) < limit) {
        int c;
        if (i < nmem && j < ndisk)
            c = listed_cmp(&mem[i], &disk[j]);
        else if (i < nmem && (!disk_more || (frontier.prefix_len != 0 && listed_cmp(&mem[i], &frontier) <= 0)))
            c = -1;
        else if (j < ndisk)
            c = 1;
        else
            break;
        listed_t l = c <= 0 ? mem[i] : disk[j];
        l.stored = c >= 0;
        i += c <= 0;
        j += c >= 0;
        json_array_append_new(list, listed_json(&l));
        last = c <= 0 ? &mem[i - 1] : &disk[j - 1];
    }
    int more = i < nmem || j < ndisk || disk_more;
    json_t *next = json_null();
    if (more && last != NULL)
        next = json_stringn((const char *)last->prefix + 4, last->prefix_len - 4);
    else if (more && frontier.prefix_len != 0)
        next = json_stringn((const char *)frontier.prefix + 4, frontier.prefix_len - 4);
    free(mem);
    free(disk);
    return json_pack("{s:o, s:o}", "rooms", list, "next", next != NULL ? next : json_null());
}

/* The bytes `s` takes as a JSON string's contents, as jansson writes it (no JSON_ENSURE_ASCII: UTF-8 goes as it is). */
static size_t json_escaped_len(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        n += c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t' ? 2 : c < 0x20 ? 6 : 1;
    }
    return n;
}

json_t *rooms_admin_room(proto_str_t party, proto_str_t id, const void *cursor, size_t cursor_len, size_t limit)
{
    if (config_find_party(rooms.conf, party.base, party.len) == NULL || party.len + 1 + id.len > BASE_ROOM_KEY_MAX)
        return NULL;
    char key[BASE_ROOM_KEY_MAX];
    size_t key_len = keys_room_name(key, party, id);
    unsigned char prefix[PREFIX_MAX];
    size_t prefix_len = keys_room_prefix(key, key_len, prefix);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);

    json_t *conns = json_array();
    for (party_conn_t *c = room != NULL ? party_room_connections(room, NULL) : NULL; c != NULL;
         c = party_room_connections(room, c)) {
        json_t *tags = json_array();
        for (size_t t = 0; t < c->num_tags; ++t)
            json_array_append_new(tags, json_string(c->tags[t]));
        json_array_append_new(conns,
                              json_pack("{s:s, s:o, s:I}", "id", c->id, "tags", tags, "state_bytes", (json_int_t)c->state_len));
    }

    /* the alarm, from memory or storage */
    uint64_t alarm = 0;
    if (room != NULL) {
        alarm = room->alarm_at;
    } else {
        unsigned char ak[PREFIX_MAX + 1];
        char *v;
        if (stored_alarm(prefix, prefix_len, ak, &v) == 0) {
            alarm = store_get_u64((unsigned char *)v);
            free(v);
        }
    }

    /* the party's keys, a page at a time */
    unsigned char lo[DATA_KEY_MAX + 1], hi[PREFIX_MAX + 1];
    memcpy(lo, prefix, prefix_len);
    lo[prefix_len] = TAG_DATA;
    size_t lo_len = prefix_len + 1;
    if (cursor != NULL && cursor_len <= PARTY_KEY_MAX) {
        memcpy(lo + lo_len, cursor, cursor_len);
        lo_len += cursor_len;
        lo[lo_len++] = 0; /* strictly after the cursor */
    }
    memcpy(hi, prefix, prefix_len);
    hi[prefix_len] = TAG_DATA + 1;
    if (limit > 1000)
        limit = 1000;
    store_entry_t *e = xcalloc(limit + 1, sizeof(*e));
    long n = store_scan_keys(rooms.store, lo, lo_len, hi, prefix_len + 1, e, limit + 1);
    json_t *keys = json_array(), *next = json_null();
    char hex[2 * PARTY_KEY_MAX + 1];
    /* a page ends at `limit` keys or at half the frame cap, whichever comes first: 640 keys of 2,000 bytes made a
     * reply over the cap, which the link dropped (the operator saw a 503 after 2 s). Each key is counted as written
     * into the JSON (escapes included); the cursor (hex) is set aside once. The first key always goes in */
    size_t budget = config_frame_cap(rooms.conf) / 2, used = 4 * PARTY_KEY_MAX;
    for (long i = 0; i < n && (size_t)i < limit; ++i) {
        const char *kb = e[i].key + prefix_len + 1;
        size_t kl = e[i].key_len - prefix_len - 1;
        json_t *k = json_stringn(kb, kl);
        size_t cost = 64 + (k != NULL ? json_escaped_len(kb, kl) : 2 * kl);
        if (i > 0 && used + cost > budget) {
            /* the previous key ends the page: the cursor is already in `hex` */
            json_decref(k);
            next = json_string(hex);
            break;
        }
        used += cost;
        json_t *entry = json_pack("{s:o, s:I}", "key", k != NULL ? k : json_null(), "bytes", (json_int_t)e[i].value_len);
        base_hex_encode(kb, kl, hex);
        if (k == NULL) /* JSON strings cannot carry it */
            json_object_set_new(entry, "key_hex", json_string(hex));
        json_array_append_new(keys, entry);
        if ((size_t)i == limit - 1 && (size_t)n > limit)
            next = json_string(hex);
    }
    if (n > 0)
        store_entries_free(e, (size_t)n);
    free(e);
    json_t *ids = json_array();
    size_t i;
    json_t *c;
    json_array_foreach(conns, i, c) json_array_append(ids, json_object_get(c, "id"));
    return json_pack("{s:s%, s:s%, s:i, s:b, s:b, s:I, s:o, s:o, s:o, s:o, s:o}", "party", party.base, party.len, "room", id.base,
                     id.len, "slot", prefix[0] << 8 | prefix[1], "in_memory", room != NULL && room->started, "hibernating",
                     room != NULL && !room->started && room->conns != NULL, "connections", (json_int_t)json_array_size(conns),
                     "ids", ids, "clients", conns, "alarmAt", alarm != 0 ? json_integer((json_int_t)alarm) : json_null(), "keys",
                     keys, "next", next);
}

long rooms_admin_evict(proto_str_t party, proto_str_t id, int delete_data)
{
    if (config_find_party(rooms.conf, party.base, party.len) == NULL)
        return -ENOENT;
    char key[BASE_ROOM_KEY_MAX];
    size_t key_len = keys_room_name(key, party, id);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, key_len, room);
    if (room != NULL) {
        /* the clients reconnect and find the room started afresh from storage (or empty, after a delete) */
        room_close_all_now(room, 1012, "the room was evicted; reconnect");
        ++rooms.evictions;
        room_destroy(room);
    }
    if (!delete_data)
        return 0;
    shard_gate_event(); /* the reply leaves once the deletes are committed */
    unsigned char prefix[PREFIX_MAX + 1];
    size_t prefix_len = keys_room_prefix(key, key_len, prefix);
    long deleted = 0;
    /* the alarm and its index entry, then every key of the room's range */
    unsigned char ak[PREFIX_MAX + 1];
    char *v;
    if (stored_alarm(prefix, prefix_len, ak, &v) == 0) {
        unsigned char idx[10 + PREFIX_MAX];
        store_delete(rooms.store, idx, keys_alarm_index_of((const char *)ak, prefix_len, v, idx));
        free(v);
    }
    unsigned char hi[PREFIX_MAX + 1];
    size_t hi_len = keys_successor(prefix, prefix_len, hi);
    /* The keys are read first and deleted after: a delete between two steps of the iterator makes it seek again
     * (store.h: it sees its own writes), through every deletion queued before, which made a big room's delete
     * quadratic and froze the shard for minutes. */
    base_buf_t doomed; /* key lengths (size_t) and keys, one after the other */
    base_buf_init(&doomed);
    store_iter_t *it = store_iter_open(rooms.store, prefix, prefix_len, hi, hi_len, 0);
    for (; store_iter_valid(it); store_iter_next(it)) {
        size_t kl;
        const char *k = store_iter_key(it, &kl);
        base_buf_append(&doomed, &kl, sizeof(kl));
        base_buf_append(&doomed, k, kl);
        deleted += k[prefix_len] == TAG_DATA;
    }
    int r = store_iter_close(it);
    for (const char *p = base_buf_head(&doomed), *end = p + base_buf_len(&doomed); r == 0 && p < end;) {
        size_t kl;
        memcpy(&kl, p, sizeof(kl));
        store_delete(rooms.store, p + sizeof(kl), kl);
        p += sizeof(kl) + kl;
    }
    base_buf_dispose(&doomed);
    return r != 0 ? -EIO : deleted;
}

/* ---- the operations ---- */

/* party and room from the arguments; 0, or -1 after answering 400 */
static int room_args(uint64_t rid, json_t *args, proto_str_t *party, proto_str_t *room)
{
    json_t *p = json_object_get(args, "party"), *r = json_object_get(args, "room");
    if (!json_is_string(p) || !json_is_string(r) || json_string_length(r) == 0) {
        fail(rid, 400, "party and room are needed");
        return -1;
    }
    *party = proto_str(json_string_value(p), json_string_length(p));
    *room = proto_str(json_string_value(r), json_string_length(r));
    return 0;
}

static size_t limit_arg(json_t *args, size_t dflt, size_t max)
{
    json_t *l = json_object_get(args, "limit");
    if (!json_is_integer(l) || json_integer_value(l) <= 0)
        return dflt;
    return json_integer_value(l) > (json_int_t)max ? max : (size_t)json_integer_value(l);
}

static void backup(uint64_t rid, json_t *args)
{
    const char *dir = json_string_value(json_object_get(args, "dir"));
    if (dir == NULL || dir[0] != '/') {
        fail(rid, 400, "dir must be an absolute path");
        return;
    }
    char path[BASE_PATH_MAX], err[600];
    snprintf(path, sizeof(path), "%s/shard-%d", dir, shard_index());
    if (store_checkpoint(shard_store(), path, err, sizeof(err)) != 0) {
        log_error("backup into %s: %s", path, err);
        fail(rid, 500, err);
        return;
    }
    log_info("backup: checkpoint written to %s", path);
    reply(rid, 200, json_pack("{s:s}", "path", path));
}

void shard_admin(const proto_msg_t *msg)
{
    json_error_t jerr;
    json_t *args = msg->data.len != 0 ? json_loadb(msg->data.base, msg->data.len, 0, &jerr) : json_object();
    if (!json_is_object(args)) {
        json_decref(args);
        fail(msg->id, 400, "the arguments are not a JSON object");
        return;
    }
    proto_str_t party, room;
    json_t *out;
#define OP(name) (msg->method.len == sizeof(name) - 1 && memcmp(msg->method.base, name, sizeof(name) - 1) == 0)
    if (OP("node-stopping")) {
        /* the router drains: the closes that follow are the node letting its clients go (party_node_stopping) */
        rooms_node_stopping();
        reply(msg->id, 200, json_object());
    } else if (OP("stats")) {
        reply(msg->id, 200, stats());
    } else if (OP("rooms")) {
        reply(msg->id, 200,
              rooms_admin_list(json_string_value(json_object_get(args, "after")), json_string_value(json_object_get(args, "party")),
                               json_string_value(json_object_get(args, "prefix")), limit_arg(args, 100, 1000)));
    } else if (OP("room")) {
        json_t *cur = json_object_get(args, "cursor");
        unsigned char key[PARTY_KEY_MAX];
        long key_len = 0;
        if (room_args(msg->id, args, &party, &room) != 0) {
            /* answered */
        } else if (cur != NULL &&
                   (!json_is_string(cur) ||
                    (key_len = base_hex_decode(json_string_value(cur), json_string_length(cur), key, sizeof(key))) < 0)) {
            fail(msg->id, 400, "cursor: not one this endpoint gave (the \"next\" of a page)");
        } else {
            out = rooms_admin_room(party, room, cur != NULL ? key : NULL, (size_t)key_len, limit_arg(args, 100, 1000));
            if (out != NULL)
                reply(msg->id, 200, out);
            else
                fail(msg->id, 404, "unknown party");
        }
    } else if (OP("evict") || OP("delete")) {
        if (room_args(msg->id, args, &party, &room) == 0) {
            int del = OP("delete");
            long n = rooms_admin_evict(party, room, del);
            if (del && n != -ENOENT)
                room_admin_held(msg->id); /* its reply is held (rooms_admin_evict): answered 500 if the commit fails */
            if (n == -ENOENT)
                fail(msg->id, 404, "unknown party");
            else if (n < 0)
                fail(msg->id, 500, "the storage failed");
            else if (del)
                reply(msg->id, 200, json_pack("{s:b, s:I}", "deleted", 1, "keys", (json_int_t)n));
            else
                reply(msg->id, 200, json_pack("{s:b}", "evicted", 1));
        }
    } else if (OP("backup")) {
        backup(msg->id, args);
    } else {
        fail(msg->id, 404, "no such admin operation");
    }
#undef OP
    json_decref(args);
}
