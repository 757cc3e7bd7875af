/*
 * kv.c — the kv party: a room's storage over HTTP. Useful on its own (a small durable document store per room) and
 * the way the tests reach every storage operation of party.h.
 *
 *   GET    ?key=K                         → the value (application/octet-stream), or 404
 *   GET    [?prefix=P][&start=S][&end=E][&limit=N][&reverse=1]
 *                                         → {"entries":[{"key","value"}]} in key order (end exclusive); a value that
 *                                           is not UTF-8 is shown as null with "bytes"
 *   PUT    ?key=K  (body: the value)      → {"key","bytes"}
 *   DELETE ?key=K                         → {"deleted":true|false};  DELETE with no key: every key, {"deleted":N}
 *   POST   {"get":[K...]}                 → {"values":{K: V|null}}               (≤ 128 keys)
 *   POST   {"put":{K:V...}}               → {"put":N}   all or nothing           (≤ 128 keys)
 *   POST   {"delete":[K...]}              → {"deleted":N}                        (≤ 128 keys)
 *   POST   {"ops":[{"op":"put","key","value"} | {"op":"delete","key"} | {"op":"check","key","value":V|null}]}
 *                                         → a transaction: applied in order; a failed check undoes it all, 409
 *                                           {"error","index"}; else {"ok":true}
 * Keys over 2048 bytes or values over 128 KiB get 413; anything malformed 400.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parties.h"

#define QUERY_MAX (PARTY_KEY_MAX + 1)

static void error(party_request_t *req, int status, const char *why)
{
    parties_respond_json(req, status, json_pack("{s:s}", "error", why));
}

/* Maps a storage error to an answer; returns 1 when it answered. */
static int storage_error(party_request_t *req, int r)
{
    if (r == 0 || r == 1)
        return 0;
    if (r == -EMSGSIZE)
        error(req, 413, "a key is longer than 2048 bytes, or a value larger than 128 KiB");
    else if (r == -EINVAL)
        error(req, 400, "a key must not be empty, and a batch has at most 128 keys");
    else
        error(req, 500, "the storage failed");
    return 1;
}

static json_t *value_json(const void *v, size_t len)
{
    json_t *s = party_utf8_valid(v, len) ? json_stringn(v, len) : NULL;
    return s != NULL ? s : json_null();
}

/* A query parameter: 1 with it in out, 0 absent, -1 too long (answered 413). */
static int param(party_request_t *req, const char *name, char *out, size_t *len)
{
    long n = party_request_query_param(req, name, out, QUERY_MAX + 1);
    if (n == -1)
        return 0;
    if (n == -2 || n > PARTY_KEY_MAX) {
        error(req, 413, "a key is longer than 2048 bytes");
        return -1;
    }
    *len = (size_t)n;
    return 1;
}

typedef struct st_list_acc_t {
    json_t *entries;
} list_acc_t;

static int on_entry(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    list_acc_t *acc = arg;
    json_t *e = json_object();
    json_t *k = json_stringn(key, key_len);
    json_object_set_new(e, "key", k != NULL ? k : json_null());
    json_object_set_new(e, "value", value_json(value, value_len));
    if (!party_utf8_valid(value, value_len))
        json_object_set_new(e, "bytes", json_integer((json_int_t)value_len));
    json_array_append_new(acc->entries, e);
    return 0;
}

static void do_get(party_room_t *room, party_request_t *req)
{
    char key[QUERY_MAX + 2];
    size_t klen;
    int has = param(req, "key", key, &klen);
    if (has < 0)
        return;
    if (has) {
        void *v;
        size_t vlen;
        int r = party_storage_get(room, key, klen, &v, &vlen);
        if (r == -ENOENT) {
            error(req, 404, "no such key");
            return;
        }
        if (storage_error(req, r))
            return;
        party_respond(req, 200, "application/octet-stream", v, vlen);
        free(v);
        return;
    }
    char prefix[QUERY_MAX + 2], start[QUERY_MAX + 2], end[QUERY_MAX + 2], num[24];
    size_t plen = 0, slen = 0, elen = 0, nlen = 0; /* set when param() finds them; 0 for -O3 */
    party_list_t opts = {0};
    int hp = param(req, "prefix", prefix, &plen), hs = param(req, "start", start, &slen), he = param(req, "end", end, &elen);
    if (hp < 0 || hs < 0 || he < 0)
        return;
    if (hp) {
        opts.prefix = prefix;
        opts.prefix_len = plen;
    }
    if (hs) {
        opts.start = start;
        opts.start_len = slen;
    }
    if (he) {
        opts.end = end;
        opts.end_len = elen;
    }
    if (param(req, "limit", num, &nlen) > 0) {
        char *e;
        long long n = strtoll(num, &e, 10);
        if (*e != '\0' || n < 0) {
            error(req, 400, "limit must be a number");
            return;
        }
        opts.limit = (size_t)n;
    }
    opts.reverse = param(req, "reverse", num, &nlen) > 0 && strcmp(num, "0") != 0 && strcmp(num, "false") != 0;
    list_acc_t acc = {json_array()};
    long n = party_storage_list(room, &opts, on_entry, &acc);
    if (n < 0) {
        json_decref(acc.entries);
        storage_error(req, (int)n);
        return;
    }
    parties_respond_json(req, 200, json_pack("{s:o}", "entries", acc.entries));
}

