/*
 * json.c — party.h's JSON writer and string escaping: what a party uses instead of building JSON with printf (where a
 * client's id with a quote in it breaks the text, or worse). Pure functions of their arguments and the writer; no
 * room state, so the edge hooks (in the router process) may use them too.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"

#define JSON_DEPTH_MAX 64

struct st_party_json_t {
    char *buf;
    size_t len, cap;
    int error;
    int depth;
    /* per level: 'o' object, 'a' array; whether a value was written (a comma is due); in an object, whether the key
     * for the next value was written */
    char kind[JSON_DEPTH_MAX + 1];
    unsigned char count[JSON_DEPTH_MAX + 1];
    unsigned char keyed[JSON_DEPTH_MAX + 1];
    int done; /* a whole value was written at the top */
};

/* The length of the well-formed UTF-8 sequence at s (1-4), or 0 if the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned min;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; ++i) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Calls put(arg, bytes, n) for each piece of the escaped form of s. */
static void escape(const void *src, size_t len, void (*put)(void *arg, const char *p, size_t n), void *arg)
{
    const unsigned char *s = src;
    size_t i = 0, run = 0; /* bytes s[i - run, i) that need no escape, not yet put */
    while (i < len) {
        unsigned char c = s[i];
        const char *esc = NULL;
        char u[8];
        size_t n = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c == '\b')
            esc = "\\b";
        else if (c == '\f')
            esc = "\\f";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof(u), "\\u%04x", c);
            esc = u;
        } else if (c >= 0x80 && (n = utf8_seq(s + i, len - i)) == 0) {
            esc = "\\ufffd";
            n = 1;
        }
        if (esc == NULL) {
            i += n;
            run += n;
            continue;
        }
        if (run > 0)
            put(arg, (const char *)s + i - run, run);
        run = 0;
        put(arg, esc, strlen(esc));
        i += n;
    }
    if (run > 0)
        put(arg, (const char *)s + i - run, run);
}

typedef struct {
    char *out;
    size_t cap, len;
} fixed_t;

static void put_fixed(void *arg, const char *p, size_t n)
{
    fixed_t *f = arg;
    if (f->len < f->cap) {
        size_t room = f->cap - f->len;
        memcpy(f->out + f->len, p, n < room ? n : room);
    }
    f->len += n;
}

size_t party_json_escape(char *out, size_t cap, const void *s, size_t len)
{
    /* the last byte of out is kept for the NUL */
    fixed_t f = {.out = out, .cap = cap > 0 ? cap - 1 : 0};
    escape(s, len, put_fixed, &f);
    if (cap > 0)
        out[f.len < cap - 1 ? f.len : cap - 1] = '\0';
    return f.len;
}

/* ---- the writer ---- */

static void put(void *arg, const char *p, size_t n)
{
    party_json_t *j = arg;
    if (j->error != 0)
        return;
    if (j->len + n + 1 > j->cap) {
        size_t cap = j->cap * 2;
        while (cap < j->len + n + 1)
            cap *= 2;
        char *b = realloc(j->buf, cap);
        if (b == NULL) {
            j->error = -ENOMEM;
            return;
        }
        j->buf = b;
        j->cap = cap;
    }
    memcpy(j->buf + j->len, p, n);
    j->len += n;
    j->buf[j->len] = '\0';
}

party_json_t *party_json_new(void)
{
    party_json_t *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->cap = 256;
    if ((j->buf = malloc(j->cap)) == NULL) {
        free(j);
        return NULL;
    }
    j->buf[0] = '\0';
    return j;
}

void party_json_free(party_json_t *j)
{
    if (j == NULL)
        return;
    free(j->buf);
    free(j);
}

/* A value is about to be written: 0 if one may be here (the comma written), else the writer fails. */
static int value_due(party_json_t *j)
{
    if (j->error != 0)
        return -1;
    if (j->depth == 0) {
        if (j->done) {
            j->error = -EINVAL; /* a second value at the top */
            return -1;
        }
        return 0;
    }
    int d = j->depth;
    if (j->kind[d] == 'o') {
        if (!j->keyed[d]) {
            j->error = -EINVAL; /* a value without its key */
            return -1;
        }
        j->keyed[d] = 0;
        return 0;
    }
    if (j->count[d])
        put(j, ",", 1);
    j->count[d] = 1;
    return 0;
}

