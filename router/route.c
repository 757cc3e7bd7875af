/*
 * route.c — where a request is routed: PartyKit's URL scheme (see route.h).
 */
#include "route.h"

#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "names.h"

/* Splits the segment that starts at `p` (after a '/'): returns its length. */
static size_t segment(const char *p, const char *end)
{
    const char *s = memchr(p, '/', (size_t)(end - p));
    return (size_t)((s != NULL ? s : end) - p);
}

void route_parse(route_t *r, const char *target, size_t len, const char *prefix)
{
    memset(r, 0, sizeof(*r));
    const char *q = memchr(target, '?', len);
    r->path = target;
    r->path_len = q != NULL ? (size_t)(q - target) : len;
    r->query = q != NULL ? q + 1 : "";
    r->query_len = q != NULL ? len - r->path_len - 1 : 0;

    const char *p = target, *end = target + r->path_len;
    if (p == end || *p != '/')
        return;
    ++p;
    size_t first = segment(p, end);
    size_t plen = strlen(prefix);
    int with_party;
    if (first == plen && memcmp(p, prefix, plen) == 0)
        with_party = 1;
    else if (first == 5 && memcmp(p, "party", 5) == 0)
        with_party = 0;
    else
        return;
    p += first;
    r->kind = ROUTE_BAD;
    if (with_party) {
        if (p == end || p + 1 == end) {
            r->error = "missing party name";
            return;
        }
        ++p;
        size_t n = segment(p, end);
        if (!names_party_valid(p, n)) {
            r->error = "bad party name: 1 to 64 of A-Z a-z 0-9 _ -";
            return;
        }
        r->party = p;
        r->party_len = n;
        p += n;
    } else {
        r->party = "main";
        r->party_len = 4;
    }
    if (p == end || p + 1 == end) {
        r->error = "missing room id";
        return;
    }
    ++p;
    size_t n = segment(p, end);
    if (!names_room_valid(p, n)) {
        r->error = "bad room id: 1 to 256 bytes of UTF-8 without control characters";
        return;
    }
    r->room = p;
    r->room_len = n;
    r->kind = ROUTE_ROOM;
}

/* Length of the valid UTF-8 sequence at s[0..len), or 0 when s starts an ill-formed one; then *bad is the length of
 * its maximal subpart (the bytes one U+FFFD replaces, as the WHATWG decoder counts them). */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t *bad)
{
    unsigned c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2;
        lo = c == 0xe0 ? 0xa0 : 0x80;
        hi = c == 0xed ? 0x9f : 0xbf;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3;
        lo = c == 0xf0 ? 0x90 : 0x80;
        hi = c == 0xf4 ? 0x8f : 0xbf;
    } else {
        *bad = 1;
        return 0;
    }
    for (size_t i = 1; i <= n; ++i) {
        if (i >= len || s[i] < lo || s[i] > hi) {
            *bad = i;
            return 0;
        }
        lo = 0x80, hi = 0xbf;
    }
    return n + 1;
}

long route_query_param(const char *query, size_t len, const char *name, char *out, size_t cap)
{
    long n = base_query_param(query, len, name, out, cap);
    if (n <= 0 || base_utf8_valid(out, (size_t)n))
        return n;
    /* URLSearchParams decodes the bytes as UTF-8 with replacement: "%ff" is U+FFFD, not an error */
    unsigned char *raw = xmalloc((size_t)n);
    memcpy(raw, out, (size_t)n);
    size_t o = 0;
    long result;
    for (size_t i = 0; i < (size_t)n;) {
        size_t bad = 0, ok = utf8_seq(raw + i, (size_t)n - i, &bad);
        size_t w = ok != 0 ? ok : 3;
        if (o + w > cap - 1) {
            result = -2;
            goto done;
        }
        if (ok != 0)
            memcpy(out + o, raw + i, ok);
        else
            memcpy(out + o, "\xef\xbf\xbd", 3);
        o += w;
        i += ok != 0 ? ok : bad;
    }
    out[o] = '\0';
    result = (long)o;
done:
    free(raw);
    return result;
}
