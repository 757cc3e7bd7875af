/*
 * typed_chat.c — an example party: a chat room with a typed protocol, every client message validated before it is
 * acted on, and a history that lives in the room's storage.
 *
 * It shows: a discriminated union parsed strictly (PartyKit's "parse and validate messages with a typed protocol"),
 * errors answered to the sender alone, state kept where it survives (names in connection state, which outlives
 * hibernation; messages in storage, one key per message, which outlives eviction and restarts), and reading the tail
 * of a history with party_storage_list (reverse, limit).
 *
 * Client → room: one JSON object per text message (lengths count code points, as JavaScript's [...s].length does):
 *   {"type":"join","name":S}        S: 1–64, no control characters; sets (or changes) the sender's name
 *   {"type":"chat","content":S}     S: 1–2000, no control characters but tab, LF, CR; after a join
 *   {"type":"cursor","x":N,"y":N}   N: finite numbers; after a join
 * Members other than these are refused, as are duplicated members.
 *
 * Room → client:
 *   {"type":"history","messages":[Msg]}      on connect: the last 100 messages, oldest first
 *   {"type":"joined","id":ID,"name":S}       a join, to everyone (the sender included)
 *   {"type":"chat",...Msg}                   a chat, to everyone (the sender included), once it is on disk
 *   {"type":"cursor","id":ID,"x":N,"y":N}    a cursor, to everyone but the sender
 *   {"type":"error","error":WHY}             to the sender alone, for anything else it sent: nothing is stored or sent
 *   Msg = {"id":N,"name":S,"content":S,"ts":MS}   id: the message's number in the room (1, 2, ...); ts: epoch ms
 *
 * Storage: "msg:" + the message number in 20 digits → Msg as JSON. A chat writes its key and deletes the one that fell
 * out of the last 100, so a message costs two writes however long the room has lived. The writes and the broadcast
 * are one transaction: a chat that cannot be sent (over limits.message_bytes) is not kept, and its sender is told.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "example_json.h"
#include "party.h"

#define TCHAT_HISTORY 100
#define TCHAT_NAME_MAX 64
#define TCHAT_CONTENT_MAX 2000
/* Refused unparsed: the largest valid chat is 2000 astral code points written as \uXXXX\uXXXX (24000 bytes) plus its
 * frame, so nothing valid is turned away, and a client cannot make the room parse megabytes. */
#define TCHAT_MESSAGE_MAX 32768
/* JSON as JavaScript reads it (every number a double, U+0000 a character), but strict: a repeated member is an error
 * rather than "the last one wins", so what was validated is what is used. */
#define TCHAT_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)
#define TCHAT_KEY_PREFIX "msg:"

/* What the room keeps in memory: only what on_start rebuilds from storage. */
typedef struct st_tchat_room_t {
    uint64_t seq; /* the number of the newest message */
} tchat_room_t;

/* ---- validation ---- */

/* The string member `key` of `m` when it has 1..max code points and no control characters; else NULL, with the
 * reason in why[0..cap). */
static const char *tchat_text(const json_t *m, const char *type, const char *key, size_t max, int multiline, size_t *len, char *why,
                              size_t cap)
{
    const json_t *v = json_object_get(m, key);
    size_t chars = 0;
    if (json_is_string(v)) {
        *len = json_string_length(v);
        chars = party_utf8_length(json_string_value(v), *len);
    }
    if (chars < 1 || chars > max) {
        snprintf(why, cap, "%s: \"%s\" must be a string of 1 to %zu characters", type, key, max);
        return NULL;
    }
    if (example_has_control(json_string_value(v), *len, multiline)) {
        snprintf(why, cap, "%s: \"%s\" must not contain control characters", type, key);
        return NULL;
    }
    return json_string_value(v);
}

/* The sender's name, from its connection state (set by join): NULL before a join. */
static const char *tchat_name(const party_conn_t *conn, size_t *len)
{
    const char *name = party_conn_state(conn, len);
    return *len > 0 ? name : NULL;
}

/* ---- storage ---- */

static int tchat_key(char *out, size_t cap, uint64_t seq)
{
    return snprintf(out, cap, TCHAT_KEY_PREFIX "%020llu", (unsigned long long)seq);
}

