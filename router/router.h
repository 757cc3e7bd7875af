/*
 * router.h — the router process: h2o in front, PartyKit's URL scheme, one link per shard.
 *
 * Where things are (every file of router/):
 *   router.c       the process: loop, listeners, control socket to the supervisor, signals, drain
 *   router.h       this file: the router's state (`router`) and what its .c files call in each other
 *   http.c         where a request enters: routes it (route.c), answers /health, holds WebSocket upgrades until the
 *                  room accepted them, forwards HTTP requests to the room's shard and relays the response
 *   route.c/.h     PartyKit's URL scheme: path → party, room, sub-path; the _pk connection id (no h2o, unit-tested;
 *                  the naming rules are proto/names.c's)
 *   ws.c/.h        WebSocket connections after the 101: records and their life cycle, the API, pings and the sweep
 *   wsread.c       their input: epoll readiness, plain and io_uring-batched reads, TLS input, the frame callbacks
 *   wswrite.c      their output: shared-frame queues, writev and io_uring-batched writes, ws_flush, the output caps
 *   ws_int.h       what ws.c, wsread.c and wswrite.c share (state, flags, internal functions)
 *   wsframe.c/.h   RFC 6455 framing: parsing client frames, building server frames (no sockets, unit-tested)
 *   shards.c       the shard links, the slot table file, and what shards send back (fan-out of broadcasts)
 *   migrate.c      moving slots between shards live: adding, draining and rebalancing shards
 *   fetch.c        rooms calling rooms: a shard's FETCH routed to the target room's shard, the answer brought back
 *   edge.c         a party's edge hooks (before_connect, before_request) run in the router before the room sees it
 *   admin.c        the admin listener: /admin/... JSON API, its calls to the shards
 *   admin_int.h    what admin.c and metrics.c share (an admin call to the shards)
 *   metrics.c      GET /metrics: Prometheus text from the router, the shards' stats and /proc
 *   cors.c         CORS on the rooms' HTTP endpoints: preflights answered, Access-Control-Allow-Origin added
 *   procmetrics.c  the process_* metrics of every partyd process, from /proc
 *   adminguard.c   what the admin listener refuses before routing: foreign Host/Origin, simple cross-site writes,
 *                  wrong tokens past a rate; where backups may go
 *   dashboard.c    the admin dashboard page (GET /admin/), compiled in from dashboard.html by embed.py
 *   dashboard.html the dashboard itself: one page of HTML, CSS and JavaScript over the admin API
 *   embed.py       build step: turns dashboard.html into a C array (dashboard_html.c)
 *   serve.c        the `serve` folder: only regular files inside it, opened without blocking; no dotfiles or NUL
 *   framing.c      request framing checks before routing: two Content-Lengths, or one with Transfer-Encoding → 400
 *   quarantine.c   rooms whose events crashed their shard (told by the supervisor): 503 + Retry-After until lifted
 *   linger.c       a lingering close for the client connections h2o closes (so a 413 is read, not reset)
 *   router_main.h  what node/ sees of the router: router_main and router_tls_context, no h2o type
 *   meson.build    the router's sources
 *
 * The only folder that includes h2o (tools/check-layers.py). It may include api/, proto/, config/ and ipc/, never
 * shard/ or node/ (docs/architecture.md).
 *
 * Unless a declaration says otherwise: the router process has one thread and one loop (router.loop), and every
 * function here is called on it, never from a signal handler or another thread. Pointers passed in are borrowed for
 * the call; a record the router keeps (router_room_t, router_pending_t) is owned by the module named with it and
 * freed there. "0 or -errno" is the failure convention; functions that answer an HTTP request cannot fail (they
 * answer an error status instead).
 */
#ifndef PARTYD_ROUTER_H
#define PARTYD_ROUTER_H

#include <h2o.h>
#include <uthash.h>

#include "config.h"
#include "link.h"
#include "partydefs.h"
#include "proto.h"
#include "slots.h"
#include "ws.h"

#include "router_main.h"

/* A room as the router sees it: the sockets it fans the room's broadcasts out to. Exists while it has sockets. */
typedef struct st_router_room_t {
    UT_hash_handle hh;
    char *key; /* "party/room" */
    size_t key_len;
    uint16_t shard;
    uint16_t slot;
    size_t count;
    ws_conn_t *conns;
} router_room_t;

