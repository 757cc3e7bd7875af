/*
 * etcd.c — the etcd v3 gateway client (etcd.h): one libcurl easy handle per request on one multi handle, whose sockets
 * and timer the owner's loop drives through etcd_io_t. Replies are parsed with jansson after the transfer ends; a
 * watch's newline-delimited messages are parsed as they arrive, after curl's own callbacks have returned, so that a
 * callback may start or cancel requests (curl forbids that inside its callbacks).
 */
#include "etcd.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "etcdwire.h"

typedef enum { REQ_RANGE, REQ_PUT, REQ_DELETE, REQ_TXN, REQ_GRANT, REQ_KEEPALIVE, REQ_REVOKE, REQ_COMPACT, REQ_WATCH } req_kind_t;

typedef struct st_etcd_req_t {
    etcd_t *etcd;
    CURL *easy;
    req_kind_t kind;
    const char *path;
    char *body;
    size_t endpoint; /* index tried now */
    size_t attempts;
    base_buf_t in;
    etcd_cb cb;
    void *data;
    etcd_watch_t *watch;
    int in_multi;
    int dead; /* answered or cancelled: freed by reap() */
    struct curl_slist *headers;
    struct st_etcd_req_t *next;
    char errbuf[CURL_ERROR_SIZE];
} etcd_req_t;

struct st_etcd_watch_t {
    etcd_t *etcd;
    etcd_req_t *req;
    etcd_watch_cb cb;
    void *data;
    int created;
    int over;
};

struct st_etcd_t {
    const etcd_io_t *io;
    void *loop;
    CURLM *multi;
    void *timer;
    char **endpoints;
    size_t n_endpoints;
    size_t current; /* the endpoint that answered last */
    uint64_t request_timeout_ms, connect_timeout_ms;
    etcd_req_t *reqs;
    int depth; /* > 0 while drive() runs: dead requests wait for its end */
};

/* ---- the multi handle and the loop -------------------------------------------------------------------------------- */

static void drive(etcd_t *e, curl_socket_t fd, int mask);

static void on_fd(void *data, int fd, int events)
{
    drive(data, fd, ((events & ETCD_IO_READ) ? CURL_CSELECT_IN : 0) | ((events & ETCD_IO_WRITE) ? CURL_CSELECT_OUT : 0));
}

static void on_timer(void *data)
{
    drive(data, CURL_SOCKET_TIMEOUT, 0);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    etcd_t *e = userp;
    if (what == CURL_POLL_REMOVE) {
        if (socketp != NULL) {
            e->io->fd_unwatch(socketp);
            curl_multi_assign(e->multi, fd, NULL);
        }
        return 0;
    }
    int events = (what & CURL_POLL_IN ? ETCD_IO_READ : 0) | (what & CURL_POLL_OUT ? ETCD_IO_WRITE : 0);
    if (socketp == NULL) {
        void *h = e->io->fd_watch(e->loop, fd, events, on_fd, e);
        if (h == NULL) {
            log_error("etcd: the loop refused curl's socket %d", (int)fd);
            return -1;
        }
        curl_multi_assign(e->multi, fd, h);
    } else {
        e->io->fd_events(socketp, events);
    }
    return 0;
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    etcd_t *e = userp;
    if (timeout_ms < 0)
        e->io->timer_stop(e->timer);
    else
        e->io->timer_start(e->timer, (uint64_t)timeout_ms);
    return 0;
}

static size_t on_curl_write(char *ptr, size_t size, size_t n, void *userdata)
{
    etcd_req_t *r = userdata;
    /* a reply of the gateway is small; a watch's buffer is consumed line by line. Cap what one request may hold. */
    if (base_buf_len(&r->in) + size * n > (64u << 20))
        return 0;
    base_buf_append(&r->in, ptr, size * n);
    return size * n;
}

static void req_detach(etcd_req_t *r)
{
    if (r->in_multi) {
        curl_multi_remove_handle(r->etcd->multi, r->easy);
        r->in_multi = 0;
    }
    r->dead = 1;
}