static int tchat_read_seq(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)value, (void)value_len;
    char digits[24];
    size_t n = key_len - (sizeof(TCHAT_KEY_PREFIX) - 1);
    if (n < sizeof(digits)) {
        memcpy(digits, (const char *)key + sizeof(TCHAT_KEY_PREFIX) - 1, n);
        digits[n] = '\0';
        *(uint64_t *)arg = strtoull(digits, NULL, 10);
    }
    return 1;
}

/* Listed newest first: each goes in front, so the array ends oldest first. */
static int tchat_read_message(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)key, (void)key_len;
    json_t *m = json_loadb(value, value_len, 0, NULL);
    if (json_is_object(m))
        json_array_insert(arg, 0, m);
    json_decref(m);
    return 0;
}

/* ---- callbacks ---- */

static int tchat_on_start(party_room_t *room)
{
    tchat_room_t *tr = calloc(1, sizeof(*tr));
    if (tr == NULL)
        return -ENOMEM;
    party_room_set_data(room, tr); /* on_stop frees it, also when this fails */
    /* the newest key carries the last number: no counter key to keep in step with the messages */
    party_list_t newest = {.prefix = TCHAT_KEY_PREFIX, .prefix_len = sizeof(TCHAT_KEY_PREFIX) - 1, .limit = 1, .reverse = 1};
    long r = party_storage_list(room, &newest, tchat_read_seq, &tr->seq);
    return r < 0 ? (int)r : 0;
}

static void tchat_on_stop(party_room_t *room)
{
    free(party_room_data(room));
}

static int tchat_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    json_t *messages = json_array();
    party_list_t last = {
        .prefix = TCHAT_KEY_PREFIX, .prefix_len = sizeof(TCHAT_KEY_PREFIX) - 1, .limit = TCHAT_HISTORY, .reverse = 1};
    long n = party_storage_list(room, &last, tchat_read_message, messages);
    if (n < 0) {
        party_log(room, 0, "cannot read the history: %s", strerror((int)-n));
        json_decref(messages);
        party_conn_refusal(conn, "the history could not be read; try again");
        return 500;
    }
    /* limits.message_bytes may be set below what 100 long messages take: the newest that fit are sent */
    size_t max = party_message_max();
    for (;;) {
        json_t *history = json_pack("{s:s, s:O}", "type", "history", "messages", messages);
        char *text = json_dumps(history, JSON_COMPACT);
        json_decref(history);
        if (text == NULL)
            break;
        size_t len = strlen(text);
        if (len <= max || json_array_size(messages) == 0) {
            party_send(conn, text, len, 0);
            free(text);
            break;
        }
        free(text);
        json_array_remove(messages, 0); /* the oldest */
    }
    json_decref(messages);
    return 0;
}

/* A chat: stored, the one that fell out of the last TCHAT_HISTORY deleted, and broadcast, all or nothing. */
typedef struct st_tchat_append_t {
    uint64_t seq;
    char *stored; /* Msg */
    char *sent;   /* {"type":"chat",...Msg} */
    int error;    /* why it was undone */
} tchat_append_t;

/* In a transaction, so that a chat that cannot be sent (a message over limits.message_bytes, party_message_max(), which
 * party_broadcast enforces) is not kept either: the history holds only what everyone saw. The broadcast is released
 * by partyd once the writes are on disk, so no client sees a message that a crash could take back. */
static int tchat_append(party_room_t *room, void *arg)
{
    tchat_append_t *a = arg;
    char key[32];
    int key_len = tchat_key(key, sizeof(key), a->seq);
    if ((a->error = party_storage_put(room, key, (size_t)key_len, a->stored, strlen(a->stored))) != 0)
        return 1;
    if (a->seq > TCHAT_HISTORY) {
        key_len = tchat_key(key, sizeof(key), a->seq - TCHAT_HISTORY);
        if ((a->error = party_storage_delete(room, key, (size_t)key_len)) < 0)
            return 1;
    }
    return (a->error = party_broadcast(room, a->sent, strlen(a->sent), 0, NULL, 0)) != 0;
}

static void tchat_join(party_room_t *room, party_conn_t *conn, json_t *m)
{
    static const char *const members[] = {"name", NULL};
    char why[160];
    size_t len;
    const char *extra = example_extra_member(m, members), *name;
    if (extra != NULL) {
        snprintf(why, sizeof(why), "join: unexpected member \"%.64s\"", extra);
        example_error(room, conn, why);
    } else if ((name = tchat_text(m, "join", "name", TCHAT_NAME_MAX, 0, &len, why, sizeof(why))) == NULL) {
        example_error(room, conn, why);
    } else if (party_conn_set_state(conn, name, len) == 0) {
        example_send(room, NULL, json_pack("{s:s, s:s, s:s%}", "type", "joined", "id", party_conn_id(conn), "name", name, len), NULL,
                   0);
    }
}

