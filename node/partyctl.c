/*
 * partyctl.c — the command line over partyd's admin endpoint.
 *
 *   partyctl [--admin URL] [--json] COMMAND [ARGS]   (the global flags may also follow the command)
 *
 * Tables for people, --json for scripts (the endpoint's JSON as it came). The admin endpoint is --admin, else
 * PARTYD_ADMIN (the variable the node reads: HOST:PORT or a URL), else http://127.0.0.1:1998. The token, when the node
 * has one, comes from PARTYD_ADMIN_TOKEN. Exit status: 0 done; 1 the node refused or failed; 2 usage; 3 the node is unreachable.
 *
 * HTTP goes through libcurl: a well-kept client beats a hand-written one, and the admin endpoint may sit behind TLS.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "base.h"

enum { EXIT_OK = 0, EXIT_REFUSED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3 };

static const char *admin_url = "http://127.0.0.1:1998";
static int as_json;

static void usage(FILE *out)
{
    fprintf(out, "usage: partyctl [--admin URL] [--json] COMMAND [ARGS]   (global flags before or after the command)\n"
                 "\n"
                 "Talks to a partyd node's admin endpoint: --admin URL, else PARTYD_ADMIN (HOST:PORT or a URL, as the node\n"
                 "reads it), else http://127.0.0.1:1998. The bearer token, if the node has one, comes from\n"
                 "PARTYD_ADMIN_TOKEN.\n"
                 "\n"
                 "commands:\n"
                 "  status                         the node: version, uptime, shards, rooms, connections\n"
                 "  shards                         every shard's state and counters\n"
                 "  rooms [--party P] [--prefix X] [--limit N] [--cursor C]\n"
                 "                                 a page of rooms (the next page's cursor is printed last)\n"
                 "  room PARTY ROOM                one room: shard, connections, alarm, keys\n"
                 "  evict PARTY ROOM               take the room out of memory (its clients reconnect)\n"
                 "  delete PARTY ROOM --yes        delete the room's data\n"
                 "  add-shard                      add a shard; rooms move to it live\n"
                 "  drain SHARD                    move a shard's rooms to the others, then stop it\n"
                 "  backup DIR                     a consistent copy of every shard's data into DIR (must not exist)\n"
                 "  metrics                        the Prometheus metrics\n"
                 "  quarantine                     rooms quarantined for crashing their shard, and the time each has left\n"
                 "  unquarantine PARTY ROOM        lift a room's quarantine now\n"
                 "\n"
                 "exit status: 0 done, 1 the node refused or failed, 2 usage, 3 the node is unreachable\n");
}

/* ---- HTTP ---- */

typedef struct st_response_t {
    long status;
    base_buf_t body;
} response_t;

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
    base_buf_append(&((response_t *)arg)->body, p, size * n);
    return size * n;
}

/* Performs the request; returns EXIT_OK with the response filled, or EXIT_UNREACHABLE after saying why. */
static int request(const char *method, const char *path, const char *body, response_t *res)
{
    memset(res, 0, sizeof(*res));
    base_buf_init(&res->body);
    CURL *curl = curl_easy_init();
    if (curl == NULL) {
        fprintf(stderr, "partyctl: cannot start libcurl\n");
        return EXIT_UNREACHABLE;
    }
    char url[4096];
    snprintf(url, sizeof(url), "%s%s", admin_url, path);
    struct curl_slist *headers = NULL;
    const char *token = getenv("PARTYD_ADMIN_TOKEN");
    char auth[1024];
    if (token != NULL && *token != '\0') {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    /* the admin endpoint takes changes only from requests a web page cannot send unasked (router/adminguard.c) */
    headers = curl_slist_append(headers, "X-Partyd-Admin: 1");
    if (body != NULL)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, res);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 3000L);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 120000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    if (body != NULL)
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    CURLcode rc = curl_easy_perform(curl);
    if (rc == CURLE_OK)
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (rc != CURLE_OK) {
        fprintf(stderr, "partyctl: %s: %s\n", url, curl_easy_strerror(rc));
        base_buf_dispose(&res->body);
        return EXIT_UNREACHABLE;
    }
    return EXIT_OK;
}

