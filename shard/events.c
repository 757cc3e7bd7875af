/*
 * events.c — where a room handles a frame from the router: a connection opening (on_connect, then ACCEPT or REJECT),
 * a message, a close, an HTTP request, the router going away; and the on_close callbacks party_conn_close deferred.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room_int.h"

/* ---- frames from the router ---- */

/* The connection number names the same connection in the router; a reused one is the router's bug. */
party_conn_t *room_conn_by_cid(uint64_t cid)
{
    party_conn_t *conn;
    HASH_FIND(hh_cid, rooms.conns_by_cid, &cid, sizeof(cid), conn);
    return conn;
}

/* The room a client's connection or request (OPEN, REQUEST) is for, entered and started. NULL, with the HTTP status
 * and the reason to answer, when the room is moving to another shard, its name is bad, its party unknown, or it cannot
 * start. */
static party_room_t *room_for_client(const proto_msg_t *msg, int *status, const char **why)
{
    if (rooms.frozen[slots_of_room(msg->party.base, msg->party.len, msg->room.base, msg->room.len)]) {
        *status = 503;
        *why = "the room is moving to another shard";
        return NULL;
    }
    party_room_t *room = room_get(msg->party, msg->room, status, why);
    if (room == NULL)
        return NULL;
    room_enter(room);
    if ((*status = room_wake(room, why)) != 0) {
        if (room->conns == NULL)
            room_destroy(room);
        return NULL;
    }
    return room;
}

void rooms_on_open(const proto_msg_t *msg)
{
    if (msg->conn_id.len == 0 || msg->conn_id.len > 128 || memchr(msg->conn_id.base, '\0', msg->conn_id.len) != NULL) {
        room_emit_reject(msg->id, 400, "bad connection id");
        return;
    }
    if (room_conn_by_cid(msg->id) != NULL) {
        log_error("router reused connection number %llu; refusing the new connection", (unsigned long long)msg->id);
        room_emit_reject(msg->id, 500, "duplicate connection number");
        return;
    }
    int status;
    const char *why;
    party_room_t *room = room_for_client(msg, &status, &why);
    if (room == NULL) {
        room_emit_reject(msg->id, status, why);
        return;
    }

    /* the newest connection with an id wins: the older one is closed first, as its own event */
    party_conn_t *conn;
    HASH_FIND(hh_id, room->conns_by_id, msg->conn_id.base, msg->conn_id.len, conn);
    if (conn != NULL) {
        room_emit_close_conn(conn->cid, 4000, "replaced by a newer connection with the same id");
        room_conn_close_now(conn, 4000, "replaced by a newer connection with the same id", 1, NULL);
        rooms_run_deferred();
    }
    if (room->open_count >= rooms.conf->limits.connections_per_room) {
        room_emit_reject(msg->id, 503, "the room is full");
        room_leave(room);
        return;
    }

    conn = xcalloc(1, sizeof(*conn));
    conn->cid = msg->id;
    conn->room = room;
    conn->id = xstrndup(msg->conn_id.base, msg->conn_id.len);
    HASH_ADD_KEYPTR(hh_id, room->conns_by_id, conn->id, msg->conn_id.len, conn);
    HASH_ADD(hh_cid, rooms.conns_by_cid, cid, sizeof(conn->cid), conn);
    conn->prev = room->conns_tail;
    if (room->conns_tail != NULL)
        room->conns_tail->next = conn;
    else
        room->conns = conn;
    room->conns_tail = conn;
    ++room->open_count;
    ++rooms.num_conns;
    ++room_party_stats(room)->connections;

    proto_msg_t attach = {.type = PROTO_ATTACH, .id = conn->cid};
    shard_emit(&attach);

    int verdict = 0;
    if (room->party->on_connect != NULL) {
        party_request_t *req = room_request_new(msg);
        room->connecting = conn;
        rooms.refusal[0] = '\0';
        verdict = room->party->on_connect(room, conn, req);
        room->connecting = NULL;
        room_request_free(req);
    }
    if (verdict == 0) {
        conn->flags |= CONN_ACCEPTED;
        proto_msg_t accept = {.type = PROTO_ACCEPT, .id = conn->cid};
        shard_emit_verdict(&accept);
    } else {
        if (verdict < 400 || verdict > 599) {
            log_warn("room %s: on_connect returned %d, which is not an HTTP status from 400 to 599; answering 500", room->key,
                     verdict);
            verdict = 500;
        }
        room_emit_reject(conn->cid, verdict, rooms.refusal[0] != '\0' ? rooms.refusal : "the room refused the connection");
        if ((conn->flags & CONN_CLOSED) == 0) {
            room_conn_forget(conn);
            room_conn_unlink(conn);
            room_conn_free(conn);
        }
    }
    rooms_run_deferred();
    room_leave(room);
}

void rooms_on_message(const proto_msg_t *msg)
{
    party_conn_t *conn = room_conn_by_cid(msg->id);
    if (conn == NULL || (conn->flags & CONN_ACCEPTED) == 0)
        return; /* closed meanwhile by the party: what it sent after that is dropped, as a closed socket would */
    party_room_t *room = conn->room;
    room_enter(room);
    const char *why;
    if (room_wake(room, &why) != 0) {
        room_fail(room, why);
        return;
    }
    ++rooms.messages_in;
    rooms.bytes_in += msg->data.len;
    ++room_party_stats(room)->messages_in;
    room_party_stats(room)->bytes_in += msg->data.len;
    if (room->party->on_message != NULL)
        room->party->on_message(room, conn, msg->data.base, msg->data.len, msg->binary);
    rooms_run_deferred();
    room_leave(room);
}