/* A request the router holds for a shard's answer: a WebSocket upgrade (conn != NULL) or an HTTP request. */
typedef struct st_router_pending_t {
    UT_hash_handle hh; /* router.requests, by rid (HTTP requests only) */
    uint64_t rid;
    h2o_req_t *req; /* NULL once h2o disposed the request (see http.c) */
    struct st_router_req_token_t *token;
    ws_conn_t *conn;
    link_t *link;          /* the link an HTTP request's frame was queued on, and where (taken back if its client goes) */
    link_ticket_t ticket;
    uint16_t shard;
    uint16_t slot;                           /* the room's (HTTP requests are counted by slot: http.c) */
    uint8_t upgrading;                       /* the 101 is being written */
    h2o_socket_t *parked;                    /* the client's socket, kept polled while the answer is awaited (http.c) */
    h2o_timeout_entry_t timeout;             /* timers.request_ms: then 504 (http.c) */
    struct st_router_pending_t *prev, *next; /* router.pending */
    char accept[32];                         /* Sec-WebSocket-Accept */
    size_t key_len;
    char key[]; /* "party/room" */
} router_pending_t;

typedef enum { SHARD_STARTING = 0, SHARD_UP, SHARD_DOWN } router_shard_state_t;

typedef struct st_router_shard_t {
    int active;       /* one of the node's shards */
    link_t *link;     /* NULL while the shard is down */
    uint64_t *paused; /* cids of connections not read while the link is congested */
    size_t num_paused, cap_paused;
    size_t num_pending; /* router_pending_t records waiting on this shard (http.c caps them) */
    int pid;
    router_shard_state_t state;
    uint32_t restarts;
    int stalled; /* the supervisor saw its loop stop turning (CTL_SHARD_STALLED): linked, but not ready */
    char last_exit[BASE_ROOM_KEY_MAX + 1]; /* why it was last restarted (CTL_SHARD_DOWN); "" if never */
    uint64_t last_exit_at;                 /* when (wall ms) */
} router_shard_t;

typedef struct st_router_t {
    const config_t *conf;
    const partydefs_t *defs; /* the parties resolved to their code (edge hooks) */
    h2o_evloop_t *loop;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    router_shard_t shards[CONFIG_MAX_SHARDS]; /* by shard id */
    int ids[CONFIG_MAX_SHARDS];               /* the active shard ids, ascending */
    int num_shards;
    slots_table_t slots; /* the owner of every slot: loaded from DATA_DIR/slots, changed only by migrate.c */
    router_room_t *rooms;
    router_pending_t *requests; /* HTTP requests by rid */
    router_pending_t *pending;  /* every held request */
    uint64_t next_rid;
    uint64_t requests_dropped; /* HTTP requests taken back from a link because their client left (http.c) */
    size_t max_frame;
    int draining;
    uint64_t started_at;
    uint64_t http_responses[5];           /* main listener responses by status class: 1xx .. 5xx */
    struct st_h2o_hostconf_t *admin_host; /* the admin listener's requests: not counted in http_responses */
    int backing_up;                       /* a backup is being written: the slot table must not change under it */
    int port, admin_port;                 /* as bound (the configuration may say 0: any free port); admin_port 0 when off */
    pid_t supervisor;                     /* our parent when we started: a shard that goes when it is gone is no restart */
} router_t;

extern router_t router;

/* ---- http.c ---- */
/* What the router holds for one shard (a stalled shard, or one behind): past either cap a new HTTP request or
 * WebSocket upgrade for its rooms is answered 503 with Retry-After at once instead of queued. A stopped shard once
 * took the router from 4 MB to 19.6 GB under 1 MiB POSTs. The byte cap is twice the link's high water mark, so
 * WebSocket clients (paused at LINK_HIGH_WATER) stop before HTTP is refused. */
#define HTTP_SHARD_BACKLOG_MAX (2 * (size_t)LINK_HIGH_WATER)
#define HTTP_SHARD_PENDING_MAX 4096
/* HTTP requests held for the rooms of one slot (one room, mostly): past it 503 too, so that one room flooded with
 * requests whose answers are slow to make (3,000 GETs of a 1 MB answer, asked for and left) cannot put more than this
 * many ahead of another room's request on the same shard. WebSocket upgrades are not counted here: every client of a
 * big room reconnecting at once is not abuse. */
