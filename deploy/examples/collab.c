/*
 * collab.c — an example party: the seed's CollabRoom. Who is in the room (presence) and where their cursors are, kept
 * in the room's storage so that they outlive the room's memory.
 *
 * It shows: state read back in on_start (PartyKit's onStart), one storage key per user so a cursor move rewrites one
 * small value, broadcasting to everyone but the sender, and telling a departure (on_close) from a replacement.
 *
 * Client → room: JSON text, validated strictly (unknown members, repeated members, wrong types are refused):
 *   {"type":"join","name":S}        S: 1–64 code points, no control characters; joins, or renames keeping the cursor
 *   {"type":"cursor","x":N,"y":N}   N: finite numbers; after a join
 * Room → client:
 *   {"type":"state","users":[User]}            on connect: every stored user
 *   {"type":"user-joined","user":User}         a join, to everyone (the sender included)
 *   {"type":"cursor","id":ID,"x":N,"y":N}      a cursor, to everyone but the sender
 *   {"type":"user-left","id":ID}               a joined connection closed, to everyone left
 *   {"type":"error","error":WHY}               to the sender alone; nothing is stored or sent
 *   User = {"id":ID,"name":S,"cursor":null|{"x":N,"y":N}}   ID: the connection id (partysocket's `id`)
 *
 * Storage: "user:" + ID → User as JSON, written by join and cursor, deleted when the user leaves. A user leaves when
 * its connection closes (not when a newer socket with the same id replaces it, code 4000). When partyd drops a room's
 * connections without a close — an operator's evict, hibernation, a crash — the users stay stored: their clients
 * reconnect with the same id and find their name and cursor where they were.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "example_json.h"
#include "party.h"

#define COLLAB_NAME_MAX 64
/* Refused unparsed: the largest valid message (a 64-character name written as \u escapes) is under 1 KiB. */
#define COLLAB_MESSAGE_MAX 4096
/* JSON as JavaScript reads it (every number a double), but a repeated member is an error, not "the last one wins". */
#define COLLAB_JSON_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL)
#define COLLAB_KEY_PREFIX "user:"
#define COLLAB_KEY_MAX (sizeof(COLLAB_KEY_PREFIX) + 128)

/* In memory, rebuilt by on_start from storage: the users by id. */
typedef struct st_collab_room_t {
    json_t *users; /* object: ID → User */
} collab_room_t;

/* ---- JSON out ---- */

/* The digits the reals of a user's cursor need (0 when none): a dump with that precision writes them exactly. */
static int collab_user_digits(const json_t *user)
{
    const json_t *cursor = json_object_get(user, "cursor");
    int digits = 0;
    for (int i = 0; i < 2; ++i) {
        const json_t *v = json_object_get(cursor, i == 0 ? "x" : "y");
        if (json_is_real(v)) {
            int d = example_digits(json_real_value(v));
            digits = d > digits ? d : digits;
        }
    }
    return digits;
}

/* ---- storage ---- */

static size_t collab_key(char *out, const char *id)
{
    size_t n = strlen(id);
    memcpy(out, COLLAB_KEY_PREFIX, sizeof(COLLAB_KEY_PREFIX) - 1);
    memcpy(out + sizeof(COLLAB_KEY_PREFIX) - 1, id, n);
    return sizeof(COLLAB_KEY_PREFIX) - 1 + n;
}

/* Writes a user to storage, then to memory. A put that storage refuses leaves both as they were; one it takes commits
 * with this event, and if that commit fails partyd restarts the room from disk: memory never runs ahead of storage. */
static int collab_store(party_room_t *room, json_t *user)
{
    collab_room_t *cr = party_room_data(room);
    const char *id = json_string_value(json_object_get(user, "id"));
    char key[COLLAB_KEY_MAX], *text = json_dumps(user, JSON_COMPACT | JSON_REAL_PRECISION(collab_user_digits(user)));
    int r = text != NULL ? party_storage_put(room, key, collab_key(key, id), text, strlen(text)) : -ENOMEM;
    free(text);
    if (r != 0) {
        party_log(room, 0, "cannot store user %s: %s", id, strerror(-r));
        return r;
    }
    json_object_set(cr->users, id, user);
    return 0;
}

static int collab_read_user(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    collab_room_t *cr = arg;
    const char *id = (const char *)key + sizeof(COLLAB_KEY_PREFIX) - 1;
    size_t id_len = key_len - (sizeof(COLLAB_KEY_PREFIX) - 1);
    json_t *user = json_loadb(value, value_len, 0, NULL);
    if (json_is_object(user))
        json_object_setn(cr->users, id, id_len, user);
    json_decref(user);
    return 0;
}

/* ---- callbacks ---- */

static int collab_on_start(party_room_t *room)
{
    collab_room_t *cr = calloc(1, sizeof(*cr));
    if (cr == NULL)
        return -ENOMEM;
    cr->users = json_object();
    party_room_set_data(room, cr); /* on_stop frees it, also when this fails */
    party_list_t all = {.prefix = COLLAB_KEY_PREFIX, .prefix_len = sizeof(COLLAB_KEY_PREFIX) - 1};
    long r = party_storage_list(room, &all, collab_read_user, cr);
    return r < 0 ? (int)r : 0;
}

static void collab_on_stop(party_room_t *room)
{
    collab_room_t *cr = party_room_data(room);
    if (cr == NULL)
        return; /* on_start failed before setting it */
    json_decref(cr->users);
    free(cr);
}

