/*
 * config.h — partyd's configuration: the embedded default, overlaid by a JSON file (partyd.json), overlaid by
 * command-line flags. Parsed once by the supervisor before anything starts; every process gets the same read-only
 * copy (the router and shards are forked from the supervisor).
 *
 * Unknown keys and wrong types are errors naming the field ("limits.message_bytes: expected an integer from 1024 to
 * 67108864"); nothing starts on a bad config. Syntax only: whether a kind is built in, and what a module holds, is
 * checked where parties live (shard/module.c), still before anything starts.
 *
 * config/ (above proto/ and api/, below router/ and shard/) holds:
 *   config.c      the embedded default, config_init_default/config_dispose, the lookups (find a party, a var,
 *                 an origin), partydefs_find
 *   read.c        config_apply_json: partyd.json read section by section, errors that name the field
 *   args.c        config_from_args: --help/--version, the file, the flags, and the rules that span fields
 *   print.c       config_to_json, for --print-config
 *   config_int.h  what those files share: the error sink and the setters both the file and the flags use
 *   env.c         config_apply_env: PARTYD_HOST, PARTYD_PORT, PARTYD_DATA_DIR, PARTYD_SHARDS, PARTYD_ADMIN
 *   cpus.c        config_cpus_available: the CPUs this process may use ("shards": "auto")
 *   reload.c      config_reread, config_diff, config_apply_live: SIGHUP
 *   suggest.c     config_suggest: the valid key nearest to an unknown one ("did you mean")
 *   cluster.c     the "cluster" key (config_cluster.h)
 *   cors.c        the "cors" key (node and party): config_cors_*
 *   partydefs.h   the table of the parties resolved to their code, which shard/module.c fills
 *   meson.build   the folder's library (jansson is used here, not seen by the layers above)
 *
 * Reading (config_from_args, config_apply_json, config_init_default) happens once in the supervisor, on its one
 * thread, before any loop runs; after the fork every process only reads the config_t, so the lookups are safe on any
 * loop. A config_t and every string and array in it are owned by the config_t itself and freed by config_dispose;
 * pointers the lookups return point into it. Errors are written as text for a person (the field, what was expected)
 * and returned as -1; out of memory aborts (base.h).
 */
#ifndef PARTYD_CONFIG_H
#define PARTYD_CONFIG_H

#include <stddef.h>

#include "config_cluster.h"

#define CONFIG_MAX_SHARDS 256
#define CONFIG_MAX_PARTIES 256

#define CONFIG_MAX_VARS 64
#define CONFIG_MAX_ORIGINS 64
#define CONFIG_MIN_TOKEN 16 /* admin.token: shorter is refused at start */

/* "origins": the Origin values a WebSocket upgrade may carry. list == NULL: not set (any Origin); set but empty: an
 * upgrade that carries an Origin is refused. An upgrade without Origin (not a browser) is never refused for it. */
typedef struct st_config_origins_t {
    char **list;
    size_t num;
} config_origins_t;

/* "cors" (config/cors.c): set when the key was given; enabled by true or an object. origins.list NULL: any Origin
 * ("*"); headers NULL: any request header the preflight asks for, else "a, b" as configured. */
typedef struct st_config_cors_t {
    int set, enabled;
    config_origins_t origins;
    char *headers;
} config_cors_t;

/* A party var: "vars": {"NAME": "value" | {"env": "ENV"}}; an environment variable is read when the config is. */
typedef struct st_config_var_t {
    char *name;
    char *value; /* NULL when it comes from an environment variable that is not set */
    char *env;   /* the environment variable's name, or NULL for a literal */
} config_var_t;

/* A party as the file says it: never resolved here (which kinds are built in, what a module holds: shard/module.c,
 * partydefs.h). */
typedef struct st_config_party_t {
    char *name;    /* the key under "parties": what URLs name */
    char *kind;    /* "kind": a built-in kind's name, not checked here; NULL for a module or script party */
    char *module;  /* "module": the shared object's absolute path (it exists); NULL for a built-in */
    char *script;  /* "script": a .ts/.js file's absolute path (it exists; js/ bundles it); NULL unless given */
    int hibernate; /* "hibernate": 1 or 0; -1 when not given (the party's own default applies) */
    config_var_t *vars;
    size_t num_vars;
    config_origins_t origins; /* parties.NAME.origins; unset: the node's */
    config_cors_t cors;       /* parties.NAME.cors; unset: the node's */
} config_party_t;

