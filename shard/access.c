/*
 * access.c — party.h's room and connection accessors: ids, data, the connection lists, send, broadcast, close, state
 * and tags, vars, the node's state and the utilities.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>

#include "room_int.h"

/* ---- party.h: rooms ---- */

const char *party_room_id(const party_room_t *room)
{
    return room->id;
}

const char *party_room_party(const party_room_t *room)
{
    return room->party_name;
}

void *party_room_data(const party_room_t *room)
{
    return room->data;
}

void party_room_set_data(party_room_t *room, void *data)
{
    room->data = data;
}

size_t party_room_connection_count(const party_room_t *room)
{
    return room->open_count;
}

party_conn_t *party_room_connections(party_room_t *room, party_conn_t *prev)
{
    party_conn_t *c = prev == NULL ? room->conns : prev->next;
    while (c != NULL && (c->flags & CONN_CLOSED) != 0)
        c = c->next;
    return c;
}

static int conn_has_tag(const party_conn_t *c, const char *tag)
{
    for (size_t i = 0; i < c->num_tags; ++i)
        if (strcmp(c->tags[i], tag) == 0)
            return 1;
    return 0;
}

party_conn_t *party_room_connections_tagged(party_room_t *room, const char *tag, party_conn_t *prev)
{
    party_conn_t *c = prev;
    while ((c = party_room_connections(room, c)) != NULL && !conn_has_tag(c, tag))
        ;
    return c;
}

party_conn_t *party_room_connection(party_room_t *room, const char *id)
{
    party_conn_t *conn;
    HASH_FIND(hh_id, room->conns_by_id, id, strlen(id), conn);
    return conn;
}

static int check_payload(const void *data, size_t len, int binary)
{
    if (data == NULL && len != 0)
        return -EINVAL;
    if (len > rooms.conf->limits.message_bytes)
        return -EMSGSIZE;
    if (!binary && !base_utf8_valid(data, len))
        return -EINVAL;
    return 0;
}

int party_broadcast(party_room_t *room, const void *data, size_t len, int binary, const char *const *except, size_t nexcept)
{
    int ret;
    if ((ret = check_payload(data, len, binary)) != 0)
        return ret;
    if (nexcept > PROTO_MAX_EXCEPT || (nexcept != 0 && except == NULL))
        return -EINVAL;
    uint64_t cids[nexcept == 0 ? 1 : nexcept];
    size_t n = 0;
    for (size_t i = 0; i < nexcept; ++i) {
        party_conn_t *c = except[i] != NULL ? party_room_connection(room, except[i]) : NULL;
        if (c != NULL)
            cids[n++] = c->cid;
    }
    if (room->open_count <= n)
        return 0;
    const char *sep = strchr(room->key, '/');
    proto_msg_t m = {.type = PROTO_BROADCAST,
                     .party = proto_str(room->key, (size_t)(sep - room->key)),
                     .room = proto_str(sep + 1, room->key_len - (size_t)(sep - room->key) - 1),
                     .binary = binary,
                     .data = proto_str(data, len),
                     .except = cids,
                     .num_except = n};
    if ((ret = shard_emit(&m)) == -ENOTCONN)
        ret = 0; /* no router: nobody to deliver to */
    if (ret == 0) {
        rooms.messages_out += room->open_count - n;
        rooms.bytes_out += (uint64_t)len * (room->open_count - n);
        room_party_stats(room)->messages_out += room->open_count - n;
        room_party_stats(room)->bytes_out += (uint64_t)len * (room->open_count - n);
    }
    return ret;
}

/* ---- party.h: connections ---- */

const char *party_conn_id(const party_conn_t *conn)
{
    return conn->id;
}

int party_send(party_conn_t *conn, const void *data, size_t len, int binary)
{
    int ret;
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if ((ret = check_payload(data, len, binary)) != 0)
        return ret;
    proto_msg_t m = {.type = PROTO_SEND, .id = conn->cid, .binary = binary, .data = proto_str(data, len)};
    if ((ret = shard_emit(&m)) == 0) {
        ++rooms.messages_out;
        rooms.bytes_out += len;
        ++room_party_stats(conn->room)->messages_out;
        room_party_stats(conn->room)->bytes_out += len;
    }
    return ret;
}