/* Runs a request whose answer is JSON: EXIT_OK with *out set, or the exit status after printing the node's error. */
static int call(const char *method, const char *path, const char *body, json_t **out)
{
    response_t res;
    int r = request(method, path, body, &res);
    if (r != EXIT_OK)
        return r;
    json_t *v = json_loadb(base_buf_head(&res.body), base_buf_len(&res.body), 0, NULL);
    if (res.status >= 400 || v == NULL) {
        const char *why = json_string_value(json_object_get(v, "error"));
        fprintf(stderr, "partyctl: %s %s: %ld %s\n", method, path, res.status, why != NULL ? why : v == NULL ? "(not JSON)" : "");
        json_decref(v);
        base_buf_dispose(&res.body);
        return EXIT_REFUSED;
    }
    base_buf_dispose(&res.body);
    *out = v;
    return EXIT_OK;
}

static void print_json(json_t *v)
{
    char *text = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    puts(text);
    free(text);
}

/* An action's answer: JSON with --json, else a "field: value" line per field (arrays space-separated). */
static void print_outcome(json_t *v)
{
    if (as_json || !json_is_object(v)) {
        print_json(v);
        return;
    }
    const char *key;
    json_t *value;
    json_object_foreach(v, key, value)
    {
        printf("%s:", key);
        if (json_is_array(value)) {
            size_t i;
            json_t *e;
            json_array_foreach(value, i, e)
            {
                char *t = json_is_string(e) ? NULL : json_dumps(e, JSON_COMPACT | JSON_ENCODE_ANY);
                printf(" %s", t != NULL ? t : json_string_value(e));
                free(t);
            }
        } else {
            char *t = json_is_string(value) ? NULL : json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY);
            printf(" %s", t != NULL ? t : json_string_value(value));
            free(t);
        }
        putchar('\n');
    }
}

/* An escaped path segment or query value (room ids are passed through: they are already URL path segments). */
static char *escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy = xstrdup(e);
    curl_free(e);
    return copy;
}

/* ---- tables ---- */

static const char *num(json_t *v, char *buf, size_t len)
{
    if (json_is_integer(v))
        snprintf(buf, len, "%lld", (long long)json_integer_value(v));
    else if (json_is_true(v))
        snprintf(buf, len, "yes");
    else if (json_is_false(v))
        snprintf(buf, len, "no");
    else if (json_is_string(v))
        snprintf(buf, len, "%s", json_string_value(v));
    else
        snprintf(buf, len, "-");
    return buf;
}

static void table(json_t *rows, const char *const *cols, size_t ncols)
{
    size_t width[16] = {0};
    char cell[256];
    for (size_t c = 0; c < ncols; ++c)
        width[c] = strlen(cols[c]);
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row)
    {
        for (size_t c = 0; c < ncols; ++c) {
            size_t w = strlen(num(json_object_get(row, cols[c]), cell, sizeof(cell)));
            if (w > width[c])
                width[c] = w;
        }
    }
    for (size_t c = 0; c < ncols; ++c)
        printf("%-*s%s", (int)width[c], cols[c], c + 1 < ncols ? "  " : "\n");
    json_array_foreach(rows, i, row)
    {
        for (size_t c = 0; c < ncols; ++c)
            printf("%-*s%s", (int)width[c], num(json_object_get(row, cols[c]), cell, sizeof(cell)), c + 1 < ncols ? "  " : "\n");
    }
}

/* ---- commands ---- */

static int cmd_status(void)
{
    json_t *node, *shards;
    int r = call("GET", "/admin/node", NULL, &node);
    if (r != EXIT_OK)
        return r;
    if ((r = call("GET", "/admin/shards", NULL, &shards)) != EXIT_OK) {
        json_decref(node);
        return r;
    }
    if (as_json) {
        json_t *both = json_pack("{s:O, s:O}", "node", node, "shards", shards);
        print_json(both);
        json_decref(both);
    } else {
        long long rooms = 0, conns = 0, up = 0;
        size_t i;
        json_t *s;
        json_array_foreach(shards, i, s)
        {
            rooms += json_integer_value(json_object_get(s, "rooms"));
            conns += json_integer_value(json_object_get(s, "connections"));
            up += strcmp(json_string_value(json_object_get(s, "state")), "up") == 0;
        }
        json_t *conf = json_object_get(node, "config");
        printf("partyd %s, up %lld s, data %s (durability %s)\n", json_string_value(json_object_get(node, "version")),
               (long long)json_integer_value(json_object_get(node, "uptime_s")),
               json_string_value(json_object_get(conf, "data_dir")), json_string_value(json_object_get(conf, "durability")));
        printf("shards %lld/%zu up, rooms in memory %lld, connections %lld%s\n", up, json_array_size(shards), rooms, conns,
               json_is_true(json_object_get(node, "draining")) ? ", draining" : "");
    }
    json_decref(node);
    json_decref(shards);
    return EXIT_OK;
}

