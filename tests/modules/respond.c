/*
 * respond.c — a test party (tests/integration/failure-router.test.mjs): answers in shapes HTTP/1.1 cannot carry as
 * they are, from the room (party_respond) and from the edge (before_request), so the test sees what the router makes
 * of them.
 *
 *   request   → ?status=N answers with N (default 200) and the body "room-body"
 *   edge      → ?edge=N answers at the edge with N and the body "edge-body"; without it the request goes to the room
 *   both      → ?frame=1 also sets the response headers Content-Length: 3, Content-Length: 99 and
 *               Transfer-Encoding: chunked (framing that is the router's to set, not the party's)
 */
#include <stdlib.h>
#include <string.h>

#include "party.h"

static void on_request(party_room_t *room, party_request_t *req)
{
    (void)room;
    char arg[16];
    int status = 200;
    if (party_request_query_param(req, "status", arg, sizeof(arg)) > 0)
        status = atoi(arg);
    if (party_request_query_param(req, "frame", arg, sizeof(arg)) > 0) {
        party_response_header(req, "content-length", "3");
        party_response_header(req, "content-length", "99");
        party_response_header(req, "transfer-encoding", "chunked");
    }
    party_response_header(req, "x-respond", "room");
    party_respond(req, status, "text/plain", "room-body", 9);
}

static int before_request(party_edge_t *e)
{
    char arg[16], frame[16];
    if (party_edge_query_param(e, "edge", arg, sizeof(arg)) <= 0)
        return 0;
    if (party_edge_query_param(e, "frame", frame, sizeof(frame)) > 0) {
        party_edge_response_header(e, "content-length", "3");
        party_edge_response_header(e, "content-length", "99");
        party_edge_response_header(e, "transfer-encoding", "chunked");
    }
    party_edge_response_header(e, "x-respond", "edge");
    party_edge_respond(e, "text/plain", "edge-body", 9);
    return atoi(arg);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "respond",
    .on_request = on_request,
    .before_request = before_request,
};