static void req_free(etcd_req_t *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    base_buf_dispose(&r->in);
    free(r->body);
    free(r->watch);
    free(r);
}

static void reap(etcd_t *e)
{
    for (etcd_req_t **p = &e->reqs; *p != NULL;) {
        etcd_req_t *r = *p;
        if (r->dead) {
            *p = r->next;
            req_free(r);
        } else {
            p = &r->next;
        }
    }
}

static void req_start(etcd_req_t *r)
{
    etcd_t *e = r->etcd;
    char url[512];
    snprintf(url, sizeof(url), "%s%s", e->endpoints[r->endpoint], r->path);
    base_buf_consume(&r->in, base_buf_len(&r->in)); /* what a failed attempt received */
    curl_easy_setopt(r->easy, CURLOPT_URL, url);
    if (curl_multi_add_handle(e->multi, r->easy) == CURLM_OK)
        r->in_multi = 1;
    else
        log_error("etcd: curl refused a request to %s", url);
}

static etcd_req_t *req_new(etcd_t *e, req_kind_t kind, const char *path, json_t *body, etcd_cb cb, void *data)
{
    etcd_req_t *r = xcalloc(1, sizeof(*r));
    r->etcd = e;
    r->kind = kind;
    r->path = path;
    r->body = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    r->cb = cb;
    r->data = data;
    r->endpoint = e->current;
    base_buf_init(&r->in);
    r->easy = curl_easy_init();
    if (r->easy == NULL || r->body == NULL) {
        log_error("etcd: out of memory starting a request");
        abort();
    }
    r->headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
    curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
    curl_easy_setopt(r->easy, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)e->connect_timeout_ms);
    curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    /* the gateway is a plain HTTP/1.1 server; no proxy from the environment may stand between a node and etcd */
    curl_easy_setopt(r->easy, CURLOPT_PROXY, "");
    if (kind != REQ_WATCH)
        curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)e->request_timeout_ms);
    /* a watch has no deadline: TCP keepalives notice an etcd that vanished without closing the connection */
    curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPIDLE, 5L);
    curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPINTVL, 5L);
    r->next = e->reqs;
    e->reqs = r;
    req_start(r);
    return r;
}

static int req_is_write(const etcd_req_t *r)
{
    return r->kind != REQ_RANGE && r->kind != REQ_KEEPALIVE && r->kind != REQ_WATCH;
}

/* ---- answers ------------------------------------------------------------------------------------------------------- */

static void answer(etcd_req_t *r, etcd_result_t *res)
{
    req_detach(r);
    if (r->cb != NULL)
        r->cb(r->etcd, res, r->data);
    etcd_kvs_free(res->kvs, res->n_kvs);
}