static int cmd_shards(void)
{
    json_t *shards;
    int r = call("GET", "/admin/shards", NULL, &shards);
    if (r != EXIT_OK)
        return r;
    static const char *const cols[] = {
        "id",          "state",       "pid",          "slots",         "rooms",   "rooms_hibernating",
        "connections", "messages_in", "messages_out", "storage_bytes", "restarts"};
    if (as_json)
        print_json(shards);
    else
        table(shards, cols, sizeof(cols) / sizeof(cols[0]));
    json_decref(shards);
    return EXIT_OK;
}

static int cmd_rooms(int argc, char **argv)
{
    static const struct option opts[] = {{"party", required_argument, NULL, 'p'},
                                         {"prefix", required_argument, NULL, 'x'},
                                         {"limit", required_argument, NULL, 'l'},
                                         {"cursor", required_argument, NULL, 'c'},
                                         {NULL, 0, NULL, 0}};
    char path[2048] = "/admin/rooms?";
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        const char *name = o == 'p' ? "party" : o == 'x' ? "prefix" : o == 'l' ? "limit" : o == 'c' ? "cursor" : NULL;
        if (name == NULL) {
            usage(stderr);
            return EXIT_USAGE;
        }
        char *e = escape(optarg);
        size_t len = strlen(path);
        snprintf(path + len, sizeof(path) - len, "%s=%s&", name, e);
        free(e);
    }
    if (optind < argc) {
        fprintf(stderr, "partyctl: rooms takes no argument \"%s\"\n", argv[optind]);
        return EXIT_USAGE;
    }
    json_t *page;
    int r = call("GET", path, NULL, &page);
    if (r != EXIT_OK)
        return r;
    if (as_json) {
        print_json(page);
    } else {
        static const char *const cols[] = {"party", "room", "shard", "slot", "in_memory", "hibernating", "connections", "stored"};
        table(json_object_get(page, "rooms"), cols, sizeof(cols) / sizeof(cols[0]));
        const char *next = json_string_value(json_object_get(page, "cursor"));
        if (next != NULL)
            printf("next page: partyctl rooms --cursor '%s'\n", next);
    }
    json_decref(page);
    return EXIT_OK;
}

static int room_cmd(const char *method, const char *suffix, const char *party, const char *room, const char *query, int show)
{
    char path[2048];
    snprintf(path, sizeof(path), "/admin/rooms/%s/%s%s%s", party, room, suffix, query);
    json_t *v;
    int r = call(method, path, NULL, &v);
    if (r != EXIT_OK)
        return r;
    if (as_json) {
        print_json(v);
    } else if (show == 0) {
        print_outcome(v);
    } else {
        char b[64];
        printf("%s/%s: shard %s, slot %s, in memory %s, hibernating %s, alarm %s\n", party, room,
               num(json_object_get(v, "shard"), b, sizeof(b)), num(json_object_get(v, "slot"), b + 16, 16),
               num(json_object_get(v, "in_memory"), b + 32, 8), num(json_object_get(v, "hibernating"), b + 40, 8),
               json_is_integer(json_object_get(v, "alarmAt")) ? "set" : "none");
        json_t *conns = json_object_get(v, "clients"), *keys = json_object_get(v, "keys");
        printf("connections: %zu\n", json_array_size(conns));
        size_t i;
        json_t *c;
        json_array_foreach(conns, i, c)
        {
            char *tags = json_dumps(json_object_get(c, "tags"), JSON_COMPACT);
            printf("  %s %s\n", json_string_value(json_object_get(c, "id")), tags);
            free(tags);
        }
        printf("keys (first page): %zu\n", json_array_size(keys));
        json_array_foreach(keys, i, c)
        {
            const char *key = json_string_value(json_object_get(c, "key"));
            if (key != NULL)
                printf("  %s (%lld bytes)\n", key, (long long)json_integer_value(json_object_get(c, "bytes")));
            else /* not UTF-8 */
                printf("  hex:%s (%lld bytes)\n", json_string_value(json_object_get(c, "key_hex")),
                       (long long)json_integer_value(json_object_get(c, "bytes")));
        }
    }
    json_decref(v);
    return EXIT_OK;
}