static void do_put(party_room_t *room, party_request_t *req)
{
    char key[QUERY_MAX + 2];
    size_t klen;
    int has = param(req, "key", key, &klen);
    if (has <= 0) {
        if (has == 0)
            error(req, 400, "PUT needs ?key=");
        return;
    }
    size_t len;
    const void *body = party_request_body(req, &len);
    if (storage_error(req, party_storage_put(room, key, klen, body, len)))
        return;
    json_t *k = json_stringn(key, klen); /* NULL for a key that is not UTF-8: shown as null, as in listings */
    parties_respond_json(req, 200, json_pack("{s:o, s:I}", "key", k != NULL ? k : json_null(), "bytes", (json_int_t)len));
}

static void do_delete(party_room_t *room, party_request_t *req)
{
    char key[QUERY_MAX + 2];
    size_t klen;
    int has = param(req, "key", key, &klen);
    if (has < 0)
        return;
    if (!has) {
        long n = party_storage_delete_all(room);
        if (n < 0) {
            storage_error(req, (int)n);
            return;
        }
        parties_respond_json(req, 200, json_pack("{s:I}", "deleted", (json_int_t)n));
        return;
    }
    int r = party_storage_delete(room, key, klen);
    if (storage_error(req, r))
        return;
    parties_respond_json(req, 200, json_pack("{s:b}", "deleted", r == 1));
}

/* ---- POST: batches and transactions ---- */

