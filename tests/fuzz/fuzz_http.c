/*
 * fuzz_http.c — a client's bytes through h2o's HTTP/1 server into the router's request entry (router/http.c), and
 * what the router sends a shard for them.
 *
 * Why this path: it is the one every byte from the network takes, and the deepest that stays deterministic in one
 * process. The input is written into one end of a socketpair and shut down for writing; the other end is accepted
 * by h2o exactly as router.c accepts a client (h2o_accept on the router's context, http_on_req as the handler), so
 * h2o's own request-line, header, chunked-body and pipelining code runs, then the router's header caps, route
 * parsing, party lookup, upgrade checks (method, Connection, version, key, `_pk`) and the frame it builds. Shard 0 is
 * a real link (node/link.c) on a second socketpair; this file plays the shard: it decodes every frame the router
 * sends (each must be well formed and name a configured party and a valid room), answers each forwarded request with
 * a 200 so that pipelined requests behind it run, and refuses each upgrade as a draining node does (a 101 would hand
 * the socket to ws.c, whose parser has its own target, fuzz_wsframe). Nothing else runs: no listener, no supervisor,
 * no RocksDB, no files (the slot table is the zeroed one: every slot on shard 0).
 *
 * Passes of the loop run with a zero timeout until h2o closed the client's socket and nothing is held; h2o closes it
 * on the EOF the shutdown gives it, so an input that never ends there is a hang and aborts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PASSES 10000

static config_t conf;
static ws_config_t ws_conf;
static h2o_accept_ctx_t accept_ctx;
static h2o_hostconf_t *hosts[2];
static int shard_fd = -1; /* our end of shard 0's link */
static proto_decoder_t shard_dec;
static base_buf_t shard_in;

static void on_link_closed(link_t *link, const char *why)
{
    (void)link;
    (void)why;
    abort(); /* our end never closes */
}

static void on_link_frame(link_t *link, const proto_msg_t *msg)
{
    (void)link;
    (void)msg;
}

static void on_ws_message(ws_conn_t *conn, int binary, const uint8_t *d, size_t len)
{
    (void)conn, (void)binary, (void)d, (void)len;
    abort(); /* no upgrade is ever accepted */
}

static void on_ws_closed(ws_conn_t *conn, int code, const char *reason, int clean)
{
    (void)conn, (void)code, (void)reason, (void)clean;
}

