/*
 * stopper.c — a test party (tests/integration/failure-shard.test.mjs) that does in on_stop what a party may try there:
 * read the state of the connections it kept (party.h: their pointers stay valid until on_stop), and party_fetch
 * (refused in on_stop: -EBUSY). It logs what it saw, at warn level, for the test to read:
 *
 *   on_stop: connection ID state STATE        for every connection it kept (those without an on_close yet)
 *   on_stop: party_fetch returned N
 *
 * on_connect keeps the connection (up to 16) and sets its state to "state-ID"; on_close forgets it. A request is
 * answered 200 "ok".
 */
#include <stdlib.h>
#include <string.h>

#include "party.h"

#define KEPT_MAX 16

typedef struct {
    party_conn_t *kept[KEPT_MAX];
} room_t;

static int on_start(party_room_t *room)
{
    party_room_set_data(room, calloc(1, sizeof(room_t)));
    return 0;
}

static void on_answer(party_room_t *room, void *arg, const party_fetch_t *res)
{
    (void)arg;
    party_log(room, 1, "the fetch from on_stop was answered %d", party_fetch_status(res));
}

static void on_stop(party_room_t *room)
{
    room_t *r = party_room_data(room);
    for (size_t i = 0; r != NULL && i < KEPT_MAX; ++i) {
        if (r->kept[i] == NULL)
            continue;
        size_t len;
        const char *state = party_conn_state(r->kept[i], &len);
        party_log(room, 1, "on_stop: connection %s state %.*s", party_conn_id(r->kept[i]), (int)len, state != NULL ? state : "");
    }
    int ret = party_fetch(room, party_room_party(room), "target", NULL, NULL, NULL, NULL, 0, on_answer, NULL);
    party_log(room, 1, "on_stop: party_fetch returned %d", ret);
    free(r);
}

static int on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    room_t *r = party_room_data(room);
    char state[200] = "state-";
    strncat(state, party_conn_id(conn), sizeof(state) - 7);
    party_conn_set_state(conn, state, strlen(state));
    for (size_t i = 0; i < KEPT_MAX; ++i) {
        if (r->kept[i] == NULL) {
            r->kept[i] = conn;
            break;
        }
    }
    return 0;
}

static void on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean)
{
    (void)code, (void)reason, (void)reason_len, (void)clean;
    room_t *r = party_room_data(room);
    for (size_t i = 0; i < KEPT_MAX; ++i)
        if (r->kept[i] == conn)
            r->kept[i] = NULL;
}

static void on_request(party_room_t *room, party_request_t *req)
{
    (void)room;
    party_respond(req, 200, "text/plain", "ok", 2);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "stopper",
    .on_start = on_start,
    .on_stop = on_stop,
    .on_connect = on_connect,
    .on_close = on_close,
    .on_request = on_request,
};
