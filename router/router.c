/*
 * router.c — the router process: its loop, listeners, control socket and drain.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "child.h"
#include "router.h"

router_t router;

#define ACCEPT_PAUSE_MS 100
/* Descriptors kept back from limits.connections: the admin listener's connections, the spare connections below, the
 * shard links, lingering closes (linger.c), files. A flood that reaches limits.connections then still leaves the
 * operator a way in. */
#define FD_RESERVE 256
/* Admin connections at once; more get a 503 and are closed in the accept (an operator's tools need a handful; the
 * cap keeps a flood on the admin port from eating the descriptors kept in reserve). */
#define ADMIN_CONNS_MAX 128
/* Connections past a cap (limits.connections or a per-address one) that are still accepted, to answer /health and
 * give everything else a 503 and a close: a load balancer's health check gets through a flood. Past these, a refused
 * connection is answered 503 (plain HTTP) and closed in the accept. */
#define SPARE_CONNS_MAX 32

/* A client address (IPv4 as IPv4-mapped IPv6): its connections, and its new connections in the current second. Freed
 * by the sweep once it has neither. */
typedef struct st_client_addr_t {
    UT_hash_handle hh;
    uint8_t key[16];
    uint32_t conns;
    uint32_t connects; /* in second `sec` */
    uint64_t sec;
} client_addr_t;

typedef struct st_listener_t {
    h2o_socket_t *sock;
    h2o_accept_ctx_t accept_ctx;
    h2o_hostconf_t *hosts[2];
    h2o_timeout_entry_t resume;
    int is_main; /* the rooms' listener (else the admin one) */
} listener_t;

static struct {
    h2o_socket_t *ctl;
    h2o_socket_t *sig;
    listener_t main, admin;
    h2o_timeout_t pause_timeout;
    ws_config_t ws_conf;
    uint64_t drain_deadline;
    int stop;
    /* connection accounting (main listener) */
    client_addr_t *addrs;
    size_t conns;       /* accepted, and WebSocket connections taken from h2o */
    size_t spare;       /* accepted past a cap, for /health only */
    size_t admin_conns; /* on the admin listener */
    size_t max_conns;   /* limits.connections, or fewer if the descriptors do not allow it */
    uint64_t refused;
    h2o_timeout_t addr_sweep;
    h2o_timeout_entry_t addr_sweep_entry;
} rt;

/* ---- connection accounting ---- */

static void addr_key(const struct sockaddr_storage *ss, uint8_t key[16])
{
    memset(key, 0, 16);
    if (ss->ss_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    } else if (ss->ss_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    }
}

static client_addr_t *addr_get(const uint8_t key[16])
{
    client_addr_t *a;
    HASH_FIND(hh, rt.addrs, key, 16, a);
    if (a == NULL) {
        a = xcalloc(1, sizeof(*a));
        memcpy(a->key, key, 16);
        HASH_ADD(hh, rt.addrs, key, 16, a);
    }
    return a;
}

/* Once a second: addresses with no connection and no new one this second go. */
static void on_addr_sweep(h2o_timeout_entry_t *entry)
{
    (void)entry;
    uint64_t sec = h2o_now(router.loop) / 1000;
    client_addr_t *a, *tmp;
    HASH_ITER(hh, rt.addrs, a, tmp)
    {
        if (a->conns == 0 && a->sec != sec) {
            HASH_DEL(rt.addrs, a);
            free(a);
        }
    }
    h2o_timeout_link(router.loop, &rt.addr_sweep, &rt.addr_sweep_entry);
}

static void on_client_closed(void *data)
{
    client_addr_t *a = data;
    --a->conns;
    --rt.conns;
}

static void on_spare_closed(void *data)
{
    (void)data;
    --rt.spare;
}

static void on_admin_closed(void *data)
{
    (void)data;
    --rt.admin_conns;
}

/* ws.c took a plain connection's socket from h2o (h2o_socket_export ran on_client_closed) or is closing it. */
static void on_ws_socket(ws_conn_t *conn, int fd, int open)
{
    if (open) {
        struct sockaddr_storage ss = {0};
        socklen_t len = sizeof(ss);
        uint8_t key[16];
        if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0)
            ss.ss_family = AF_UNSPEC;
        addr_key(&ss, key);
        client_addr_t *a = addr_get(key);
        ++a->conns;
        ++rt.conns;
        conn->client = a;
    } else if (conn->client != NULL) {
        on_client_closed(conn->client);
        conn->client = NULL;
    }
}