typedef struct st_config_t {
    char *host;
    int port;       /* 0: pick a free port */
    char *tls_cert; /* listen.tls: HTTPS and WSS when set (PEM files) */
    char *tls_key;
    char *prefix;
    char *serve; /* a folder served at / (PartyKit's "serve"), absolute; NULL: none */
    int serve_dotfiles; /* serve.dotfiles: names starting with "." are served too */
    int serve_spa;      /* serve.singlePageApp: a path with no file and no extension gets index.html */
    config_origins_t origins; /* "origins": for every party that sets none of its own */
    config_cors_t cors;       /* "cors": for every party that sets none of its own */
    int shards;
    char *data_dir;
    char *durability; /* "sync" or "relaxed" */
    int admin_enabled;
    char *admin_host;
    int admin_port;
    char *admin_token; /* NULL: none; else at least CONFIG_MIN_TOKEN bytes */
    char *admin_backup_dir; /* admin.backup_dir, absolute: backups go inside it ("/": anywhere); NULL: DATA_DIR/backups */
    struct {
        size_t message_bytes;
        size_t body_bytes;
        size_t output_bytes;
        size_t header_bytes;
        unsigned header_count;
        unsigned connections_per_room;
        unsigned rooms_in_memory;
        unsigned connections;           /* client connections to the main listener (HTTP and WebSocket) */
        unsigned connections_per_ip;    /* 0: no cap */
        unsigned connects_per_ip_per_s; /* 0: no cap */
        size_t output_total_bytes;      /* the router's queued WebSocket output, every connection together */
    } limits;
    struct {
        unsigned idle_ms;
        unsigned ping_ms;
        unsigned alarm_retry_ms;
        unsigned drain_ms;
        unsigned fetch_ms; /* how long a room waits for another room's answer (party_fetch) */
        unsigned request_ms; /* how long a client's request or upgrade waits for its room (then 504) */
        unsigned stall_ms;      /* a shard whose loop has not turned this long is reported stalled (not ready) */
        unsigned stall_kill_ms; /* ... and killed and restarted after this long (0: never) */
        unsigned quarantine_ms; /* a room that crashed its shard twice answers 503 this long first (then doubling) */
    } timers;
    config_party_t *parties;
    size_t num_parties;
    int log_level;
    char *source; /* where the config came from: a file name or "embedded default" */
    /* Where the values an instance overrides came from, for --print-config: static strings ("default", "file",
     * "env PARTYD_PORT", "flag --port"), never freed. */
    struct {
        const char *host, *port, *data_dir, *shards, *admin;
    } sources;
    config_cluster_t cluster; /* "cluster" (config_cluster.h); enabled 0 without the key */
} config_t;

/* The embedded default configuration, as JSON (README.md shows it). */
extern const char config_default_json[];

/* Parses the command line into `conf`: the embedded default, then --config FILE (or ./partyd.json when present), then
 * the flags. Returns 0 to run, 1 when a flag like --help or --version was answered (exit 0), 2 for --print-config
 * (the caller resolves the parties, so that a bad module fails it too, then prints config_to_json), or -1 after
 * printing a precise error to stderr (exit 2). Syntax only: a party's kind and module are checked by whoever
 * resolves them (shard/module.c). */
int config_from_args(config_t *conf, int argc, char **argv);

/* Overlays the JSON text `json` onto `conf`; on error writes the reason to `err` and returns -1. `source` names the
 * text in messages; relative paths in it (a module, serve) are relative to the folder `base_dir` (NULL: the working
 * directory). A module's path must exist; the module is not loaded here. */
int config_apply_json(config_t *conf, const char *json, size_t len, const char *source, const char *base_dir, char *err,
                      size_t errlen);

