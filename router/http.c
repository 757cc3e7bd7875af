/*
 * http.c — where a client request enters partyd: every HTTP request on the main listener comes through
 * http_on_req, is routed by PartyKit's URL scheme (route.c) to a party and room, and from there to the room's shard
 * (shards.c). WebSocket upgrades are held until the room's start and connect callbacks ran.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>
#include <openssl/sha.h>

#include "route.h"
#include "router.h"

#include <h2o/http1.h> /* after h2o.h, which it needs */

/* Lives in the request's memory pool: h2o disposes it with the request, which tells us the request is gone. */
typedef struct st_router_req_token_t {
    router_pending_t *p;
} router_req_token_t;

static void on_token_dispose(void *_t)
{
    router_req_token_t *t = _t;
    if (t->p != NULL) {
        t->p->req = NULL;
        t->p->token = NULL;
    }
}

/* One timeout list for every held request: timers.request_ms, the time a room is given to answer a client (longer than
 * timers.fetch_ms, so that a room waiting on another room gets that answer, or its 504, before its own client's time
 * is up); then 504. */
static h2o_timeout_t request_timeout;
static int request_timeout_ready;
/* HTTP requests held per slot (HTTP_SLOT_PENDING_MAX) */
static uint16_t slot_pending[SLOTS_COUNT];

static void on_pending_timeout(h2o_timeout_entry_t *entry)
{
    router_pending_t *p = H2O_STRUCT_FROM_MEMBER(router_pending_t, timeout, entry);
    log_debug("room %.*s did not answer in %u ms; answering 504", (int)p->key_len, p->key, router.conf->timers.request_ms);
    if (p->conn != NULL) {
        /* an upgrade the room has not accepted: the room is told the client is gone, should it get to the OPEN */
        shards_on_ws_closed(p->conn, 1006, "the room did not answer in time", 0);
    }
    http_fail_pending(p, 504, "the room did not answer in time");
}

static router_pending_t *pending_new(h2o_req_t *req, uint16_t shard, const char *party, size_t party_len, const char *room,
                                     size_t room_len)
{
    router_pending_t *p = xcalloc(1, sizeof(*p) + party_len + 1 + room_len + 1);
    p->req = req;
    p->shard = shard;
    p->key_len = party_len + 1 + room_len;
    memcpy(p->key, party, party_len);
    p->key[party_len] = '/';
    memcpy(p->key + party_len + 1, room, room_len);
    p->token = h2o_mem_alloc_shared(&req->pool, sizeof(*p->token), on_token_dispose);
    p->token->p = p;
    p->next = router.pending;
    if (router.pending != NULL)
        router.pending->prev = p;
    router.pending = p;
    ++router.shards[shard].num_pending;
    if (!request_timeout_ready) {
        h2o_timeout_init(router.loop, &request_timeout, router.conf->timers.request_ms);
        request_timeout_ready = 1;
    }
    p->timeout.cb = on_pending_timeout;
    h2o_timeout_link(router.loop, &request_timeout, &p->timeout);
    return p;
}

/* Frees the record; the request (if any) is no longer ours to touch. */
static void pending_free(router_pending_t *p)
{
    if (p->token != NULL)
        p->token->p = NULL;
    if (h2o_timeout_is_linked(&p->timeout))
        h2o_timeout_unlink(&p->timeout);
    --router.shards[p->shard].num_pending;
    if (p->prev != NULL)
        p->prev->next = p->next;
    else
        router.pending = p->next;
    if (p->next != NULL)
        p->next->prev = p->prev;
    if (p->rid != 0) { /* an HTTP request's (an upgrade's has no rid, and may have let go of its connection) */
        HASH_DEL(router.requests, p);
        --slot_pending[p->slot];
    }
    free(p);
}

/* ---- responses ---- */

static const char *status_reason(int status)
{
    switch (status) {
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 426:
        return "Upgrade Required";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
    }
}

