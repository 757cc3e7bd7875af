/*
 * example_json.h — what typed_chat.c and collab.c both need to speak a JSON protocol to partysocket clients: numbers
 * written as JavaScript writes them, one message sent to a connection or the room, an error to its sender, the strict
 * member check and the control-character check of their validation, and reading a client's message as an object. Written once here so the two examples stay about
 * their own rooms; each function is static inline, so a module that includes this file exports nothing more.
 *
 * Everything here runs inside a party callback, on its room's loop (party.h); nothing keeps state. jansson's objects
 * passed to example_send are consumed; the others are borrowed.
 */
#ifndef PARTYD_EXAMPLE_JSON_H
#define PARTYD_EXAMPLE_JSON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "party.h"

/* Numbers go out as JavaScript writes them: an integral value without ".0", any other in the fewest significant digits
 * that read back as the same double (jansson's default of 17 writes 0.1 as 0.10000000000000001). */
static inline json_t *example_number(double d)
{
    if (d >= -9007199254740992.0 && d <= 9007199254740992.0 && d == (double)(json_int_t)d)
        return json_integer((json_int_t)d);
    return json_real(d);
}

/* The significant digits `d` needs to read back as itself (1..17): the precision to dump a message with. */
static inline int example_digits(double d)
{
    char buf[32];
    for (int p = 1; p < 17; ++p) {
        snprintf(buf, sizeof(buf), "%.*g", p, d);
        if (strtod(buf, NULL) == d)
            return p;
    }
    return 17;
}

/* Sends `msg` (consumed) to `conn`, or to the room but `except` when conn is NULL. `digits` is what the reals in it
 * need (example_digits), 0 when it has none. */
static inline void example_send(party_room_t *room, party_conn_t *conn, json_t *msg, party_conn_t *except, int digits)
{
    char *text = json_dumps(msg, JSON_COMPACT | JSON_REAL_PRECISION(digits));
    json_decref(msg);
    if (text == NULL) {
        party_log(room, 0, "cannot encode a message");
        return;
    }
    int r;
    if (conn != NULL) {
        r = party_send(conn, text, strlen(text), 0);
    } else {
        const char *ids[1] = {except != NULL ? party_conn_id(except) : NULL};
        r = party_broadcast(room, text, strlen(text), 0, ids, except != NULL ? 1 : 0);
    }
    /* a client that is gone (-ENOTCONN) is not worth a line; anything else is a bug or a limit worth knowing */
    if (r != 0 && r != -ENOTCONN)
        party_log(room, 1, "cannot send a %zu-byte message: %s", strlen(text), strerror(-r));
    free(text);
}

/* {"type":"error","error":WHY} to the sender alone. */
static inline void example_error(party_room_t *room, party_conn_t *conn, const char *why)
{
    example_send(room, conn, json_pack("{s:s, s:s}", "type", "error", "error", why), NULL, 0);
}

/* The client's message as a JSON object (the caller owns it: json_decref); NULL after telling the sender why: a binary
 * frame, over `max` bytes (refused unparsed), not JSON as `flags` (json_loadb) reads it, or not an object. */
static inline json_t *example_parse(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary, size_t max,
                                    size_t flags)
{
    char why[200];
    if (binary) {
        example_error(room, conn, "binary messages are not supported; send JSON text");
        return NULL;
    }
    if (len > max) {
        snprintf(why, sizeof(why), "message too large: at most %zu bytes", max);
        example_error(room, conn, why);
        return NULL;
    }
    json_error_t jerr;
    json_t *m = json_loadb(data, len, flags, &jerr);
    if (m == NULL) {
        snprintf(why, sizeof(why), "invalid JSON: %s", jerr.text);
        example_error(room, conn, why);
        return NULL;
    }
    if (!json_is_object(m)) {
        example_error(room, conn, "a message must be a JSON object");
        json_decref(m);
        return NULL;
    }
    return m;
}

/* The first member of `m` that is not "type" or one of `allowed` (NULL-terminated), or NULL. */
static inline const char *example_extra_member(json_t *m, const char *const *allowed)
{
    const char *key;
    json_t *v;
    json_object_foreach(m, key, v)
    {
        const char *const *a = allowed;
        if (strcmp(key, "type") == 0)
            continue;
        while (*a != NULL && strcmp(*a, key) != 0)
            ++a;
        if (*a == NULL)
            return key;
    }
    return NULL;
}

/* Whether valid UTF-8 holds a control character: C0, DEL or C1 (U+0080..U+009F, encoded C2 80..C2 9F); tab, LF and
 * CR excepted when `multiline`. */
static inline int example_has_control(const char *s, size_t len, int multiline)
{
    for (size_t i = 0; i < len; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && !(multiline && (c == '\t' || c == '\n' || c == '\r')))
            return 1;
        if (c == 0x7f || (c == 0xc2 && i + 1 < len && (unsigned char)s[i + 1] < 0xa0))
            return 1;
    }
    return 0;
}

#endif
