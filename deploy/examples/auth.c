/*
 * auth.c — an example party: authentication at the edge. The router checks a signed token before a request reaches
 * any room, and hands the room the user it proved, as a header no client can forge.
 *
 * It shows: before_connect / before_request, a secret from the config's vars (never from the code), refusing with a
 * status, a JSON body and a WWW-Authenticate header, party_edge_set_header replacing whatever the client sent under
 * that name, and a room that trusts only that header.
 *
 * The token: ?token=USER.SIG on the URL (a browser cannot set headers on a WebSocket, so a query parameter it is).
 * USER is 1–64 of A-Z a-z 0-9 . _ - @; SIG is HMAC-SHA256(key = AUTH_SECRET, message = USER) in 64 lowercase hex
 * digits, made by the application's own backend, which holds the same secret:
 *     node -e "console.log(require('crypto').createHmac('sha256', process.env.AUTH_SECRET).update('alice').digest('hex'))"
 * No token → 401 {"error":"missing token"}; a malformed one or a signature that does not match (another user's, or
 * made with another secret) → 401 {"error":"invalid token"}; with WWW-Authenticate: Bearer (and, for a bad token,
 * error="invalid_token", as RFC 6750 has it). When the var AUTH_SECRET is missing or empty, every request gets 500
 * and the router logs why, once per party: refusing all is the only safe default, and a secret is never guessed.
 *
 * The room, behind the hooks (the user from the "x-user-id" header the hook set):
 *   WebSocket: on connect {"type":"welcome","user":USER}; a text message (1–2000 code points) is broadcast to
 *              everyone as {"type":"said","user":USER,"text":TEXT}; anything else gets {"type":"error","error":WHY}
 *   GET        200 {"user":USER,"connections":N}; other methods 405
 *
 * Config:  "parties": {"secure": {"module": ".../auth.so", "vars": {"AUTH_SECRET": {"env": "AUTH_SECRET"}}}}
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "party.h"

#define AUTH_USER_MAX 64
#define AUTH_SIG_LEN 64 /* SHA-256 in hex */
#define AUTH_TEXT_MAX 2000
#define AUTH_HEADER "x-user-id"

/* ---- the edge: in the router ---- */

/* Whether `user` is 1..AUTH_USER_MAX of the characters a user id may have: a header value and a log line can carry it
 * as it is. */
static int auth_user_valid(const char *user, size_t len)
{
    if (len < 1 || len > AUTH_USER_MAX)
        return 0;
    for (size_t i = 0; i < len; ++i) {
        char c = user[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' ||
              c == '@'))
            return 0;
    }
    return 1;
}

/* Whether `sig` is the hex HMAC-SHA256 of `user` under `secret`; in constant time, so that how long a refusal takes
 * says nothing about how many leading digits of a forged signature were right. */
static int auth_sig_valid(const char *secret, const char *user, size_t user_len, const char *sig, size_t sig_len)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned mac_len = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    if (sig_len != AUTH_SIG_LEN)
        return 0;
    if (HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)user, user_len, mac, &mac_len) == NULL ||
        mac_len * 2 != AUTH_SIG_LEN)
        return 0;
    for (unsigned i = 0; i < mac_len; ++i) {
        hex[2 * i] = "0123456789abcdef"[mac[i] >> 4];
        hex[2 * i + 1] = "0123456789abcdef"[mac[i] & 15];
    }
    int same = CRYPTO_memcmp(hex, sig, AUTH_SIG_LEN) == 0;
    OPENSSL_cleanse(mac, sizeof(mac));
    OPENSSL_cleanse(hex, sizeof(hex));
    return same;
}

static int auth_refuse(party_edge_t *edge, int status, const char *why)
{
    json_t *b = json_pack("{s:s}", "error", why);
    char *body = b != NULL ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    if (body != NULL)
        party_edge_respond(edge, "application/json", body, strlen(body));
    free(body);
    if (status == 401)
        party_edge_response_header(edge, "www-authenticate",
                                   strcmp(why, "missing token") == 0 ? "Bearer" : "Bearer error=\"invalid_token\"");
    return status;
}

/* Whether this is the first time the missing secret of `party` is told, in this router process. Several parties may
 * load this module with vars of their own, so it is once per party. The router's loop is one thread: no lock. A
 * fixed table rather than a malloc'ed list, since a module may be unloaded with its static pointers. */
static int auth_first_warning(const char *party)
{
    static char warned[32][65]; /* a party name is at most 64 bytes */
    static size_t n;
    for (size_t i = 0; i < n; ++i)
        if (strcmp(warned[i], party) == 0)
            return 0;
    if (n < sizeof(warned) / sizeof(warned[0]))
        snprintf(warned[n++], sizeof(warned[0]), "%s", party);
    return 1;
}

