/*
 * config.c — the embedded default, partyd.json and the command line (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <libgen.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"
#include "names.h"
#include "party.h"
#include "partydefs.h"
#include "proto.h"

const char config_default_json[] =
    "{\n"
    "  \"listen\": {\"host\": \"127.0.0.1\", \"port\": 1999},\n"
    "  \"prefix\": \"parties\",\n"
    "  \"shards\": \"auto\",\n"
    "  \"data_dir\": \"./.partyd\",\n"
    "  \"durability\": \"sync\",\n"
    "  \"admin\": {\"listen\": \"127.0.0.1:1998\", \"token\": {\"env\": \"PARTYD_ADMIN_TOKEN\"}},\n"
    "  \"limits\": {\"message_bytes\": 1048576, \"body_bytes\": 1048576, \"output_bytes\": 8388608,\n"
    "             \"header_bytes\": 16384, \"header_count\": 64,\n"
    "             \"connections_per_room\": 32768, \"rooms_in_memory\": 100000,\n"
    "             \"connections\": 100000, \"connections_per_ip\": 0, \"connects_per_ip_per_s\": 0,\n"
    "             \"output_total_bytes\": 268435456},\n"
    "  \"timers\": {\"idle_ms\": 30000, \"ping_ms\": 30000, \"alarm_retry_ms\": 2000, \"drain_ms\": 10000,\n"
    "             \"fetch_ms\": 30000, \"stall_ms\": 5000, \"stall_kill_ms\": 30000, \"quarantine_ms\": 10000},\n"
    "  \"parties\": {\"main\": {\"kind\": \"chat\"}, \"relay\": {\"kind\": \"relay\"}, \"counter\": {\"kind\": \"counter\"}},\n"
    "  \"log_level\": \"info\"\n"
    "}\n";

/* ---- errors ---- */

typedef struct st_cfg_err_t {
    char *buf;
    size_t len;
    const char *source;
    const char *base_dir; /* relative paths are relative to this folder (NULL: the working directory) */
} cfg_err_t;

static int fail(cfg_err_t *e, const char *field, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(cfg_err_t *e, const char *field, const char *fmt, ...)
{
    int n = snprintf(e->buf, e->len, "%s: %s: ", e->source, field);
    if (n < 0 || (size_t)n >= e->len)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->buf + n, e->len - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- field helpers ---- */

static int get_int(cfg_err_t *e, const char *field, json_t *v, long long min, long long max, long long *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return fail(e, field, "expected an integer from %lld to %lld", min, max);
    *out = json_integer_value(v);
    return 0;
}

static int get_string(cfg_err_t *e, const char *field, json_t *v, char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || strlen(json_string_value(v)) != json_string_length(v))
        return fail(e, field, "expected a non-empty string");
    free(*out);
    *out = xstrdup(json_string_value(v));
    return 0;
}

/* A secret: a string, or {"env": NAME} read from the environment now (NULL when unset). */
static int get_secret(cfg_err_t *e, const char *field, json_t *v, char **out)
{
    if (json_is_string(v))
        return get_string(e, field, v, out);
    json_t *env = json_object_get(v, "env");
    if (!json_is_object(v) || json_object_size(v) != 1 || !json_is_string(env))
        return fail(e, field, "expected a string or {\"env\": NAME}");
    const char *val = getenv(json_string_value(env));
    free(*out);
    *out = val != NULL && *val != '\0' ? xstrdup(val) : NULL;
    return 0;
}

/* Checks that every key of `obj` is in `known`; `field` is the object's own path. */
static int check_keys(cfg_err_t *e, const char *field, json_t *obj, const char *const *known)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        size_t i;
        for (i = 0; known[i] != NULL; ++i)
            if (strcmp(key, known[i]) == 0)
                break;
        if (known[i] == NULL) {
            char path[256];
            snprintf(path, sizeof(path), "%s%s%s", field, *field != '\0' ? "." : "", key);
            return fail(e, path, "unknown key");
        }
    }
    return 0;
}

static int expect_object(cfg_err_t *e, const char *field, json_t *v)
{
    if (!json_is_object(v))
        return fail(e, field, "expected an object");
    return 0;
}

/* "host:port" or "[v6]:port" */
static int parse_hostport(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    const char *h = s, *he = colon;
    if (*h == '[') {
        if (he[-1] != ']')
            return -1;
        ++h;
        --he;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 0 || p > 65535 || he <= h)
        return -1;
    free(*host);
    *host = xstrndup(h, (size_t)(he - h));
    *port = (int)p;
    return 0;
}

static int set_admin_listen(cfg_err_t *e, const char *field, config_t *c, const char *s)
{
    if (strcmp(s, "off") == 0) {
        c->admin_enabled = 0;
        return 0;
    }
    if (parse_hostport(s, &c->admin_host, &c->admin_port) != 0)
        return fail(e, field, "expected \"HOST:PORT\" or \"off\", got \"%s\"", s);
    c->admin_enabled = 1;
    return 0;
}

