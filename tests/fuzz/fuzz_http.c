/*
 * fuzz_http.c — a client's bytes through h2o's HTTP/1 server into the router's request entry (router/http.c), and
 * what the router sends a shard for them.
 *
 * Why this path: it is the one every byte from the network takes, and the deepest that stays deterministic in one
 * process. The input is written into one end of a socketpair and shut down for writing; the other end is accepted
 * by h2o exactly as router.c accepts a client (h2o_accept on the router's context, http_on_req as the handler), so
 * h2o's own request-line, header, chunked-body and pipelining code runs, then the router's header caps, route
 * parsing, party lookup, upgrade checks (method, Connection, version, key, `_pk`) and the frame it builds. Shard 0 is
 * a real link handed to shards_on_up (router/shards.c) on a second socketpair; this file plays the shard at its
 * other end, as shard.c would: it says HELLO, checks every frame the router sends (well formed, a configured party,
 * a valid room), answers each REQUEST with a RESPONSE (so that pipelined requests behind it run), each OPEN with
 * ATTACH, a SEND and ACCEPT — or REJECT for a room whose name starts with "refuse" — and echoes each MESSAGE. So
 * an accepted upgrade goes the whole way: h2o writes the 101, hands the socket over, and the bytes the client sent
 * after its upgrade request are WebSocket frames for ws.c. Nothing else runs: no listener, no supervisor, no
 * RocksDB, no files (the slot table is the zeroed one: every slot on shard 0, which is also the rendezvous table
 * of one shard, so migrate.c has nothing to do). Not reached: TLS, what only time drives (h2o's request and keep-alive
 * timeouts, ws.c's pings), the static files of "serve", and the admin listener.
 *
 * Passes of the loop run with a zero timeout until the client's socket was closed (h2o closes it on the EOF the
 * shutdown gives it, ws.c on the same EOF after an upgrade) and nothing is held; an input after which that never
 * happens is a hang and aborts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "route.h"
#include "router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_PASSES 100000

static config_t conf;
static ws_config_t ws_conf;
static h2o_accept_ctx_t accept_ctx;
static h2o_hostconf_t *hosts[2];
static int shard_fd = -1; /* our end of shard 0's link */
static proto_decoder_t shard_dec;
static base_buf_t shard_in;

static void shard_send(const proto_msg_t *m)
{
    base_buf_t out;
    base_buf_init(&out);
    if (proto_encode(&out, m, router.max_frame) != 0)
        abort();
    for (size_t off = 0; off < base_buf_len(&out);) {
        ssize_t n = write(shard_fd, base_buf_head(&out) + off, base_buf_len(&out) - off);
        if (n <= 0)
            abort(); /* the router reads its link every pass: the socket buffer never fills here */
        off += (size_t)n;
    }
    base_buf_dispose(&out);
}

/* The default config's parties as the router sees them: built-ins, which have no edge hooks (shard/module.c resolves
 * them in partyd; the router's layer cannot call it, and needs nothing of a built-in but that it exists). */
static const party_t no_hooks = {.abi_version = PARTY_ABI_VERSION, .kind = "builtin"};
static partydef_t defs_table[CONFIG_MAX_PARTIES];
static partydefs_t defs = {defs_table, 0};

static void init_once(void)
{
    log_set_level(LOG_ERROR);
    config_init_default(&conf);
    for (size_t i = 0; i < conf.num_parties && i < CONFIG_MAX_PARTIES; ++i)
        defs_table[defs.num_defs++] = (partydef_t){&conf.parties[i], &no_hooks, conf.parties[i].kind, NULL, 0};
    router.defs = &defs;
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
    static const ws_callbacks_t ws_cb = {shards_on_ws_message, shards_on_ws_closed, NULL};
    ws_init(router.loop, &ws_conf, &ws_cb);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
        abort();
    shards_on_up(0, (int)getpid(), 0, sv[0]);
    shard_fd = sv[1];
    proto_decoder_init(&shard_dec, router.max_frame);
    base_buf_init(&shard_in);
    proto_msg_t hello = {.type = PROTO_HELLO, .version = PROTO_VERSION, .role = PROTO_ROLE_SHARD, .shard = 0, .pid = 1};
    shard_send(&hello);
}