/* Both hooks: a WebSocket upgrade and any other request need the same proof. */
static int auth_check(party_edge_t *edge)
{
    const char *secret = party_edge_var(edge, "AUTH_SECRET");
    if (secret == NULL || secret[0] == '\0') {
        if (auth_first_warning(party_edge_party(edge)))
            party_edge_log(edge, 0, "the var AUTH_SECRET is %s: every request to this party is refused with 500",
                           secret == NULL ? "not set" : "empty");
        return auth_refuse(edge, 500, "authentication is not configured");
    }

    char token[AUTH_USER_MAX + 1 + AUTH_SIG_LEN + 1];
    long len = party_edge_query_param(edge, "token", token, sizeof(token));
    if (len == -1 || len == 0)
        return auth_refuse(edge, 401, "missing token");
    if (len < 0)
        return auth_refuse(edge, 401, "invalid token"); /* too long to be one */
    const char *dot = memrchr(token, '.', (size_t)len);
    if (dot == NULL)
        return auth_refuse(edge, 401, "invalid token");
    size_t user_len = (size_t)(dot - token);
    if (!auth_user_valid(token, user_len) || !auth_sig_valid(secret, token, user_len, dot + 1, (size_t)len - user_len - 1))
        return auth_refuse(edge, 401, "invalid token");

    token[user_len] = '\0';
    /* replaces any x-user-id the client sent: the room can trust this header because only this hook sets it */
    int r = party_edge_set_header(edge, AUTH_HEADER, token);
    if (r != 0) {
        party_edge_log(edge, 0, "cannot set %s: %s", AUTH_HEADER, strerror(-r));
        return auth_refuse(edge, 500, "internal error");
    }
    return 0;
}

/* ---- the room: on its shard ---- */

static void auth_send(party_room_t *room, party_conn_t *conn, json_t *msg)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    int r = text == NULL   ? -ENOMEM
            : conn != NULL ? party_send(conn, text, strlen(text), 0)
                           : party_broadcast(room, text, strlen(text), 0, NULL, 0);
    if (r != 0 && r != -ENOTCONN)
        party_log(room, 1, "cannot send a message: %s", strerror(-r));
    free(text);
}

static int auth_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    /* absent only if the hook did not run, which this party never allows: refuse rather than serve an anonymous user */
    const char *user = party_request_header(req, AUTH_HEADER);
    if (user == NULL) {
        party_conn_refusal(conn, "missing token");
        return 401;
    }
    /* kept with the connection: it survives hibernation, and on_message needs no header */
    int r = party_conn_set_state(conn, user, strlen(user));
    if (r != 0) {
        party_log(room, 0, "cannot keep the user of a connection: %s", strerror(-r));
        party_conn_refusal(conn, "internal error");
        return 500;
    }
    auth_send(room, conn, json_pack("{s:s, s:s}", "type", "welcome", "user", user));
    return 0;
}

static void auth_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    size_t user_len;
    const char *user = party_conn_state(conn, &user_len);
    size_t chars = binary ? 0 : party_utf8_length(data, len);
    if (binary) {
        auth_send(room, conn, json_pack("{s:s, s:s}", "type", "error", "error", "binary messages are not supported; send text"));
    } else if (chars < 1 || chars > AUTH_TEXT_MAX) {
        auth_send(room, conn, json_pack("{s:s, s:s}", "type", "error", "error", "a message is 1 to 2000 characters of text"));
    } else {
        auth_send(room, NULL,
                  json_pack("{s:s, s:s%, s:s%}", "type", "said", "user", user, user_len, "text", (const char *)data, len));
    }
}

static void auth_on_request(party_room_t *room, party_request_t *req)
{
    const char *user = party_request_header(req, AUTH_HEADER);
    json_t *body;
    int status = 200;
    if (strcmp(party_request_method(req), "GET") != 0) {
        party_response_header(req, "allow", "GET");
        status = 405;
        body = json_pack("{s:s}", "error", "method not allowed: GET");
    } else if (user == NULL) {
        status = 401;
        body = json_pack("{s:s}", "error", "missing token");
    } else {
        body = json_pack("{s:s, s:I}", "user", user, "connections", (json_int_t)party_room_connection_count(room));
    }
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    party_respond(req, status, "application/json", text, text != NULL ? strlen(text) : 0);
    free(text);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "auth",
    .on_connect = auth_on_connect,
    .on_message = auth_on_message,
    .on_request = auth_on_request,
    .before_connect = auth_check,
    .before_request = auth_check,
};
