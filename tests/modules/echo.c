/*
 * echo.c — a test party (tests/integration/modules.test.mjs): answers every HTTP request with what it received, and
 * has edge hooks that exercise every party_edge_* function.
 *
 *   request   → 200 {"method","path","query","from","user","edge","var","body","headers":N}
 *               ?hang holds the request without answering (for timeouts); ?status=N answers with that status
 *   WebSocket → on connect sends {"type":"hello","user": x-user header}; echoes every message back ("max" gets
 *               {"message_max": party_message_max()}); on_close logs its code and party_node_stopping();
 *               ?refuse=WHY refuses it with 403 and that reason
 *   edge      → a request with header x-deny: answered at the edge with 403, a JSON body and x-denied-by: echo;
 *               x-edge-status: N returns N from the hook (a bad value tests partyd's guard);
 *               otherwise sets x-user (from ?user=, replacing the client's) and x-edge: ran
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "party.h"

static const char *or_empty(const char *s)
{
    return s != NULL ? s : "";
}

/* JSON string escaping for the few strings this party echoes (they are ASCII in the tests; others are dropped) */
static void put_json_str(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    out[n++] = '"';
    for (; *s != '\0' && n + 3 < cap; ++s) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        if ((unsigned char)*s >= 0x20)
            out[n++] = *s;
    }
    out[n++] = '"';
    out[n] = '\0';
}

static void on_request(party_room_t *room, party_request_t *req)
{
    char status_arg[8];
    if (party_request_query_param(req, "hang", status_arg, sizeof(status_arg)) >= 0)
        return; /* never answered: the room holds it until it stops */
    int status = 200;
    if (party_request_query_param(req, "status", status_arg, sizeof(status_arg)) > 0)
        status = atoi(status_arg);
    size_t body_len;
    const char *body = party_request_body(req, &body_len);
    char *b = malloc(body_len + 1);
    memcpy(b, body, body_len);
    b[body_len] = '\0';
    const char *fields[][2] = {{"method", party_request_method(req)},
                               {"path", party_request_path(req)},
                               {"query", party_request_query(req)},
                               {"from", or_empty(party_request_header(req, "x-partyd-from"))},
                               {"user", or_empty(party_request_header(req, "x-user"))},
                               {"edge", or_empty(party_request_header(req, "x-edge"))},
                               {"var", or_empty(party_var(room, "GREETING"))},
                               {"body", b}};
    size_t cap = 4096 + 2 * body_len, n = 0;
    char *out = malloc(cap), *tmp = malloc(cap);
    n += (size_t)snprintf(out + n, cap - n, "{");
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); ++i) {
        put_json_str(tmp, cap, fields[i][1]);
        n += (size_t)snprintf(out + n, cap - n, "\"%s\":%s,", fields[i][0], tmp);
    }
    n += (size_t)snprintf(out + n, cap - n, "\"headers\":%zu}", party_request_header_count(req));
    party_response_header(req, "x-echo", "yes");
    party_respond(req, status, "application/json", out, n);
    free(out);
    free(tmp);
    free(b);
}

static int on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)room;
    char why[300];
    if (party_request_query_param(req, "refuse", why, sizeof(why)) > 0) {
        party_conn_refusal(conn, why);
        return 403;
    }
    char msg[512], user[300];
    put_json_str(user, sizeof(user), or_empty(party_request_header(req, "x-user")));
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"hello\",\"user\":%s}", user);
    party_send(conn, msg, (size_t)n, 0);
    return 0;
}

static void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    (void)room;
    if (!binary && len == 3 && memcmp(data, "max", 3) == 0) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "{\"message_max\":%zu}", party_message_max());
        party_send(conn, msg, (size_t)n, 0);
        return;
    }
    party_send(conn, data, len, binary);
}

static void on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean)
{
    (void)reason;
    (void)reason_len;
    party_log(room, 2, "on_close %s code=%d clean=%d stopping=%d", party_conn_id(conn), code, clean, party_node_stopping());
}

static int edge(party_edge_t *e)
{
    const char *forced = party_edge_header(e, "x-edge-status");
    if (forced != NULL)
        return atoi(forced);
    if (party_edge_header(e, "x-deny") != NULL) {
        char body[512];
        int n = snprintf(body, sizeof(body), "{\"denied\":\"%s/%s\",\"method\":\"%s\",\"path\":\"%s\"}", party_edge_party(e),
                         party_edge_room(e), party_edge_method(e), party_edge_path(e));
        party_edge_respond(e, "application/json", body, (size_t)n);
        party_edge_response_header(e, "x-denied-by", or_empty(party_edge_var(e, "GREETING")));
        party_edge_log(e, 2, "denied");
        return 403;
    }
    char user[128];
    if (party_edge_query_param(e, "user", user, sizeof(user)) > 0)
        party_edge_set_header(e, "x-user", user);
    party_edge_set_header(e, "x-edge", "ran");
    /* partyd's own header cannot be set by a hook */
    if (party_edge_set_header(e, "x-partyd-from", "forged") != -EINVAL)
        party_edge_set_header(e, "x-edge", "x-partyd-from was accepted");
    return 0;
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "echo",
    .on_request = on_request,
    .on_connect = on_connect,
    .on_message = on_message,
    .on_close = on_close,
    .before_connect = edge,
    .before_request = edge,
};
