/*
 * router.h — the router process: h2o in front, PartyKit's URL scheme, one link per shard.
 *
 * Where things are:
 *   router.c   the process: loop, listeners, control socket, drain
 *   http.c     where a request enters: routes it (route.c), answers /health, holds WebSocket upgrades until the
 *              room accepted them, forwards HTTP requests to the room's shard and relays the response
 *   ws.c       WebSocket connections after the 101 (wsframe.c does the framing)
 *   shards.c   the shard links, the slot table, and what shards send back (fan-out of broadcasts to the room's sockets)
 *   admin.c    the admin listener
 *   linger.c   a lingering close for the client sockets h2o closes (so a 413 is read, not reset)
 *   route.c    PartyKit's URL scheme, without h2o (route.h; the naming rules are proto/names.c's)
 *   wsframe.c  the WebSocket framing, without h2o (wsframe.h)
 *   migrate.c  moving slots between shards, adding and draining shards live
 *   fetch.c    rooms calling rooms (party_fetch): a shard's FETCH routed like a client's request
 *   edge.c     the parties' edge hooks (before_connect, before_request) and their party_edge_* API
 *   dashboard.c, dashboard.html, embed.py   the admin dashboard page, compiled in
 *   router_main.h   what node/ sees of the router: router_main and router_tls_context, no h2o type
 *
 * The only folder that includes h2o (tools/check-layers.py). It may include api/, proto/, config/ and ipc/, never
 * shard/ or node/ (docs/architecture.md).
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
    uint16_t shard;
    uint8_t upgrading;                       /* the 101 is being written */
    h2o_socket_t *parked;                    /* the client's socket, kept polled while the answer is awaited (http.c) */
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
    int pid;
    router_shard_state_t state;
    uint32_t restarts;
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
int http_on_req(h2o_handler_t *self, h2o_req_t *req);
/* Answers a held request with a JSON error (`Retry-After: 1` for 503) and frees the record. */
void http_fail_pending(router_pending_t *p, int status, const char *error);
/* Sends a response on a held HTTP request, frees the record. */
void http_respond_pending(router_pending_t *p, const proto_msg_t *msg);
/* The room accepted the connection: write the 101 and hand the socket to ws.c. */
void http_upgrade_accepted(router_pending_t *p);
/* Writes a JSON error response with the usual headers. */
void http_send_json(h2o_req_t *req, int status, const char *json, size_t len);
void http_send_error(h2o_req_t *req, int status, const char *error);
/* The main listener's response counters (partyd_http_responses_total), and the reason phrase of a status. */
void http_count_status(h2o_req_t *req, int status);
const char *http_status_reason(int status);
/* Answers /health: 200 when every shard is connected, else 503. */
void http_send_health(h2o_req_t *req);

/* ---- shards.c ---- */
/* Loads the slot table (DATA_DIR/slots; when there is none, the rendezvous table over `ids`, written there). */
int shards_init(const int *ids, int num_ids);
/* The slot table file: written atomically (a temporary file, fsync, rename, fsync of the directory). 0 or -errno. */
int shards_save_slots(void);
/* The same, into another directory (a backup). */
int shards_save_slots_in(const char *dir);
/* Marks a shard active / inactive in the id list. */
void shards_set_active(int id, int active);
void shards_dispose(void);
/* The shard that owns party/room (and the room's slot in *slot when not NULL). */
uint16_t shards_owner(const char *party, size_t party_len, const char *room, size_t room_len, uint16_t *slot);
/* The link to a shard if it is up, else NULL. */
link_t *shards_link(uint16_t shard);
/* A shard came up (fd: the router's end of its new link) or went down. */
void shards_on_up(int shard, int pid, uint32_t restarts, int fd);
void shards_on_down(int shard);
void shards_flush(void);
/* Bytes queued to shards and not yet written. */
size_t shards_backlog(void);
/* Whether every shard's link is up. */
int shards_all_up(void);
/* ws.c callbacks */
void shards_on_ws_message(ws_conn_t *conn, int binary, const uint8_t *data, size_t len);
void shards_on_ws_closed(ws_conn_t *conn, int code, const char *reason, int clean);
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
/* Frames and events for the migration. */
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
/* What is under way, for /admin/node. */
struct json_t *migrate_status(void);
/* Sends a record to the supervisor (in router.c). */
int router_ctl_send(uint32_t type, int shard);

/* ---- linger.c ---- */
/* From now on client sockets that h2o closes get a lingering close on `loop`. */
void linger_init(h2o_loop_t *loop);

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
void fetch_on_shard_down(int shard);
void fetch_dispose(void);

/* ---- admin.c ---- */
void admin_init(uint64_t node_started_ms);
int admin_on_req(h2o_handler_t *self, h2o_req_t *req);
void admin_on_reply(int shard, const proto_msg_t *msg);
void admin_on_shard_down(int shard);

/* ---- dashboard.c ---- */
/* Answers with the dashboard page. */
void dashboard_send(h2o_req_t *req);
/* Answers what is still waiting, releases the timer. */
void admin_dispose(void);

#endif
