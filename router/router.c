/*
 * router.c — the router process: its loop, listeners, control socket and drain.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "child.h"
#include "router.h"

router_t router;

#define ACCEPT_PAUSE_MS 100

typedef struct st_listener_t {
    h2o_socket_t *sock;
    h2o_accept_ctx_t accept_ctx;
    h2o_hostconf_t *hosts[2];
    h2o_timeout_entry_t resume;
} listener_t;

static struct {
    h2o_socket_t *ctl;
    h2o_socket_t *sig;
    listener_t main, admin;
    h2o_timeout_t pause_timeout;
    ws_config_t ws_conf;
    uint64_t drain_deadline;
    int stop;
} rt;

/* ---- listeners ---- */

static void on_accept(h2o_socket_t *sock, const char *err);

static void on_resume(h2o_timeout_entry_t *entry)
{
    listener_t *l = H2O_STRUCT_FROM_MEMBER(listener_t, resume, entry);
    if (l->sock != NULL)
        h2o_socket_read_start(l->sock, on_accept);
}

static void on_accept(h2o_socket_t *sock, const char *err)
{
    listener_t *l = sock->data;
    if (err != NULL)
        return;
    for (int i = 0; i < 64; ++i) {
        h2o_socket_t *s = h2o_evloop_socket_accept(sock);
        if (s == NULL) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a moment rather than spin on a readable listener */
                log_warn("accept: %s; pausing the listener for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                h2o_socket_read_stop(sock);
                h2o_timeout_link(router.loop, &rt.pause_timeout, &l->resume);
            }
            return;
        }
        h2o_accept(&l->accept_ctx, s);
    }
}

static void listener_start(listener_t *l, int fd, h2o_hostconf_t *host)
{
    l->hosts[0] = host;
    l->hosts[1] = NULL;
    l->accept_ctx.ctx = &router.ctx;
    l->accept_ctx.hosts = l->hosts;
    l->resume.cb = on_resume;
    l->sock = h2o_evloop_socket_create(router.loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    l->sock->data = l;
    h2o_socket_read_start(l->sock, on_accept);
}

static void listener_stop(listener_t *l)
{
    if (l->sock == NULL)
        return;
    if (h2o_timeout_is_linked(&l->resume))
        h2o_timeout_unlink(&l->resume);
    h2o_socket_read_stop(l->sock);
    h2o_socket_close(l->sock);
    l->sock = NULL;
}

/* ---- drain ---- */

static void begin_drain(const char *why)
{
    if (router.draining)
        return;
    log_info("draining (%s): closing %zu connections with 1001", why, ws_count());
    router.draining = 1;
    migrate_on_drain();
    rt.drain_deadline = h2o_now(router.loop) + router.conf->timers.drain_ms / 2;
    listener_stop(&rt.main);
    listener_stop(&rt.admin);
    h2o_context_request_shutdown(&router.ctx);
    /* before the closes, so that the rooms see them as the node stopping, not as their clients leaving */
    for (int k = 0; k < router.num_shards; ++k) {
        link_t *link = shards_link((uint16_t)router.ids[k]);
        proto_msg_t m = {.type = PROTO_ADMIN, .id = ++router.next_rid, .method = PROTO_STR("node-stopping")};
        if (link != NULL)
            link_emit(link, &m);
    }
    for (router_pending_t *p = router.pending, *next; p != NULL; p = next) {
        next = p->next;
        if (p->conn == NULL || p->upgrading)
            continue; /* HTTP requests get their answers; upgrades in flight close after their 101 */
        shards_on_ws_closed(p->conn, 1001, "node shutting down", 0);
        http_fail_pending(p, 503, "the node is shutting down");
    }
    ws_close_all(1001, "node shutting down");
}

static int drained(void)
{
    return router.draining && ((ws_count() == 0 && router.pending == NULL) || h2o_now(router.loop) >= rt.drain_deadline);
}

/* ---- control socket and signals ---- */

static void on_ctl_record(const ctl_msg_t *m, int *fd, void *data)
{
    (void)data;
    switch (m->type) {
    case CTL_SHARD_UP:
        if (*fd != -1) {
            shards_on_up(m->shard, m->pid, m->restarts, *fd);
            *fd = -1;
        }
        break;
    case CTL_SHARD_DOWN:
        shards_on_down(m->shard);
        break;
    case CTL_DRAIN:
        begin_drain("asked by the supervisor");
        break;
    default:
        log_warn("control: ignoring record type %u", m->type);
        break;
    }
}

static void on_orphaned(void *data)
{
    (void)data;
    begin_drain("the supervisor went away");
}

static void on_term(void *data)
{
    (void)data;
    begin_drain("SIGTERM");
}

static const child_callbacks_t child_callbacks = {on_ctl_record, on_orphaned, on_term};

static void on_ctl(h2o_socket_t *sock, const char *err)
{
    (void)err;
    if (child_ctl_readable(h2o_socket_get_fd(sock), &child_callbacks, NULL) != 0)
        h2o_socket_read_stop(sock);
}

static void on_signal(h2o_socket_t *sock, const char *err)
{
    (void)err;
    child_signals_readable(h2o_socket_get_fd(sock), &child_callbacks, NULL);
}

/* ---- main ---- */

struct ssl_ctx_st *router_tls_context(const config_t *conf, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert) != 1) {
        snprintf(err, errlen, "listen.tls.cert: cannot load %s: %s", conf->tls_cert, ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "listen.tls.key: cannot load %s, or it does not match the certificate: %s", conf->tls_key,
                 ERR_reason_error_string(ERR_get_error()));
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* no ALPN: clients speak HTTP/1.1, the only version WebSocket works on here */
    return ctx;
}