#define HTTP_SLOT_PENDING_MAX 256
/* h2o's handler of the main listener: every request. Returns 0 (h2o's "handled"): it answers, or holds the request
 * in a router_pending_t (owned by http.c) until the shard answers. */
int http_on_req(h2o_handler_t *self, h2o_req_t *req);

/* ---- framing.c ---- */
/* Request smuggling: answers 400 and closes the connection for two Content-Lengths or one with Transfer-Encoding (1:
 * answered); a request with a chunked body is marked to close its connection after the answer. */
int http_framing_refused(h2o_req_t *req);

/* ---- serve.c ---- */
/* Checks a request for the "serve" folder before h2o's file handler opens it: 0 to pass it on, 1 when it answered
 * (404 for NUL, dotfiles, a path out of the folder, anything but a regular file). Drops a Range of several ranges. */
int serve_check(h2o_req_t *req);
/* Answers a held request with a JSON error (`Retry-After: 1` for 503) and frees the record. */
void http_fail_pending(router_pending_t *p, int status, const char *error);
/* Sends a response on a held HTTP request, frees the record. */
void http_respond_pending(router_pending_t *p, const proto_msg_t *msg);
/* The room accepted the connection: write the 101 and hand the socket to ws.c. */
void http_upgrade_accepted(router_pending_t *p);
/* At shutdown, for an upgrade whose 101 is being written: the record lets go of its connection (which is freed before
 * h2o may call back) and stays in router.pending until h2o's callback frees it and closes the socket. */
void http_upgrade_orphan(router_pending_t *p);
/* A party's answer (a room's response, an edge hook's): only a final status (200-599) may end a request; headers the
 * party set are dropped when they frame the message (Content-Length, Transfer-Encoding) or are hop-by-hop, since h2o
 * frames the body itself; http_send_party sends status and body (none for 204 and 304). */
static inline int http_party_status_final(int status)
{
    return status >= 200 && status <= 599;
}
int http_party_header_ok(const char *name, size_t len);
void http_send_party(h2o_req_t *req, int status, const void *body, size_t len);
/* Writes a JSON response with the usual headers; `json` is copied into the request's pool. */
void http_send_json(h2o_req_t *req, int status, const char *json, size_t len);
/* Writes {"error": error} with `status` (503 with `Retry-After: 1`). */
void http_send_error(h2o_req_t *req, int status, const char *error);
/* The main listener's response counters (partyd_http_responses_total), and the reason phrase of a status. */
void http_count_status(h2o_req_t *req, int status);
const char *http_status_reason(int status);
/* Answers /health: 200 when every shard is connected, else 503. */
void http_send_health(h2o_req_t *req);
/* 200 {"ready":true} when every shard is linked, none stalled and the node is not draining; else 503 */
void http_send_ready(h2o_req_t *req);

/* ---- shards.c ---- */
/* Loads the slot table (DATA_DIR/slots; when there is none, the rendezvous table over `ids`, written there). 0, or -1
 * with a log line when the file is not this node's table or cannot be written (the router must not start then). */
int shards_init(const int *ids, int num_ids);
/* The slot table file: written atomically (a temporary file, fsync, rename, fsync of the directory). 0 or -errno. */
int shards_save_slots(void);
/* The same, into another directory (a backup). 0 or -errno. */
int shards_save_slots_in(const char *dir);
/* Marks a shard active / inactive: router.ids and router.num_shards are rebuilt. `id` < CONFIG_MAX_SHARDS. */
void shards_set_active(int id, int active);
/* At exit: closes every link and frees the paused lists. */
void shards_dispose(void);
/* The shard that owns party/room (and the room's slot in *slot when not NULL). */
uint16_t shards_owner(const char *party, size_t party_len, const char *room, size_t room_len, uint16_t *slot);
/* The link to a shard if it is up, else NULL. Owned by shards.c: valid until the shard goes down. */
link_t *shards_link(uint16_t shard);
/* A shard came up (fd: the router's end of its new link, owned by shards.c from here on, closed when `shard` is out
 * of range) or went down (what waited on it is answered 503 or closed 1011). */