/* What a request on a spare connection gets: /health and /ready go on to its handler, anything else a 503; the connection
 * closes after the answer either way. Registered before the rooms' handler. */
static int spare_on_req(h2o_handler_t *self, h2o_req_t *req)
{
    (void)self;
    h2o_socket_t *sock = req->conn->callbacks->get_socket != NULL ? req->conn->callbacks->get_socket(req->conn) : NULL;
    if (sock == NULL || linger_close_cb(sock) != on_spare_closed)
        return -1;
    req->http1_is_persistent = 0;
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/health")) ||
        h2o_memis(req->path_normalized.base, req->path_normalized.len, H2O_STRLIT("/ready")))
        return -1;
    http_send_error(req, 503, "too many connections: try again later");
    return 0;
}

/* Refused in the accept: a 503 where the listener speaks plain HTTP, then the socket closes. What the client already
 * sent is read first: a close with unread input would answer with a reset, and a reset can take the 503 away. */
static void refuse(listener_t *l, int fd, const char *why)
{
    if (l->accept_ctx.ssl_ctx == NULL) {
        char resp[300];
        int body = (int)strlen(why) + 12;
        int n = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
                         "connection: close\r\ncontent-length: %d\r\n\r\n{\"error\":\"%s\"}",
                         body, why);
        if (send(fd, resp, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL) == -1) {
            /* the client is gone already, or its window is full: the close says it */
        }
        char drain[4096];
        for (int i = 0; i < 4 && recv(fd, drain, sizeof(drain), MSG_DONTWAIT) > 0; ++i)
            ;
        shutdown(fd, SHUT_WR);
    }
    close(fd);
}

/* A connection accepted on the main listener: counted against limits.connections and its address's caps. */
static void admit(listener_t *l, int fd, const struct sockaddr_storage *ss)
{
    const config_t *conf = router.conf;
    uint8_t key[16];
    addr_key(ss, key);
    client_addr_t *a = addr_get(key);
    uint64_t sec = h2o_now(router.loop) / 1000;
    if (a->sec != sec) {
        a->sec = sec;
        a->connects = 0;
    }
    ++a->connects;
    const char *why = NULL;
    if (conf->limits.connects_per_ip_per_s != 0 && a->connects > conf->limits.connects_per_ip_per_s)
        why = "too many new connections from this address";
    else if (conf->limits.connections_per_ip != 0 && a->conns >= conf->limits.connections_per_ip)
        why = "too many connections from this address";
    else if (rt.conns >= rt.max_conns)
        why = "too many connections";
    int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (why != NULL) {
        if (rt.refused++ % 1024 == 0)
            log_warn("refusing connections: %s (%zu open, %" PRIu64 " refused so far)", why, rt.conns, rt.refused);
        if (rt.spare >= SPARE_CONNS_MAX) {
            refuse(l, fd, why);
            return;
        }
        h2o_socket_t *s = h2o_evloop_socket_create(router.loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
        s->on_close.cb = on_spare_closed;
        ++rt.spare;
        linger_watch(s);
        h2o_accept(&l->accept_ctx, s);
        return;
    }
    h2o_socket_t *s = h2o_evloop_socket_create(router.loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
    s->on_close.cb = on_client_closed;
    s->on_close.data = a;
    ++a->conns;
    ++rt.conns;
    linger_watch(s);
    h2o_accept(&l->accept_ctx, s);
}

/* RLIMIT_NOFILE up to its hard limit (the soft one inherited is often 1024, or 19,984 as seen); returns it. */
static size_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
            log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)rl.rlim_max, strerror(errno));
            rl.rlim_cur = was;
        }
    }
    return rl.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
}

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
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(h2o_socket_get_fd(sock), (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd == -1) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* out of descriptors: stop accepting for a moment rather than spin on a readable listener */
                log_warn("accept: %s; pausing the listener for %d ms", strerror(errno), ACCEPT_PAUSE_MS);
                h2o_socket_read_stop(sock);
                h2o_timeout_link(router.loop, &rt.pause_timeout, &l->resume);
            }
            return;
        }
        if (l->is_main) {
            admit(l, fd, &ss);
            continue;
        }
        if (rt.admin_conns >= ADMIN_CONNS_MAX) {
            refuse(l, fd, "too many admin connections");
            continue;
        }
        int on = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
        h2o_socket_t *s = h2o_evloop_socket_create(router.loop, fd, H2O_SOCKET_FLAG_IS_ACCEPTED_CONNECTION);
        s->on_close.cb = on_admin_closed;
        ++rt.admin_conns;
        linger_watch(s);
        h2o_accept(&l->accept_ctx, s);
    }
}

