/*
 * misuse.c — a test party for tests/integration/misuse.test.mjs: from every callback it calls what party.h offers
 * (send, close, connection state, tags, refusal, broadcast, storage, the alarm, fetch, respond) and keeps a connection
 * pointer across callbacks, and writes each call's return value to the file its var "log" names, one line each:
 *
 *     ROOM CALLBACK CALL RC
 *
 * The test compares the lines with what party.h documents, under ASan. Client messages steer it: "all" makes the
 * calls on the sending connection, "close" closes it and then calls on it again, "kept" sends to the first
 * connection of the room (kept since its on_connect). Requests: ".../ping" answers "pong" (the target of fetches),
 * ".../alarm" sets the alarm due now; any other runs the calls and answers 200. With the var "stop_fetch" = "1",
 * on_stop also calls party_fetch (issue 17 item 13: known to be a use-after-free until fixed).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"

typedef struct st_misuse_t {
    party_conn_t *kept; /* the first connection, until its on_close */
} misuse_t;

static void logrc(party_room_t *room, const char *cb, const char *call, long rc)
{
    const char *path = party_var(room, "log");
    FILE *f = path != NULL ? fopen(path, "a") : NULL;
    if (f == NULL)
        return;
    fprintf(f, "%s %s %s %ld\n", party_room_id(room), cb, call, rc);
    fclose(f);
}

static void fetch_cb(party_room_t *room, void *arg, const party_fetch_t *res)
{
    /* arg is a string literal: nothing to free when the room stops first and this never runs */
    logrc(room, arg, "fetch_answer", party_fetch_status(res));
}

/* The room functions, from callback `cb`. */
static void room_calls(party_room_t *room, const char *cb, int fetch)
{
    logrc(room, cb, "broadcast", party_broadcast(room, "b", 1, 0, NULL, 0));
    char key[64];
    snprintf(key, sizeof(key), "k-%s", cb);
    logrc(room, cb, "put", party_storage_put(room, key, strlen(key), "v", 1));
    void *v = NULL;
    size_t vl;
    logrc(room, cb, "get", party_storage_get(room, key, strlen(key), &v, &vl));
    free(v);
    logrc(room, cb, "delete", party_storage_delete(room, key, strlen(key)));
    uint64_t at;
    logrc(room, cb, "alarm_get", party_alarm_get(room, &at) == 0 ? 0 : -ENOENT);
    if (fetch)
        logrc(room, cb, "fetch", party_fetch(room, party_room_party(room), "target", NULL, "/ping", NULL, NULL, 0, fetch_cb, (void *)cb));
    logrc(room, cb, "connections", (long)party_room_connection_count(room));
}

/* The connection functions on `conn`, from callback `cb`. */
static void conn_calls(party_room_t *room, party_conn_t *conn, const char *cb)
{
    logrc(room, cb, "send", party_send(conn, "s", 1, 0));
    logrc(room, cb, "set_state", party_conn_set_state(conn, "st", 2));
    size_t len;
    const void *st = party_conn_state(conn, &len);
    logrc(room, cb, "state", st != NULL && len == 2 && memcmp(st, "st", 2) == 0 ? 2 : (long)len);
    const char *tag = "t";
    logrc(room, cb, "set_tags", party_conn_set_tags(conn, &tag, 1));
    logrc(room, cb, "refusal", party_conn_refusal(conn, "no"));
    logrc(room, cb, "id", party_conn_id(conn) != NULL && party_conn_id(conn)[0] != '\0');
}

static int on_start(party_room_t *room)
{
    if (strcmp(party_room_id(room), "target") == 0)
        return 0;
    misuse_t *m = calloc(1, sizeof(*m));
    party_room_set_data(room, m);
    room_calls(room, "on_start", 1);
    return 0;
}

static void on_stop(party_room_t *room)
{
    misuse_t *m = party_room_data(room);
    if (m == NULL)
        return;
    /* party.h: connection pointers stay valid until the room stops, so the kept one is readable here */
    if (m->kept != NULL) {
        size_t len;
        party_conn_state(m->kept, &len);
        logrc(room, "on_stop", "kept_state", (long)len);
    }
    const char *f = party_var(room, "stop_fetch");
    room_calls(room, "on_stop", f != NULL && strcmp(f, "1") == 0);
    free(m);
    party_room_set_data(room, NULL);
}