static void tchat_chat(party_room_t *room, party_conn_t *conn, json_t *m)
{
    static const char *const members[] = {"content", NULL};
    tchat_room_t *tr = party_room_data(room);
    char why[160];
    size_t name_len, len;
    const char *extra = example_extra_member(m, members), *name = tchat_name(conn, &name_len), *content;
    if (extra != NULL) {
        snprintf(why, sizeof(why), "chat: unexpected member \"%.64s\"", extra);
        example_error(room, conn, why);
        return;
    }
    if ((content = tchat_text(m, "chat", "content", TCHAT_CONTENT_MAX, 1, &len, why, sizeof(why))) == NULL) {
        example_error(room, conn, why);
        return;
    }
    if (name == NULL) {
        example_error(room, conn, "chat: join first");
        return;
    }

    uint64_t seq = tr->seq + 1;
    json_t *msg = json_pack("{s:I, s:s%, s:s%, s:I}", "id", (json_int_t)seq, "name", name, name_len, "content", content, len, "ts",
                            (json_int_t)party_now_ms());
    json_t *out = json_pack("{s:s}", "type", "chat");
    json_object_update(out, msg);
    tchat_append_t a = {.seq = seq, .stored = json_dumps(msg, JSON_COMPACT), .sent = json_dumps(out, JSON_COMPACT)};
    json_decref(msg);
    json_decref(out);
    if (a.stored == NULL || a.sent == NULL)
        a.error = -ENOMEM;
    else if (party_storage_transaction(room, tchat_append, &a) == 0)
        tr->seq = seq;
    if (a.error == -EMSGSIZE) {
        example_error(room, conn, "chat: too long to send over this node (limits.message_bytes)");
    } else if (a.error != 0) {
        party_log(room, 0, "cannot keep message %llu: %s", (unsigned long long)seq, strerror(-a.error));
        example_error(room, conn, "chat: the message could not be stored");
    }
    free(a.stored);
    free(a.sent);
}

static void tchat_cursor(party_room_t *room, party_conn_t *conn, json_t *m)
{
    static const char *const members[] = {"x", "y", NULL};
    char why[160];
    size_t name_len;
    const char *extra = example_extra_member(m, members);
    const json_t *x = json_object_get(m, "x"), *y = json_object_get(m, "y");
    if (extra != NULL) {
        snprintf(why, sizeof(why), "cursor: unexpected member \"%.64s\"", extra);
        example_error(room, conn, why);
    } else if (!json_is_number(x) || !json_is_number(y) || !isfinite(json_number_value(x)) || !isfinite(json_number_value(y))) {
        example_error(room, conn, "cursor: \"x\" and \"y\" must be finite numbers");
    } else if (tchat_name(conn, &name_len) == NULL) {
        example_error(room, conn, "cursor: join first");
    } else {
        double dx = json_number_value(x), dy = json_number_value(y);
        int dxd = example_digits(dx), dyd = example_digits(dy);
        example_send(room, NULL,
                   json_pack("{s:s, s:s, s:o, s:o}", "type", "cursor", "id", party_conn_id(conn), "x", example_number(dx), "y",
                             example_number(dy)),
                   conn, dxd > dyd ? dxd : dyd);
    }
}

static void tchat_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    json_t *m = example_parse(room, conn, data, len, binary, TCHAT_MESSAGE_MAX, TCHAT_JSON_FLAGS);
    if (m == NULL)
        return;
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type != NULL && strcmp(type, "join") == 0)
        tchat_join(room, conn, m);
    else if (type != NULL && strcmp(type, "chat") == 0)
        tchat_chat(room, conn, m);
    else if (type != NULL && strcmp(type, "cursor") == 0)
        tchat_cursor(room, conn, m);
    else
        example_error(room, conn, "\"type\" must be \"join\", \"chat\" or \"cursor\"");
    json_decref(m);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "typed_chat",
    .on_start = tchat_on_start,
    .on_stop = tchat_on_stop,
    .on_connect = tchat_on_connect,
    .on_message = tchat_on_message,
};