static int collab_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    collab_room_t *cr = party_room_data(room);
    json_t *users = json_array();
    const char *id;
    json_t *user;
    int digits = 0;
    json_object_foreach(cr->users, id, user)
    {
        int d = collab_user_digits(user);
        digits = d > digits ? d : digits;
        json_array_append(users, user);
    }
    example_send(room, conn, json_pack("{s:s, s:o}", "type", "state", "users", users), NULL, digits);
    return 0;
}

static void collab_join(party_room_t *room, party_conn_t *conn, json_t *m)
{
    static const char *const members[] = {"name", NULL};
    collab_room_t *cr = party_room_data(room);
    const char *extra = example_extra_member(m, members), *name = json_string_value(json_object_get(m, "name"));
    size_t len = json_string_length(json_object_get(m, "name")), chars = name != NULL ? party_utf8_length(name, len) : 0;
    char why[160];
    if (extra != NULL) {
        snprintf(why, sizeof(why), "join: unexpected member \"%.64s\"", extra);
        example_error(room, conn, why);
        return;
    }
    if (chars < 1 || chars > COLLAB_NAME_MAX) {
        example_error(room, conn, "join: \"name\" must be a string of 1 to 64 characters");
        return;
    }
    if (example_has_control(name, len, 0)) {
        example_error(room, conn, "join: \"name\" must not contain control characters");
        return;
    }
    /* a rename keeps the cursor */
    const json_t *old = json_object_get(cr->users, party_conn_id(conn));
    json_t *cursor = old != NULL ? json_object_get(old, "cursor") : NULL;
    json_t *user = json_pack("{s:s, s:s%, s:O}", "id", party_conn_id(conn), "name", name, len, "cursor",
                             cursor != NULL ? cursor : json_null());
    if (collab_store(room, user) != 0)
        example_error(room, conn, "join: could not be stored");
    else
        example_send(room, NULL, json_pack("{s:s, s:O}", "type", "user-joined", "user", user), NULL, collab_user_digits(user));
    json_decref(user);
}

static void collab_cursor(party_room_t *room, party_conn_t *conn, json_t *m)
{
    static const char *const members[] = {"x", "y", NULL};
    collab_room_t *cr = party_room_data(room);
    const char *extra = example_extra_member(m, members);
    const json_t *x = json_object_get(m, "x"), *y = json_object_get(m, "y");
    json_t *old = json_object_get(cr->users, party_conn_id(conn));
    char why[160];
    if (extra != NULL) {
        snprintf(why, sizeof(why), "cursor: unexpected member \"%.64s\"", extra);
        example_error(room, conn, why);
        return;
    }
    if (!json_is_number(x) || !json_is_number(y) || !isfinite(json_number_value(x)) || !isfinite(json_number_value(y))) {
        example_error(room, conn, "cursor: \"x\" and \"y\" must be finite numbers");
        return;
    }
    if (old == NULL) {
        example_error(room, conn, "cursor: join first");
        return;
    }
    double dx = json_number_value(x), dy = json_number_value(y);
    json_t *user = json_deep_copy(old); /* the stored user changes only once the write was taken */
    json_object_set_new(user, "cursor", json_pack("{s:o, s:o}", "x", example_number(dx), "y", example_number(dy)));
    if (collab_store(room, user) != 0) {
        example_error(room, conn, "cursor: could not be stored");
    } else {
        int ddx = example_digits(dx), ddy = example_digits(dy);
        example_send(room, NULL,
                    json_pack("{s:s, s:s, s:o, s:o}", "type", "cursor", "id", party_conn_id(conn), "x", example_number(dx), "y",
                              example_number(dy)),
                    conn, ddx > ddy ? ddx : ddy);
    }
    json_decref(user);
}

static void collab_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    json_t *m = example_parse(room, conn, data, len, binary, COLLAB_MESSAGE_MAX, COLLAB_JSON_FLAGS);
    if (m == NULL)
        return;
    const char *type = json_string_value(json_object_get(m, "type"));
    if (type != NULL && strcmp(type, "join") == 0)
        collab_join(room, conn, m);
    else if (type != NULL && strcmp(type, "cursor") == 0)
        collab_cursor(room, conn, m);
    else
        example_error(room, conn, "\"type\" must be \"join\" or \"cursor\"");
    json_decref(m);
}

static void collab_on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t reason_len, int clean)
{
    (void)reason, (void)reason_len, (void)clean;
    collab_room_t *cr = party_room_data(room);
    const char *id = party_conn_id(conn);
    /* 4000: a newer socket with this id replaced this one (a page reload, a reconnect); the user has not left */
    if (code == 4000 || party_room_connection(room, id) != NULL || json_object_get(cr->users, id) == NULL)
        return;
    char key[COLLAB_KEY_MAX];
    int r = party_storage_delete(room, key, collab_key(key, id));
    if (r < 0) {
        party_log(room, 0, "cannot delete user %s: %s", id, strerror(-r));
        return;
    }
    json_object_del(cr->users, id);
    example_send(room, NULL, json_pack("{s:s, s:s}", "type", "user-left", "id", id), NULL, 0);
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "collab",
    .on_start = collab_on_start,
    .on_stop = collab_on_stop,
    .on_connect = collab_on_connect,
    .on_message = collab_on_message,
    .on_close = collab_on_close,
};
