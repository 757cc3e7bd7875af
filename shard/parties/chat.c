/*
 * chat.c — the chat party: the seed's ChatRoom and CollabRoom with a chat history.
 *
 * On connect a client gets {"type":"welcome","id":ID} then {"type":"state","users":[User],"messages":[Msg]}.
 * It sends JSON text:
 *   {"type":"join","name":S}       name 1–64 code points; joins (or renames); broadcast user-joined to all
 *   {"type":"cursor","x":N,"y":N}  stored when joined; broadcast {"type":"cursor","id","x","y"} to all others
 *   {"type":"chat","content":S}    content 1–4096 code points; kept; broadcast {"type":"chat",...Msg} to all
 * Anything else gets {"type":"error","error":WHY} and changes nothing. A joined connection that closes is announced
 * with {"type":"user-left","id":ID}.
 *   User = {"id","name","cursor":null|{"x","y"}}     Msg = {"senderId","content","timestamp"}
 * HTTP: GET → {"users","messages"}; POST {"content":S} → kept as senderId "http", broadcast, 201 with the Msg;
 * a bad body → 400 {"error"}; other methods → 405.
 *
 * Users are the joined, open connections; a user's name and cursor live in the connection's state so they survive
 * anything the connection survives, hibernation included. The history is in the room's storage — "msg:" + a
 * 20-digit sequence number for each message (the last CHAT_KEEP are kept), "seq" for the last number — so it survives
 * eviction and restarts; on_start loads the last CHAT_HISTORY into memory for `state` and GET.
 *
 * The in-memory window is bounded by bytes as well as by count: its messages, encoded, take at most half of
 * limits.message_bytes (party_message_max), so that `state` (the window and the users) fits in one message and GET in
 * one response. 100 messages of 4096 four-byte code points would be 1.6 MB, past the default 1 MiB cap: such a
 * window keeps fewer, newest first. A chat message whose broadcast would not fit in one message is refused before it
 * is stored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "parties.h"

#define CHAT_HISTORY 100
#define CHAT_KEEP 1000
#define CHAT_NAME_MAX 64
#define CHAT_CONTENT_MAX 4096
/* read JSON as JavaScript's JSON.parse does: U+0000 is a code point like any other, every number is a double, and a
 * repeated key keeps its last value */
#define CHAT_JSON_FLAGS (JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)

typedef struct st_chat_room_t {
    json_t *messages; /* array of Msg, oldest first, at most CHAT_HISTORY and window_budget() bytes encoded */
    size_t bytes;     /* the messages' encoded size, commas included */
    uint64_t seq;     /* the number of the last message kept */
} chat_room_t;

/* What the window may take of a message: the other half is for the users and the envelope of `state`. */
static size_t window_budget(void)
{
    return party_message_max() / 2;
}

static size_t encoded_size(const json_t *msg)
{
    return json_dumpb(msg, NULL, 0, JSON_COMPACT) + 1; /* and its comma */
}

/* Drops the oldest messages of the window until it is within its count and its bytes. */
static void window_trim(chat_room_t *cr)
{
    while (json_array_size(cr->messages) > CHAT_HISTORY || (cr->bytes > window_budget() && json_array_size(cr->messages) != 0)) {
        cr->bytes -= encoded_size(json_array_get(cr->messages, 0));
        json_array_remove(cr->messages, 0);
    }
}

/* A coordinate as the client sent it: integers stay integers on the way out. */
typedef struct st_chat_number_t {
    uint8_t is_int;
    union {
        json_int_t i;
        double d;
    } v;
} chat_number_t;

/* The connection state of a joined user (a plain struct: it is copied in and out of the connection). */
typedef struct st_chat_user_t {
    uint8_t has_cursor;
    chat_number_t x, y;
    uint16_t name_len;
    char name[CHAT_NAME_MAX * 4]; /* 64 code points of at most 4 bytes */
} chat_user_t;

static int user_get(const party_conn_t *conn, chat_user_t *user)
{
    size_t len;
    const void *state = party_conn_state(conn, &len);
    if (state == NULL || len != sizeof(*user))
        return 0;
    memcpy(user, state, sizeof(*user));
    return 1;
}

static json_t *number_json(const chat_number_t *n)
{
    return n->is_int ? json_integer(n->v.i) : json_real(n->v.d);
}

