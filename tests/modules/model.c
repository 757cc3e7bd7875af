/*
 * model.c — a test party for the model test of the storage API (tests/integration/model.test.mjs, modellib.mjs):
 * it runs the storage operations a POST names and answers what each returned, so a driver can check every result
 * against an in-memory model of party.h's semantics.
 *
 * The body is one operation per line, words separated by single spaces; keys and values are hex ("." is the empty
 * value, "-" an absent one), so any byte can be tested. One answer line per operation, in order:
 *
 *   get K                      → ok V | err -2
 *   put K V                    → ok 0
 *   del K                      → ok 1 | ok 0
 *   getm K...                  → ok V|- ...            (party_storage_get_many)
 *   putm K V K V...            → ok 0
 *   delm K...                  → ok N
 *   list P S E LIMIT REV       → ok N K=V K=V ...      (P, S, E: "-" for NULL; REV 0 or 1)
 *   listw P S E LIMIT REV      → as list, and for each 1-byte key listed the callback puts KEY 00 = 77 (a listing
 *                                 sees its own writes past the current key, party.h says)
 *   delall                     → ok N
 *   aset MS | aget | adel      → ok 0 | ok MS / err -2 | ok 0
 *   begin ... commit|abort     → the inner lines' answers, then "tx R" with the transaction's value (0 or 1); a
 *                                 begin inside runs nested; "abort" makes the function return 1 (rolled back)
 *
 * An error that is not the operation's own answer is "err N" with the negative errno. The whole request is one
 * event, so its writes commit together (or, when the commit fails, not at all: the answer is then partyd's 500).
 *
 * on_alarm records what it saw in the room's storage, under the key "~fired": "COUNT/RC", RC being what
 * party_alarm_get returned inside on_alarm (-2: the alarm is cleared before on_alarm runs, as party.h says).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"

#define FIRED_KEY "~fired"

typedef struct st_out_t {
    char *buf;
    size_t len, cap;
} out_t;

static void out_add(out_t *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        o->cap = (o->len + n + 1) * 2;
        if ((o->buf = realloc(o->buf, o->cap)) == NULL)
            abort();
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_str(out_t *o, const char *s)
{
    out_add(o, s, strlen(s));
}

static void out_fmt(out_t *o, const char *fmt, long v)
{
    char b[48];
    int n = snprintf(b, sizeof(b), fmt, v);
    out_add(o, b, (size_t)n);
}

static void out_hex(out_t *o, const void *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    if (n == 0) {
        out_str(o, ".");
        return;
    }
    const unsigned char *b = p;
    for (size_t i = 0; i < n; ++i) {
        char h[2] = {digits[b[i] >> 4], digits[b[i] & 15]};
        out_add(o, h, 2);
    }
}

/* Decodes a hex word in place (into its own bytes); "." is empty. Returns the length, or -1 when malformed. */
static long unhex(char *w)
{
    if (strcmp(w, ".") == 0)
        return 0;
    size_t n = strlen(w);
    if (n % 2 != 0)
        return -1;
    for (size_t i = 0; i < n / 2; ++i) {
        unsigned v;
        if (sscanf(w + 2 * i, "%2x", &v) != 1)
            return -1;
        w[i] = (char)v;
    }
    return (long)(n / 2);
}

/* The words of the request, split in place. */
typedef struct st_words_t {
    char **w;
    size_t n;
} words_t;

typedef struct st_run_t {
    char **lines;
    size_t nlines, pos;
    out_t *out;
} run_t;

static int run_lines(party_room_t *room, run_t *run);

static int tx_fn(party_room_t *room, void *arg)
{
    return run_lines(room, arg);
}

static size_t split(char *line, char **w, size_t cap)
{
    size_t n = 0;
    for (char *s = strtok(line, " "); s != NULL && n < cap; s = strtok(NULL, " "))
        w[n++] = s;
    return n;
}

typedef struct st_listing_t {
    party_room_t *room;
    out_t *out;
    int write;
} listing_t;