static int str_valid(proto_str_t s, size_t max)
{
    return s.len != 0 && s.len <= max && memchr(s.base, '\0', s.len) == NULL;
}

/* Reads what the router sent shard 0, checks every frame and answers as a shard would. */
static void shard_read(void)
{
    for (;;) {
        char *dst = base_buf_reserve(&shard_in, 65536);
        ssize_t n = read(shard_fd, dst, 65536);
        if (n <= 0) {
            if (n == 0 || errno != EAGAIN)
                abort(); /* the router never closes its link here */
            break;
        }
        base_buf_commit(&shard_in, (size_t)n);
    }
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
        case PROTO_SLOT:
            /* when the link comes up the router tells the shard which slots it owns ("owned"); nothing else of a move
             * starts from a client's bytes */
            if (!(m.method.len == 5 && memcmp(m.method.base, "owned", 5) == 0))
                abort();
            break;
        case PROTO_MESSAGE: {
            proto_msg_t echo = {.type = PROTO_SEND, .id = m.id, .binary = m.binary, .data = m.data};
            shard_send(&echo);
            break;
        }
        case PROTO_REQUEST:
        case PROTO_OPEN:
            /* what route.c promised: a configured party, a room within the name rules, a path */
            if (config_find_party(&conf, m.party.base, m.party.len) == NULL || !str_valid(m.room, ROUTE_ROOM_MAX) ||
                memchr(m.room.base, '/', m.room.len) != NULL || m.path.len == 0 || m.path.base[0] != '/')
                abort();
            if (m.type == PROTO_REQUEST) {
                if (m.method.len == 0)
                    abort();
                static const proto_header_t headers[] = {{PROTO_STR("content-type"), PROTO_STR("text/plain")},
                                                         {PROTO_STR("transfer-encoding"), PROTO_STR("chunked")}};
                proto_msg_t res = {
                    .type = PROTO_RESPONSE, .id = m.id, .status = 200, .headers = headers, .num_headers = 2, .data = m.room};
                shard_send(&res);
            } else {
                if (!str_valid(m.conn_id, ROUTE_ID_MAX))
                    abort();
                if (m.room.len >= 6 && memcmp(m.room.base, "refuse", 6) == 0) {
                    proto_msg_t rej = {.type = PROTO_REJECT, .id = m.id, .status = 403, .data = PROTO_STR("refused\nhere")};
                    shard_send(&rej);
                } else {
                    proto_msg_t attach = {.type = PROTO_ATTACH, .id = m.id, .party = m.party, .room = m.room};
                    proto_msg_t welcome = {.type = PROTO_SEND, .id = m.id, .data = m.conn_id};
                    proto_msg_t accept = {.type = PROTO_ACCEPT, .id = m.id};
                    shard_send(&attach);
                    shard_send(&welcome);
                    shard_send(&accept);
                }
            }
            break;
        default:
            abort(); /* nothing else is the router's to send for a client's bytes */
        }
        base_buf_consume(&shard_in, (size_t)n);
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

    size_t off = 0;
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
        /* the end of a router pass (router.c) */
        ws_flush();
        shards_flush();
        shard_read();
        char drain[65536];
        ssize_t n;
        while ((n = read(sv[1], drain, sizeof(drain))) > 0)
            ;
        if (n == 0 || (n == -1 && errno != EAGAIN))
            closed = 1;
        if (closed && router.pending == NULL && ws_count() == 0 && off == size)
            break;
    }
    close(sv[1]);
    /* one more pass: what h2o disposes after the close (the request's pool, our tokens in it) */
    h2o_evloop_run(router.loop, 0);
    ws_flush();
    return 0;
}