static int set_log_level(cfg_err_t *e, const char *field, config_t *c, const char *s)
{
    int level = log_parse_level(s);
    if (level < 0)
        return fail(e, field, "expected \"error\", \"warn\", \"info\" or \"debug\"");
    c->log_level = level;
    return 0;
}

static int set_shards(cfg_err_t *e, const char *field, config_t *c, json_t *v)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        c->shards = n < 1 ? 1 : n > CONFIG_MAX_SHARDS ? CONFIG_MAX_SHARDS : (int)n;
        return 0;
    }
    long long n;
    if (!json_is_integer(v))
        return fail(e, field, "expected \"auto\" or an integer from 1 to %d", CONFIG_MAX_SHARDS);
    if (get_int(e, field, v, 1, CONFIG_MAX_SHARDS, &n) != 0)
        return -1;
    c->shards = (int)n;
    return 0;
}

/* ---- sections ---- */

static int apply_listen(cfg_err_t *e, config_t *c, json_t *v)
{
    static const char *const keys[] = {"host", "port", "tls", NULL}, *const tls_keys[] = {"cert", "key", NULL};
    long long port;
    if (expect_object(e, "listen", v) != 0 || check_keys(e, "listen", v, keys) != 0)
        return -1;
    json_t *tls = json_object_get(v, "tls");
    if (tls != NULL && !json_is_null(tls)) {
        if (expect_object(e, "listen.tls", tls) != 0 || check_keys(e, "listen.tls", tls, tls_keys) != 0)
            return -1;
        if (json_object_get(tls, "cert") == NULL || json_object_get(tls, "key") == NULL)
            return fail(e, "listen.tls", "needs \"cert\" and \"key\" (PEM files)");
        if (get_string(e, "listen.tls.cert", json_object_get(tls, "cert"), &c->tls_cert) != 0 ||
            get_string(e, "listen.tls.key", json_object_get(tls, "key"), &c->tls_key) != 0)
            return -1;
    }
    if (json_object_get(v, "host") != NULL && get_string(e, "listen.host", json_object_get(v, "host"), &c->host) != 0)
        return -1;
    if (json_object_get(v, "port") != NULL) {
        if (get_int(e, "listen.port", json_object_get(v, "port"), 0, 65535, &port) != 0)
            return -1;
        c->port = (int)port;
    }
    return 0;
}

static char *resolve_path(cfg_err_t *e, const char *field, const char *path);

/* "origins": ["https://example.com", ...]: what a browser's Origin header says, compared as a whole */
static int apply_origins(cfg_err_t *e, const char *field, config_origins_t *o, json_t *v)
{
    if (!json_is_array(v) || json_array_size(v) > CONFIG_MAX_ORIGINS)
        return fail(e, field, "expected an array of at most %d origins (\"https://host[:port]\")", CONFIG_MAX_ORIGINS);
    char **list = xcalloc(json_array_size(v) + 1, sizeof(*list));
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        const char *s = json_string_value(x);
        if (s == NULL || strlen(s) != json_string_length(x) || strstr(s, "://") == NULL || strlen(s) > 1024) {
            for (size_t k = 0; k < i; ++k)
                free(list[k]);
            free(list);
            return fail(e, field, "expected origins like \"https://example.com\" (scheme://host[:port])");
        }
        list[i] = xstrdup(s);
    }
    config_origins_free(o);
    o->list = list;
    o->num = json_array_size(v);
    return 0;
}

static int apply_admin(cfg_err_t *e, config_t *c, json_t *v)
{
    static const char *const keys[] = {"listen", "token", "backup_dir", NULL};
    if (expect_object(e, "admin", v) != 0 || check_keys(e, "admin", v, keys) != 0)
        return -1;
    json_t *l = json_object_get(v, "listen");
    if (l != NULL) {
        if (!json_is_string(l))
            return fail(e, "admin.listen", "expected \"HOST:PORT\" or \"off\"");
        if (set_admin_listen(e, "admin.listen", c, json_string_value(l)) != 0)
            return -1;
    }
    json_t *t = json_object_get(v, "token");
    if (t != NULL && get_secret(e, "admin.token", t, &c->admin_token) != 0)
        return -1;
    json_t *b = json_object_get(v, "backup_dir");
    if (b != NULL) {
        char *dir;
        if (!json_is_string(b) || json_string_length(b) == 0)
            return fail(e, "admin.backup_dir", "expected the path of a folder (\"/\": anywhere)");
        if ((dir = resolve_path(e, "admin.backup_dir", json_string_value(b))) == NULL)
            return -1;
        free(c->admin_backup_dir);
        c->admin_backup_dir = dir;
    }
    return 0;
}

