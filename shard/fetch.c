/*
 * fetch.c — rooms calling rooms (party_fetch): the FETCH frame out, its FETCH_REPLY back to the waiting callback.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "room_int.h"

/* ---- party.h: rooms calling rooms ---- */

#define FETCH_HEADERS_MAX 64
#define FETCH_METHOD_MAX 16

static void fetch_unlink(room_fetch_t *f)
{
    HASH_DEL(rooms.fetches, f);
    if (f->prev != NULL)
        f->prev->next = f->next;
    else
        f->room->fetches = f->next;
    if (f->next != NULL)
        f->next->prev = f->prev;
}

void room_fetches_drop(party_room_t *room)
{
    while (room->fetches != NULL) {
        room_fetch_t *f = room->fetches;
        fetch_unlink(f);
        free(f);
    }
}

int party_fetch(party_room_t *room, const char *party, const char *room_id, const char *method, const char *path,
                const char *const *headers, const void *body, size_t len, party_fetch_cb cb, void *arg)
{
    if (room->stopping)
        return -EBUSY; /* from on_stop: the room's fetches are dropped right after it, the answer would find it gone */
    if (party == NULL || room_id == NULL || cb == NULL || (body == NULL && len != 0))
        return -EINVAL;
    if (method == NULL)
        method = "GET";
    if (strlen(method) > FETCH_METHOD_MAX || !base_http_token_valid(method))
        return -EINVAL;
    if (path == NULL)
        path = "";
    if (path[0] != '\0' && path[0] != '/' && path[0] != '?')
        return -EINVAL;
    for (const char *c = path; *c != '\0'; ++c)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return -EINVAL; /* a request target has no spaces or control characters: percent-encode them */
    if (len > rooms.conf->limits.body_bytes)
        return -EMSGSIZE;
    /* the room the target sees it from; a party's own header of that name is dropped, so the target can trust it */
    proto_header_t hdrs[FETCH_HEADERS_MAX + 1];
    size_t n = 0;
    hdrs[n++] = (proto_header_t){PROTO_STR("x-partyd-from"), proto_str(room->key, room->key_len)};
    for (size_t i = 0; headers != NULL && headers[i] != NULL; i += 2) {
        if (headers[i + 1] == NULL || !base_http_token_valid(headers[i]) || !base_http_value_valid(headers[i + 1]))
            return -EINVAL;
        if (strcasecmp(headers[i], "x-partyd-from") == 0)
            continue;
        if (n > FETCH_HEADERS_MAX)
            return -EINVAL;
        hdrs[n++] = (proto_header_t){proto_str(headers[i], strlen(headers[i])), proto_str(headers[i + 1], strlen(headers[i + 1]))};
    }
    const char *q = strchr(path, '?');
    size_t path_len = q != NULL ? (size_t)(q - path) : strlen(path);
    room_fetch_t *f = xcalloc(1, sizeof(*f));
    f->id = ++rooms.next_fetch_id;
    proto_msg_t m = {.type = PROTO_FETCH,
                     .id = f->id,
                     .party = proto_str(party, strlen(party)),
                     .room = proto_str(room_id, strlen(room_id)),
                     .method = proto_str(method, strlen(method)),
                     .path = proto_str(path, path_len),
                     .query = q != NULL ? proto_str(q + 1, strlen(q + 1)) : PROTO_STR(""),
                     .headers = hdrs,
                     .num_headers = n,
                     .data = proto_str(body, len)};
    int r = shard_emit(&m);
    if (r == -ENOTCONN) {
        r = 0; /* no router now: the answer never comes, and the room is dropped with the router (rooms_on_router_lost) */
    } else if (r != 0) {
        free(f);
        return r == -EMSGSIZE ? -EMSGSIZE : r;
    }
    f->room = room;
    f->cb = cb;
    f->arg = arg;
    f->next = room->fetches;
    if (room->fetches != NULL)
        room->fetches->prev = f;
    room->fetches = f;
    HASH_ADD(hh, rooms.fetches, id, sizeof(f->id), f);
    return 0;
}

void rooms_on_fetch_reply(const proto_msg_t *msg)
{
    room_fetch_t *f;
    HASH_FIND(hh, rooms.fetches, &msg->id, sizeof(msg->id), f);
    if (f == NULL)
        return; /* its room stopped meanwhile */
    party_room_t *room = f->room;
    fetch_unlink(f);
    room_enter(room);
    size_t size = msg->num_headers * 2 * (sizeof(char *) + 1);
    for (size_t i = 0; i < msg->num_headers; ++i)
        size += msg->headers[i].name.len + msg->headers[i].value.len;
    char **ptrs = xmalloc(size + 1), *p = (char *)(ptrs + 2 * msg->num_headers);
    party_fetch_t res = {msg->status, msg->num_headers, ptrs, ptrs + msg->num_headers, msg->data.base, msg->data.len};
    for (size_t i = 0; i < msg->num_headers; ++i) {
        const proto_str_t *parts[2] = {&msg->headers[i].name, &msg->headers[i].value};
        for (int k = 0; k < 2; ++k) {
            memcpy(p, parts[k]->base, parts[k]->len);
            p[parts[k]->len] = '\0';
            (k == 0 ? res.names : res.values)[i] = p;
            p += parts[k]->len + 1;
        }
    }
    f->cb(room, f->arg, &res);
    free(ptrs);
    free(f);
    rooms_run_deferred();
    room_leave(room);
}

int party_fetch_status(const party_fetch_t *res)
{
    return res->status;
}

const char *party_fetch_header(const party_fetch_t *res, const char *name)
{
    for (size_t i = 0; i < res->num_headers; ++i)
        if (strcasecmp(res->names[i], name) == 0)
            return res->values[i];
    return NULL;
}

const void *party_fetch_body(const party_fetch_t *res, size_t *len)
{
    *len = res->body_len;
    return res->body;
}
