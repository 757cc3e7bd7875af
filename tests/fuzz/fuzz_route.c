/*
 * fuzz_route.c — PartyKit's URL scheme and `_pk` decoding on any request target: spans stay inside the input, a
 * parsed room obeys the name rules, a decoded parameter fits its buffer.
 */
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "route.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *p, size_t len, const char *base, size_t size)
{
    if (len != 0 && (p < base || p + len > base + size))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    route_t r;
    route_parse(&r, s, size, "parties");
    inside(r.path, r.path_len, s, size);
    inside(r.query, r.query_len, s, size);
    if (r.kind == ROUTE_ROOM) {
        if (r.party != NULL && strcmp(r.party, "main") != 0)
            inside(r.party, r.party_len, s, size);
        inside(r.room, r.room_len, s, size);
        if (!names_party_valid(r.party, r.party_len) || r.room_len == 0 || r.room_len > ROUTE_ROOM_MAX ||
            !base_utf8_valid(r.room, r.room_len) || memchr(r.room, '/', r.room_len) != NULL)
            abort();
    }
    if (r.kind == ROUTE_BAD && r.error == NULL)
        abort();
    char out[ROUTE_ID_MAX + 1];
    long n = route_query_param(r.query, r.query_len, "_pk", out, sizeof(out));
    if (n >= 0 && ((size_t)n >= sizeof(out) || out[n] != '\0'))
        abort();
    return 0;
}