static void init_once(void)
{
    log_set_level(LOG_ERROR);
    config_init_default(&conf);
    router.conf = &conf;
    router.max_frame = config_frame_cap(&conf);
    router.loop = h2o_evloop_create();
    h2o_config_init(&router.globalconf);
    router.globalconf.max_request_entity_size = conf.limits.body_bytes;
    router.globalconf.http1.upgrade_to_http2 = 0; /* as router.c */
    h2o_hostconf_t *host = h2o_config_register_host(&router.globalconf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *handler = h2o_create_handler(path, sizeof(*handler));
    handler->on_req = http_on_req;
    h2o_context_init(&router.ctx, router.loop, &router.globalconf);
    hosts[0] = host;
    accept_ctx.ctx = &router.ctx;
    accept_ctx.hosts = hosts;

    ws_conf = (ws_config_t){.max_message = conf.limits.message_bytes, .max_output = conf.limits.output_bytes, .ping_ms = 30000};
    static const ws_callbacks_t ws_cb = {on_ws_message, on_ws_closed};
    ws_init(router.loop, &ws_conf, &ws_cb);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    static const link_callbacks_t link_cb = {NULL, on_link_frame, on_link_closed, NULL};
    router.ids[0] = 0;
    router.num_shards = 1;
    router.shards[0].active = 1;
    router.shards[0].state = SHARD_UP;
    router.shards[0].link = link_open(router.loop, sv[0], router.max_frame, PROTO_ROLE_ROUTER, 0, &link_cb, NULL);
    shard_fd = sv[1];
    proto_decoder_init(&shard_dec, router.max_frame);
    base_buf_init(&shard_in);
}

static int str_valid(proto_str_t s, size_t max)
{
    return s.len != 0 && s.len <= max && memchr(s.base, '\0', s.len) == NULL;
}

/* Reads what the router sent shard 0 and checks every frame; returns the number of REQUEST and OPEN frames. */
static size_t shard_read(void)
{
    for (;;) {
        char *dst = base_buf_reserve(&shard_in, 65536);
        ssize_t n = read(shard_fd, dst, 65536);
        if (n <= 0) {
            if (n == -1 && errno != EAGAIN)
                abort();
            break;
        }
        base_buf_commit(&shard_in, (size_t)n);
    }
    size_t count = 0;
    for (;;) {
        proto_msg_t m;
        long n = proto_decode(&shard_dec, base_buf_head(&shard_in), base_buf_len(&shard_in), &m);
        if (n == -2)
            break;
        if (n < 0)
            abort(); /* the router sent a frame its own decoder refuses */
        switch (m.type) {
        case PROTO_HELLO:
        case PROTO_CLOSE:
            break;
        case PROTO_REQUEST:
        case PROTO_OPEN:
            /* what route.c promised: a configured party, a room within the name rules, a path */
            if (config_find_party(&conf, m.party.base, m.party.len) == NULL || !str_valid(m.room, ROUTE_ROOM_MAX) ||
                memchr(m.room.base, '/', m.room.len) != NULL || m.path.len == 0 || m.path.base[0] != '/')
                abort();
            if (m.type == PROTO_REQUEST && m.method.len == 0)
                abort();
            if (m.type == PROTO_OPEN && !str_valid(m.conn_id, ROUTE_ID_MAX))
                abort();
            ++count;
            break;
        default:
            abort(); /* nothing else is the router's to send for a client request */
        }
        base_buf_consume(&shard_in, (size_t)n);
    }
    return count;
}

/* The shard's answers: a 200 for a request, a refusal for an upgrade (as a draining node gives). */
static void answer_pending(void)
{
    while (router.pending != NULL) {
        router_pending_t *p = router.pending;
        if (p->conn != NULL) {
            shards_on_ws_closed(p->conn, 1001, "node shutting down", 0);
            http_fail_pending(p, 503, "the node is shutting down");
        } else {
            static const proto_header_t headers[] = {{PROTO_STR("content-type"), PROTO_STR("text/plain")},
                                                     {PROTO_STR("transfer-encoding"), PROTO_STR("chunked")}};
            proto_msg_t m = {.type = PROTO_RESPONSE, .id = p->rid, .status = 200, .headers = headers, .num_headers = 2,
                             .data = PROTO_STR("ok")};
            http_respond_pending(p, &m);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (router.loop == NULL)
        init_once();
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    h2o_socket_t *sock = h2o_evloop_socket_create(router.loop, sv[0], 0);
    h2o_accept(&accept_ctx, sock);

    size_t off = 0, held = 0;
    int closed = 0, shut = 0;
    for (int pass = 0;; ++pass) {
        if (pass == MAX_PASSES)
            abort(); /* h2o never closed the connection after the client's EOF */
        while (off < size) {
            ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
            if (n == -1 && errno != EAGAIN)
                off = size; /* h2o closed the connection (a malformed request): the rest cannot be delivered */
            if (n <= 0)
                break;
            off += (size_t)n;
        }
        if (off == size && !shut) {
            shutdown(sv[1], SHUT_WR);
            shut = 1;
        }
        h2o_evloop_run(router.loop, 0);
        ws_flush();
        shards_flush();
        held += shard_read();
        answer_pending();
        shards_flush();
        char drain[65536];
        ssize_t n;
        while ((n = read(sv[1], drain, sizeof(drain))) > 0)
            ;
        if (n == 0 || (n == -1 && errno != EAGAIN))
            closed = 1;
        if (closed && router.pending == NULL && off == size)
            break;
    }
    close(sv[1]);
    /* one more pass: what h2o disposes after the close (the request's pool, our tokens in it) */
    h2o_evloop_run(router.loop, 0);
    ws_flush();
    (void)held;
    return 0;
}