static void count_status(int status)
{
    if (status >= 100 && status <= 599)
        ++router.http_responses[status / 100 - 1];
}

void http_count_status(h2o_req_t *req, int status)
{
    if (req->hostconf != router.admin_host)
        count_status(status);
}

const char *http_status_reason(int status)
{
    return status_reason(status);
}

void http_send_json(h2o_req_t *req, int status, const char *json, size_t len)
{
    if (req->hostconf != router.admin_host)
        count_status(status);
    req->res.status = status;
    req->res.reason = status_reason(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    if (status == 503)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
    h2o_send_inline(req, json, len);
}

void http_send_error(h2o_req_t *req, int status, const char *error)
{
    /* messages may quote what a client sent (a path, a file name): jansson escapes them */
    json_t *v = json_pack("{s:s}", "error", error);
    char *text = v != NULL ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    if (text == NULL) {
        http_send_json(req, status, H2O_STRLIT("{\"error\":\"(not UTF-8)\"}"));
        return;
    }
    http_send_json(req, status, text, strlen(text)); /* h2o_send_inline copies the body */
    free(text);
}

void http_send_health(h2o_req_t *req)
{
    char body[128];
    size_t up = 0, stalled = 0;
    for (int k = 0; k < router.num_shards; ++k) {
        up += router.shards[router.ids[k]].link != NULL && link_is_ready(router.shards[router.ids[k]].link);
        stalled += router.shards[router.ids[k]].stalled; /* linked, but its loop does not turn */
    }
    int ok = up == (size_t)router.num_shards && stalled == 0 && !router.draining;
    int n = snprintf(body, sizeof(body), "{\"status\":\"%s\",\"shards\":%d,\"shards_up\":%zu,\"shards_stalled\":%zu}",
                     router.draining ? "draining"
                     : ok            ? "ok"
                                     : "degraded",
                     router.num_shards, up, stalled);
    http_send_json(req, ok ? 200 : 503, body, (size_t)n);
}

void http_send_ready(h2o_req_t *req)
{
    size_t stalled = 0;
    for (int k = 0; k < router.num_shards; ++k)
        stalled += router.shards[router.ids[k]].stalled;
    int ready = shards_all_up() && stalled == 0 && !router.draining;
    /* /health says how many are up and stalled; /ready is the yes/no a load balancer wants */
    if (ready)
        http_send_json(req, 200, H2O_STRLIT("{\"ready\":true}"));
    else
        http_send_json(req, 503, H2O_STRLIT("{\"ready\":false}"));
}

/* ---- parking: no epoll_ctl per request ----
 *
 * h2o's HTTP/1 stops reading a keep-alive connection when a request is complete and starts again once the response
 * is written. Its epoll backend turns each into an epoll_ctl (DEL, then ADD) when the answer comes in a later loop
 * pass, as every forwarded request's does: two syscalls per request, 39 % of the router's syscall time under the
 * writes benchmark. So while a forwarded request waits for its shard, the socket stays registered for reading with
 * h2o_socket_dont_read set: nothing is read (h2o's request still points into the input buffer, which a read could
 * move), and the stop and start of the answer's own pass cancel out in h2o's state update. If the client sends more
 * or hangs up meanwhile (level-triggered: it would wake every pass), the socket is stopped as h2o left it and h2o
 * reads it after the answer, as it would have without parking. */

static void on_parked_readable(h2o_socket_t *sock, const char *err)
{
    (void)err; /* nothing was read: h2o reports no error while dont_read is set */
    h2o_socket_dont_read(sock, 0);
    h2o_socket_read_stop(sock);
    /* A client that hung up leaves its request queued for a slow shard (a 1 MiB POST to a stopped one is 1 MiB held
     * here until the shard reads it, and then run for nobody). If the frame is still in the link's unwritten output,
     * take it back and end the request now, as nginx ends one whose client closed (499); h2o then finds the hang-up
     * and closes the connection. A frame already written (to the socket's kernel buffer) is the shard's: it runs it,
     * and its answer finds no request. A client that only half-closed (shutdown(SHUT_WR)) is taken to be gone too. */
    char c;
    ssize_t n = recv(h2o_socket_get_fd(sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n > 0 || (n == -1 && (errno == EAGAIN || errno == EINTR)))
        return; /* more to read (a pipelined request): h2o reads it after the answer */
    for (router_pending_t *p = router.pending; p != NULL; p = p->next) {
        if (p->parked != sock)
            continue;
        if (p->rid != 0 && p->link != NULL && p->link == router.shards[p->shard].link && link_cancel(p->link, &p->ticket) == 0) {
            log_debug("a client left its request for room %.*s before the shard read it; dropped it", (int)p->key_len, p->key);
            ++router.requests_dropped;
            http_fail_pending(p, 499, "the client closed the request");
        }
        return;
    }
}

static void park(router_pending_t *p)
{
    h2o_conn_t *conn = p->req->conn;
    h2o_socket_t *sock = conn->callbacks->get_socket != NULL ? conn->callbacks->get_socket(conn) : NULL;
    if (sock == NULL || h2o_socket_is_reading(sock))
        return; /* not an HTTP/1 connection h2o stopped reading */
    h2o_socket_dont_read(sock, 1);
    h2o_socket_read_start(sock, on_parked_readable);
    p->parked = sock;
}

/* Before the answer is sent: h2o finds the socket as it left it, and its read_start later in this pass undoes the
 * stop here without a syscall. */
static void unpark(router_pending_t *p)
{
    if (p->parked == NULL || p->req == NULL)
        return; /* the request is gone, and with it our claim on the socket */
    h2o_socket_dont_read(p->parked, 0);
    if (h2o_socket_is_reading(p->parked))
        h2o_socket_read_stop(p->parked);
    p->parked = NULL;
}

void http_fail_pending(router_pending_t *p, int status, const char *error)
{
    unpark(p);
    if (p->req != NULL)
        http_send_error(p->req, status, error);
    if (p->conn != NULL) {
        p->conn->pending = NULL;
        ws_conn_abort(p->conn);
    }
    pending_free(p);
}

static int is_hop_by_hop(const char *name, size_t len)
{
    static const char *const names[] = {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade",
                                        "te",         "trailer"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
        if (h2o_lcstris(name, len, names[i], strlen(names[i])))
            return 1;
    return 0;
}

int http_party_header_ok(const char *name, size_t len)
{
    return !is_hop_by_hop(name, len);
}

void http_send_party(h2o_req_t *req, int status, const void *body, size_t len)
{
    req->res.status = status;
    req->res.reason = status_reason(status);
    if (status == 204 || status == 304) {
        /* they have no body (RFC 9110 6.4.1): what follows the headers would be read as the next response. Without a
         * length h2o sends neither Content-Length nor chunked framing for these two */
        req->res.content_length = SIZE_MAX;
        h2o_send_inline(req, "", 0);
        return;
    }
    req->res.content_length = len;
    h2o_send_inline(req, body, len);
}

void http_respond_pending(router_pending_t *p, const proto_msg_t *msg)
{
    h2o_req_t *req = p->req;
    unpark(p);
    if (req != NULL && !http_party_status_final(msg->status)) {
        /* a 1xx sent as the answer would leave the client waiting for the final one */
        log_warn("room %.*s answered a request with status %d, which is not a final status; answering 502", (int)p->key_len, p->key,
                 msg->status);
        http_send_error(req, 502, "the room answered with a status that is not a final one");
    } else if (req != NULL) {
        count_status(msg->status);
        for (size_t i = 0; i < msg->num_headers; ++i) {
            const proto_header_t *h = &msg->headers[i];
            if (!http_party_header_ok(h->name.base, h->name.len))
                continue;
            h2o_iovec_t name = h2o_strdup(&req->pool, h->name.base, h->name.len);
            h2o_strtolower(name.base, name.len);
            h2o_iovec_t value = h2o_strdup(&req->pool, h->value.base, h->value.len);
            h2o_add_header_by_str(&req->pool, &req->res.headers, name.base, name.len, 1, NULL, value.base, value.len);
        }
        http_send_party(req, msg->status, msg->data.base, msg->data.len);
    }
    pending_free(p);
}

/* ---- forwarding ---- */

static int is_set_by_edge(const edge_headers_t *edge, const char *name, size_t len)
{
    for (size_t i = 0; i < edge->num; ++i)
        if (h2o_lcstris(name, len, edge->headers[i].name.base, edge->headers[i].name.len))
            return 1;
    return 0;
}

/* The request's headers for the shard, with Host restored (h2o keeps it as the authority), and those the party's edge
 * hook set in place of the client's of the same names. */
static size_t collect_headers(h2o_req_t *req, const edge_headers_t *edge, proto_header_t *out, size_t cap)
{
    size_t n = 0;
    if (req->input.authority.len != 0 && n < cap)
        out[n++] = (proto_header_t){PROTO_STR("host"), proto_str(req->input.authority.base, req->input.authority.len)};
    for (size_t i = 0; i < req->headers.size && n < cap; ++i) {
        const h2o_header_t *h = &req->headers.entries[i];
        /* partyd's own: set on room-to-room requests only (fetch.c), so a room can trust it */
        if (h2o_lcstris(h->name->base, h->name->len, H2O_STRLIT("x-partyd-from")) ||
            is_set_by_edge(edge, h->name->base, h->name->len))
            continue;
        out[n++] = (proto_header_t){proto_str(h->name->base, h->name->len), proto_str(h->value.base, h->value.len)};
    }
    for (size_t i = 0; i < edge->num && n < cap; ++i)
        out[n++] = edge->headers[i];
    return n;
}

static void forward_request(h2o_req_t *req, const route_t *r, uint16_t shard, uint16_t slot, link_t *link,
                            const edge_headers_t *edge)
{
    if (slot_pending[slot] >= HTTP_SLOT_PENDING_MAX) {
        http_send_error(req, 503, "too many requests wait for this room");
        return;
    }
    router_pending_t *p = pending_new(req, shard, r->party, r->party_len, r->room, r->room_len);
    p->rid = ++router.next_rid;
    p->slot = slot;
    ++slot_pending[slot];
    HASH_ADD(hh, router.requests, rid, sizeof(p->rid), p);
    proto_header_t headers[PROTO_MAX_HEADERS];
    proto_msg_t m = {.type = PROTO_REQUEST,
                     .id = p->rid,
                     .party = proto_str(r->party, r->party_len),
                     .room = proto_str(r->room, r->room_len),
                     .method = proto_str(req->input.method.base, req->input.method.len),
                     .path = proto_str(r->path, r->path_len),
                     .query = proto_str(r->query, r->query_len),
                     .headers = headers,
                     .num_headers = collect_headers(req, edge, headers, PROTO_MAX_HEADERS),
                     .data = proto_str(req->entity.base, req->entity.len)};
    if (link_emit_ticket(link, &m, &p->ticket) != 0) {
        http_fail_pending(p, 413, "the request is too large");
    } else {
        p->link = link;
        park(p);
    }
}

/* ---- WebSocket upgrades ---- */

static int header_has_token(h2o_req_t *req, const h2o_token_t *token, const char *want)
{
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, token, i)) != -1;) {
        const h2o_iovec_t *v = &req->headers.entries[i].value;
        size_t wl = strlen(want);
        for (size_t s = 0; s < v->len;) {
            while (s < v->len && (v->base[s] == ' ' || v->base[s] == '\t' || v->base[s] == ','))
                ++s;
            size_t e = s;
            while (e < v->len && v->base[e] != ',')
                ++e;
            size_t te = e;
            while (te > s && (v->base[te - 1] == ' ' || v->base[te - 1] == '\t'))
                --te;
            if (h2o_lcstris(v->base + s, te - s, want, wl))
                return 1;
            s = e;
        }
    }
    return 0;
}