static int list_cb(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    listing_t *l = arg;
    out_t *o = l->out;
    if (l->write && key_len == 1) {
        char k[2] = {*(const char *)key, 0};
        party_storage_put(l->room, k, 2, "\x77", 1);
    }
    out_str(o, " ");
    out_hex(o, key, key_len);
    out_str(o, "=");
    out_hex(o, value, value_len);
    return 0;
}

/* Fills kvs from words (keys, or key value pairs); returns the count or -EINVAL. */
static long parse_kvs(char **w, size_t n, party_kv_t *kvs, int with_values)
{
    size_t step = with_values ? 2 : 1, k = 0;
    if (n % step != 0 || n / step > PARTY_BATCH_MAX)
        return -EINVAL;
    for (size_t i = 0; i < n; i += step, ++k) {
        long kl = unhex(w[i]);
        if (kl < 0)
            return -EINVAL;
        kvs[k] = (party_kv_t){.key = w[i], .key_len = (size_t)kl};
        if (with_values) {
            long vl = unhex(w[i + 1]);
            if (vl < 0)
                return -EINVAL;
            kvs[k].value = w[i + 1];
            kvs[k].value_len = (size_t)vl;
        }
    }
    return (long)k;
}

static void op(party_room_t *room, char **w, size_t n, out_t *o)
{
    const char *name = w[0];
    long r = -EINVAL;
    party_kv_t kvs[PARTY_BATCH_MAX];
    if (strcmp(name, "get") == 0 && n == 2) {
        long kl = unhex(w[1]);
        void *v;
        size_t vl;
        if (kl >= 0 && (r = party_storage_get(room, w[1], (size_t)kl, &v, &vl)) == 0) {
            out_str(o, "ok ");
            out_hex(o, v, vl);
            out_str(o, "\n");
            free(v);
            return;
        }
    } else if (strcmp(name, "put") == 0 && n == 3) {
        long kl = unhex(w[1]), vl = unhex(w[2]);
        if (kl >= 0 && vl >= 0)
            r = party_storage_put(room, w[1], (size_t)kl, w[2], (size_t)vl);
    } else if (strcmp(name, "del") == 0 && n == 2) {
        long kl = unhex(w[1]);
        if (kl >= 0)
            r = party_storage_delete(room, w[1], (size_t)kl);
    } else if (strcmp(name, "getm") == 0) {
        long k = parse_kvs(w + 1, n - 1, kvs, 0);
        if (k >= 0 && (r = party_storage_get_many(room, kvs, (size_t)k)) == 0) {
            out_str(o, "ok");
            for (long i = 0; i < k; ++i) {
                out_str(o, " ");
                if (kvs[i].value == NULL)
                    out_str(o, "-");
                else
                    out_hex(o, kvs[i].value, kvs[i].value_len);
                free((void *)kvs[i].value);
            }
            out_str(o, "\n");
            return;
        }
    } else if (strcmp(name, "putm") == 0) {
        long k = parse_kvs(w + 1, n - 1, kvs, 1);
        if (k >= 0)
            r = party_storage_put_many(room, kvs, (size_t)k);
    } else if (strcmp(name, "delm") == 0) {
        long k = parse_kvs(w + 1, n - 1, kvs, 0);
        if (k >= 0)
            r = party_storage_delete_many(room, kvs, (size_t)k);
    } else if ((strcmp(name, "list") == 0 || strcmp(name, "listw") == 0) && n == 6) {
        party_list_t l = {.limit = strtoul(w[4], NULL, 10), .reverse = atoi(w[5])};
        long pl = strcmp(w[1], "-") ? unhex(w[1]) : 0, sl = strcmp(w[2], "-") ? unhex(w[2]) : 0,
             el = strcmp(w[3], "-") ? unhex(w[3]) : 0;
        if (pl >= 0 && sl >= 0 && el >= 0) {
            l.prefix = strcmp(w[1], "-") ? w[1] : NULL, l.prefix_len = (size_t)pl;
            l.start = strcmp(w[2], "-") ? w[2] : NULL, l.start_len = (size_t)sl;
            l.end = strcmp(w[3], "-") ? w[3] : NULL, l.end_len = (size_t)el;
            out_t items = {0};
            out_str(&items, "");
            listing_t li = {room, &items, name[4] == 'w'};
            if ((r = party_storage_list(room, &l, list_cb, &li)) >= 0) {
                out_fmt(o, "ok %ld", r);
                out_str(o, items.buf);
                out_str(o, "\n");
                free(items.buf);
                return;
            }
            free(items.buf);
        }
    } else if (strcmp(name, "delall") == 0) {
        r = party_storage_delete_all(room);
    } else if (strcmp(name, "aset") == 0 && n == 2) {
        r = party_alarm_set(room, strtoull(w[1], NULL, 10));
    } else if (strcmp(name, "aget") == 0) {
        uint64_t at;
        if ((r = party_alarm_get(room, &at)) == 0) {
            char b[32];
            snprintf(b, sizeof(b), "ok %" PRIu64 "\n", at);
            out_str(o, b);
            return;
        }
    } else if (strcmp(name, "adel") == 0) {
        r = party_alarm_delete(room);
    }
    out_fmt(o, r >= 0 ? "ok %ld\n" : "err %ld\n", r);
}