typedef struct st_int_field_t {
    const char *name;
    long long min, max;
    size_t offset;
    int is_size_t; /* else unsigned */
} int_field_t;

#define SIZE_FIELD(section, n, lo, hi)                                                                                             \
    {                                                                                                                              \
#n, lo, hi, offsetof(config_t, section.n), 1                                                                               \
    }
#define UINT_FIELD(section, n, lo, hi)                                                                                             \
    {                                                                                                                              \
#n, lo, hi, offsetof(config_t, section.n), 0                                                                               \
    }

static const int_field_t limit_fields[] = {
    SIZE_FIELD(limits, message_bytes, 1024, 64 << 20),
    SIZE_FIELD(limits, body_bytes, 1024, 64 << 20),
    SIZE_FIELD(limits, output_bytes, 64 << 10, 1 << 30),
    SIZE_FIELD(limits, header_bytes, 1024, 400 << 10),
    UINT_FIELD(limits, header_count, 1, 100), /* h2o itself refuses more than 100 headers */
    UINT_FIELD(limits, connections_per_room, 1, 1 << 20),
    UINT_FIELD(limits, rooms_in_memory, 1, 10 << 20),
    UINT_FIELD(limits, connections, 1, 1 << 24),
    UINT_FIELD(limits, connections_per_ip, 0, 1 << 24),
    UINT_FIELD(limits, connects_per_ip_per_s, 0, 1 << 24),
    SIZE_FIELD(limits, output_total_bytes, 1 << 20, 1LL << 40),
    {NULL, 0, 0, 0, 0},
};

static const int_field_t timer_fields[] = {
    UINT_FIELD(timers, idle_ms, 100, 86400000),
    UINT_FIELD(timers, ping_ms, 100, 3600000),
    UINT_FIELD(timers, alarm_retry_ms, 10, 3600000),
    UINT_FIELD(timers, drain_ms, 100, 600000),
    UINT_FIELD(timers, fetch_ms, 100, 600000),
    UINT_FIELD(timers, stall_ms, 100, 3600000),
    UINT_FIELD(timers, stall_kill_ms, 0, 86400000),
    UINT_FIELD(timers, quarantine_ms, 100, 3600000),
    {NULL, 0, 0, 0, 0},
};

static int apply_ints(cfg_err_t *e, config_t *c, const char *section, json_t *v, const int_field_t *fields)
{
    const char *keys[16];
    size_t n = 0;
    for (const int_field_t *f = fields; f->name != NULL; ++f)
        keys[n++] = f->name;
    keys[n] = NULL;
    if (expect_object(e, section, v) != 0 || check_keys(e, section, v, keys) != 0)
        return -1;
    for (const int_field_t *f = fields; f->name != NULL; ++f) {
        json_t *x = json_object_get(v, f->name);
        if (x == NULL)
            continue;
        char path[64];
        snprintf(path, sizeof(path), "%s.%s", section, f->name);
        long long val;
        if (get_int(e, path, x, f->min, f->max, &val) != 0)
            return -1;
        if (f->is_size_t)
            *(size_t *)((char *)c + f->offset) = (size_t)val;
        else
            *(unsigned *)((char *)c + f->offset) = (unsigned)val;
    }
    return 0;
}

static void party_free(config_party_t *p)
{
    free(p->name);
    free(p->kind);
    free(p->module);
    for (size_t i = 0; i < p->num_vars; ++i) {
        free(p->vars[i].name);
        free(p->vars[i].value);
        free(p->vars[i].env);
    }
    free(p->vars);
    config_origins_free(&p->origins);
    config_cors_free(&p->cors);
}

static void parties_free(config_t *c)
{
    for (size_t i = 0; i < c->num_parties; ++i)
        party_free(&c->parties[i]);
    free(c->parties);
    c->parties = NULL;
    c->num_parties = 0;
}

/* A path from the config: absolute as it is, else relative to the config file's folder; it must exist. Returns a
 * malloc'ed canonical path, or NULL after failing with the reason. */
static char *resolve_path(cfg_err_t *e, const char *field, const char *path)
{
    char joined[PATH_MAX], canon[PATH_MAX];
    if (path[0] == '/' || e->base_dir == NULL)
        snprintf(joined, sizeof(joined), "%s", path);
    else
        snprintf(joined, sizeof(joined), "%s/%s", e->base_dir, path);
    if (realpath(joined, canon) == NULL) {
        fail(e, field, "%s: %s", joined, strerror(errno));
        return NULL;
    }
    return xstrdup(canon);
}

static int var_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (; *s != '\0'; ++s)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return 0;
    return 1;
}