static const h2o_iovec_t *find_header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i == -1 ? NULL : &req->headers.entries[i].value;
}

static int key_valid(const h2o_iovec_t *key)
{
    /* 16 random bytes in base64: 22 characters and "==" */
    if (key->len != 24 || key->base[22] != '=' || key->base[23] != '=')
        return 0;
    for (size_t i = 0; i < 22; ++i) {
        char c = key->base[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/'))
            return 0;
    }
    return 1;
}

static void make_accept(char out[32], const h2o_iovec_t *key)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char in[24 + sizeof(guid) - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(in, key->base, 24);
    memcpy(in + 24, guid, sizeof(guid) - 1);
    SHA1(in, sizeof(in), digest);
    h2o_base64_encode(out, digest, sizeof(digest), 0);
}

static void start_upgrade(h2o_req_t *req, const route_t *r, uint16_t shard, link_t *link, const edge_headers_t *edge)
{
    if (!h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("GET"))) {
        http_send_error(req, 400, "a WebSocket upgrade must be a GET");
        return;
    }
    if (!header_has_token(req, H2O_TOKEN_CONNECTION, "upgrade")) {
        http_send_error(req, 400, "a WebSocket upgrade needs Connection: Upgrade");
        return;
    }
    const h2o_iovec_t *version = find_header(req, "sec-websocket-version");
    if (version == NULL || !h2o_memis(version->base, version->len, H2O_STRLIT("13"))) {
        h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-version"), 0, NULL, H2O_STRLIT("13"));
        http_send_error(req, 426, "only WebSocket version 13 is supported");
        return;
    }
    const h2o_iovec_t *key = find_header(req, "sec-websocket-key");
    if (key == NULL || !key_valid(key)) {
        http_send_error(req, 400, "missing or malformed Sec-WebSocket-Key");
        return;
    }

    /* the connection id: the first _pk, else a fresh UUID */
    char id[ROUTE_ID_MAX + 1];
    long id_len = route_query_param(r->query, r->query_len, "_pk", id, sizeof(id));
    if (id_len == -2) {
        http_send_error(req, 400, "_pk is longer than 128 bytes");
        return;
    }
    if (id_len > 0) {
        for (long i = 0; i < id_len; ++i)
            if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f) {
                http_send_error(req, 400, "_pk contains a control character");
                return;
            }
        if (!base_utf8_valid(id, (size_t)id_len)) {
            http_send_error(req, 400, "_pk is not valid UTF-8");
            return;
        }
    } else {
        base_uuid4(id);
        id_len = 36;
    }

    ws_conn_t *conn = ws_conn_new();
    if (conn == NULL) {
        http_send_error(req, 503, "too many connections");
        return;
    }
    conn->id = xstrndup(id, (size_t)id_len);
    conn->shard = shard;
    conn->shard_knows = 1;
    router_pending_t *p = pending_new(req, shard, r->party, r->party_len, r->room, r->room_len);
    p->conn = conn;
    conn->pending = p;
    make_accept(p->accept, key);

    proto_header_t headers[PROTO_MAX_HEADERS];
    proto_msg_t m = {.type = PROTO_OPEN,
                     .id = conn->cid,
                     .party = proto_str(r->party, r->party_len),
                     .room = proto_str(r->room, r->room_len),
                     .conn_id = proto_str(conn->id, (size_t)id_len),
                     .path = proto_str(r->path, r->path_len),
                     .query = proto_str(r->query, r->query_len),
                     .headers = headers,
                     .num_headers = collect_headers(req, edge, headers, PROTO_MAX_HEADERS)};
    if (link_emit(link, &m) != 0) {
        conn->shard_knows = 0;
        http_fail_pending(p, 431, "the upgrade request is too large");
    }
}

