/*
 * edge.c — a party's edge hooks (before_connect, before_request): run in the router, on its loop, before a request is
 * routed to its room's shard. They see the client's request and either let it through — with headers they set, which
 * replace the client's headers of those names — or answer it themselves. This is where a token is checked once, at
 * the edge, and the user id handed on to the room (README, "Auth at the edge").
 *
 * Everything a hook makes (header copies, its answer) lives in the request's h2o pool: nothing to free.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "route.h"
#include "router.h"

#define EDGE_SET_MAX 32

struct st_party_edge_t {
    h2o_req_t *req;
    const partydef_t *party;
    const char *party_name, *room, *method, *path, *query; /* NUL-terminated copies */
    size_t query_len;
    proto_header_t set[EDGE_SET_MAX]; /* headers for the room */
    size_t num_set;
    /* the hook's own answer */
    const char *content_type;
    h2o_iovec_t body;
    int has_body;
    const char *resp_names[EDGE_SET_MAX], *resp_values[EDGE_SET_MAX];
    size_t num_resp;
};

static const char *pool_str(h2o_req_t *req, const char *s, size_t len)
{
    return h2o_strdup(&req->pool, s, len).base;
}

int edge_run(h2o_req_t *req, const route_t *r, const partydef_t *party, int upgrade, edge_headers_t *out)
{
    out->headers = NULL;
    out->num = 0;
    int (*hook)(party_edge_t *) = upgrade ? party->party->before_connect : party->party->before_request;
    if (hook == NULL)
        return 0;
    party_edge_t *e = h2o_mem_alloc_pool(&req->pool, sizeof(*e));
    memset(e, 0, sizeof(*e));
    e->req = req;
    e->party = party;
    e->party_name = pool_str(req, r->party, r->party_len);
    e->room = pool_str(req, r->room, r->room_len);
    e->method = pool_str(req, req->input.method.base, req->input.method.len);
    e->path = pool_str(req, r->path, r->path_len);
    e->query = pool_str(req, r->query, r->query_len);
    e->query_len = r->query_len;

    int status = hook(e);
    if (status == 0) {
        out->headers = e->set;
        out->num = e->num_set;
        return 0;
    }
    if (!http_party_status_final(status)) {
        /* a 1xx as the answer would leave the client waiting for the final one */
        log_warn("party %s: %s returned %d, which is neither 0 nor an HTTP status that can end a request; answering 500",
                 e->party_name, upgrade ? "before_connect" : "before_request", status);
        http_send_error(req, 500, "the party's edge hook failed");
        return 1;
    }
    for (size_t i = 0; i < e->num_resp; ++i) {
        size_t nl = strlen(e->resp_names[i]);
        if (http_party_header_ok(e->resp_names[i], nl)) /* filtered as a room's response headers are */
            h2o_add_header_by_str(&req->pool, &req->res.headers, e->resp_names[i], nl, 1, NULL, e->resp_values[i],
                                  strlen(e->resp_values[i]));
    }
    if (!e->has_body && status >= 400) {
        http_send_error(req, status, "refused by the party");
        return 1;
    }
    http_count_status(req, status);
    if (e->content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, e->content_type, strlen(e->content_type));
    http_send_party(req, status, e->body.base, e->body.len);
    return 1;
}

/* ---- party.h: the edge ---- */

const char *party_edge_party(const party_edge_t *e)
{
    return e->party_name;
}

const char *party_edge_room(const party_edge_t *e)
{
    return e->room;
}

const char *party_edge_method(const party_edge_t *e)
{
    return e->method;
}

const char *party_edge_path(const party_edge_t *e)
{
    return e->path;
}

const char *party_edge_query(const party_edge_t *e)
{
    return e->query;
}

long party_edge_query_param(const party_edge_t *e, const char *name, char *out, size_t cap)
{
    return base_query_param(e->query, e->query_len, name, out, cap);
}

const char *party_edge_header(const party_edge_t *e, const char *name)
{
    /* a header the hook set is what the room will see: the hook sees it too */
    size_t nl = strlen(name);
    for (size_t i = 0; i < e->num_set; ++i)
        if (h2o_lcstris(e->set[i].name.base, e->set[i].name.len, name, nl))
            return e->set[i].value.base;
    ssize_t i = h2o_find_header_by_str(&e->req->headers, name, nl, -1);
    if (i == -1) {
        /* h2o keeps Host as the authority */
        if (h2o_lcstris(name, nl, H2O_STRLIT("host")) && e->req->input.authority.len != 0)
            return pool_str(e->req, e->req->input.authority.base, e->req->input.authority.len);
        return NULL;
    }
    const h2o_iovec_t *v = &e->req->headers.entries[i].value;
    return pool_str(e->req, v->base, v->len);
}

int party_edge_set_header(party_edge_t *e, const char *name, const char *value)
{
    if (name == NULL || value == NULL || !base_http_token_valid(name) || !base_http_value_valid(value))
        return -EINVAL;
    size_t nl = strlen(name);
    if (h2o_lcstris(name, nl, H2O_STRLIT("x-partyd-from")) || h2o_lcstris(name, nl, H2O_STRLIT("host")))
        return -EINVAL; /* partyd's own, and the routing's */
    h2o_iovec_t lname = h2o_strdup(&e->req->pool, name, nl);
    h2o_strtolower(lname.base, lname.len);
    h2o_iovec_t v = h2o_strdup(&e->req->pool, value, strlen(value));
    for (size_t i = 0; i < e->num_set; ++i)
        if (h2o_memis(e->set[i].name.base, e->set[i].name.len, lname.base, lname.len)) {
            e->set[i].value = proto_str(v.base, v.len);
            return 0;
        }
    if (e->num_set == EDGE_SET_MAX)
        return -ENOSPC;
    e->set[e->num_set++] = (proto_header_t){proto_str(lname.base, lname.len), proto_str(v.base, v.len)};
    return 0;
}

int party_edge_respond(party_edge_t *e, const char *content_type, const void *body, size_t len)
{
    if ((body == NULL && len != 0) || (content_type != NULL && !base_http_value_valid(content_type)))
        return -EINVAL;
    e->content_type = content_type != NULL ? pool_str(e->req, content_type, strlen(content_type)) : NULL;
    e->body = h2o_strdup(&e->req->pool, body != NULL ? body : "", len);
    e->has_body = 1;
    return 0;
}

int party_edge_response_header(party_edge_t *e, const char *name, const char *value)
{
    if (name == NULL || value == NULL || !base_http_token_valid(name) || !base_http_value_valid(value) ||
        e->num_resp == EDGE_SET_MAX)
        return -EINVAL;
    h2o_iovec_t lname = h2o_strdup(&e->req->pool, name, strlen(name));
    h2o_strtolower(lname.base, lname.len);
    e->resp_names[e->num_resp] = lname.base;
    e->resp_values[e->num_resp++] = pool_str(e->req, value, strlen(value));
    return 0;
}

const char *party_edge_var(const party_edge_t *e, const char *name)
{
    return name != NULL ? config_party_var(e->party->conf, name) : NULL;
}

void party_edge_log(const party_edge_t *e, int level, const char *fmt, ...)
{
    char who[sizeof("edge ") + BASE_ROOM_KEY_MAX];
    snprintf(who, sizeof(who), "edge %s/%s", e->party_name, e->room);
    va_list ap;
    va_start(ap, fmt);
    log_party_vmsg(level, who, fmt, ap);
    va_end(ap);
}