static void listener_start(listener_t *l, int fd, h2o_hostconf_t *host, int is_main)
{
    l->is_main = is_main;
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

/* SIGHUP, passed on by the supervisor, which checked the text and the TLS files already: the settings read at each use
 * change in place (router.conf is this process's own copy), and new TLS connections get the files' new context (a
 * connection holds its context's reference, so the old one goes with the last of them). */
static void reload(int fd)
{
    char err[1024];
    config_t *conf = (config_t *)router.conf; /* const for the rest of the router: this is its one writer */
    if (config_reload_fd(conf, fd, err, sizeof(err)) != 0) {
        log_error("SIGHUP: keeping the old settings: %s", err);
        return;
    }
    if (conf->tls_cert != NULL && rt.main.accept_ctx.ssl_ctx != NULL) {
        SSL_CTX *ctx = router_tls_context(conf, err, sizeof(err));
        if (ctx == NULL) {
            log_error("SIGHUP: keeping the old TLS certificate: %s", err);
            return;
        }
        SSL_CTX_free(rt.main.accept_ctx.ssl_ctx);
        rt.main.accept_ctx.ssl_ctx = ctx;
    }
    log_debug("SIGHUP: applied");
}

static void on_ctl_record(const ctl_msg_t *m, int *fd, void *data)
{
    (void)data;
    switch (m->type) {
    case CTL_SHARD_STALLED:
    case CTL_SHARD_RESUMED:
        if (m->shard >= 0 && m->shard < CONFIG_MAX_SHARDS)
            router.shards[m->shard].stalled = m->type == CTL_SHARD_STALLED;
        break;
    case CTL_QUARANTINE: {
        char key[sizeof(m->room)];
        memcpy(key, m->room, sizeof(key));
        key[sizeof(key) - 1] = '\0';
        quarantine_add(key, m->ms);
        break;
    }
    case CTL_SHARD_UP:
        if (m->shard >= 0 && m->shard < CONFIG_MAX_SHARDS)
            router.shards[m->shard].stalled = 0;
        if (*fd != -1) {
            shards_on_up(m->shard, m->pid, m->restarts, *fd);
            *fd = -1;
        }
        break;
    case CTL_SHARD_DOWN:
        if (m->shard >= 0 && m->shard < CONFIG_MAX_SHARDS) {
            router_shard_t *s = &router.shards[m->shard];
            s->stalled = 0;
            memcpy(s->last_exit, m->room, sizeof(s->last_exit) - 1);
            s->last_exit[sizeof(s->last_exit) - 1] = '\0';
            s->last_exit_at = base_now_wall_ms();
        }
        shards_on_down(m->shard);
        break;
    case CTL_DRAIN:
        begin_drain("asked by the supervisor");
        break;
    case CTL_SPAWN_FAILED:
        migrate_on_spawn_failed(m->shard, m->pid);
        break;
    case CTL_RELOAD:
        if (*fd != -1)
            reload(*fd);
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

/* OpenSSL's reason for the last error, never NULL */
static const char *tls_reason(void)
{
    const char *r = ERR_reason_error_string(ERR_get_error());
    return r != NULL ? r : "not a PEM file OpenSSL can use";
}

struct ssl_ctx_st *router_tls_context(const config_t *conf, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "SSL_CTX_new failed");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
    /* OpenSSL has no reason string for a file it could not open (it would print "(null)"): say what the system said */
    if (access(conf->tls_cert, R_OK) != 0 || access(conf->tls_key, R_OK) != 0) {
        int cert_bad = access(conf->tls_cert, R_OK) != 0;
        snprintf(err, errlen, "%s: cannot read %s: %s", cert_bad ? "listen.tls.cert" : "listen.tls.key",
                 cert_bad ? conf->tls_cert : conf->tls_key, strerror(errno));
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, conf->tls_cert) != 1) {
        snprintf(err, errlen, "listen.tls.cert: cannot load %s: %s", conf->tls_cert, tls_reason());
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, conf->tls_key, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "listen.tls.key: cannot load %s, or it does not match the certificate: %s", conf->tls_key,
                 tls_reason());
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
    if (on_req == http_on_req) /* the main listener: its spare connections answer /health only */
        h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = spare_on_req;
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

int router_ctl_send_room(uint32_t type, const char *key, size_t len)
{
    if (rt.ctl == NULL)
        return -ENOTCONN;
    ctl_msg_t m = {.type = type, .shard = -1};
    if (len >= sizeof(m.room))
        return -ENAMETOOLONG;
    memcpy(m.room, key, len);
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
    size_t nofile = raise_nofile();
    size_t usable = nofile > 2 * FD_RESERVE ? nofile - FD_RESERVE : nofile / 2;
    rt.max_conns = conf->limits.connections < usable ? conf->limits.connections : usable;
    /* said at info, not as a warning: the default (100000) is above what a common LimitNOFILE allows, on purpose */
    if (rt.max_conns < conf->limits.connections)
        log_info("accepting up to %zu connections: limits.connections is %u, but RLIMIT_NOFILE is %zu (%d kept in "
                 "reserve); raise its hard limit (LimitNOFILE=) for more",
                 rt.max_conns, conf->limits.connections, nofile, FD_RESERVE);
    h2o_timeout_init(router.loop, &rt.addr_sweep, 1000);
    rt.addr_sweep_entry.cb = on_addr_sweep;
    h2o_timeout_link(router.loop, &rt.addr_sweep, &rt.addr_sweep_entry);
    admin_init(node_started_ms);
    h2o_config_init(&router.globalconf);
    router.globalconf.server_name = h2o_iovec_init(H2O_STRLIT("partyd/" PARTYD_VERSION));
    /* h2o refuses a chunked body when it reaches this size, one with Content-Length only past it: one byte more
     * lets a chunked body of exactly limits.body_bytes in too, and http_on_req refuses what is longer either way */
    router.globalconf.max_request_entity_size = conf->limits.body_bytes + 1;
    router.globalconf.http1.upgrade_to_http2 = 0; /* WebSocket needs HTTP/1.1; h2c would take it away */
    h2o_hostconf_t *main_host = add_host("default", http_on_req, conf->serve);
    h2o_hostconf_t *admin_host = add_host("admin", admin_on_req, NULL);
    router.admin_host = admin_host;
    h2o_context_init(&router.ctx, router.loop, &router.globalconf);
    h2o_timeout_init(router.loop, &rt.pause_timeout, ACCEPT_PAUSE_MS);
    linger_init(router.loop);

    rt.ws_conf = (ws_config_t){.max_message = conf->limits.message_bytes,
                               .max_output = conf->limits.output_bytes,
                               .max_output_total = conf->limits.output_total_bytes,
                               .ping_ms = conf->timers.ping_ms};
    static const ws_callbacks_t ws_callbacks = {shards_on_ws_message, shards_on_ws_closed, on_ws_socket};
    ws_init(router.loop, &rt.ws_conf, &ws_callbacks);
    if (shards_init(ids, num_ids) != 0)
        return 1;
    migrate_init(target_shards);

    listener_start(&rt.main, listen_fd, main_host, 1);
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
        listener_start(&rt.admin, admin_fd, admin_host, 0);
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
    for (router_pending_t *p = router.pending, *next; p != NULL; p = next) {
        next = p->next;
        if (p->upgrading) {
            /* h2o holds the record as the argument of on_upgrade_complete, which the loop runs below may still call
             * (the 101 finishes): it stays, in router.pending, and lets go of its connection (ws_dispose frees it) so
             * the callback only closes the socket */
            http_upgrade_orphan(p);
            continue;
        }
        if (p->conn != NULL)
            shards_on_ws_closed(p->conn, 1001, "node shutting down", 0);
        http_fail_pending(p, 503, "the node is shutting down");
    }
    admin_dispose();
    fetch_dispose();
    quarantine_dispose();
    migrate_dispose();
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
    h2o_timeout_unlink(&rt.addr_sweep_entry);
    /* h2o's keep-alive sockets outlive this (see below) and point at their address records: those stay */
    client_addr_t *a, *tmp;
    HASH_ITER(hh, rt.addrs, a, tmp)
    {
        if (a->conns == 0) {
            HASH_DEL(rt.addrs, a);
            free(a);
        }
    }
    /* h2o 2.2.5 cannot close idle keep-alive connections on demand, so the loop and the context stay (reachable from
     * `router`) until the process exits a moment later */
    log_info("stopped");
    return 0;
}