static void fail(etcd_req_t *r, int err, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void fail(etcd_req_t *r, int err, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (r->kind == REQ_WATCH) {
        etcd_watch_t *w = r->watch;
        req_detach(r);
        if (!w->over) {
            w->over = 1;
            etcd_watch_result_t wr = {.err = err, .message = msg};
            w->cb(w, &wr, w->data);
        }
        return;
    }
    etcd_result_t res = {.err = err, .message = msg, .etcd_code = code};
    answer(r, &res);
}

static void parse_reply(etcd_req_t *r, long status)
{
    const char *ep = r->etcd->endpoints[r->endpoint];
    json_error_t jerr;
    json_t *j = json_loadb(base_buf_head(&r->in), base_buf_len(&r->in), 0, &jerr);
    if (j == NULL || !json_is_object(j)) {
        fail(r, -EPROTO, 0, "etcd %s%s answered HTTP %ld with no JSON object (%s)", ep, r->path, status, jerr.text);
        json_decref(j);
        return;
    }
    int code = 0;
    const char *emsg = etcd_json_error(j, &code);
    if (emsg != NULL || status != 200) {
        fail(r, -EREMOTEIO, code, "etcd %s%s: %s (code %d, HTTP %ld)", ep, r->path, emsg != NULL ? emsg : "error", code, status);
        json_decref(j);
        return;
    }
    etcd_result_t res = {0};
    res.revision = etcd_json_i64(json_object_get(j, "header"), "revision");
    int bad = 0;
    switch (r->kind) {
    case REQ_RANGE:
        bad = etcd_parse_range(j, &res);
        res.count = etcd_json_i64(j, "count");
        break;
    case REQ_DELETE:
        res.count = etcd_json_i64(j, "deleted");
        break;
    case REQ_TXN: {
        /* `succeeded` false is omitted: its absence is the failure branch */
        res.succeeded = json_is_true(json_object_get(j, "succeeded"));
        json_t *resps = json_object_get(j, "responses");
        for (size_t i = 0; i < json_array_size(resps) && !bad; ++i) {
            json_t *range = json_object_get(json_array_get(resps, i), "response_range");
            if (range != NULL)
                bad = etcd_parse_range(range, &res);
        }
        break;
    }
    case REQ_GRANT:
        res.lease_id = etcd_json_i64(j, "ID");
        res.lease_ttl = etcd_json_i64(j, "TTL");
        if (res.lease_id == 0)
            bad = 1;
        break;
    case REQ_KEEPALIVE: {
        json_t *result = json_object_get(j, "result");
        res.revision = etcd_json_i64(json_object_get(result, "header"), "revision");
        res.lease_id = etcd_json_i64(result, "ID");
        res.lease_ttl = etcd_json_i64(result, "TTL"); /* omitted (0): the lease is gone */
        break;
    }
    default:
        break;
    }
    json_decref(j);
    if (bad) {
        etcd_kvs_free(res.kvs, res.n_kvs);
        fail(r, -EPROTO, 0, "etcd %s%s answered with a field that is not what the gateway sends", ep, r->path);
        return;
    }
    r->etcd->current = r->endpoint;
    answer(r, &res);
}

/* A transfer ended. Retries on the next endpoint when that is safe (see etcd.h), else answers. */
static void on_done(etcd_req_t *r, CURLcode rc)
{
    etcd_t *e = r->etcd;
    const char *ep = e->endpoints[r->endpoint];
    long status = 0;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc == CURLE_OK) {
        if (r->kind == REQ_WATCH) {
            fail(r, -EIO, 0, "etcd %s: the watch stream ended (HTTP %ld)", ep, status);
            return;
        }
        parse_reply(r, status);
        return;
    }
    long sent = 0;
    curl_easy_getinfo(r->easy, CURLINFO_REQUEST_SIZE, &sent);
    int watch_created = r->kind == REQ_WATCH && r->watch->created;
    int retry = !watch_created && (sent == 0 || !req_is_write(r)) && r->attempts + 1 < e->n_endpoints;
    if (retry) {
        log_warn("etcd %s%s: %s; trying the next endpoint", ep, r->path, r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc));
        curl_multi_remove_handle(e->multi, r->easy);
        r->in_multi = 0;
        ++r->attempts;
        r->endpoint = (r->endpoint + 1) % e->n_endpoints;
        e->current = r->endpoint;
        req_start(r);
        return;
    }
    const char *why = r->errbuf[0] ? r->errbuf : curl_easy_strerror(rc);
    if (sent == 0)
        fail(r, -ECONNREFUSED, 0, "etcd: no endpoint answered (last %s: %s)", ep, why);
    else if (rc == CURLE_OPERATION_TIMEDOUT)
        fail(r, -ETIMEDOUT, 0, "etcd %s%s timed out (%s)%s", ep, r->path, why,
             req_is_write(r) ? ": the outcome is unknown, read back" : "");
    else
        fail(r, -EIO, 0, "etcd %s%s: the connection broke (%s)%s", ep, r->path, why,
             req_is_write(r) ? ": the outcome is unknown, read back" : "");
}