/* Messages are decoded with every number as a double (JSON_DECODE_INT_AS_REAL: a 2^64 coordinate is as finite as any
 * other, as in JavaScript); integral values that a double holds exactly go back out as integers. */
static chat_number_t number_from(const json_t *j)
{
    chat_number_t n = {0};
    double d = json_number_value(j);
    if (d > -9007199254740992.0 && d < 9007199254740992.0 && d == (double)(json_int_t)d) {
        n.is_int = 1;
        n.v.i = (json_int_t)d;
    } else {
        n.v.d = d;
    }
    return n;
}

static json_t *cursor_json(const chat_user_t *u)
{
    if (!u->has_cursor)
        return json_null();
    return json_pack("{s:o, s:o}", "x", number_json(&u->x), "y", number_json(&u->y));
}

static json_t *user_json(const party_conn_t *conn, const chat_user_t *u)
{
    return json_pack("{s:s, s:s%, s:o}", "id", party_conn_id(conn), "name", u->name, (size_t)u->name_len, "cursor", cursor_json(u));
}

static json_t *users_json(party_room_t *room)
{
    json_t *users = json_array();
    for (party_conn_t *c = party_room_connections(room, NULL); c != NULL; c = party_room_connections(room, c)) {
        chat_user_t u;
        if (user_get(c, &u))
            json_array_append_new(users, user_json(c, &u));
    }
    return users;
}

/* Sends `msg` (consumed) to one connection, or to the room except `except` when conn is NULL. Returns what
 * party_send or party_broadcast returned (-EMSGSIZE: over limits.message_bytes), -ENOMEM when it could not be encoded;
 * a failure is logged. */
static int send_json(party_room_t *room, party_conn_t *conn, json_t *msg, party_conn_t *except)
{
    char *text = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (text == NULL) {
        party_log(room, 0, "cannot encode a message");
        return -ENOMEM;
    }
    int r;
    if (conn != NULL) {
        r = party_send(conn, text, strlen(text), 0);
    } else {
        const char *ids[1] = {except != NULL ? party_conn_id(except) : NULL};
        r = party_broadcast(room, text, strlen(text), 0, ids, except != NULL ? 1 : 0);
    }
    /* a connection that went away meanwhile is no fault of the message */
    if (r != 0 && r != -ENOTCONN)
        party_log(room, 1, "cannot send a %zu-byte message: %s", strlen(text), strerror(-r));
    free(text);
    return r;
}

static void send_error(party_room_t *room, party_conn_t *conn, const char *why)
{
    send_json(room, conn, json_pack("{s:s, s:s}", "type", "error", "error", why), NULL);
}

/* The string member `key` of `obj` if it holds 1..max code points; else NULL. */
static const char *bounded_string(const json_t *obj, const char *key, size_t max, size_t *len)
{
    const json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return NULL;
    const char *s = json_string_value(v);
    *len = json_string_length(v);
    size_t chars = party_utf8_length(s, *len);
    if (chars < 1 || chars > max)
        return NULL;
    return s;
}

static int msg_key(char *out, uint64_t seq)
{
    return snprintf(out, 32, "msg:%020llu", (unsigned long long)seq);
}

/* Keeps a message: in storage (the oldest beyond CHAT_KEEP goes) and in the in-memory window. NULL when storage
 * refused it, or when its broadcast would be over limits.message_bytes (*too_big set; nothing is kept then). */
static json_t *append_message(party_room_t *room, const char *sender, const char *content, size_t len, int *too_big)
{
    chat_room_t *cr = party_room_data(room);
    json_t *msg =
        json_pack("{s:s, s:s%, s:I}", "senderId", sender, "content", content, len, "timestamp", (json_int_t)party_now_ms());
    /* the broadcast is the message and "type":"chat" (16 bytes more); a content of 4096 code points escaped as
     * \u0001 is 24 KiB, over a small limits.message_bytes */
    *too_big = encoded_size(msg) + 16 > party_message_max();
    if (*too_big) {
        json_decref(msg);
        return NULL;
    }
    char *text = json_dumps(msg, JSON_COMPACT);
    char key[32], seq[24];
    uint64_t n = cr->seq + 1;
    int klen = msg_key(key, n), slen = snprintf(seq, sizeof(seq), "%llu", (unsigned long long)n);
    int r = text != NULL ? party_storage_put(room, key, (size_t)klen, text, strlen(text)) : -ENOMEM;
    free(text);
    if (r != 0) {
        party_log(room, 0, "cannot keep a message: %s", strerror(-r));
        json_decref(msg);
        return NULL;
    }
    party_storage_put(room, "seq", 3, seq, (size_t)slen);
    if (n > CHAT_KEEP) {
        klen = msg_key(key, n - CHAT_KEEP);
        party_storage_delete(room, key, (size_t)klen);
    }
    cr->seq = n;
    json_array_append(cr->messages, msg);
    cr->bytes += encoded_size(msg);
    window_trim(cr);
    return msg;
}