void shards_on_up(int shard, int pid, uint32_t restarts, int fd);
void shards_on_down(int shard);
/* Writes what is queued on every link (once per loop pass). */
void shards_flush(void);
/* Bytes queued to shards and not yet written. */
size_t shards_backlog(void);
/* Whether every shard's link is up. */
int shards_all_up(void);
/* ws.c callbacks. A client's message goes to its room's shard (copied into the link's buffer; `data` is borrowed);
 * when the link is congested the connection stops being read until it drains. Dropped when the shard is down. */
void shards_on_ws_message(ws_conn_t *conn, int binary, const uint8_t *data, size_t len);
/* A connection closed: it leaves its router_room_t (freed with its last connection) and the shard is told, once. */
void shards_on_ws_closed(ws_conn_t *conn, int code, const char *reason, int clean);
/* The room with WebSocket connections under "party/room", or NULL. Owned by shards.c. */
router_room_t *shards_find_room(const char *key, size_t key_len);

/* ---- migrate.c: moving slots between shards, live ---- */
/* Whether the slot is being moved: its rooms take no new request or connection (503, Retry-After) for a moment. */
int migrate_frozen(uint16_t slot);
/* A shard change (add, drain, rebalance) is under way. */
int migrate_busy(void);
/* POST /admin/shards: a new shard, then the rooms that belong to it move there. Answers `req` when done. */
void migrate_add_shard(h2o_req_t *req);
/* POST /admin/shards/:id/drain: every slot of shard `id` moves to the others, then the shard stops for good. */
void migrate_drain_shard(h2o_req_t *req, int id);
/* Frames and events for the migration: a SLOT_REPLY from `shard` (`msg` borrowed for the call); a shard up (is_new:
 * added live, it owns no slot yet) or down (a move that needs it fails; the slot table keeps one owner per slot). */
void migrate_on_slot_reply(int shard, const proto_msg_t *msg);
void migrate_on_shard_up(int shard, int is_new);
void migrate_on_shard_down(int shard);
/* Once every shard is up after a start: finishes a move a previous router left, and adds or drains shards until the
 * node has conf->shards. */
void migrate_reconcile(void);
/* The shard count to reach once every shard is up (0: none; a restarted router keeps what it finds). */
void migrate_init(int target_shards);
/* The node drains: a move under way stops (nothing is lost). */
void migrate_on_drain(void);
/* The supervisor could not start the shard an add asked for (CTL_SPAWN_FAILED; err: an errno): the add answers 500. */
void migrate_on_spawn_failed(int shard, int err);
/* Releases the spawn timer (at shutdown). */
void migrate_dispose(void);
/* What is under way, for /admin/node: a new JSON object the caller owns (json_decref). */
struct json_t *migrate_status(void);
/* Sends a record to the supervisor (in router.c). 0, -ENOTCONN when the control socket is gone, or ctl_send's -errno. */
int router_ctl_send(uint32_t type, int shard);
/* The same, for a record that names a room (`key`, "party/room", `len` bytes; -ENAMETOOLONG over the record's room). */
int router_ctl_send_room(uint32_t type, const char *key, size_t len);

/* ---- linger.c: a lingering close for the connections h2o closes (so a 413 is read, not reset) ---- */
/* Sets the loop that lingering closes run on; before it, linger_watch does nothing. Router loop; cannot fail. */
void linger_init(h2o_loop_t *loop);
/* Called on an accepted connection before h2o gets it: when h2o closes `sock`, the connection is half-closed and
 * drained for up to 2 s instead of closed at once. Keeps a duplicate descriptor (close-on-exec) until then, and
 * chains itself in front of the on_close callback already set (router.c counts connections there; set it first, and
 * change it no more after). Router loop. Out of descriptors, the connection simply has no lingering. */
void linger_watch(h2o_socket_t *sock);
/* The on_close callback the socket had before linger_watch chained itself in front of it (or its on_close.cb). */
void (*linger_close_cb(h2o_socket_t *sock))(void *data);
/* h2o_socket_export for a watched socket: the caller owns info->fd and closes it itself, without lingering.
 * Returns what h2o_socket_export returns (0, or -1 with `sock` untouched). Router loop. */
int linger_export(h2o_socket_t *sock, h2o_socket_export_t *info);