/* Parses the complete lines of a watch's stream and reports them. */
static void watch_dispatch(etcd_req_t *r)
{
    etcd_watch_t *w = r->watch;
    const char *ep = r->etcd->endpoints[r->endpoint];
    while (!w->over && !r->dead && base_buf_len(&r->in) != 0) {
        char *head = base_buf_head(&r->in), *nl = memchr(head, '\n', base_buf_len(&r->in));
        if (nl == NULL)
            return;
        size_t line = (size_t)(nl - head) + 1;
        json_t *j = json_loadb(head, line - 1, 0, NULL);
        base_buf_consume(&r->in, line);
        if (j == NULL) {
            fail(r, -EPROTO, 0, "etcd %s/v3/watch: a line of the stream is not JSON", ep);
            return;
        }
        int code = 0;
        const char *emsg = etcd_json_error(j, &code);
        if (emsg != NULL) {
            fail(r, -EREMOTEIO, code, "etcd %s/v3/watch: %s (code %d)", ep, emsg, code);
            json_decref(j);
            return;
        }
        json_t *res = json_object_get(j, "result");
        etcd_watch_result_t wr = {0};
        wr.revision = etcd_json_i64(json_object_get(res, "header"), "revision");
        wr.created = json_is_true(json_object_get(res, "created"));
        wr.compact_revision = etcd_json_i64(res, "compact_revision");
        if (wr.created)
            w->created = 1;
        r->etcd->current = r->endpoint;
        if (json_is_true(json_object_get(res, "canceled")) || wr.compact_revision > 0) {
            char msg[256];
            const char *reason = json_string_value(json_object_get(res, "cancel_reason"));
            if (wr.compact_revision > 0)
                snprintf(msg, sizeof(msg),
                         "etcd %s: the watch was cancelled: compacted to revision %" PRId64
                         " (re-read, then watch from the read's revision + 1)",
                         ep, wr.compact_revision);
            else
                snprintf(msg, sizeof(msg), "etcd %s: the watch was cancelled (%s)", ep, reason ? reason : "no reason given");
            wr.err = -ECANCELED;
            wr.message = msg;
            json_decref(j);
            req_detach(r);
            w->over = 1;
            w->cb(w, &wr, w->data);
            return;
        }
        json_t *events = json_object_get(res, "events");
        size_t n = json_array_size(events);
        etcd_event_t *ev = n > 0 ? xcalloc(n, sizeof(*ev)) : NULL;
        int bad = 0;
        for (size_t i = 0; i < n && !bad; ++i) {
            json_t *e = json_array_get(events, i);
            const char *type = json_string_value(json_object_get(e, "type"));
            ev[i].type = type != NULL && strcmp(type, "DELETE") == 0 ? ETCD_EVENT_DELETE : ETCD_EVENT_PUT;
            bad = etcd_parse_kv(json_object_get(e, "kv"), &ev[i].kv) != 0;
            wr.n_events = i + 1;
        }
        json_decref(j);
        if (!bad) {
            wr.events = ev;
            w->cb(w, &wr, w->data);
        }
        for (size_t i = 0; i < wr.n_events; ++i) {
            free((char *)ev[i].kv.key);
            free((char *)ev[i].kv.value);
        }
        free(ev);
        if (bad) {
            fail(r, -EPROTO, 0, "etcd %s/v3/watch: an event without a valid key", ep);
            return;
        }
    }
}

static void drive(etcd_t *e, curl_socket_t fd, int mask)
{
    int running;
    ++e->depth;
    curl_multi_socket_action(e->multi, fd, mask, &running);
    for (etcd_req_t *r = e->reqs; r != NULL; r = r->next)
        if (r->kind == REQ_WATCH && !r->dead && base_buf_len(&r->in) != 0)
            watch_dispatch(r);
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        etcd_req_t *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        CURLcode rc = msg->data.result;
        if (r->kind == REQ_WATCH && !r->dead)
            watch_dispatch(r); /* the lines that came with the end of the stream */
        if (!r->dead)
            on_done(r, rc);
    }
    if (--e->depth == 0)
        reap(e);
}