/* The 101 is written (sock != NULL) or failed: the client went away. */
static void on_upgrade_complete(void *data, h2o_socket_t *sock, size_t reqsize)
{
    router_pending_t *p = data;
    ws_conn_t *conn = p->conn;
    pending_free(p);
    if (conn == NULL) {
        /* the router is stopping (http_upgrade_orphan): the connection record is gone, the socket is ours to close */
        if (sock != NULL)
            h2o_socket_close(sock);
        return;
    }
    conn->pending = NULL;
    if (sock == NULL) {
        /* tell the room; the record was never attached to a socket */
        shards_on_ws_closed(conn, 1006, "the client left before the upgrade completed", 0);
        ws_conn_abort(conn);
        return;
    }
    h2o_buffer_consume(&sock->input, reqsize);
    if (sock->ssl != NULL) {
        /* TLS stays with h2o: the connection reads and writes through it */
        ws_conn_attach_tls(conn, sock);
        return;
    }
    h2o_socket_export_t info;
    if (linger_export(sock, &info) != 0) {
        log_error("could not take over an upgraded socket");
        shards_on_ws_closed(conn, 1011, "internal error", 0);
        ws_conn_abort(conn);
        return;
    }
    ws_conn_attach(conn, info.fd, (uint8_t *)info.input->bytes, info.input->size);
    h2o_buffer_dispose(&info.input);
}