static int string_arg(const json_t *v, const char **s, size_t *len)
{
    if (!json_is_string(v))
        return -1;
    *s = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

/* Reads a batch of keys (a JSON array of at most PARTY_BATCH_MAX strings) into kvs and how many into *n. Returns 0, or
 * -1 after answering 400 (`bad` says what the field must be). */
static int keys_arg(party_request_t *req, const json_t *keys, party_kv_t *kvs, size_t *n, const char *bad)
{
    *n = json_array_size(keys);
    if (*n > PARTY_BATCH_MAX) {
        error(req, 400, "a batch has at most 128 keys");
        return -1;
    }
    for (size_t i = 0; i < *n; ++i) {
        memset(&kvs[i], 0, sizeof(kvs[i]));
        if (string_arg(json_array_get(keys, i), (const char **)&kvs[i].key, &kvs[i].key_len) != 0) {
            error(req, 400, bad);
            return -1;
        }
    }
    return 0;
}

static void do_get_many(party_room_t *room, party_request_t *req, const json_t *keys)
{
    party_kv_t kvs[PARTY_BATCH_MAX];
    size_t n;
    if (keys_arg(req, keys, kvs, &n, "\"get\" is an array of strings") != 0)
        return;
    if (storage_error(req, party_storage_get_many(room, kvs, n)))
        return;
    json_t *values = json_object();
    for (size_t i = 0; i < n; ++i) {
        /* keys came from JSON strings: valid UTF-8, possibly with U+0000, so the length-aware setter */
        json_object_setn_new(values, kvs[i].key, kvs[i].key_len,
                             kvs[i].value != NULL ? value_json(kvs[i].value, kvs[i].value_len) : json_null());
        free((void *)kvs[i].value);
    }
    parties_respond_json(req, 200, json_pack("{s:o}", "values", values));
}

static void do_put_many(party_room_t *room, party_request_t *req, json_t *map)
{
    size_t n = json_object_size(map);
    if (n > PARTY_BATCH_MAX) {
        error(req, 400, "a batch has at most 128 keys");
        return;
    }
    party_kv_t kvs[PARTY_BATCH_MAX];
    size_t i = 0;
    const char *key;
    size_t key_len;
    json_t *v;
    json_object_keylen_foreach(map, key, key_len, v)
    {
        if (string_arg(v, (const char **)&kvs[i].value, &kvs[i].value_len) != 0) {
            error(req, 400, "\"put\" maps keys to strings");
            return;
        }
        kvs[i].key = key;
        kvs[i].key_len = key_len;
        ++i;
    }
    if (storage_error(req, party_storage_put_many(room, kvs, n)))
        return;
    parties_respond_json(req, 200, json_pack("{s:I}", "put", (json_int_t)n));
}

static void do_delete_many(party_room_t *room, party_request_t *req, const json_t *keys)
{
    party_kv_t kvs[PARTY_BATCH_MAX];
    size_t n;
    if (keys_arg(req, keys, kvs, &n, "\"delete\" is an array of strings") != 0)
        return;
    int r = party_storage_delete_many(room, kvs, n);
    if (r < 0) {
        storage_error(req, r);
        return;
    }
    parties_respond_json(req, 200, json_pack("{s:i}", "deleted", r));
}

typedef struct st_txn_t {
    const json_t *ops;
    size_t failed_at;
    int status; /* why it failed: 409 a check, 400 a malformed op, 413/500 storage */
    const char *why;
} txn_t;

static int run_ops(party_room_t *room, void *arg)
{
    txn_t *t = arg;
    for (size_t i = 0; i < json_array_size(t->ops); ++i) {
        const json_t *op = json_array_get(t->ops, i);
        const char *name = json_string_value(json_object_get(op, "op")), *key, *val = NULL;
        size_t klen, vlen = 0;
        t->failed_at = i;
        if (name == NULL || string_arg(json_object_get(op, "key"), &key, &klen) != 0) {
            t->status = 400;
            t->why = "each op needs \"op\" and a string \"key\"";
            return -1;
        }
        int r = 0;
        if (strcmp(name, "put") == 0) {
            if (string_arg(json_object_get(op, "value"), &val, &vlen) != 0) {
                t->status = 400;
                t->why = "put needs a string \"value\"";
                return -1;
            }
            r = party_storage_put(room, key, klen, val, vlen);
        } else if (strcmp(name, "delete") == 0) {
            r = party_storage_delete(room, key, klen);
        } else if (strcmp(name, "check") == 0) {
            const json_t *want = json_object_get(op, "value");
            void *have;
            size_t hlen;
            r = party_storage_get(room, key, klen, &have, &hlen);
            int ok;
            if (r == -ENOENT) {
                ok = json_is_null(want);
                r = 0;
            } else if (r == 0) {
                ok = json_is_string(want) && json_string_length(want) == hlen && memcmp(json_string_value(want), have, hlen) == 0;
                free(have);
            } else {
                ok = 0;
            }
            if (r == 0 && !ok) {
                t->status = 409;
                t->why = "check failed";
                return -1;
            }
        } else {
            t->status = 400;
            t->why = "op is put, delete or check";
            return -1;
        }
        if (r < 0) {
            t->status = r == -EMSGSIZE ? 413 : r == -EINVAL ? 400 : 500;
            t->why = r == -EMSGSIZE ? "a key is longer than 2048 bytes, or a value larger than 128 KiB" : "storage refused the op";
            return -1;
        }
    }
    return 0;
}

static void do_post(party_room_t *room, party_request_t *req)
{
    size_t len;
    const char *body = party_request_body(req, &len);
    json_error_t jerr;
    json_t *m = json_loadb(body, len, JSON_ALLOW_NUL, &jerr);
    if (!json_is_object(m) || json_object_size(m) != 1) {
        json_decref(m);
        error(req, 400, "the body is a JSON object with one of \"get\", \"put\", \"delete\", \"ops\"");
        return;
    }
    json_t *v;
    if (json_is_array(v = json_object_get(m, "get"))) {
        do_get_many(room, req, v);
    } else if (json_is_object(v = json_object_get(m, "put"))) {
        do_put_many(room, req, v);
    } else if (json_is_array(v = json_object_get(m, "delete"))) {
        do_delete_many(room, req, v);
    } else if (json_is_array(v = json_object_get(m, "ops"))) {
        txn_t t = {.ops = v};
        if (party_storage_transaction(room, run_ops, &t) != 0)
            parties_respond_json(req, t.status, json_pack("{s:s, s:I}", "error", t.why, "index", (json_int_t)t.failed_at));
        else
            parties_respond_json(req, 200, json_pack("{s:b}", "ok", 1));
    } else {
        error(req, 400, "the body is a JSON object with one of \"get\", \"put\", \"delete\", \"ops\"");
    }
    json_decref(m);
}

static void kv_on_request(party_room_t *room, party_request_t *req)
{
    const char *method = party_request_method(req);
    if (strcmp(method, "GET") == 0)
        do_get(room, req);
    else if (strcmp(method, "PUT") == 0)
        do_put(room, req);
    else if (strcmp(method, "DELETE") == 0)
        do_delete(room, req);
    else if (strcmp(method, "POST") == 0)
        do_post(room, req);
    else {
        party_response_header(req, "allow", "GET, PUT, DELETE, POST");
        error(req, 405, "method not allowed");
    }
}

static void kv_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    (void)room, (void)data, (void)len, (void)binary;
    static const char err[] = "{\"type\":\"error\",\"error\":\"kv rooms are used over HTTP\"}";
    party_send(conn, err, sizeof(err) - 1, 0);
}

const party_t party_kv = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "kv",
    .on_message = kv_on_message,
    .on_request = kv_on_request,
};