static int apply_vars(cfg_err_t *e, const char *path, config_party_t *party, json_t *v)
{
    char vpath[200];
    snprintf(vpath, sizeof(vpath), "%s.vars", path);
    if (expect_object(e, vpath, v) != 0)
        return -1;
    if (json_object_size(v) > CONFIG_MAX_VARS)
        return fail(e, vpath, "at most %d vars", CONFIG_MAX_VARS);
    party->vars = xcalloc(json_object_size(v) + 1, sizeof(*party->vars));
    const char *name;
    json_t *val;
    json_object_foreach(v, name, val)
    {
        char field[300];
        snprintf(field, sizeof(field), "%s.%s", vpath, name);
        if (!var_name_valid(name))
            return fail(e, field, "a var name is 1 to 64 of A-Z a-z 0-9 _");
        config_var_t *var = &party->vars[party->num_vars];
        if (json_is_string(val)) {
            if (strlen(json_string_value(val)) != json_string_length(val) || json_string_length(val) > 65536)
                return fail(e, field, "expected a string of at most 65536 bytes without NUL");
            var->value = xstrdup(json_string_value(val));
        } else {
            json_t *env = json_object_get(val, "env");
            if (!json_is_object(val) || json_object_size(val) != 1 || !json_is_string(env) || json_string_length(env) == 0)
                return fail(e, field, "expected a string or {\"env\": NAME}");
            var->env = xstrdup(json_string_value(env));
            const char *got = getenv(var->env);
            /* unset: the party sees no such var (party_var gives NULL) and decides; the supervisor logs it at start */
            var->value = got != NULL ? xstrdup(got) : NULL;
        }
        var->name = xstrdup(name);
        ++party->num_vars;
    }
    return 0;
}

static int apply_party(cfg_err_t *e, const char *path, config_party_t *party, json_t *p)
{
    static const char *const keys[] = {"kind", "module", "hibernate", "vars", "origins", "cors", NULL};
    if (expect_object(e, path, p) != 0 || check_keys(e, path, p, keys) != 0)
        return -1;
    json_t *kind = json_object_get(p, "kind"), *module = json_object_get(p, "module");
    char field[200];
    if ((kind == NULL) == (module == NULL))
        return fail(e, path, "needs either \"kind\" (a built-in party) or \"module\" (a shared object), not %s",
                    kind == NULL ? "neither" : "both");
    if (kind != NULL) {
        /* whether the kind exists is known where parties live (shard/module.c, at start) */
        snprintf(field, sizeof(field), "%s.kind", path);
        if (!json_is_string(kind) || json_string_length(kind) == 0)
            return fail(e, field, "expected a string: a built-in kind");
        party->kind = xstrdup(json_string_value(kind));
    } else {
        snprintf(field, sizeof(field), "%s.module", path);
        if (!json_is_string(module) || json_string_length(module) == 0)
            return fail(e, field, "expected the path of a shared object");
        if ((party->module = resolve_path(e, field, json_string_value(module))) == NULL)
            return -1;
    }
    json_t *hib = json_object_get(p, "hibernate");
    if (hib != NULL && !json_is_boolean(hib)) {
        snprintf(field, sizeof(field), "%s.hibernate", path);
        return fail(e, field, "expected true or false");
    }
    party->hibernate = hib != NULL ? json_is_true(hib) : -1;
    json_t *vars = json_object_get(p, "vars");
    if (vars != NULL && apply_vars(e, path, party, vars) != 0)
        return -1;
    json_t *origins = json_object_get(p, "origins");
    snprintf(field, sizeof(field), "%s.origins", path);
    if (origins != NULL && apply_origins(e, field, &party->origins, origins) != 0)
        return -1;
    json_t *cors = json_object_get(p, "cors");
    char why[200];
    snprintf(field, sizeof(field), "%s.cors", path);
    if (cors != NULL && config_cors_parse(cors, &party->cors, why, sizeof(why)) != 0)
        return fail(e, field, "%s", why);
    return 0;
}

static int apply_parties(cfg_err_t *e, config_t *c, json_t *v)
{
    if (expect_object(e, "parties", v) != 0)
        return -1;
    if (json_object_size(v) == 0)
        return fail(e, "parties", "at least one party is needed");
    if (json_object_size(v) > CONFIG_MAX_PARTIES)
        return fail(e, "parties", "at most %d parties", CONFIG_MAX_PARTIES);
    config_party_t *list = xcalloc(json_object_size(v), sizeof(*list));
    size_t n = 0;
    const char *name;
    json_t *p;
    json_object_foreach(v, name, p)
    {
        char path[128];
        snprintf(path, sizeof(path), "parties.%s", name);
        if (!names_party_valid(name, strlen(name))) {
            fail(e, path, "a party name is 1 to 64 of A-Z a-z 0-9 _ -");
            goto Error;
        }
        list[n].name = xstrdup(name);
        ++n;
        if (apply_party(e, path, &list[n - 1], p) != 0)
            goto Error;
    }
    /* the file's parties replace the default ones */
    parties_free(c);
    c->parties = list;
    c->num_parties = n;
    return 0;
Error:
    for (size_t i = 0; i < n; ++i)
        party_free(&list[i]);
    free(list);
    return -1;
}

