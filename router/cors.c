/*
 * cors.c — CORS for the rooms' HTTP endpoints (the "cors" key, config/cors.c), as partyserver's `cors` option: a
 * preflight OPTIONS is answered here (204; the room and its edge hook never see it, since a browser sends no
 * credentials with it), and every other answer for the party carries Access-Control-Allow-Origin. Without the key
 * nothing changes: OPTIONS goes to the room like any method, and no header is added.
 *
 * Runs on the router's loop; the headers are allocated in the request's pool.
 */
#include <string.h>

#include "router.h"

#define CORS_METHODS "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS"
#define CORS_MAX_AGE "86400"

static const h2o_header_t *find(h2o_req_t *req, const char *name, size_t len)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, len, -1);
    return i >= 0 ? &req->headers.entries[i] : NULL;
}

/* What Access-Control-Allow-Origin says for this request, or NULL (no CORS header: not allowed, or no Origin). */
static const char *allow_origin(h2o_req_t *req, const config_cors_t *cors, size_t *len, int *vary)
{
    *vary = 0;
    if (cors->origins.list == NULL) {
        *len = 1;
        return "*";
    }
    *vary = 1;
    const h2o_header_t *o = find(req, H2O_STRLIT("origin"));
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < cors->origins.num; ++i) {
        if (strlen(cors->origins.list[i]) == o->value.len && strncasecmp(cors->origins.list[i], o->value.base, o->value.len) == 0) {
            *len = o->value.len;
            return o->value.base;
        }
    }
    return NULL;
}

static void add(h2o_req_t *req, const char *name, size_t name_len, const char *value, size_t value_len)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, name, name_len, 0, NULL, value, value_len);
}

void cors_add_headers(h2o_req_t *req, const config_party_t *party)
{
    const config_cors_t *cors = config_cors_for(router.conf, party);
    if (cors == NULL)
        return;
    size_t len;
    int vary;
    const char *origin = allow_origin(req, cors, &len, &vary);
    if (vary)
        add(req, H2O_STRLIT("vary"), H2O_STRLIT("Origin"));
    if (origin != NULL)
        add(req, H2O_STRLIT("access-control-allow-origin"), origin, len);
}

int cors_preflight(h2o_req_t *req, const config_party_t *party)
{
    const config_cors_t *cors = config_cors_for(router.conf, party);
    if (cors == NULL || !h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("OPTIONS")))
        return 0;
    cors_add_headers(req, party);
    add(req, H2O_STRLIT("access-control-allow-methods"), H2O_STRLIT(CORS_METHODS));
    if (cors->headers != NULL) {
        add(req, H2O_STRLIT("access-control-allow-headers"), cors->headers, strlen(cors->headers));
    } else {
        /* any: what the preflight asks for, echoed ("*" is not honoured with credentials) */
        const h2o_header_t *asked = find(req, H2O_STRLIT("access-control-request-headers"));
        if (asked != NULL)
            add(req, H2O_STRLIT("access-control-allow-headers"), asked->value.base, asked->value.len);
    }
    add(req, H2O_STRLIT("access-control-max-age"), H2O_STRLIT(CORS_MAX_AGE));
    req->res.status = 204;
    req->res.reason = "No Content";
    req->res.content_length = 0;
    h2o_send_inline(req, NULL, 0);
    return 1;
}