void http_upgrade_orphan(router_pending_t *p)
{
    if (p->conn != NULL) {
        p->conn->pending = NULL;
        p->conn = NULL;
    }
}

void http_upgrade_accepted(router_pending_t *p)
{
    h2o_req_t *req = p->req;
    if (req == NULL) {
        ws_conn_t *conn = p->conn;
        conn->pending = NULL;
        pending_free(p);
        shards_on_ws_closed(conn, 1006, "the client left before the upgrade completed", 0);
        ws_conn_abort(conn);
        return;
    }
    /* from here h2o owns the request until it calls on_upgrade_complete */
    if (h2o_timeout_is_linked(&p->timeout))
        h2o_timeout_unlink(&p->timeout);
    p->token->p = NULL;
    p->token = NULL;
    p->req = NULL;
    p->upgrading = 1;
    count_status(101);
    req->res.status = 101;
    req->res.reason = status_reason(101);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_UPGRADE, NULL, H2O_STRLIT("websocket"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("sec-websocket-accept"), 0, NULL, p->accept, strlen(p->accept));
    h2o_http1_upgrade(req, NULL, 0, on_upgrade_complete, p);
}

/* ---- the entry point ---- */

static int headers_over_cap(h2o_req_t *req)
{
    if (req->headers.size > router.conf->limits.header_count)
        return 1;
    size_t bytes = req->input.path.len + req->input.method.len + req->input.authority.len;
    for (size_t i = 0; i < req->headers.size; ++i)
        bytes += req->headers.entries[i].name->len + req->headers.entries[i].value.len + 4;
    return bytes > router.conf->limits.header_bytes;
}