int config_apply_json(config_t *c, const char *text, size_t len, const char *source, const char *base_dir, char *errbuf,
                      size_t errlen)
{
    static const char *const keys[] = {"listen", "prefix",  "shards",    "data_dir", "durability", "admin", "limits",
                                       "timers", "parties", "log_level", "serve",    "origins",    "cors",  NULL};
    cfg_err_t e = {errbuf, errlen, source, base_dir};
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        snprintf(errbuf, errlen, "%s: line %d column %d: %s", source, jerr.line, jerr.column, jerr.text);
        return -1;
    }
    int ret = -1;
    json_t *v;
    if (!json_is_object(root)) {
        snprintf(errbuf, errlen, "%s: the configuration must be a JSON object", source);
        goto Exit;
    }
    if (check_keys(&e, "", root, keys) != 0)
        goto Exit;
    if ((v = json_object_get(root, "listen")) != NULL && apply_listen(&e, c, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "prefix")) != NULL) {
        if (!json_is_string(v) || !names_party_valid(json_string_value(v), json_string_length(v)) ||
            strcmp(json_string_value(v), "party") == 0) {
            fail(&e, "prefix", "expected 1 to 64 of A-Z a-z 0-9 _ - (and not \"party\", which /party/:room uses)");
            goto Exit;
        }
        free(c->prefix);
        c->prefix = xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(root, "shards")) != NULL && set_shards(&e, "shards", c, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "data_dir")) != NULL && get_string(&e, "data_dir", v, &c->data_dir) != 0)
        goto Exit;
    if ((v = json_object_get(root, "durability")) != NULL) {
        if (!json_is_string(v) || (strcmp(json_string_value(v), "sync") != 0 && strcmp(json_string_value(v), "relaxed") != 0)) {
            fail(&e, "durability", "expected \"sync\" or \"relaxed\"");
            goto Exit;
        }
        free(c->durability);
        c->durability = xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(root, "admin")) != NULL && apply_admin(&e, c, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "limits")) != NULL && apply_ints(&e, c, "limits", v, limit_fields) != 0)
        goto Exit;
    if ((v = json_object_get(root, "timers")) != NULL && apply_ints(&e, c, "timers", v, timer_fields) != 0)
        goto Exit;
    if ((v = json_object_get(root, "parties")) != NULL && apply_parties(&e, c, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "origins")) != NULL && apply_origins(&e, "origins", &c->origins, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "cors")) != NULL) {
        char why[200];
        if (config_cors_parse(v, &c->cors, why, sizeof(why)) != 0) {
            fail(&e, "cors", "%s", why);
            goto Exit;
        }
    }
    if ((v = json_object_get(root, "serve")) != NULL) {
        char *dir = NULL;
        int dotfiles = 0, spa = 0;
        if (json_is_object(v)) {
            /* {"dir": PATH, "dotfiles": BOOL}, or PartyKit's {"path": PATH, "singlePageApp": BOOL} */
            static const char *const serve_keys[] = {"dir", "path", "dotfiles", "singlePageApp", NULL};
            json_t *d = json_object_get(v, "dotfiles"), *s = json_object_get(v, "singlePageApp");
            if (check_keys(&e, "serve", v, serve_keys) != 0)
                goto Exit;
            if (d != NULL && !json_is_boolean(d)) {
                fail(&e, "serve.dotfiles", "expected true or false");
                goto Exit;
            }
            if (s != NULL && !json_is_boolean(s)) {
                fail(&e, "serve.singlePageApp", "expected true or false");
                goto Exit;
            }
            dotfiles = json_is_true(d);
            spa = json_is_true(s);
            json_t *dirv = json_object_get(v, "dir"), *pathv = json_object_get(v, "path");
            if (dirv == NULL && pathv == NULL) {
                fail(&e, "serve.dir", "expected the path of a folder (as \"dir\" or \"path\")");
                goto Exit;
            }
            if (dirv != NULL && pathv != NULL) {
                fail(&e, "serve", "takes \"path\" or \"dir\" (the same key), not both");
                goto Exit;
            }
            v = dirv != NULL ? dirv : pathv;
        }
        if (!json_is_null(v)) {
            struct stat st;
            if (!json_is_string(v) || json_string_length(v) == 0) {
                fail(&e, "serve",
                     "expected the path of a folder, {\"path\": PATH, \"singlePageApp\": BOOL, \"dotfiles\": BOOL}, or null");
                goto Exit;
            }
            if ((dir = resolve_path(&e, "serve", json_string_value(v))) == NULL)
                goto Exit;
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                fail(&e, "serve", "%s is not a folder", dir);
                free(dir);
                goto Exit;
            }
        }
        free(c->serve);
        c->serve = dir;
        c->serve_dotfiles = dotfiles;
        c->serve_spa = spa;
    }
    if ((v = json_object_get(root, "log_level")) != NULL) {
        if (!json_is_string(v)) {
            fail(&e, "log_level", "expected \"error\", \"warn\", \"info\" or \"debug\"");
            goto Exit;
        }
        if (set_log_level(&e, "log_level", c, json_string_value(v)) != 0)
            goto Exit;
    }
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}