static void broadcast_chat(party_room_t *room, json_t *msg)
{
    send_json(room, NULL,
              json_pack("{s:s, s:O, s:O, s:O}", "type", "chat", "senderId", json_object_get(msg, "senderId"), "content",
                        json_object_get(msg, "content"), "timestamp", json_object_get(msg, "timestamp")),
              NULL);
}

/* ---- callbacks ---- */

static int load_message(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)key, (void)key_len;
    json_t *m = json_loadb(value, value_len, 0, NULL);
    if (m != NULL)
        json_array_insert_new(arg, 0, m); /* listed newest first */
    return 0;
}

static int chat_on_start(party_room_t *room)
{
    chat_room_t *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return -ENOMEM;
    cr->messages = json_array();
    party_room_set_data(room, cr);
    void *v;
    size_t len;
    int r = party_storage_get(room, "seq", 3, &v, &len);
    if (r == 0) {
        cr->seq = strtoull(v, NULL, 10);
        free(v);
    } else if (r != -ENOENT) {
        return r;
    }
    party_list_t last = {.prefix = "msg:", .prefix_len = 4, .limit = CHAT_HISTORY, .reverse = 1};
    long n = party_storage_list(room, &last, load_message, cr->messages);
    if (n < 0)
        return (int)n;
    /* a history written under a larger limits.message_bytes (or before the window counted bytes) is cut to fit */
    for (size_t i = 0; i < json_array_size(cr->messages); ++i)
        cr->bytes += encoded_size(json_array_get(cr->messages, i));
    window_trim(cr);
    return 0;
}

static void chat_on_stop(party_room_t *room)
{
    chat_room_t *cr = party_room_data(room);
    json_decref(cr->messages);
    free(cr);
}

static int chat_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    chat_room_t *cr = party_room_data(room);
    send_json(room, conn, json_pack("{s:s, s:s}", "type", "welcome", "id", party_conn_id(conn)), NULL);
    int r = send_json(room, conn,
                      json_pack("{s:s, s:o, s:O}", "type", "state", "users", users_json(room), "messages", cr->messages), NULL);
    if (r == -EMSGSIZE) {
        /* the window fits; the users of a very big room may not: the client learns it has no state */
        send_error(room, conn, "state: the room's users and messages are over limits.message_bytes");
    }
    return 0;
}

static void on_join(party_room_t *room, party_conn_t *conn, const json_t *m)
{
    size_t len;
    const char *name = bounded_string(m, "name", CHAT_NAME_MAX, &len);
    if (name == NULL) {
        send_error(room, conn, "join: \"name\" must be a string of 1 to 64 characters");
        return;
    }
    chat_user_t u;
    if (!user_get(conn, &u))
        memset(&u, 0, sizeof(u)); /* a new user; a rename keeps the cursor */
    memset(u.name, 0, sizeof(u.name));
    memcpy(u.name, name, len);
    u.name_len = (uint16_t)len;
    party_conn_set_state(conn, &u, sizeof(u));
    send_json(room, NULL, json_pack("{s:s, s:o}", "type", "user-joined", "user", user_json(conn, &u)), NULL);
}

static void on_cursor(party_room_t *room, party_conn_t *conn, const json_t *m)
{
    const json_t *x = json_object_get(m, "x"), *y = json_object_get(m, "y");
    if (!json_is_number(x) || !json_is_number(y)) {
        send_error(room, conn, "cursor: \"x\" and \"y\" must be finite numbers");
        return;
    }
    chat_user_t u;
    if (user_get(conn, &u)) {
        u.has_cursor = 1;
        u.x = number_from(x);
        u.y = number_from(y);
        party_conn_set_state(conn, &u, sizeof(u));
    }
    chat_number_t nx = number_from(x), ny = number_from(y);
    send_json(room, NULL,
              json_pack("{s:s, s:s, s:o, s:o}", "type", "cursor", "id", party_conn_id(conn), "x", number_json(&nx), "y",
                        number_json(&ny)),
              conn);
}

