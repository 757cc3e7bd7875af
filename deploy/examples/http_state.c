/*
 * http_state.c — an example party: the seed's MyRoom. A room whose state is one JSON object, read and replaced over
 * HTTP, with every WebSocket client told of each change.
 *
 * It shows: on_request answering by method; one storage key read or written per request; an HTTP request that
 * broadcasts to the room's sockets (released once the write is on disk), made one with its write by
 * party_storage_transaction, so that a state no socket could be sent is not stored either.
 *
 * HTTP (/parties/PARTY/ROOM):
 *   GET              200 application/json: the stored state, or null when there is none
 *   POST {...}       the body, a JSON object of at most 128 KiB without a "type" member, becomes the state:
 *                    stored, broadcast as {"type":"state-updated",...body}, answered 200 text/plain "OK".
 *                    Not JSON, not an object, or with "type" (which would hide the message's own) → 400; larger, or
 *                    too large for a WebSocket message (limits.message_bytes) → 413, and nothing changes
 *   anything else    405 (Allow: GET, POST)
 *   Errors are JSON: {"error":WHY}.
 * WebSocket: on connect {"type":"state","state":STATE|null}; then every state-updated. The room is changed over HTTP
 * only: a message from a socket gets {"type":"error","error":WHY}.
 *
 * Storage: "state" → the body as it was posted (less surrounding whitespace), so GET answers the client's own bytes.
 * Nothing is kept in memory: a room that was evicted or restarted answers from storage at once.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "party.h"

#define HSTATE_KEY "state"
/* JSON as JavaScript reads it (every number a double, U+0000 a character), but a repeated member is an error rather
 * than "the last one wins": a state with two values for one name is a client's bug, not something to store. */
#define HSTATE_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

static int hstate_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void hstate_json_error(party_request_t *req, int status, const char *why)
{
    json_t *body = json_pack("{s:s}", "error", why);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    party_respond(req, status, "application/json", text, text != NULL ? strlen(text) : 0);
    free(text);
}

/* `prefix` + `middle` + `suffix` in one malloc'ed string (NULL when out of memory). */
static char *hstate_concat(const char *prefix, const char *middle, size_t middle_len, const char *suffix, size_t *len)
{
    size_t pl = strlen(prefix), sl = strlen(suffix);
    char *out = malloc(pl + middle_len + sl + 1);
    if (out == NULL)
        return NULL;
    memcpy(out, prefix, pl);
    memcpy(out + pl, middle, middle_len);
    memcpy(out + pl + middle_len, suffix, sl + 1);
    *len = pl + middle_len + sl;
    return out;
}

/* A new state: stored and broadcast together, or neither. */
typedef struct st_hstate_update_t {
    const char *state; /* the body, trimmed */
    size_t state_len;
    char *text; /* the state-updated message */
    size_t text_len;
    int error; /* why the update was undone */
} hstate_update_t;

/* In a transaction: a state that no socket could be sent (a message over limits.message_bytes, which party_broadcast
 * enforces) is not stored either, so GET and the sockets never disagree. */
static int hstate_update(party_room_t *room, void *arg)
{
    hstate_update_t *u = arg;
    if ((u->error = party_storage_put(room, HSTATE_KEY, sizeof(HSTATE_KEY) - 1, u->state, u->state_len)) != 0)
        return 1;
    return (u->error = party_broadcast(room, u->text, u->text_len, 0, NULL, 0)) != 0;
}

static void hstate_get(party_room_t *room, party_request_t *req)
{
    void *state;
    size_t len;
    int r = party_storage_get(room, HSTATE_KEY, sizeof(HSTATE_KEY) - 1, &state, &len);
    if (r == -ENOENT) {
        party_respond(req, 200, "application/json", "null", 4);
    } else if (r != 0) {
        party_log(room, 0, "cannot read the state: %s", strerror(-r));
        hstate_json_error(req, 500, "the state could not be read");
    } else {
        party_respond(req, 200, "application/json", state, len);
        free(state);
    }
}