void config_init_default(config_t *c)
{
    memset(c, 0, sizeof(*c));
    char err[256];
    if (config_apply_json(c, config_default_json, sizeof(config_default_json) - 1, "embedded default", NULL, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "partyd: BUG: %s\n", err);
        abort();
    }
    c->source = xstrdup("embedded default");
}

void config_dispose(config_t *c)
{
    free(c->host);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->prefix);
    free(c->serve);
    free(c->data_dir);
    free(c->durability);
    free(c->admin_host);
    free(c->admin_token);
    free(c->admin_backup_dir);
    config_origins_free(&c->origins);
    config_cors_free(&c->cors);
    free(c->source);
    parties_free(c);
    memset(c, 0, sizeof(*c));
}

size_t config_frame_cap(const config_t *c)
{
    size_t payload = c->limits.message_bytes > c->limits.body_bytes ? c->limits.message_bytes : c->limits.body_bytes;
    return payload + c->limits.header_bytes + PROTO_FRAME_OVERHEAD;
}

void config_origins_free(config_origins_t *o)
{
    for (size_t i = 0; i < o->num; ++i)
        free(o->list[i]);
    free(o->list);
    o->list = NULL;
    o->num = 0;
}

int config_origin_allowed(const config_t *c, const config_party_t *p, const char *origin, size_t len)
{
    const config_origins_t *o = p != NULL && p->origins.list != NULL ? &p->origins : &c->origins;
    if (o->list == NULL)
        return 1;
    for (size_t i = 0; i < o->num; ++i)
        if (strlen(o->list[i]) == len && strncasecmp(o->list[i], origin, len) == 0)
            return 1;
    return 0;
}

const config_party_t *config_find_party(const config_t *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->num_parties; ++i)
        if (strlen(c->parties[i].name) == len && memcmp(c->parties[i].name, name, len) == 0)
            return &c->parties[i];
    return NULL;
}

const char *config_party_var(const config_party_t *p, const char *name)
{
    for (size_t i = 0; i < p->num_vars; ++i)
        if (strcmp(p->vars[i].name, name) == 0)
            return p->vars[i].value;
    return NULL;
}

/* Rules that span fields, checked once everything is applied. */
static int check_whole(const config_t *c, char *err, size_t errlen)
{
    if (c->limits.output_bytes < c->limits.message_bytes + 16) {
        snprintf(err, errlen, "limits.output_bytes (%zu) must be larger than limits.message_bytes (%zu)", c->limits.output_bytes,
                 c->limits.message_bytes);
        return -1;
    }
    if (c->admin_enabled && c->admin_token == NULL && strcmp(c->admin_host, "127.0.0.1") != 0 &&
        strcmp(c->admin_host, "::1") != 0 && strcmp(c->admin_host, "localhost") != 0) {
        snprintf(err, errlen,
                 "admin.listen: the admin endpoint on %s (not loopback) needs a token: set admin.token or PARTYD_ADMIN_TOKEN",
                 c->admin_host);
        return -1;
    }
    /* a short token can be guessed over the network; the admin endpoint also slows down wrong ones (router/admin.c) */
    if (c->admin_token != NULL && strlen(c->admin_token) < CONFIG_MIN_TOKEN) {
        snprintf(err, errlen, "admin.token: at least %d bytes (got %zu); a random one: openssl rand -hex 16", CONFIG_MIN_TOKEN,
                 strlen(c->admin_token));
        return -1;
    }
    return 0;
}

/* ---- the command line ---- */

static void usage(FILE *out)
{
    fprintf(out, "usage: partyd [options]\n"
                 "\n"
                 "Runs a partyd node: PartyKit-compatible rooms on this machine.\n"
                 "Configuration: the embedded default (partyd --print-config shows the effective one), overlaid by\n"
                 "--config FILE (else ./partyd.json when present), overlaid by these flags:\n"
                 "\n"
                 "  --config FILE        read FILE (JSON) over the embedded default\n"
                 "  --host HOST          listen address (default 127.0.0.1)\n"
                 "  --port PORT          listen port (default 1999; 0 picks a free one)\n"
                 "  --shards N           shard processes (default: number of CPUs)\n"
                 "  --data-dir DIR       data directory (default ./.partyd)\n"
                 "  --admin HOST:PORT    admin listener (default 127.0.0.1:1998), or \"off\"\n"
                 "  --log-level LEVEL    error, warn, info or debug\n"
                 "  --print-config       print the effective configuration as JSON and exit\n"
                 "  --help               this text\n"
                 "  --version            the version\n");
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return -errno;
    size_t cap = 4096, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            if (cap >= (16u << 20)) {
                fclose(f);
                free(buf);
                return -EFBIG;
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return -EIO;
    }
    *out = buf;
    *len = n;
    return 0;
}

