/*
 * fetcher.c — a test party (tests/integration/modules.test.mjs) that calls other rooms with party_fetch.
 *
 *   GET ?party=P&room=R[&path=/sub?q][&method=M][&body=B]
 *        → fetches P/R, then answers the held request with
 *          {"status": the answer's status, "echo": its x-echo header or null, "type": its content type, "body": its
 *          body as a string}; a party_fetch that fails at once → 500 {"fetch": <the negative errno>}
 *   WebSocket message "P R PATH" → fetches, then sends {"status","body"} to that connection if it is still open
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"

typedef struct st_pending_t {
    party_request_t *req; /* the request to answer, or NULL */
    char conn_id[130];    /* else the connection to tell */
    struct st_pending_t *next, **prev; /* in the room's list (its data): freed in on_stop if never answered */
} pending_t;

static pending_t *pending_new(party_room_t *room)
{
    pending_t *p = calloc(1, sizeof(*p)), *head = party_room_data(room);
    p->next = head;
    if (head != NULL)
        head->prev = &p->next;
    p->prev = NULL;
    party_room_set_data(room, p);
    return p;
}

static void pending_free(party_room_t *room, pending_t *p)
{
    if (p->next != NULL)
        p->next->prev = p->prev;
    if (p->prev != NULL)
        *p->prev = p->next;
    else
        party_room_set_data(room, p->next);
    free(p);
}

/* A fetch still waiting when the room stops is dropped: its callback never runs (party.h), its arg is ours to free. */
static void on_stop(party_room_t *room)
{
    while (party_room_data(room) != NULL)
        pending_free(room, party_room_data(room));
}

static void put_json_str(char *out, size_t cap, const char *s, size_t len)
{
    size_t n = 0;
    out[n++] = '"';
    for (size_t i = 0; i < len && n + 8 < cap; ++i) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
}

static void on_answer(party_room_t *room, void *arg, const party_fetch_t *res)
{
    pending_t *p = arg;
    size_t len;
    const char *body = party_fetch_body(res, &len);
    size_t cap = 6 * len + 1024;
    char *out = malloc(cap), *b = malloc(cap), echo[64] = "null", type[300] = "null";
    put_json_str(b, cap, body, len);
    const char *h = party_fetch_header(res, "x-echo");
    if (h != NULL)
        put_json_str(echo, sizeof(echo), h, strlen(h));
    h = party_fetch_header(res, "content-type");
    if (h != NULL)
        put_json_str(type, sizeof(type), h, strlen(h));
    int n = snprintf(out, cap, "{\"status\":%d,\"echo\":%s,\"type\":%s,\"body\":%s}", party_fetch_status(res), echo, type, b);
    if (p->req != NULL) {
        party_respond(p->req, 200, "application/json", out, (size_t)n);
    } else {
        party_conn_t *c = party_room_connection(room, p->conn_id);
        if (c != NULL)
            party_send(c, out, (size_t)n, 0);
    }
    free(out);
    free(b);
    pending_free(room, p);
}

static void on_request(party_room_t *room, party_request_t *req)
{
    char party[80], target[300], path[1024], method[20], body[4096];
    if (party_request_query_param(req, "party", party, sizeof(party)) < 0 ||
        party_request_query_param(req, "room", target, sizeof(target)) < 0) {
        party_respond(req, 400, "text/plain", "party and room", 14);
        return;
    }
    long pl = party_request_query_param(req, "path", path, sizeof(path));
    long ml = party_request_query_param(req, "method", method, sizeof(method));
    long bl = party_request_query_param(req, "body", body, sizeof(body));
    pending_t *p = pending_new(room);
    p->req = req;
    const char *headers[] = {"x-user", "fetcher", "x-partyd-from", "forged-by-the-party", NULL};
    int r = party_fetch(room, party, target, ml > 0 ? method : NULL, pl >= 0 ? path : NULL, headers, bl > 0 ? body : NULL,
                        bl > 0 ? (size_t)bl : 0, on_answer, p);
    if (r != 0) {
        pending_free(room, p);
        char out[64];
        int n = snprintf(out, sizeof(out), "{\"fetch\":%d}", r);
        party_respond(req, 500, "application/json", out, (size_t)n);
    }
}

static void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    char msg[1024], party[80], target[300], path[600] = "";
    if (binary || len >= sizeof(msg))
        return;
    memcpy(msg, data, len);
    msg[len] = '\0';
    if (sscanf(msg, "%79s %299s %599s", party, target, path) < 2)
        return;
    pending_t *p = pending_new(room);
    snprintf(p->conn_id, sizeof(p->conn_id), "%s", party_conn_id(conn));
    if (party_fetch(room, party, target, NULL, path, NULL, NULL, 0, on_answer, p) != 0)
        pending_free(room, p);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "fetcher",
    .on_request = on_request,
    .on_message = on_message,
    .on_stop = on_stop,
};