static h2o_hostconf_t *add_host(const char *name, int (*on_req)(h2o_handler_t *, h2o_req_t *), const char *serve)
{
    h2o_hostconf_t *host = h2o_config_register_host(&router.globalconf, h2o_iovec_init(name, strlen(name)), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = on_req;
    /* "serve": what the rooms' handler passes on (not a room path, not /health) is a file of that folder, served by
     * h2o's file handler (content types by extension, index.html, ETag and 304, ranges; ".." cannot leave the folder) */
    if (serve != NULL)
        h2o_file_register(path, serve, NULL, NULL, 0);
    return host;
}

int router_ctl_send(uint32_t type, int shard)
{
    if (rt.ctl == NULL)
        return -ENOTCONN;
    ctl_msg_t m = {.type = type, .shard = shard};
    return ctl_send(h2o_socket_get_fd(rt.ctl), &m, -1);
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port : ((struct sockaddr_in *)&ss)->sin_port);
}

int router_main(const config_t *conf, const partydefs_t *defs, int ctl_fd, int listen_fd, int admin_fd, uint64_t node_started_ms,
                const int *ids, int num_ids, int target_shards)
{
    log_set_role("router", -1);
    prctl(PR_SET_NAME, "partyd-router", 0, 0, 0);
    memset(&router, 0, sizeof(router));
    memset(&rt, 0, sizeof(rt));
    router.conf = conf;
    router.defs = defs;
    router.max_frame = config_frame_cap(conf);
    router.supervisor = getppid();
    int sfd = ctl_child_signals();
    if (sfd == -1)
        return 1;

    router.loop = h2o_evloop_create();
    router.started_at = h2o_now(router.loop);
    admin_init(node_started_ms);
    h2o_config_init(&router.globalconf);
    router.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("partyd/" PARTYD_VERSION));
    router.globalconf.max_request_entity_size = conf->limits.body_bytes;
    router.globalconf.http1.upgrade_to_http2 = 0; /* WebSocket needs HTTP/1.1; h2c would take it away */
    h2o_hostconf_t *main_host = add_host("default", http_on_req, conf->serve);
    h2o_hostconf_t *admin_host = add_host("admin", admin_on_req, NULL);
    router.admin_host = admin_host;
    h2o_context_init(&router.ctx, router.loop, &router.globalconf);
    h2o_timeout_init(router.loop, &rt.pause_timeout, ACCEPT_PAUSE_MS);
    linger_init(router.loop);

    rt.ws_conf = (ws_config_t){
        .max_message = conf->limits.message_bytes, .max_output = conf->limits.output_bytes, .ping_ms = conf->timers.ping_ms};
    static const ws_callbacks_t ws_callbacks = {shards_on_ws_message, shards_on_ws_closed};
    ws_init(router.loop, &rt.ws_conf, &ws_callbacks);
    if (shards_init(ids, num_ids) != 0)
        return 1;
    migrate_init(target_shards);

    listener_start(&rt.main, listen_fd, main_host);
    router.port = bound_port(listen_fd);
    router.admin_port = admin_fd != -1 ? bound_port(admin_fd) : 0;
    if (conf->tls_cert != NULL) {
        char err[600];
        if ((rt.main.accept_ctx.ssl_ctx = router_tls_context(conf, err, sizeof(err))) == NULL) {
            log_error("%s", err);
            return 1;
        }
    }
    if (admin_fd != -1)
        listener_start(&rt.admin, admin_fd, admin_host);
    rt.ctl = h2o_evloop_socket_create(router.loop, ctl_fd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(rt.ctl, on_ctl);
    rt.sig = h2o_evloop_socket_create(router.loop, sfd, H2O_SOCKET_FLAG_DONT_READ);
    h2o_socket_read_start(rt.sig, on_signal);
    log_info("started");

    while (!drained()) {
        h2o_evloop_run(router.loop, ws_has_output() ? 0 : router.draining ? 50 : INT32_MAX);
        /* end of the pass: sockets' output (coalesced per socket, a slice of a big fan-out), every link's frames in
         * one write */
        ws_flush();
        shards_flush();
    }
    log_info("drained; %zu connections left", ws_count());

    /* anything still held gets an answer before the sockets go */
    while (router.pending != NULL) {
        router_pending_t *p = router.pending;
        if (p->upgrading) {
            /* h2o owns it until its callback: drop the record, the socket closes with the loop */
            if (p->conn != NULL)
                p->conn->pending = NULL;
            router.pending = p->next;
            free(p);
            continue;
        }
        if (p->conn != NULL)
            shards_on_ws_closed(p->conn, 1001, "node shutting down", 0);
        http_fail_pending(p, 503, "the node is shutting down");
    }
    admin_dispose();
    fetch_dispose();
    while (ws_has_output())
        ws_flush();
    shards_flush();
    /* let the shards hear every CLOSE before the links go, so rooms see 1001 rather than a lost router */
    uint64_t until = h2o_now(router.loop) + 500;
    while (shards_backlog() != 0 && h2o_now(router.loop) < until) {
        h2o_evloop_run(router.loop, 10);
        shards_flush();
    }
    ws_dispose();
    shards_dispose();
    listener_stop(&rt.main);
    listener_stop(&rt.admin);
    h2o_socket_close(rt.ctl);
    h2o_socket_close(rt.sig);
    h2o_evloop_run(router.loop, 0);
    /* h2o 2.2.5 cannot close idle keep-alive connections on demand, so the loop and the context stay (reachable from
     * `router`) until the process exits a moment later */
    log_info("stopped");
    return 0;
}