/* ---- edge.c: a party's edge hooks ---- */
/* Headers an edge hook set for the room (in the request's pool). */
typedef struct st_edge_headers_t {
    const proto_header_t *headers;
    size_t num;
} edge_headers_t;
struct st_route_t;
/* Runs the party's before_connect (upgrade) or before_request hook, if it has one. 0: go on, with the headers it set
 * in *out; 1: the request was answered (refused or answered by the hook, or the hook failed). */
int edge_run(h2o_req_t *req, const struct st_route_t *r, const partydef_t *party, int upgrade, edge_headers_t *out);

/* ---- fetch.c: rooms calling rooms ---- */
/* A shard's FETCH: routed to the target room's shard as a REQUEST, or answered at once (400, 404, 503). */
void fetch_on_request(int shard, const proto_msg_t *msg);
/* A RESPONSE that answers a fetch goes back to the asking shard: 1 when `msg` was one. */
int fetch_on_response(int shard, const proto_msg_t *msg);
/* `shard` went down: the fetches it asked for are forgotten, those waiting on it are answered 503. */
void fetch_on_shard_down(int shard);
/* At exit: frees every fetch in flight. */
void fetch_dispose(void);

/* ---- admin.c ---- */
/* Remembers when the node started (reported by /admin/node). Cannot fail. */
void admin_init(uint64_t node_started_ms);
/* h2o's handler of the admin listener (/health and /ready open, the rest behind the admin token). Returns 0: it
 * answers, or holds the request until the shards asked have answered (or timed out: 504; 503 for a shard down). */
int admin_on_req(h2o_handler_t *self, h2o_req_t *req);
/* An ADMIN_REPLY from `shard` (`msg` borrowed for the call; its JSON is parsed and kept by the call it answers). */
void admin_on_reply(int shard, const proto_msg_t *msg);
/* `shard` went down: the calls waiting on it count it as 503. */
void admin_on_shard_down(int shard);
/* At exit: answers what is still waiting, releases the timer. */
void admin_dispose(void);

/* ---- cors.c: the "cors" key on the main listener ---- */
/* With CORS on for the party (its "cors", else the node's): a preflight OPTIONS is answered 204 with the
 * Access-Control-* headers and 1 is returned; else 0 (the request goes on). */
int cors_preflight(h2o_req_t *req, const config_party_t *party);
/* Adds Vary / Access-Control-Allow-Origin to the answer being built for the party, when CORS is on for it. */
void cors_add_headers(h2o_req_t *req, const config_party_t *party);

/* ---- procmetrics.c ---- */
/* Appends the process_* families (CPU, memory, start time, fds) of the supervisor, the router and each shard that is
 * up, labelled by `process` (and `shard`), read from /proc now. */
void procmetrics_write(base_buf_t *b);

/* ---- adminguard.c ---- */
/* Refuses (403, or 429 while wrong tokens are throttled) what a web page could send; 1 when it answered. */
int admin_guard(h2o_req_t *req);
/* A request bore a wrong token. */
void admin_guard_failed(void);
/* Where a backup asked for as `asked` goes: a name in the backup folder, or an absolute path inside it. 0 with the
 * path in `out`, or -1 with the reason in `why`. */
int admin_backup_path(const char *asked, char *out, size_t cap, char *why, size_t whylen);

/* ---- quarantine.c: rooms whose events crashed their shard ---- */
/* The supervisor quarantined `key` ("party/room", copied) for `ms` (CTL_QUARANTINE); a second call renews it. */
void quarantine_add(const char *key, uint32_t ms);
/* An operator lifts it: 0, or -ENOENT when the room is not quarantined. */
int quarantine_lift(const char *key, size_t len);
/* How long party/room stays quarantined: ms, 0 when it is not. */
uint64_t quarantine_left(const char *party, size_t party_len, const char *room, size_t room_len);
/* Answers `req` 503 with Retry-After (the seconds left, rounded up) and a JSON error. */
void quarantine_refuse(h2o_req_t *req, uint64_t left_ms);
/* Rooms quarantined now; quarantines received since the router started; the list as JSON ([{"room","remaining_ms"}],
 * a new reference the caller owns). */
size_t quarantine_count(void);
uint64_t quarantine_total(void);
struct json_t *quarantine_json(void);
/* At exit: frees the list. */
void quarantine_dispose(void);

/* ---- dashboard.c ---- */
/* Answers with the dashboard page (static, compiled in). */
void dashboard_send(h2o_req_t *req);

#endif
