/*
 * route.c — where a request is routed: PartyKit's URL scheme (see route.h).
 */
#include "route.h"

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

long route_query_param(const char *query, size_t len, const char *name, char *out, size_t cap)
{
    return base_query_param(query, len, name, out, cap);
}
