/*
 * relay.c — the relay party: every message goes unchanged to every other connection of the room.
 *
 *   WebSocket: text and binary frames are forwarded as they are; nothing goes back to the sender.
 *   GET  → 200 {"party":NAME,"room":ID,"connections":N}
 *   POST → the body goes to every connection (text when it is valid UTF-8, else binary); 200 {"delivered":N}
 *   else → 405
 */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "parties.h"

static void relay_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    const char *except[1] = {party_conn_id(conn)};
    party_broadcast(room, data, len, binary, except, 1);
}

static int relay_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)room;
    char list[PARTY_TAGS_MAX * (PARTY_TAG_MAX + 1) + 1];
    long len = party_request_query_param(req, "tags", list, sizeof(list));
    if (len == -2)
        return 400; /* longer than 10 tags of 256 bytes can be */
    if (len <= 0)
        return 0;
    const char *tags[PARTY_TAGS_MAX + 1];
    size_t n = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
        if (n == PARTY_TAGS_MAX + 1)
            break;
        tags[n++] = t;
    }
    /* more than 10 tags, or one over 256 bytes: refuse the connection rather than drop tags silently */
    return party_conn_set_tags(conn, tags, n) == 0 ? 0 : 400;
}

static void relay_on_request(party_room_t *room, party_request_t *req)
{
    const char *method = party_request_method(req);
    if (strcmp(method, "GET") == 0) {
        parties_respond_json(req, 200,
                             json_pack("{s:s, s:s, s:I}", "party", party_room_party(room), "room", party_room_id(room),
                                       "connections", (json_int_t)party_room_connection_count(room)));
    } else if (strcmp(method, "POST") == 0) {
        size_t len;
        const void *body = party_request_body(req, &len);
        int binary = !party_utf8_valid(body, len);
        char tag[PARTY_TAG_MAX + 2];
        size_t n = 0;
        int ret = 0;
        if (party_request_query_param(req, "tag", tag, sizeof(tag)) >= 0) {
            for (party_conn_t *c = party_room_connections_tagged(room, tag, NULL); c != NULL && ret == 0;
                 c = party_room_connections_tagged(room, tag, c)) {
                ret = party_send(c, body, len, binary);
                n += ret == 0;
            }
        } else {
            n = party_room_connection_count(room);
            ret = party_broadcast(room, body, len, binary, NULL, 0);
        }
        if (ret == -EMSGSIZE) {
            parties_respond_json(req, 413, json_pack("{s:s}", "error", "the body is larger than a WebSocket message may be"));
            return;
        }
        parties_respond_json(req, 200, json_pack("{s:I}", "delivered", (json_int_t)n));
    } else {
        party_response_header(req, "allow", "GET, POST");
        parties_respond_json(req, 405, json_pack("{s:s}", "error", "method not allowed"));
    }
}

const party_t party_relay = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "relay",
    .on_connect = relay_on_connect,
    .on_message = relay_on_message,
    .on_request = relay_on_request,
};