/* Overlays PARTYD_HOST, PARTYD_PORT, PARTYD_DATA_DIR, PARTYD_SHARDS and PARTYD_ADMIN ("HOST:PORT", "off" or a URL)
 * onto `conf`, each checked as the same key in a file would be; empty ones count as unset. Returns 0, or -1 with the
 * reason (naming the variable) in `err`. config_from_args calls it between the file and the flags. */
int config_apply_env(config_t *conf, char *err, size_t errlen);

/* The CPUs this process may use: its affinity mask, lowered to its cgroup's CPU quota (v2 cpu.max, v1 cfs), from 1
 * to CONFIG_MAX_SHARDS. */
int config_cpus_available(void);

/* The key of the NULL-terminated `known` nearest to `key` (a typo's distance), or NULL when none is near. */
const char *config_suggest(const char *key, const char *const *known);

/* The rules that span fields (e.g. a non-loopback admin listener needs a token); 0, or -1 with the reason. */
int config_check(const config_t *conf, char *err, size_t errlen);

/* SIGHUP. config_reread builds `fresh` as the start did: the embedded default, then `text` (the file `old->source`
 * read again; NULL when there is none), then the environment; what only the flags set is copied from `old`. Returns
 * 0, or -1 with the reason in `err` (then `fresh` holds nothing). config_diff writes the changed paths (as
 * --print-config names them) that apply live and those that need a restart, comma-separated. config_apply_live moves
 * what may change live from `fresh` into `conf` (a process's own copy, read at each use): admin.token, listen.tls's
 * files, origins, a party's vars and origins, limits.connections_per_room, rooms_in_memory, connections_per_ip,
 * connects_per_ip_per_s, timers.idle_ms, alarm_retry_ms, drain_ms, stall_ms, stall_kill_ms, quarantine_ms. The vars
 * it replaces stay allocated (a party may hold a var's value). The caller disposes `fresh` after. */
int config_reread(const config_t *old, const char *text, size_t len, config_t *fresh, char *err, size_t errlen);
void config_diff(const config_t *old, const config_t *fresh, char *live, size_t live_cap, char *restart, size_t restart_cap);
void config_apply_live(config_t *conf, config_t *fresh);
/* A child's side of CTL_RELOAD: reads the file's text from `fd` (a memfd; empty: no file), rereads and applies what
 * changes live to `conf`. 0, or -1 with the reason (`conf` unchanged). */
int config_reload_fd(config_t *conf, int fd, char *err, size_t errlen);

/* Initialises `conf` to the embedded default (which always parses: a failure is a bug and aborts). */
void config_init_default(config_t *conf);
/* Frees everything `conf` holds and zeroes it. */
void config_dispose(config_t *conf);

/* The cap on one router⇄shard frame: the largest message or body, its headers, and room for the rest. */
size_t config_frame_cap(const config_t *conf);

/* The party named `name` (len bytes), or NULL. */
const config_party_t *config_find_party(const config_t *conf, const char *name, size_t len);
/* The value of a party's var `name`, or NULL. */
const char *config_party_var(const config_party_t *party, const char *name);

/* Whether a WebSocket upgrade carrying `Origin: origin` may reach party `p` (NULL: no party): the party's origins,
 * else the node's; when neither is set, any. Compared whole, ASCII case-insensitively. */
int config_origin_allowed(const config_t *conf, const config_party_t *p, const char *origin, size_t len);
/* Frees an origins list and leaves it unset (list NULL). */
void config_origins_free(config_origins_t *o);
/* cors.c. Parses a "cors" value into *out (replacing what it held): 0, or -1 with why (for the field's message). `v`
 * is a json_t (jansson's; void here so that this header needs none). */
int config_cors_parse(void *v, config_cors_t *out, char *why, size_t len);
void config_cors_free(config_cors_t *c);
/* The CORS settings that apply to party `p` (NULL: the node's), or NULL when CORS is off for it. */
const config_cors_t *config_cors_for(const config_t *c, const config_party_t *p);

/* Writes the effective configuration as JSON (for --print-config; a party's "hibernate" appears when the file gave it).
 * The caller frees the result. */
char *config_to_json(const config_t *conf);

#endif