/* ---- the public calls -------------------------------------------------------------------------------------------- */

etcd_t *etcd_create(const etcd_io_t *io, void *loop, const etcd_config_t *config, const char **err)
{
    if (config->n_endpoints == 0) {
        *err = "no etcd endpoint";
        return NULL;
    }
    static int curl_ready;
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            *err = "libcurl could not start";
            return NULL;
        }
        curl_ready = 1;
    }
    etcd_t *e = xcalloc(1, sizeof(*e));
    e->io = io;
    e->loop = loop;
    e->multi = curl_multi_init();
    e->endpoints = xcalloc(config->n_endpoints, sizeof(char *));
    for (size_t i = 0; i < config->n_endpoints; ++i) {
        size_t len = strlen(config->endpoints[i]);
        while (len > 0 && config->endpoints[i][len - 1] == '/')
            --len;
        e->endpoints[i] = xstrndup(config->endpoints[i], len);
    }
    e->n_endpoints = config->n_endpoints;
    e->request_timeout_ms = config->request_timeout_ms ? config->request_timeout_ms : 5000;
    e->connect_timeout_ms = config->connect_timeout_ms ? config->connect_timeout_ms : 1000;
    e->timer = io->timer_new(loop, on_timer, e);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
    return e;
}

void etcd_destroy(etcd_t *e)
{
    ++e->depth;
    for (etcd_req_t *r = e->reqs; r != NULL; r = r->next) {
        if (r->dead)
            continue;
        if (r->kind == REQ_WATCH) {
            r->watch->over = 1;
            req_detach(r);
        } else {
            fail(r, -ECANCELED, 0, "etcd: the client was closed");
        }
    }
    --e->depth;
    reap(e);
    curl_multi_cleanup(e->multi); /* removes curl's sockets through on_curl_socket */
    e->io->timer_free(e->timer);
    for (size_t i = 0; i < e->n_endpoints; ++i)
        free(e->endpoints[i]);
    free(e->endpoints);
    free(e);
}

const etcd_io_t *etcd_io(etcd_t *e)
{
    return e->io;
}

void *etcd_loop(etcd_t *e)
{
    return e->loop;
}

size_t etcd_pending(etcd_t *e)
{
    size_t n = 0;
    for (etcd_req_t *r = e->reqs; r != NULL; r = r->next)
        n += !r->dead && r->kind != REQ_WATCH;
    return n;
}

void etcd_get(etcd_t *e, const char *key, int prefix, int64_t revision, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_key(b, key, prefix);
    if (revision > 0)
        etcd_json_set_i64(b, "revision", revision);
    req_new(e, REQ_RANGE, "/v3/kv/range", b, cb, data);
}

void etcd_put(etcd_t *e, const char *key, const void *value, size_t value_len, int64_t lease, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_key(b, key, 0);
    etcd_json_set_b64(b, "value", value, value_len);
    if (lease != 0)
        etcd_json_set_i64(b, "lease", lease);
    req_new(e, REQ_PUT, "/v3/kv/put", b, cb, data);
}

void etcd_delete(etcd_t *e, const char *key, int prefix, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_key(b, key, prefix);
    req_new(e, REQ_DELETE, "/v3/kv/deleterange", b, cb, data);
}

static json_t *txn_ops(const etcd_op_t *ops, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; ++i) {
        json_t *o = json_object(), *req = json_object();
        etcd_json_set_key(o, ops[i].key, ops[i].kind != ETCD_OP_PUT && ops[i].prefix);
        switch (ops[i].kind) {
        case ETCD_OP_GET:
            json_object_set_new(req, "request_range", o);
            break;
        case ETCD_OP_PUT:
            etcd_json_set_b64(o, "value", ops[i].value, ops[i].value_len);
            if (ops[i].lease != 0)
                etcd_json_set_i64(o, "lease", ops[i].lease);
            json_object_set_new(req, "request_put", o);
            break;
        case ETCD_OP_DELETE:
            json_object_set_new(req, "request_delete_range", o);
            break;
        }
        json_array_append_new(a, req);
    }
    return a;
}