static void on_chat(party_room_t *room, party_conn_t *conn, const json_t *m)
{
    size_t len;
    const char *content = bounded_string(m, "content", CHAT_CONTENT_MAX, &len);
    if (content == NULL) {
        send_error(room, conn, "chat: \"content\" must be a string of 1 to 4096 characters");
        return;
    }
    int too_big;
    json_t *msg = append_message(room, party_conn_id(conn), content, len, &too_big);
    if (msg == NULL) {
        send_error(room, conn,
                   too_big ? "chat: the message is over limits.message_bytes" : "chat: the message could not be stored");
        return;
    }
    broadcast_chat(room, msg);
    json_decref(msg);
}

static void chat_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    if (binary) {
        send_error(room, conn, "binary messages are not supported; send JSON text");
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb(data, len, CHAT_JSON_FLAGS, &jerr);
    if (m == NULL) {
        char why[256];
        snprintf(why, sizeof(why), "invalid JSON: %s", jerr.text);
        send_error(room, conn, why);
        return;
    }
    const char *type = json_is_object(m) ? json_string_value(json_object_get(m, "type")) : NULL;
    if (!json_is_object(m))
        send_error(room, conn, "a message must be a JSON object");
    else if (type == NULL)
        send_error(room, conn, "\"type\" must be a string");
    else if (strcmp(type, "join") == 0)
        on_join(room, conn, m);
    else if (strcmp(type, "cursor") == 0)
        on_cursor(room, conn, m);
    else if (strcmp(type, "chat") == 0)
        on_chat(room, conn, m);
    else
        send_error(room, conn, "unknown \"type\"; expected join, cursor or chat");
    json_decref(m);
}

static void chat_on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean)
{
    (void)code, (void)reason, (void)reason_len, (void)clean;
    chat_user_t u;
    if (user_get(conn, &u))
        send_json(room, NULL, json_pack("{s:s, s:s}", "type", "user-left", "id", party_conn_id(conn)), NULL);
}

static void chat_on_request(party_room_t *room, party_request_t *req)
{
    chat_room_t *cr = party_room_data(room);
    const char *method = party_request_method(req);
    if (strcmp(method, "GET") == 0) {
        parties_respond_json(req, 200, json_pack("{s:o, s:O}", "users", users_json(room), "messages", cr->messages));
        return;
    }
    if (strcmp(method, "POST") != 0) {
        party_response_header(req, "allow", "GET, POST");
        parties_respond_json(req, 405, json_pack("{s:s}", "error", "method not allowed"));
        return;
    }
    size_t len;
    const char *body = party_request_body(req, &len);
    json_error_t jerr;
    json_t *m = json_loadb(body, len, CHAT_JSON_FLAGS, &jerr);
    size_t clen;
    const char *content = json_is_object(m) ? bounded_string(m, "content", CHAT_CONTENT_MAX, &clen) : NULL;
    if (content == NULL) {
        char why[300];
        if (m == NULL)
            snprintf(why, sizeof(why), "invalid JSON: %s", jerr.text);
        else
            snprintf(why, sizeof(why), "the body must be an object with \"content\": a string of 1 to 4096 characters");
        parties_respond_json(req, 400, json_pack("{s:s}", "error", why));
        json_decref(m);
        return;
    }
    int too_big;
    json_t *msg = append_message(room, "http", content, clen, &too_big);
    json_decref(m);
    if (msg == NULL) {
        if (too_big)
            parties_respond_json(req, 413, json_pack("{s:s}", "error", "the message is over limits.message_bytes"));
        else
            parties_respond_json(req, 500, json_pack("{s:s}", "error", "the message could not be stored"));
        return;
    }
    broadcast_chat(room, msg);
    parties_respond_json(req, 201, msg);
}

const party_t party_chat = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "chat",
    .on_start = chat_on_start,
    .on_stop = chat_on_stop,
    .on_connect = chat_on_connect,
    .on_message = chat_on_message,
    .on_close = chat_on_close,
    .on_request = chat_on_request,
};