static int simple(const char *method, const char *path, const char *body)
{
    json_t *v;
    int r = call(method, path, body, &v);
    if (r != EXIT_OK)
        return r;
    print_outcome(v);
    json_decref(v);
    return EXIT_OK;
}

static int cmd_quarantine(void)
{
    json_t *v;
    int r = call("GET", "/admin/quarantine", NULL, &v);
    if (r != EXIT_OK)
        return r;
    static const char *const cols[] = {"room", "remaining_ms"};
    if (as_json)
        print_json(v);
    else if (json_array_size(json_object_get(v, "rooms")) == 0)
        printf("no room is quarantined\n");
    else
        table(json_object_get(v, "rooms"), cols, sizeof(cols) / sizeof(cols[0]));
    json_decref(v);
    return EXIT_OK;
}

static int cmd_backup(const char *dir)
{
    char abs[2 * PATH_MAX + 2];
    if (dir[0] == '/') {
        snprintf(abs, sizeof(abs), "%s", dir);
    } else {
        /* the node resolves paths on its side: send an absolute one */
        char cwd[PATH_MAX];
        if (getcwd(cwd, sizeof(cwd)) == NULL) {
            fprintf(stderr, "partyctl: getcwd: %s\n", strerror(errno));
            return EXIT_USAGE;
        }
        snprintf(abs, sizeof(abs), "%s/%s", cwd, dir);
    }
    json_t *body = json_pack("{s:s}", "dir", abs);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    int r = simple("POST", "/admin/backup", text);
    free(text);
    return r;
}

static int cmd_metrics(void)
{
    response_t res;
    int r = request("GET", "/metrics", NULL, &res);
    if (r != EXIT_OK)
        return r;
    if (res.status >= 400) {
        /* as every command: the node's error on stderr, nothing on stdout */
        json_t *v = json_loadb(base_buf_head(&res.body), base_buf_len(&res.body), 0, NULL);
        const char *why = json_string_value(json_object_get(v, "error"));
        fprintf(stderr, "partyctl: GET /metrics: %ld %s\n", res.status, why != NULL ? why : "");
        json_decref(v);
        base_buf_dispose(&res.body);
        return EXIT_REFUSED;
    }
    fwrite(base_buf_head(&res.body), 1, base_buf_len(&res.body), stdout);
    base_buf_dispose(&res.body);
    return EXIT_OK;
}

static int needs(int argc, int n, const char *cmd)
{
    if (argc == n)
        return 1;
    fprintf(stderr, "partyctl: %s takes %d argument%s (see --help)\n", cmd, n - 1, n == 2 ? "" : "s");
    return 0;
}

/* The global flags after the command ("partyctl shards --json") are taken out of argv[from..] here, so that each
 * command sees only its own; a command's flags that take a value keep it, and "--" ends the flags. Returns the new
 * argc, or -1 after a usage error. */
static int take_global_flags(int argc, char **argv, int from)
{
    static const char *const valued[] = {"--party", "--prefix", "--limit", "--cursor", NULL};
    int out = from, flags_done = 0;
    for (int i = from; i < argc; ++i) {
        const char *a = argv[i];
        if (!flags_done && strcmp(a, "--") == 0) {
            flags_done = 1;
            argv[out++] = argv[i];
            continue;
        }
        if (!flags_done && strcmp(a, "--json") == 0) {
            as_json = 1;
            continue;
        }
        if (!flags_done && strncmp(a, "--admin=", 8) == 0) {
            admin_url = a + 8;
            continue;
        }
        if (!flags_done && strcmp(a, "--admin") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "partyctl: --admin needs a URL\n");
                return -1;
            }
            admin_url = argv[++i];
            continue;
        }
        argv[out++] = argv[i];
        for (size_t k = 0; !flags_done && valued[k] != NULL; ++k)
            if (strcmp(a, valued[k]) == 0 && i + 1 < argc) {
                argv[out++] = argv[++i]; /* its value, whatever it looks like */
                break;
            }
    }
    argv[out] = NULL;
    return out;
}