/* Runs lines from run->pos up to the end, or up to a "commit" (returns 0) or "abort" (returns 1). */
static int run_lines(party_room_t *room, run_t *run)
{
    while (run->pos < run->nlines) {
        char *line = run->lines[run->pos++];
        if (strcmp(line, "commit") == 0)
            return 0;
        if (strcmp(line, "abort") == 0)
            return 1;
        if (strcmp(line, "begin") == 0) {
            int r = party_storage_transaction(room, tx_fn, run);
            out_fmt(run->out, "tx %ld\n", r);
            continue;
        }
        char *w[2 * PARTY_BATCH_MAX + 2];
        size_t n = split(line, w, sizeof(w) / sizeof(w[0]));
        if (n != 0)
            op(room, w, n, run->out);
    }
    return 0;
}

static void on_request(party_room_t *room, party_request_t *req)
{
    if (strcmp(party_request_method(req), "POST") != 0) {
        party_respond(req, 405, "text/plain", "POST ops\n", 9);
        return;
    }
    size_t len;
    const char *body = party_request_body(req, &len);
    char *text = malloc(len + 1);
    if (text == NULL)
        abort();
    memcpy(text, body, len);
    text[len] = '\0';
    size_t nlines = 0, cap = 16;
    char **lines = malloc(cap * sizeof(*lines));
    for (char *save, *l = strtok_r(text, "\n", &save); l != NULL; l = strtok_r(NULL, "\n", &save)) {
        if (nlines == cap && (lines = realloc(lines, (cap *= 2) * sizeof(*lines))) == NULL)
            abort();
        lines[nlines++] = l;
    }
    out_t out = {0};
    out_str(&out, "");
    run_t run = {.lines = lines, .nlines = nlines, .out = &out};
    run_lines(room, &run);
    party_respond(req, 200, "text/plain", out.buf, out.len);
    free(out.buf);
    free(lines);
    free(text);
}

static int on_alarm(party_room_t *room)
{
    uint64_t at;
    int rc = party_alarm_get(room, &at);
    void *v = NULL;
    size_t vl;
    long count = 0;
    if (party_storage_get(room, FIRED_KEY, strlen(FIRED_KEY), &v, &vl) == 0)
        count = strtol(v, NULL, 10);
    free(v);
    char rec[64];
    int n = snprintf(rec, sizeof(rec), "%ld/%d", count + 1, rc);
    return party_storage_put(room, FIRED_KEY, strlen(FIRED_KEY), rec, (size_t)n) == 0 ? 0 : 1;
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "model",
    .on_request = on_request,
    .on_alarm = on_alarm,
};