/* A whole value was written at the current level. */
static void value_done(party_json_t *j)
{
    if (j->depth == 0)
        j->done = 1;
}

static void begin(party_json_t *j, char kind)
{
    if (value_due(j) != 0)
        return;
    if (j->depth == JSON_DEPTH_MAX) {
        j->error = -E2BIG;
        return;
    }
    ++j->depth;
    j->kind[j->depth] = kind;
    j->count[j->depth] = 0;
    j->keyed[j->depth] = 0;
    put(j, kind == 'o' ? "{" : "[", 1);
}

void party_json_object(party_json_t *j)
{
    begin(j, 'o');
}

void party_json_array(party_json_t *j)
{
    begin(j, 'a');
}

void party_json_end(party_json_t *j)
{
    if (j->error != 0)
        return;
    if (j->depth == 0 || (j->kind[j->depth] == 'o' && j->keyed[j->depth])) {
        j->error = -EINVAL; /* nothing open, or a key without its value */
        return;
    }
    put(j, j->kind[j->depth] == 'o' ? "}" : "]", 1);
    --j->depth;
    value_done(j);
}

void party_json_key(party_json_t *j, const char *key)
{
    if (j->error != 0)
        return;
    int d = j->depth;
    if (d == 0 || j->kind[d] != 'o' || j->keyed[d] || key == NULL) {
        j->error = -EINVAL;
        return;
    }
    if (j->count[d])
        put(j, ",", 1);
    j->count[d] = 1;
    put(j, "\"", 1);
    escape(key, strlen(key), put, j);
    put(j, "\":", 2);
    j->keyed[d] = 1;
}

void party_json_strn(party_json_t *j, const void *s, size_t len)
{
    if (s == NULL && len != 0) {
        j->error = j->error != 0 ? j->error : -EINVAL;
        return;
    }
    if (value_due(j) != 0)
        return;
    put(j, "\"", 1);
    escape(s != NULL ? s : "", len, put, j);
    put(j, "\"", 1);
    value_done(j);
}

void party_json_str(party_json_t *j, const char *s)
{
    if (s == NULL) {
        party_json_null(j);
        return;
    }
    party_json_strn(j, s, strlen(s));
}

static void scalar(party_json_t *j, const char *text, size_t len)
{
    if (value_due(j) != 0)
        return;
    put(j, text, len);
    value_done(j);
}

void party_json_int(party_json_t *j, long long v)
{
    char b[32];
    int n = snprintf(b, sizeof(b), "%lld", v);
    scalar(j, b, (size_t)n);
}

void party_json_double(party_json_t *j, double v)
{
    if (!isfinite(v)) {
        scalar(j, "null", 4);
        return;
    }
    /* the shortest of %.15g .. %.17g that reads back as the same double */
    char b[40];
    int n = 0;
    for (int p = 15; p <= 17; ++p) {
        n = snprintf(b, sizeof(b), "%.*g", p, v);
        if (strtod(b, NULL) == v)
            break;
    }
    scalar(j, b, (size_t)n);
}

void party_json_bool(party_json_t *j, int v)
{
    scalar(j, v ? "true" : "false", v ? 4 : 5);
}

void party_json_null(party_json_t *j)
{
    scalar(j, "null", 4);
}

void party_json_raw(party_json_t *j, const void *json, size_t len)
{
    if (json == NULL || len == 0) {
        j->error = j->error != 0 ? j->error : -EINVAL;
        return;
    }
    scalar(j, json, len);
}

const char *party_json_text(party_json_t *j, size_t *len)
{
    if (j->error != 0 || j->depth != 0 || !j->done)
        return NULL;
    if (len != NULL)
        *len = j->len;
    return j->buf;
}

int party_json_error(const party_json_t *j)
{
    if (j->error != 0)
        return j->error;
    return j->depth != 0 || !j->done ? -EINVAL : 0;
}