static void hstate_post(party_room_t *room, party_request_t *req)
{
    size_t len;
    const char *body = party_request_body(req, &len);
    if (len > PARTY_VALUE_MAX) {
        char why[80];
        snprintf(why, sizeof(why), "the state is over %d bytes", PARTY_VALUE_MAX);
        hstate_json_error(req, 413, why);
        return;
    }
    json_error_t jerr;
    json_t *state = json_loadb(body, len, HSTATE_JSON_FLAGS, &jerr);
    int is_object = json_is_object(state), has_type = json_object_get(state, "type") != NULL;
    json_decref(state);
    if (state == NULL) {
        char why[200];
        snprintf(why, sizeof(why), "invalid JSON: %s", jerr.text);
        hstate_json_error(req, 400, why);
        return;
    }
    if (!is_object) {
        hstate_json_error(req, 400, "the state must be a JSON object");
        return;
    }
    if (has_type) {
        hstate_json_error(req, 400, "the state may not have a \"type\" member: it would hide the message's type");
        return;
    }

    /* a valid object, so after trimming it is '{' ... '}' */
    while (hstate_space(*body))
        ++body, --len;
    while (hstate_space(body[len - 1]))
        --len;
    /* {"type":"state-updated", ...body}: the body's members spliced in as written, with no second encoding (which
     * would also rewrite its numbers) */
    const char *members = body + 1;
    size_t members_len = len - 2;
    while (members_len > 0 && hstate_space(*members))
        ++members, --members_len;
    hstate_update_t u = {.state = body, .state_len = len};
    u.text = hstate_concat(members_len > 0 ? "{\"type\":\"state-updated\"," : "{\"type\":\"state-updated\"", members, members_len,
                           "}", &u.text_len);
    if (u.text == NULL || party_storage_transaction(room, hstate_update, &u) != 0) {
        if (u.error == -EMSGSIZE) {
            hstate_json_error(req, 413, "the state is too large to send to the room's sockets (limits.message_bytes)");
        } else {
            party_log(room, 0, "cannot update the state: %s", strerror(u.text == NULL ? ENOMEM : -u.error));
            hstate_json_error(req, 500, "the state could not be stored");
        }
    } else {
        /* answered now, released with the broadcast once the state is on disk */
        party_respond(req, 200, "text/plain; charset=utf-8", "OK", 2);
    }
    free(u.text);
}

static void hstate_on_request(party_room_t *room, party_request_t *req)
{
    const char *method = party_request_method(req);
    if (strcmp(method, "GET") == 0) {
        hstate_get(room, req);
    } else if (strcmp(method, "POST") == 0) {
        hstate_post(room, req);
    } else {
        party_response_header(req, "allow", "GET, POST");
        hstate_json_error(req, 405, "method not allowed: GET or POST");
    }
}

static int hstate_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    void *state;
    size_t len;
    int r = party_storage_get(room, HSTATE_KEY, sizeof(HSTATE_KEY) - 1, &state, &len);
    if (r == -ENOENT) {
        state = NULL;
    } else if (r != 0) {
        party_log(room, 0, "cannot read the state: %s", strerror(-r));
        party_conn_refusal(conn, "the state could not be read; try again");
        return 500;
    }
    /* the stored state was parsed when it was POSTed: it goes in as written (party_json_raw), numbers untouched */
    party_json_t *j = party_json_new();
    if (j == NULL) {
        free(state);
        return 500;
    }
    party_json_object(j);
    party_json_key(j, "type");
    party_json_str(j, "state");
    party_json_key(j, "state");
    if (state != NULL)
        party_json_raw(j, state, len);
    else
        party_json_null(j);
    party_json_end(j);
    free(state);
    size_t text_len;
    const char *text = party_json_text(j, &text_len);
    r = text != NULL ? party_send(conn, text, text_len, 0) : -ENOMEM;
    party_json_free(j);
    if (r == -EMSGSIZE) {
        /* stored under a larger limits.message_bytes than the node has now: the socket is still told, and gets every
         * update that fits; GET still answers the state */
        static const char msg[] =
            "{\"type\":\"error\",\"error\":\"the state is too large to send (limits.message_bytes); GET it\"}";
        r = party_send(conn, msg, sizeof(msg) - 1, 0);
    }
    if (r != 0) {
        party_log(room, 1, "cannot send the state: %s", strerror(-r));
        party_conn_refusal(conn, "the state could not be sent");
        return 500;
    }
    return 0;
}

static void hstate_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    (void)room, (void)data, (void)len, (void)binary;
    static const char msg[] = "{\"type\":\"error\",\"error\":\"this room's state is changed over HTTP: POST it\"}";
    party_send(conn, msg, sizeof(msg) - 1, 0);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "http_state",
    .on_connect = hstate_on_connect,
    .on_message = hstate_on_message,
    .on_request = hstate_on_request,
};
