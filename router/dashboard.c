/*
 * dashboard.c — the admin dashboard: one page (dashboard.html, compiled into the binary), no build step and no
 * external assets. It is static and holds no data, so it is served without the token; the API calls it makes carry
 * the token it finds in the URL fragment (/admin/#token=SECRET), which browsers never send to the server.
 */
#include "router.h"

extern const char dashboard_html[];
extern const size_t dashboard_html_len;

void dashboard_send(h2o_req_t *req)
{
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = dashboard_html_len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/html; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, dashboard_html, dashboard_html_len);
}