/* PARTYD_ADMIN as the node reads it: "HOST:PORT", a URL, or "off" */
static int admin_from_env(void)
{
    const char *env = getenv("PARTYD_ADMIN");
    if (env == NULL || *env == '\0')
        return 0;
    if (strcmp(env, "off") == 0) {
        fprintf(stderr, "partyctl: PARTYD_ADMIN=off: the node has no admin endpoint (give --admin URL)\n");
        return -1;
    }
    if (strstr(env, "://") != NULL) {
        admin_url = env;
    } else {
        static char url[1024];
        snprintf(url, sizeof(url), "http://%s", env);
        admin_url = url;
    }
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {{"admin", required_argument, NULL, 'a'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    if (admin_from_env() != 0)
        return EXIT_USAGE;
    /* the global options before the command here; after it, take_global_flags; the command's own are parsed by it */
    while ((o = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (o) {
        case 'a':
            admin_url = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'h':
            usage(stdout);
            return EXIT_OK;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if ((argc = take_global_flags(argc, argv, optind + 1)) < 0)
        return EXIT_USAGE;
    size_t alen = strlen(admin_url);
    if (alen > 0 && admin_url[alen - 1] == '/')
        admin_url = xstrndup(admin_url, alen - 1);
    argc -= optind;
    argv += optind;
    const char *cmd = argv[0];
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int r = EXIT_USAGE;
    if (strcmp(cmd, "status") == 0 && needs(argc, 1, cmd)) {
        r = cmd_status();
    } else if (strcmp(cmd, "shards") == 0 && needs(argc, 1, cmd)) {
        r = cmd_shards();
    } else if (strcmp(cmd, "rooms") == 0) {
        r = cmd_rooms(argc, argv);
    } else if (strcmp(cmd, "room") == 0 && needs(argc, 3, cmd)) {
        r = room_cmd("GET", "", argv[1], argv[2], "", 1);
    } else if (strcmp(cmd, "evict") == 0 && needs(argc, 3, cmd)) {
        r = room_cmd("POST", "/evict", argv[1], argv[2], "", 0);
    } else if (strcmp(cmd, "delete") == 0) {
        if (argc != 4 || strcmp(argv[3], "--yes") != 0) {
            fprintf(stderr, "partyctl: delete PARTY ROOM --yes (deleting a room's data cannot be undone)\n");
        } else {
            char *e = escape(argv[2]), q[1024];
            snprintf(q, sizeof(q), "?confirm=%s", e);
            free(e);
            r = room_cmd("DELETE", "", argv[1], argv[2], q, 0);
        }
    } else if (strcmp(cmd, "add-shard") == 0 && needs(argc, 1, cmd)) {
        r = simple("POST", "/admin/shards", "{}");
    } else if (strcmp(cmd, "drain") == 0 && needs(argc, 2, cmd)) {
        char path[256];
        char *end;
        long id = strtol(argv[1], &end, 10);
        if (*end != '\0' || id < 0) {
            fprintf(stderr, "partyctl: drain takes a shard number\n");
        } else {
            snprintf(path, sizeof(path), "/admin/shards/%ld/drain", id);
            r = simple("POST", path, "{}");
        }
    } else if (strcmp(cmd, "backup") == 0 && needs(argc, 2, cmd)) {
        r = cmd_backup(argv[1]);
    } else if (strcmp(cmd, "metrics") == 0 && needs(argc, 1, cmd)) {
        r = cmd_metrics();
    } else if (strcmp(cmd, "quarantine") == 0 && needs(argc, 1, cmd)) {
        r = cmd_quarantine();
    } else if (strcmp(cmd, "unquarantine") == 0 && needs(argc, 3, cmd)) {
        char path[2048];
        snprintf(path, sizeof(path), "/admin/quarantine/%s/%s", argv[1], argv[2]);
        r = simple("DELETE", path, NULL);
    } else if (strcmp(cmd, "status") != 0 && strcmp(cmd, "shards") != 0 && strcmp(cmd, "room") != 0 && strcmp(cmd, "evict") != 0 &&
               strcmp(cmd, "add-shard") != 0 && strcmp(cmd, "drain") != 0 && strcmp(cmd, "backup") != 0 &&
               strcmp(cmd, "metrics") != 0 && strcmp(cmd, "quarantine") != 0 && strcmp(cmd, "unquarantine") != 0) {
        fprintf(stderr, "partyctl: unknown command \"%s\" (see --help)\n", cmd);
    }
    curl_global_cleanup();
    return r;
}