static const char *close_error(int code)
{
    switch (code) {
    case 1002:
        return "protocol error";
    case 1006:
        return "connection lost";
    case 1007:
        return "invalid UTF-8 in a text message";
    case 1008:
        return "policy violation or slow consumer";
    case 1009:
        return "message too big";
    case 1011:
        return "internal error";
    default:
        return NULL;
    }
}

/* The connection leaves now: out of the room, then error and close callbacks (waking a hibernating room), freed. */
void room_conn_close_now(party_conn_t *conn, int code, const char *reason, int clean, const char *error)
{
    party_room_t *room = conn->room;
    int accepted = (conn->flags & CONN_ACCEPTED) != 0;
    room_conn_forget(conn);
    room_conn_unlink(conn);
    if (accepted && (room->party->on_error != NULL || room->party->on_close != NULL)) {
        const char *why;
        if (room_wake(room, &why) == 0) {
            if (error != NULL && room->party->on_error != NULL)
                room->party->on_error(room, conn, error);
            if (room->party->on_close != NULL)
                room->party->on_close(room, conn, code, reason, strlen(reason), clean);
        }
    }
    /* party_conn_close on this conn from its own on_close gets -ENOTCONN (it is already flagged), so nothing else
     * holds it now */
    room_conn_free(conn);
}

void rooms_on_close(const proto_msg_t *msg)
{
    party_conn_t *conn = room_conn_by_cid(msg->id);
    if (conn == NULL)
        return;
    party_room_t *room = conn->room;
    room_enter(room);
    char reason[CLOSE_REASON_MAX + 1];
    size_t n = msg->reason.len < CLOSE_REASON_MAX ? msg->reason.len : CLOSE_REASON_MAX;
    memcpy(reason, msg->reason.base, n);
    reason[n] = '\0';
    room_conn_close_now(conn, msg->code, reason, msg->clean, msg->clean ? NULL : close_error(msg->code));
    rooms_run_deferred();
    room_leave(room);
}

void rooms_on_request(const proto_msg_t *msg)
{
    int status;
    const char *why;
    party_room_t *room = room_for_client(msg, &status, &why);
    if (room == NULL) {
        room_respond_simple(msg->id, status, why);
        return;
    }
    if (room->party->on_request == NULL) {
        room_respond_simple(msg->id, 404, "this party has no request handler");
        room_leave(room);
        return;
    }
    party_request_t *req = room_request_new(msg);
    req->room = room;
    req->next = room->requests;
    if (room->requests != NULL)
        room->requests->prev = req;
    room->requests = req;
    room->party->on_request(room, req);
    rooms_run_deferred();
    room_leave(room);
}

/* One room's share of the router going away, as an event of its own. */
static void room_router_lost(party_room_t *room)
{
    shard_event_begin();
    room_enter(room);
    while (room->conns != NULL) {
        room_conn_close_now(room->conns, 1006, "router went away", 0, "connection lost");
        rooms_run_deferred();
    }
    /* the answers to its fetches went with the router */
    room_fetches_drop(room);
    /* nobody is waiting for these answers any more */
    while (room->requests != NULL) {
        party_request_t *req = room->requests;
        room_request_unlink(req);
        room_request_free(req);
    }
    room_leave(room);
    shard_event_end();
}

void rooms_on_router_lost(void)
{
    rooms_run_deferred();
    /* Closing a hibernating room's connections wakes it for on_close, and at limits.rooms_in_memory that wake evicts
     * (frees) the least recently used idle room — any room of the table, the iteration's next one included. So the
     * rooms with something to let go of are named first and looked up again by name, each in turn. */
    size_t n = 0;
    char **keys = xcalloc(rooms.num_rooms + 1, sizeof(*keys));
    for (party_room_t *room = rooms.by_key; room != NULL; room = room->hh.next)
        if (room->conns != NULL || room->fetches != NULL || room->requests != NULL)
            keys[n++] = xstrndup(room->key, room->key_len);
    for (size_t i = 0; i < n; ++i) {
        party_room_t *room;
        HASH_FIND(hh, rooms.by_key, keys[i], strlen(keys[i]), room);
        if (room != NULL)
            room_router_lost(room);
        free(keys[i]);
    }
    free(keys);
}

void rooms_run_deferred(void)
{
    while (rooms.deferred != NULL) {
        party_conn_t *conn = rooms.deferred;
        rooms.deferred = conn->next_deferred;
        conn->next_deferred = NULL;
        party_room_t *room = conn->room;
        room_conn_unlink(conn);
        if ((conn->flags & CONN_ACCEPTED) != 0 && room->started && room->party->on_close != NULL)
            room->party->on_close(room, conn, conn->close_code, conn->close_reason, strlen(conn->close_reason), 1);
        room_conn_free(conn);
    }
}

/* One info line with the evictions and wakes since the last one, when there were any. */
