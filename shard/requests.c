/*
 * requests.c — a room's HTTP requests: the copy a party sees, party.h's request accessors, and the answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <strings.h>

#include "room_int.h"

/* ---- requests ---- */

/* Copies the request fields of `msg` into one allocation with NUL-terminated strings. */
party_request_t *room_request_new(const proto_msg_t *msg)
{
    size_t size = sizeof(party_request_t) + msg->method.len + msg->path.len + msg->query.len + msg->data.len + 4 +
                  msg->num_headers * (2 * sizeof(char *) + 2);
    for (size_t i = 0; i < msg->num_headers; ++i)
        size += msg->headers[i].name.len + msg->headers[i].value.len;
    party_request_t *req = xcalloc(1, size);
    char **ptrs = (char **)(req + 1);
    req->names = (const char **)ptrs;
    req->values = (const char **)(ptrs + msg->num_headers);
    char *p = (char *)(ptrs + 2 * msg->num_headers);
#define COPY(dst, s)                                                                                                               \
    do {                                                                                                                           \
        if ((s).len != 0)                                                                                                          \
            memcpy(p, (s).base, (s).len);                                                                                          \
        p[(s).len] = '\0';                                                                                                         \
        dst = p;                                                                                                                   \
        p += (s).len + 1;                                                                                                          \
    } while (0)
    COPY(req->method, msg->method);
    COPY(req->path, msg->path);
    COPY(req->query, msg->query);
    for (size_t i = 0; i < msg->num_headers; ++i) {
        COPY(req->names[i], msg->headers[i].name);
        for (char *c = (char *)req->names[i]; *c != '\0'; ++c)
            *c = (char)tolower((unsigned char)*c);
        COPY(req->values[i], msg->headers[i].value);
    }
    COPY(req->body, msg->data);
#undef COPY
    req->body_len = msg->data.len;
    req->num_headers = msg->num_headers;
    req->rid = msg->id;
    return req;
}

void room_request_free(party_request_t *req)
{
    for (size_t i = 0; i < req->num_resp_headers; ++i) {
        free((char *)req->resp_headers[i].name.base);
        free((char *)req->resp_headers[i].value.base);
    }
    free(req->resp_headers);
    free(req);
}

/* Takes the request off its room; returns the room (NULL for an upgrade request). */
party_room_t *room_request_unlink(party_request_t *req)
{
    party_room_t *room = req->room;
    if (room == NULL)
        return NULL;
    if (req->prev != NULL)
        req->prev->next = req->next;
    else
        room->requests = req->next;
    if (req->next != NULL)
        req->next->prev = req->prev;
    req->room = NULL;
    return room;
}

void room_respond_simple(uint64_t rid, int status, const char *msg)
{
    char body[256];
    int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"}", msg);
    proto_header_t h = {PROTO_STR("content-type"), PROTO_STR("application/json")};
    proto_msg_t m = {
        .type = PROTO_RESPONSE, .id = rid, .status = status, .headers = &h, .num_headers = 1, .data = proto_str(body, (size_t)n)};
    shard_emit_answer(&m);
}

void room_request_answer(party_request_t *req, int status, const char *msg)
{
    room_respond_simple(req->rid, status, msg);
    room_request_unlink(req);
    room_request_free(req);
}

/* ---- party.h: requests ---- */

const char *party_request_method(const party_request_t *req)
{
    return req->method;
}

const char *party_request_path(const party_request_t *req)
{
    return req->path;
}

const char *party_request_query(const party_request_t *req)
{
    return req->query;
}

long party_request_query_param(const party_request_t *req, const char *name, char *out, size_t cap)
{
    return base_query_param(req->query, strlen(req->query), name, out, cap);
}

const char *party_request_header(const party_request_t *req, const char *name)
{
    for (size_t i = 0; i < req->num_headers; ++i)
        if (strcasecmp(req->names[i], name) == 0)
            return req->values[i];
    return NULL;
}

size_t party_request_header_count(const party_request_t *req)
{
    return req->num_headers;
}

const char *party_request_header_at(const party_request_t *req, size_t i, const char **name)
{
    if (i >= req->num_headers) {
        *name = NULL;
        return NULL;
    }
    *name = req->names[i];
    return req->values[i];
}

const void *party_request_body(const party_request_t *req, size_t *len)
{
    *len = req->body_len;
    return req->body;
}

int party_response_header(party_request_t *req, const char *name, const char *value)
{
    if (req->room == NULL || req->responded)
        return -EALREADY;
    if (!base_http_token_valid(name) || !base_http_value_valid(value) || req->num_resp_headers >= PROTO_MAX_HEADERS - 1)
        return -EINVAL;
    req->resp_headers = xrealloc(req->resp_headers, (req->num_resp_headers + 1) * sizeof(*req->resp_headers));
    req->resp_headers[req->num_resp_headers].name = proto_str(xstrdup(name), strlen(name));
    req->resp_headers[req->num_resp_headers].value = proto_str(xstrdup(value), strlen(value));
    ++req->num_resp_headers;
    return 0;
}

int party_respond(party_request_t *req, int status, const char *content_type, const void *body, size_t len)
{
    if (req->room == NULL || req->responded)
        return -EALREADY;
    if (status < 100 || status > 599 || (body == NULL && len != 0) ||
        (content_type != NULL && !base_http_value_valid(content_type)))
        return -EINVAL;
    req->responded = 1;
    proto_header_t headers[PROTO_MAX_HEADERS];
    size_t n = 0;
    if (content_type != NULL)
        headers[n++] = (proto_header_t){PROTO_STR("content-type"), proto_str(content_type, strlen(content_type))};
    for (size_t i = 0; i < req->num_resp_headers; ++i)
        headers[n++] = req->resp_headers[i];
    proto_msg_t m = {.type = PROTO_RESPONSE,
                     .id = req->rid,
                     .status = status,
                     .headers = headers,
                     .num_headers = n,
                     .data = proto_str(body, len)};
    int ret = shard_emit_answer(&m);
    if (ret == -EMSGSIZE) {
        log_warn("room %s: a response of %zu bytes is over the link's cap; answering 500", req->room->key, len);
        room_respond_simple(req->rid, 500, "the response is too large");
    }
    party_room_t *room = room_request_unlink(req);
    room_request_free(req);
    /* a request answered later (not from its own on_request) may leave the room idle */
    if (room != NULL)
        room_settle(room);
    return ret == -ENOTCONN ? 0 : ret;
}