/* A browser's page may open a WebSocket to any site, with the user's cookies: a room that trusts them would act for
 * whatever page the user has open (cross-site WebSocket hijacking). "origins" names the pages that may. */
static int origin_refused(h2o_req_t *req, const config_party_t *party)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (i == -1)
        return 0; /* not a browser */
    const h2o_iovec_t *o = &req->headers.entries[i].value;
    if (config_origin_allowed(router.conf, party, o->base, o->len))
        return 0;
    http_send_error(req, 403, "this Origin may not open a WebSocket here");
    return 1;
}

/* RFC 9110's token: h2o's parser takes any printable run before the first space as the method, even an empty one
 * (a request line that starts with a space), which no room should be handed. Found by tests/fuzz/fuzz_http. */
static int method_valid(h2o_iovec_t m)
{
    if (m.len == 0)
        return 0;
    for (size_t i = 0; i < m.len; ++i) {
        unsigned char c = (unsigned char)m.base[i];
        if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c) != NULL)
            return 0;
    }
    return 1;
}

int http_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    if (http_framing_refused(req))
        return 0; /* two lengths, or a length and a coding: 400, closed (framing.c) */
    if (!method_valid(req->input.method)) {
        http_send_error(req, 400, "malformed request method");
        return 0;
    }
    if (headers_over_cap(req)) {
        http_send_error(req, 431, "request headers over the cap");
        return 0;
    }
    if (req->entity.base != NULL && req->entity.len > router.conf->limits.body_bytes) {
        http_send_error(req, 413, "the request body is over limits.body_bytes"); /* see router.c: chunked or not alike */
        return 0;
    }
    route_t r;
    route_parse(&r, req->input.path.base, req->input.path.len, router.conf->prefix);
    if (r.kind == ROUTE_NONE) {
        if (h2o_memis(r.path, r.path_len, H2O_STRLIT("/health")))
            http_send_health(req);
        else if (h2o_memis(r.path, r.path_len, H2O_STRLIT("/ready")))
            http_send_ready(req); /* the probes answer on the client port too: a kubelet needs no admin port */
        else if (router.conf->serve != NULL)
            return serve_check(req) ? 0 : -1; /* the static files' handler is next (router.c) */
        else
            http_send_error(req, 404, "not found");
        return 0;
    }
    if (r.kind == ROUTE_BAD) {
        http_send_error(req, 400, r.error);
        return 0;
    }
    const partydef_t *party = partydefs_find(router.defs, r.party, r.party_len);
    if (party == NULL) {
        http_send_error(req, 404, "unknown party");
        return 0;
    }
    if (router.draining) {
        http_send_error(req, 503, "the node is shutting down");
        return 0;
    }
    uint64_t quarantined = quarantine_left(r.party, r.party_len, r.room, r.room_len);
    if (quarantined != 0) {
        quarantine_refuse(req, quarantined); /* before the edge hook: the room's code is what crashed */
        return 0;
    }
    int upgrade = req->upgrade.base != NULL && h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket"));
    if (upgrade && origin_refused(req, party->conf))
        return 0;
    if (!upgrade) {
        if (cors_preflight(req, party->conf))
            return 0;                       /* before the edge hook: a browser's preflight carries no credentials */
        cors_add_headers(req, party->conf); /* kept on whatever answers it: the room, the edge hook, a 503 */
    }
    edge_headers_t edge;
    if (edge_run(req, &r, party, upgrade, &edge) != 0)
        return 0; /* the party's edge hook answered */
    uint16_t slot, shard = shards_owner(r.party, r.party_len, r.room, r.room_len, &slot);
    if (migrate_frozen(slot)) {
        http_send_error(req, 503, "the room is moving to another shard");
        return 0;
    }
    link_t *link = shards_link(shard);
    if (link == NULL) {
        http_send_error(req, 503, "the room's shard is restarting");
        return 0;
    }
    if (link_backlog(link) > HTTP_SHARD_BACKLOG_MAX || router.shards[shard].num_pending >= HTTP_SHARD_PENDING_MAX) {
        /* the shard is not keeping up (stopped, or its loop held by a checkpoint): refuse rather than queue without end.
         * While its request is held the client's connection is not read (h2o reads the next request after the answer) */
        http_send_error(req, 503, "the room's shard is overloaded");
        return 0;
    }
    if (upgrade)
        start_upgrade(req, &r, shard, link, &edge);
    else
        forward_request(req, &r, shard, slot, link, &edge);
    return 0;
}
