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
 * Answers are ADMIN_REPLY frames: an HTTP-like status and a JSON body. Writes (delete) go through the output gate
 * like any other: the reply leaves once they are committed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "shard.h"

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

static json_t *stats(void)
{
    rooms_stats_t r;
    rooms_stats(&r);
    store_stats_t st;
    store_stats(shard_store(), &st);
    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o}", "rooms", (json_int_t)r.rooms,
                     "rooms_hibernating", (json_int_t)r.rooms_hibernating, "evictions", (json_int_t)r.evictions, "connections",
                     (json_int_t)r.connections, "messages_in", (json_int_t)r.messages_in, "messages_out",
                     (json_int_t)r.messages_out, "bytes_in", (json_int_t)r.bytes_in, "bytes_out", (json_int_t)r.bytes_out,
                     "storage_bytes", (json_int_t)st.live_bytes, "commits", (json_int_t)st.commits, "writes", (json_int_t)st.writes,
                     "failed_commits", (json_int_t)st.failed_commits, "latency", hist_json(shard_latency()), "wake",
                     hist_json(&r.wake));
}

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