static int on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    misuse_t *m = party_room_data(room);
    room_calls(room, "on_connect", 1);
    conn_calls(room, conn, "on_connect");
    /* the upgrade request is not one to answer (party_respond: only for requests given to on_request) */
    logrc(room, "on_connect", "respond_upgrade", party_respond((party_request_t *)req, 200, NULL, NULL, 0));
    if (m != NULL && m->kept == NULL)
        m->kept = conn;
    return 0;
}

static void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    (void)binary;
    misuse_t *m = party_room_data(room);
    if (len == 3 && memcmp(data, "all", 3) == 0) {
        room_calls(room, "on_message", 1);
        conn_calls(room, conn, "on_message");
    } else if (len == 5 && memcmp(data, "close", 5) == 0) {
        logrc(room, "on_message", "close", party_conn_close(conn, 4001, "bye"));
        logrc(room, "on_message", "close_again", party_conn_close(conn, 4001, "bye"));
        logrc(room, "on_message", "send_closed", party_send(conn, "s", 1, 0));
        logrc(room, "on_message", "set_state_closed", party_conn_set_state(conn, "x", 1));
    } else if (len == 4 && memcmp(data, "kept", 4) == 0) {
        logrc(room, "on_message", "send_kept", m != NULL && m->kept != NULL ? party_send(m->kept, "k", 1, 0) : -ENOENT);
    }
}

static void on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean)
{
    (void)reason, (void)reason_len, (void)clean;
    misuse_t *m = party_room_data(room);
    logrc(room, "on_close", "code", code);
    room_calls(room, "on_close", 1);
    conn_calls(room, conn, "on_close");
    logrc(room, "on_close", "close", party_conn_close(conn, 1000, NULL));
    /* party.h: a connection pointer is valid until its on_close returns; the kept one is dropped here */
    if (m != NULL && m->kept == conn)
        m->kept = NULL;
}

static void on_error(party_room_t *room, party_conn_t *conn, const char *error)
{
    logrc(room, "on_error", "error", error != NULL && error[0] != '\0');
    room_calls(room, "on_error", 1);
    conn_calls(room, conn, "on_error");
    logrc(room, "on_error", "close", party_conn_close(conn, 1000, NULL));
}

static void on_request(party_room_t *room, party_request_t *req)
{
    const char *path = party_request_path(req);
    size_t pl = strlen(path);
    if (pl >= 5 && strcmp(path + pl - 5, "/ping") == 0) {
        party_respond(req, 200, "text/plain", "pong", 4);
        return;
    }
    if (pl >= 6 && strcmp(path + pl - 6, "/alarm") == 0) {
        logrc(room, "on_request", "alarm_set", party_alarm_set(room, party_now_ms()));
        party_respond(req, 200, "text/plain", "alarm", 5);
        return;
    }
    room_calls(room, "on_request", 1);
    logrc(room, "on_request", "header", party_response_header(req, "x-misuse", "1"));
    logrc(room, "on_request", "bad_status", party_respond(req, 99, NULL, NULL, 0));
    logrc(room, "on_request", "respond", party_respond(req, 200, "text/plain", "ok", 2));
}

static int on_alarm(party_room_t *room)
{
    uint64_t at;
    logrc(room, "on_alarm", "alarm_cleared", party_alarm_get(room, &at));
    room_calls(room, "on_alarm", 1);
    misuse_t *m = party_room_data(room);
    if (m != NULL && m->kept != NULL)
        logrc(room, "on_alarm", "send_kept", party_send(m->kept, "a", 1, 0));
    return 0;
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "misuse",
    .on_start = on_start,
    .on_stop = on_stop,
    .on_connect = on_connect,
    .on_message = on_message,
    .on_close = on_close,
    .on_error = on_error,
    .on_request = on_request,
    .on_alarm = on_alarm,
};
