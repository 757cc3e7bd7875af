/*
 * route.h — PartyKit's URL scheme, parsed without h2o so it can be unit-tested and fuzzed:
 *
 *   /<prefix>/:party/:room[/sub/path][?query]     prefix defaults to "parties"
 *   /party/:room[/sub/path][?query]               the party "main"
 *
 * The room id is the raw path segment, still percent-encoded ("%41" and "A" are different rooms): 1–256 bytes of
 * valid UTF-8 without control characters. A party name is 1–64 of [A-Za-z0-9_-]. The connection id is the first
 * `_pk` query value decoded as URLSearchParams does ('+' is a space, %XX decoded, a malformed escape kept as is).
 *
 * Pure functions: no loop, no allocation, no global state; callable from any thread.
 */
#ifndef PARTYD_ROUTE_H
#define PARTYD_ROUTE_H

#include <stddef.h>

#include "base.h"
#include "names.h"

#define ROUTE_PARTY_MAX BASE_PARTY_MAX
#define ROUTE_ROOM_MAX BASE_ROOM_MAX
#define ROUTE_ID_MAX 128

typedef enum {
    ROUTE_NONE = 0, /* not a room path */
    ROUTE_ROOM,     /* a room path, parsed */
    ROUTE_BAD,      /* a room path with a bad party or room name: answer 400 with `error` */
} route_kind_t;

typedef struct st_route_t {
    route_kind_t kind;
    const char *party; /* into the path, or the literal "main" */
    size_t party_len;
    const char *room; /* into the path */
    size_t room_len;
    const char *path; /* the whole path without the query */
    size_t path_len;
    const char *query; /* after '?', or "" */
    size_t query_len;
    const char *error; /* for ROUTE_BAD: a static message */
} route_t;

/* Parses a raw request target (path and query) against the URL scheme with this prefix. *r points into `target`
 * (and at static strings), so it is valid while `target` is. Cannot fail: a bad name is r->kind == ROUTE_BAD. */
void route_parse(route_t *r, const char *target, size_t len, const char *prefix);

/* Finds the first `name` parameter of a query string and decodes it into out[0..cap) (NUL-terminated).
 * Returns its decoded length, -1 when the parameter is absent, -2 when the decoded value needs more than cap - 1 bytes. */
long route_query_param(const char *query, size_t len, const char *name, char *out, size_t cap);

#endif