int config_from_args(config_t *c, int argc, char **argv)
{
    enum { O_CONFIG = 256, O_HOST, O_PORT, O_SHARDS, O_DATA_DIR, O_ADMIN, O_LOG_LEVEL, O_PRINT, O_HELP, O_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"shards", required_argument, NULL, O_SHARDS},
        {"data-dir", required_argument, NULL, O_DATA_DIR},
        {"admin", required_argument, NULL, O_ADMIN},
        {"log-level", required_argument, NULL, O_LOG_LEVEL},
        {"print-config", no_argument, NULL, O_PRINT},
        {"help", no_argument, NULL, O_HELP},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    char err[512];
    const char *config_path = NULL, *admin_flag = NULL;
    int print = 0, o;

    config_init_default(c);

    /* first pass: find --config and the answers that need no config */
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case O_CONFIG:
            config_path = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        case O_VERSION:
            printf("partyd %s (protocol %d, party ABI %d)\n", PARTYD_VERSION, PROTO_VERSION, PARTY_ABI_VERSION);
            return 1;
        case '?':
            if (optopt != 0)
                fprintf(stderr, "partyd: option %s needs a value (see --help)\n", argv[optind - 1]);
            else
                fprintf(stderr, "partyd: unknown option %s (see --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "partyd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }

    /* the file */
    if (config_path == NULL && access("partyd.json", F_OK) == 0)
        config_path = "partyd.json";
    if (config_path != NULL) {
        char *text = NULL;
        size_t len = 0;
        int r = read_file(config_path, &text, &len);
        if (r != 0) {
            fprintf(stderr, "partyd: cannot read config %s: %s\n", config_path, strerror(-r));
            return -1;
        }
        /* the file's relative paths are relative to its folder, wherever partyd was started */
        char *copy = xstrdup(config_path), *base = realpath(dirname(copy), NULL);
        r = config_apply_json(c, text, len, config_path, base, err, sizeof(err));
        free(base);
        free(copy);
        free(text);
        if (r != 0) {
            fprintf(stderr, "partyd: bad config: %s\n", err);
            return -1;
        }
        free(c->source);
        c->source = xstrdup(config_path);
    }

    /* the flags win */
    cfg_err_t e = {err, sizeof(err), "command line", NULL};
    optind = 1;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        char *end;
        long n;
        int r = 0;
        switch (o) {
        case O_HOST:
            free(c->host);
            c->host = xstrdup(optarg);
            break;
        case O_PORT:
            n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 0 || n > 65535)
                r = fail(&e, "--port", "expected a port from 0 to 65535, got \"%s\"", optarg);
            else
                c->port = (int)n;
            break;
        case O_SHARDS:
            n = strtol(optarg, &end, 10);
            if (strcmp(optarg, "auto") == 0) {
                json_t *a = json_string("auto");
                r = set_shards(&e, "--shards", c, a);
                json_decref(a);
            } else if (*optarg == '\0' || *end != '\0' || n < 1 || n > CONFIG_MAX_SHARDS) {
                r = fail(&e, "--shards", "expected \"auto\" or a number from 1 to %d, got \"%s\"", CONFIG_MAX_SHARDS, optarg);
            } else {
                c->shards = (int)n;
            }
            break;
        case O_DATA_DIR:
            free(c->data_dir);
            c->data_dir = xstrdup(optarg);
            break;
        case O_ADMIN:
            r = set_admin_listen(&e, "--admin", c, optarg);
            admin_flag = optarg;
            break;
        case O_LOG_LEVEL:
            r = set_log_level(&e, "--log-level", c, optarg);
            break;
        case O_PRINT:
            print = 1;
            break;
        }
        if (r != 0) {
            fprintf(stderr, "partyd: %s\n", err);
            return -1;
        }
    }
    if (check_whole(c, err, sizeof(err)) != 0) {
        /* a rule broken by a flag is the flag's fault, not the file's or the embedded default's */
        if (admin_flag != NULL && strncmp(err, "admin.listen: ", 14) == 0)
            fprintf(stderr, "partyd: --admin %s: %s\n", admin_flag, err + 14);
        else
            fprintf(stderr, "partyd: bad config (%s): %s\n", c->source, err);
        return -1;
    }
    return print ? 2 : 0;
}