static int close_code_valid(int code)
{
    return code == 1000 || code == 1001 || code == 1003 || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

int party_conn_close(party_conn_t *conn, int code, const char *reason)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if (reason == NULL)
        reason = "";
    size_t rlen = strlen(reason);
    if (!close_code_valid(code) || rlen > CLOSE_REASON_MAX || !base_utf8_valid(reason, rlen))
        return -EINVAL;
    room_emit_close_conn(conn->cid, code, reason);
    room_conn_forget(conn);
    conn->close_code = (uint16_t)code;
    conn->close_reason = xstrdup(reason);
    conn->next_deferred = rooms.deferred;
    rooms.deferred = conn;
    return 0;
}

int party_conn_set_state(party_conn_t *conn, const void *data, size_t len)
{
    if ((conn->flags & CONN_CLOSED) != 0)
        return -ENOTCONN;
    if (len > PARTY_STATE_MAX)
        return -EMSGSIZE;
    if (data == NULL && len != 0)
        return -EINVAL;
    void *copy = NULL;
    if (len != 0) {
        copy = xmalloc(len);
        memcpy(copy, data, len);
    }
    free(conn->state);
    conn->state = copy;
    conn->state_len = (uint32_t)len;
    return 0;
}

const void *party_conn_state(const party_conn_t *conn, size_t *len)
{
    *len = conn->state_len;
    return conn->state;
}

int party_conn_set_tags(party_conn_t *conn, const char *const *tags, size_t n)
{
    if (conn->room->connecting != conn)
        return -EBUSY;
    if (n > PARTY_TAGS_MAX || (n != 0 && tags == NULL))
        return -EINVAL;
    for (size_t i = 0; i < n; ++i) {
        size_t len = tags[i] != NULL ? strlen(tags[i]) : 0;
        if (len == 0 || len > PARTY_TAG_MAX || !base_utf8_valid(tags[i], len))
            return -EINVAL;
    }
    for (size_t i = 0; i < conn->num_tags; ++i)
        free(conn->tags[i]);
    free(conn->tags);
    conn->tags = n != 0 ? xcalloc(n, sizeof(char *)) : NULL;
    for (size_t i = 0; i < n; ++i)
        conn->tags[i] = xstrdup(tags[i]);
    conn->num_tags = (uint8_t)n;
    return 0;
}

size_t party_conn_tags(const party_conn_t *conn, const char *const **tags)
{
    *tags = (const char *const *)conn->tags;
    return conn->num_tags;
}

void rooms_node_stopping(void)
{
    rooms.node_stopping = 1;
}

int party_node_stopping(void)
{
    return rooms.node_stopping;
}

size_t party_message_max(void)
{
    return rooms.conf->limits.message_bytes;
}

int party_conn_refusal(party_conn_t *conn, const char *reason)
{
    if (conn->room->connecting != conn)
        return -EBUSY;
    size_t len = reason != NULL ? strlen(reason) : 0;
    if (reason == NULL || len == 0 || len >= sizeof(rooms.refusal) || !base_utf8_valid(reason, len))
        return -EINVAL;
    memcpy(rooms.refusal, reason, len + 1);
    return 0;
}

/* ---- party.h: vars ---- */

const char *party_var(const party_room_t *room, const char *name)
{
    return name != NULL ? config_party_var(room->conf, name) : NULL;
}

/* ---- party.h: utilities ---- */

int party_utf8_valid(const void *data, size_t len)
{
    return base_utf8_valid(data, len);
}

size_t party_utf8_length(const void *data, size_t len)
{
    return base_utf8_count(data, len);
}

uint64_t party_now_ms(void)
{
    return room_wall_ms();
}

void party_log(const party_room_t *room, int level, const char *fmt, ...)
{
    char who[sizeof("room ") + BASE_ROOM_KEY_MAX];
    snprintf(who, sizeof(who), "room %s", room->key);
    va_list ap;
    va_start(ap, fmt);
    log_party_vmsg(level, who, fmt, ap);
    va_end(ap);
}
