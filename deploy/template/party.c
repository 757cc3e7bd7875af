/*
 * PARTY_NAME — a partyd party (https://…/partyd README, "Write a party").
 *
 * Made by `partyd-new-party`. Build it with `make`, run it with `partyd --config partyd.json`, and connect:
 *   new PartySocket({host: "127.0.0.1:1999", party: "PARTY_NAME", room: "lobby"})
 *
 * What it does, as a starting point:
 *   - on connect: sends {"type":"welcome","id":ID,"messages":N} (N: messages this room has seen, kept in storage)
 *   - a text message: broadcast to everyone else in the room as it is; the count goes up (stored)
 *   - GET /parties/PARTY_NAME/ROOM: {"room":ROOM,"connections":N,"messages":N}
 *
 * JSON goes out through party.h's writer (party_json_*), never printf: a client's id may hold quotes or backslashes.
 *
 * Every callback of a room runs on one thread, one at a time: no locks. Everything the room must keep across an
 * eviction or a restart goes to storage; what it sends after writing leaves only once the write is on disk.
 * party.h documents every function, who owns what, and every error.
 */
#include <stdio.h>
#include <stdlib.h>

#include <partyd/party.h>

/* the room's state in memory: rebuilt from storage in on_start */
typedef struct {
    long messages;
} room_state_t;

static int on_start(party_room_t *room)
{
    room_state_t *st = calloc(1, sizeof(*st));
    if (st == NULL)
        return -1;
    void *value;
    size_t len;
    if (party_storage_get(room, "messages", 8, &value, &len) == 0) {
        st->messages = atol(value);
        free(value);
    }
    party_room_set_data(room, st);
    return 0;
}

static void on_stop(party_room_t *room)
{
    free(party_room_data(room));
}

static int on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    const room_state_t *st = party_room_data(room);
    party_json_t *j = party_json_new();
    if (j == NULL)
        return 503;
    party_json_object(j);
    party_json_key(j, "type");
    party_json_str(j, "welcome");
    party_json_key(j, "id");
    party_json_str(j, party_conn_id(conn));
    party_json_key(j, "messages");
    party_json_int(j, st->messages);
    party_json_end(j);
    size_t len;
    const char *text = party_json_text(j, &len);
    if (text != NULL)
        party_send(conn, text, len, 0);
    party_json_free(j);
    return 0; /* accept; an HTTP status (e.g. 403) would refuse */
}

static void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    if (binary)
        return;
    room_state_t *st = party_room_data(room);
    char count[32];
    int n = snprintf(count, sizeof(count), "%ld", st->messages + 1);
    if (party_storage_put(room, "messages", 8, count, (size_t)n) != 0)
        return;
    ++st->messages;
    const char *except[] = {party_conn_id(conn)};
    party_broadcast(room, data, len, 0, except, 1);
}

static void on_request(party_room_t *room, party_request_t *req)
{
    const room_state_t *st = party_room_data(room);
    party_json_t *j = party_json_new();
    if (j == NULL) {
        party_respond(req, 503, "text/plain", "out of memory", 13);
        return;
    }
    party_json_object(j);
    party_json_key(j, "room");
    party_json_str(j, party_room_id(room));
    party_json_key(j, "connections");
    party_json_int(j, (long long)party_room_connection_count(room));
    party_json_key(j, "messages");
    party_json_int(j, st->messages);
    party_json_end(j);
    size_t len;
    const char *text = party_json_text(j, &len);
    if (text != NULL)
        party_respond(req, 200, "application/json", text, len);
    else
        party_respond(req, 500, "text/plain", "JSON writer failed", 18);
    party_json_free(j);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "PARTY_NAME",
    .on_start = on_start,
    .on_stop = on_stop,
    .on_connect = on_connect,
    .on_message = on_message,
    .on_request = on_request,
};