static json_t *origins_json(const config_origins_t *o)
{
    json_t *a = json_array();
    for (size_t i = 0; i < o->num; ++i)
        json_array_append_new(a, json_string(o->list[i]));
    return a;
}

char *config_to_json(const config_t *c)
{
    static const char *const levels[] = {"error", "warn", "info", "debug"};
    json_t *parties = json_object();
    for (size_t i = 0; i < c->num_parties; ++i) {
        const config_party_t *p = &c->parties[i];
        json_t *o = p->module != NULL ? json_pack("{s:s}", "module", p->module) : json_pack("{s:s}", "kind", p->kind);
        if (p->hibernate != -1)
            json_object_set_new(o, "hibernate", json_boolean(p->hibernate));
        if (p->num_vars != 0) {
            /* values from the environment stay there: a printed config shows where they come from, not the secret */
            json_t *vars = json_object();
            for (size_t k = 0; k < p->num_vars; ++k)
                json_object_set_new(vars, p->vars[k].name,
                                    p->vars[k].env != NULL ? json_pack("{s:s}", "env", p->vars[k].env)
                                                           : json_string(p->vars[k].value));
            json_object_set_new(o, "vars", vars);
        }
        if (p->origins.list != NULL)
            json_object_set_new(o, "origins", origins_json(&p->origins));
        json_object_set_new(parties, p->name, o);
    }
    char admin[300];
    if (c->admin_enabled)
        snprintf(admin, sizeof(admin), strchr(c->admin_host, ':') != NULL ? "[%s]:%d" : "%s:%d", c->admin_host, c->admin_port);
    else
        snprintf(admin, sizeof(admin), "off");
    json_t *root = json_pack(
        "{s:{s:s, s:i}, s:s, s:i, s:s, s:s, s:{s:s}, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}, s:{s:I, s:I, s:I, "
        "s:I, s:I}, s:o, s:s}",
        "listen", "host", c->host, "port", c->port, "prefix", c->prefix, "shards", c->shards, "data_dir", c->data_dir, "durability",
        c->durability, "admin", "listen", admin, "limits", "message_bytes", (json_int_t)c->limits.message_bytes, "body_bytes",
        (json_int_t)c->limits.body_bytes, "output_bytes", (json_int_t)c->limits.output_bytes, "header_bytes",
        (json_int_t)c->limits.header_bytes, "header_count", (json_int_t)c->limits.header_count, "connections_per_room",
        (json_int_t)c->limits.connections_per_room, "rooms_in_memory", (json_int_t)c->limits.rooms_in_memory, "connections",
        (json_int_t)c->limits.connections, "connections_per_ip", (json_int_t)c->limits.connections_per_ip, "connects_per_ip_per_s",
        (json_int_t)c->limits.connects_per_ip_per_s, "output_total_bytes", (json_int_t)c->limits.output_total_bytes, "timers",
        "idle_ms", (json_int_t)c->timers.idle_ms, "ping_ms", (json_int_t)c->timers.ping_ms, "alarm_retry_ms",
        (json_int_t)c->timers.alarm_retry_ms, "drain_ms", (json_int_t)c->timers.drain_ms, "fetch_ms",
        (json_int_t)c->timers.fetch_ms, "parties", parties, "log_level", levels[c->log_level]);
    json_t *timers = json_object_get(root, "timers");
    json_object_set_new(timers, "stall_ms", json_integer(c->timers.stall_ms));
    json_object_set_new(timers, "stall_kill_ms", json_integer(c->timers.stall_kill_ms));
    json_object_set_new(timers, "quarantine_ms", json_integer(c->timers.quarantine_ms));
    if (c->serve != NULL)
        json_object_set_new(root, "serve",
                            c->serve_dotfiles || c->serve_spa ? json_pack("{s:s, s:b, s:b}", "dir", c->serve, "dotfiles",
                                                                          c->serve_dotfiles, "singlePageApp", c->serve_spa)
                                                              : json_string(c->serve));
    if (c->origins.list != NULL)
        json_object_set_new(root, "origins", origins_json(&c->origins));
    if (c->admin_backup_dir != NULL)
        json_object_set_new(json_object_get(root, "admin"), "backup_dir", json_string(c->admin_backup_dir));
    if (c->tls_cert != NULL)
        json_object_set_new(json_object_get(root, "listen"), "tls",
                            json_pack("{s:s, s:s}", "cert", c->tls_cert, "key", c->tls_key));
    /* the token itself is never printed */
    if (c->admin_token != NULL)
        json_object_set_new(json_object_get(root, "admin"), "token", json_string("(hidden)"));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}

const partydef_t *partydefs_find(const partydefs_t *d, const char *name, size_t len)
{
    for (size_t i = 0; i < d->num_defs; ++i)
        if (strlen(d->defs[i].conf->name) == len && memcmp(d->defs[i].conf->name, name, len) == 0)
            return &d->defs[i];
    return NULL;
}