void etcd_txn(etcd_t *e, const etcd_cmp_t *cmps, size_t n_cmps, const etcd_op_t *success, size_t n_success,
              const etcd_op_t *failure, size_t n_failure, etcd_cb cb, void *data)
{
    static const char *const targets[] = {"MOD", "CREATE", "VERSION", "VALUE"};
    static const char *const results[] = {"EQUAL", "NOT_EQUAL", "LESS", "GREATER"};
    json_t *b = json_object(), *ca = json_array();
    for (size_t i = 0; i < n_cmps; ++i) {
        json_t *c = json_object();
        etcd_json_set_key(c, cmps[i].key, 0);
        json_object_set_new(c, "target", json_string(targets[cmps[i].target]));
        json_object_set_new(c, "result", json_string(results[cmps[i].result]));
        switch (cmps[i].target) {
        case ETCD_CMP_MOD:
            etcd_json_set_i64(c, "mod_revision", cmps[i].number);
            break;
        case ETCD_CMP_CREATE:
            etcd_json_set_i64(c, "create_revision", cmps[i].number);
            break;
        case ETCD_CMP_VERSION:
            etcd_json_set_i64(c, "version", cmps[i].number);
            break;
        case ETCD_CMP_VALUE:
            etcd_json_set_b64(c, "value", cmps[i].value, cmps[i].value_len);
            break;
        }
        json_array_append_new(ca, c);
    }
    json_object_set_new(b, "compare", ca);
    json_object_set_new(b, "success", txn_ops(success, n_success));
    json_object_set_new(b, "failure", txn_ops(failure, n_failure));
    req_new(e, REQ_TXN, "/v3/kv/txn", b, cb, data);
}

void etcd_lease_grant(etcd_t *e, int64_t ttl_s, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_i64(b, "TTL", ttl_s);
    req_new(e, REQ_GRANT, "/v3/lease/grant", b, cb, data);
}

void etcd_lease_keepalive(etcd_t *e, int64_t lease_id, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_i64(b, "ID", lease_id);
    req_new(e, REQ_KEEPALIVE, "/v3/lease/keepalive", b, cb, data);
}

void etcd_lease_revoke(etcd_t *e, int64_t lease_id, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_i64(b, "ID", lease_id);
    req_new(e, REQ_REVOKE, "/v3/lease/revoke", b, cb, data);
}

void etcd_compact(etcd_t *e, int64_t revision, etcd_cb cb, void *data)
{
    json_t *b = json_object();
    etcd_json_set_i64(b, "revision", revision);
    json_object_set_new(b, "physical", json_true());
    req_new(e, REQ_COMPACT, "/v3/kv/compaction", b, cb, data);
}

etcd_watch_t *etcd_watch(etcd_t *e, const char *key, int prefix, int64_t start_revision, etcd_watch_cb cb, void *data)
{
    json_t *c = json_object(), *b = json_object();
    etcd_json_set_key(c, key, prefix);
    if (start_revision > 0)
        etcd_json_set_i64(c, "start_revision", start_revision);
    json_object_set_new(b, "create_request", c);
    etcd_watch_t *w = xcalloc(1, sizeof(*w));
    w->etcd = e;
    w->cb = cb;
    w->data = data;
    /* the req is created with its watch set before curl can run it: curl starts nothing until the loop drives it */
    etcd_req_t *r = req_new(e, REQ_WATCH, "/v3/watch", b, NULL, NULL);
    r->watch = w;
    w->req = r;
    return w;
}

void etcd_watch_cancel(etcd_watch_t *w)
{
    etcd_t *e = w->etcd;
    w->over = 1;
    req_detach(w->req);
    if (e->depth == 0)
        reap(e);
}
