/*
 * read.c — partyd.json (and the embedded default) read section by section: the types, ranges and known keys of every
 * field, errors that name the field (see config.h, config_apply_json).
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"
#include "config_int.h"
#include "names.h"

int cfg_fail(cfg_err_t *e, const char *field, const char *fmt, ...)
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
        return cfg_fail(e, field, "expected an integer from %lld to %lld", min, max);
    *out = json_integer_value(v);
    return 0;
}

static int get_string(cfg_err_t *e, const char *field, json_t *v, char **out)
{
    if (!json_is_string(v) || json_string_length(v) == 0 || strlen(json_string_value(v)) != json_string_length(v))
        return cfg_fail(e, field, "expected a non-empty string");
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
        return cfg_fail(e, field, "expected a string or {\"env\": NAME}");
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
            const char *near = config_suggest(key, known);
            if (near != NULL)
                return cfg_fail(e, path, "unknown key (did you mean \"%s\"?)", near);
            return cfg_fail(e, path, "unknown key");
        }
    }
    return 0;
}

/* A relative path from a file is made relative to the file's folder; it need not exist yet (a data_dir is created). */
static int rebase_path(cfg_err_t *e, char **path)
{
    if (e->base_dir == NULL || (*path)[0] == '/')
        return 0;
    char joined[PATH_MAX];
    int n = snprintf(joined, sizeof(joined), "%s/%s", e->base_dir, *path);
    if (n < 0 || (size_t)n >= sizeof(joined))
        return cfg_fail(e, "path", "%s/%s: too long", e->base_dir, *path);
    free(*path);
    *path = xstrdup(joined);
    return 0;
}

static int expect_object(cfg_err_t *e, const char *field, json_t *v)
{
    if (!json_is_object(v))
        return cfg_fail(e, field, "expected an object");
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

int cfg_set_admin_listen(cfg_err_t *e, const char *field, config_t *c, const char *s)
{
    if (strcmp(s, "off") == 0) {
        c->admin_enabled = 0;
        return 0;
    }
    if (parse_hostport(s, &c->admin_host, &c->admin_port) != 0)
        return cfg_fail(e, field, "expected \"HOST:PORT\" or \"off\", got \"%s\"", s);
    c->admin_enabled = 1;
    return 0;
}

int cfg_set_log_level(cfg_err_t *e, const char *field, config_t *c, const char *s)
{
    int level = log_parse_level(s);
    if (level < 0)
        return cfg_fail(e, field, "expected \"error\", \"warn\", \"info\" or \"debug\"");
    c->log_level = level;
    return 0;
}

int cfg_set_shards(cfg_err_t *e, const char *field, config_t *c, json_t *v)
{
    if (json_is_string(v) && strcmp(json_string_value(v), "auto") == 0) {
        c->shards = config_cpus_available(); /* cpus.c: the affinity mask and the cgroup quota, not the machine */
        return 0;
    }
    long long n = 0;
    if (!json_is_integer(v))
        return cfg_fail(e, field, "expected \"auto\" or an integer from 1 to %d", CONFIG_MAX_SHARDS);
    if (get_int(e, field, v, 1, CONFIG_MAX_SHARDS, &n) != 0)
        return -1;
    c->shards = (int)n;
    return 0;
}

/* ---- sections ---- */

static int apply_listen(cfg_err_t *e, config_t *c, json_t *v)
{
    static const char *const keys[] = {"host", "port", "tls", NULL}, *const tls_keys[] = {"cert", "key", NULL};
    long long port = 0;
    if (expect_object(e, "listen", v) != 0 || check_keys(e, "listen", v, keys) != 0)
        return -1;
    json_t *tls = json_object_get(v, "tls");
    if (tls != NULL && !json_is_null(tls)) {
        if (expect_object(e, "listen.tls", tls) != 0 || check_keys(e, "listen.tls", tls, tls_keys) != 0)
            return -1;
        if (json_object_get(tls, "cert") == NULL || json_object_get(tls, "key") == NULL)
            return cfg_fail(e, "listen.tls", "needs \"cert\" and \"key\" (PEM files)");
        if (get_string(e, "listen.tls.cert", json_object_get(tls, "cert"), &c->tls_cert) != 0 ||
            get_string(e, "listen.tls.key", json_object_get(tls, "key"), &c->tls_key) != 0)
            return -1;
        /* relative to the config file's folder, as a module is (the files are read when the router starts) */
        if (rebase_path(e, &c->tls_cert) != 0 || rebase_path(e, &c->tls_key) != 0)
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
        return cfg_fail(e, field, "expected an array of at most %d origins (\"https://host[:port]\")", CONFIG_MAX_ORIGINS);
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
            return cfg_fail(e, field, "expected origins like \"https://example.com\" (scheme://host[:port])");
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
            return cfg_fail(e, "admin.listen", "expected \"HOST:PORT\" or \"off\"");
        if (cfg_set_admin_listen(e, "admin.listen", c, json_string_value(l)) != 0)
            return -1;
    }
    json_t *t = json_object_get(v, "token");
    if (t != NULL && get_secret(e, "admin.token", t, &c->admin_token) != 0)
        return -1;
    json_t *b = json_object_get(v, "backup_dir");
    if (b != NULL) {
        char *dir;
        if (!json_is_string(b) || json_string_length(b) == 0)
            return cfg_fail(e, "admin.backup_dir", "expected the path of a folder (\"/\": anywhere)");
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
    UINT_FIELD(timers, request_ms, 100, 3600000),
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
        long long val = 0; /* set by get_int on success; = 0 for -O3, which cannot see that cfg_fail returns -1 */
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
    free(p->script);
    config_cors_free(&p->cors);
    for (size_t i = 0; i < p->num_vars; ++i) {
        free(p->vars[i].name);
        free(p->vars[i].value);
        free(p->vars[i].env);
    }
    free(p->vars);
    config_origins_free(&p->origins);
}

void cfg_parties_free(config_t *c)
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
        cfg_fail(e, field, "%s: %s", joined, strerror(errno));
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
        return cfg_fail(e, vpath, "at most %d vars", CONFIG_MAX_VARS);
    party->vars = xcalloc(json_object_size(v) + 1, sizeof(*party->vars));
    const char *name;
    json_t *val;
    json_object_foreach(v, name, val)
    {
        char field[300];
        snprintf(field, sizeof(field), "%s.%s", vpath, name);
        if (!var_name_valid(name))
            return cfg_fail(e, field, "a var name is 1 to 64 of A-Z a-z 0-9 _");
        config_var_t *var = &party->vars[party->num_vars];
        if (json_is_string(val)) {
            if (strlen(json_string_value(val)) != json_string_length(val) || json_string_length(val) > 65536)
                return cfg_fail(e, field, "expected a string of at most 65536 bytes without NUL");
            var->value = xstrdup(json_string_value(val));
        } else {
            json_t *env = json_object_get(val, "env");
            if (!json_is_object(val) || json_object_size(val) != 1 || !json_is_string(env) || json_string_length(env) == 0)
                return cfg_fail(e, field, "expected a string or {\"env\": NAME}");
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
    static const char *const keys[] = {"kind", "module", "script", "hibernate", "vars", "origins", "cors", NULL};
    if (expect_object(e, path, p) != 0 || check_keys(e, path, p, keys) != 0)
        return -1;
    json_t *kind = json_object_get(p, "kind"), *module = json_object_get(p, "module"), *script = json_object_get(p, "script");
    char field[200];
    int forms = (kind != NULL) + (module != NULL) + (script != NULL);
    if (forms != 1)
        return cfg_fail(e, path,
                        "needs either \"kind\" (a built-in party) or \"module\" (a shared object) or \"script\" (a TypeScript or "
                        "JavaScript file), not %s",
                        forms == 0 ? "neither" : forms == 2 ? "both" : "all three");
    if (kind != NULL) {
        /* whether the kind exists is known where parties live (shard/module.c, at start) */
        snprintf(field, sizeof(field), "%s.kind", path);
        if (!json_is_string(kind) || json_string_length(kind) == 0)
            return cfg_fail(e, field, "expected a string: a built-in kind");
        party->kind = xstrdup(json_string_value(kind));
    } else if (module != NULL) {
        snprintf(field, sizeof(field), "%s.module", path);
        if (!json_is_string(module) || json_string_length(module) == 0)
            return cfg_fail(e, field, "expected the path of a shared object");
        if ((party->module = resolve_path(e, field, json_string_value(module))) == NULL)
            return -1;
    } else {
        /* bundling and evaluating it is shard/module.c's (js/), at start */
        snprintf(field, sizeof(field), "%s.script", path);
        if (!json_is_string(script) || json_string_length(script) == 0)
            return cfg_fail(e, field, "expected the path of a .ts or .js file");
        if ((party->script = resolve_path(e, field, json_string_value(script))) == NULL)
            return -1;
    }
    json_t *hib = json_object_get(p, "hibernate");
    if (hib != NULL && !json_is_boolean(hib)) {
        snprintf(field, sizeof(field), "%s.hibernate", path);
        return cfg_fail(e, field, "expected true or false");
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
        return cfg_fail(e, field, "%s", why);
    return 0;
}

static int apply_parties(cfg_err_t *e, config_t *c, json_t *v)
{
    if (expect_object(e, "parties", v) != 0)
        return -1;
    if (json_object_size(v) == 0)
        return cfg_fail(e, "parties", "at least one party is needed");
    if (json_object_size(v) > CONFIG_MAX_PARTIES)
        return cfg_fail(e, "parties", "at most %d parties", CONFIG_MAX_PARTIES);
    config_party_t *list = xcalloc(json_object_size(v), sizeof(*list));
    size_t n = 0;
    const char *name;
    json_t *p;
    json_object_foreach(v, name, p)
    {
        char path[128];
        snprintf(path, sizeof(path), "parties.%s", name);
        if (!names_party_valid(name, strlen(name))) {
            cfg_fail(e, path, "a party name is 1 to 64 of A-Z a-z 0-9 _ -");
            goto Error;
        }
        list[n].name = xstrdup(name);
        ++n;
        if (apply_party(e, path, &list[n - 1], p) != 0)
            goto Error;
    }
    /* the file's parties replace the default ones */
    cfg_parties_free(c);
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
                                       "timers", "parties", "log_level", "serve",    "origins",    "sources", "cluster", "cors", NULL};
    /* "sources" is what --print-config adds to say where values came from; it is ignored, so that a printed config
     * reads back as it is */
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
            cfg_fail(&e, "prefix", "expected 1 to 64 of A-Z a-z 0-9 _ - (and not \"party\", which /party/:room uses)");
            goto Exit;
        }
        free(c->prefix);
        c->prefix = xstrdup(json_string_value(v));
    }
    if ((v = json_object_get(root, "shards")) != NULL && cfg_set_shards(&e, "shards", c, v) != 0)
        goto Exit;
    if ((v = json_object_get(root, "data_dir")) != NULL &&
        (get_string(&e, "data_dir", v, &c->data_dir) != 0 || rebase_path(&e, &c->data_dir) != 0))
        goto Exit;
    if ((v = json_object_get(root, "durability")) != NULL) {
        if (!json_is_string(v) || (strcmp(json_string_value(v), "sync") != 0 && strcmp(json_string_value(v), "relaxed") != 0)) {
            cfg_fail(&e, "durability", "expected \"sync\" or \"relaxed\"");
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
            cfg_fail(&e, "cors", "%s", why);
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
                cfg_fail(&e, "serve.dotfiles", "expected true or false");
                goto Exit;
            }
            if (s != NULL && !json_is_boolean(s)) {
                cfg_fail(&e, "serve.singlePageApp", "expected true or false");
                goto Exit;
            }
            dotfiles = json_is_true(d);
            spa = json_is_true(s);
            json_t *dirv = json_object_get(v, "dir"), *pathv = json_object_get(v, "path");
            if (dirv == NULL && pathv == NULL) {
                cfg_fail(&e, "serve.dir", "expected the path of a folder (as \"dir\" or \"path\")");
                goto Exit;
            }
            if (dirv != NULL && pathv != NULL) {
                cfg_fail(&e, "serve", "takes \"path\" or \"dir\" (the same key), not both");
                goto Exit;
            }
            v = dirv != NULL ? dirv : pathv;
        }
        if (!json_is_null(v)) {
            struct stat st;
            if (!json_is_string(v) || json_string_length(v) == 0) {
                cfg_fail(&e, "serve",
                     "expected the path of a folder, {\"path\": PATH, \"singlePageApp\": BOOL, \"dotfiles\": BOOL}, or null");
                goto Exit;
            }
            if ((dir = resolve_path(&e, "serve", json_string_value(v))) == NULL)
                goto Exit;
            if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                cfg_fail(&e, "serve", "%s is not a folder", dir);
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
            cfg_fail(&e, "log_level", "expected \"error\", \"warn\", \"info\" or \"debug\"");
            goto Exit;
        }
        if (cfg_set_log_level(&e, "log_level", c, json_string_value(v)) != 0)
            goto Exit;
    }
    if ((v = json_object_get(root, "cluster")) != NULL && config_cluster_apply(&c->cluster, v, source, errbuf, errlen) != 0)
        goto Exit;
    /* where each per-instance value came from (--print-config); the environment's and the flags' callers say theirs */
    const char *tag = strcmp(source, "embedded default") == 0 ? "default" : "file";
    if ((v = json_object_get(root, "listen")) != NULL) {
        if (json_object_get(v, "host") != NULL)
            c->sources.host = tag;
        if (json_object_get(v, "port") != NULL)
            c->sources.port = tag;
    }
    if (json_object_get(root, "data_dir") != NULL)
        c->sources.data_dir = tag;
    if (json_object_get(root, "shards") != NULL)
        c->sources.shards = tag;
    if ((v = json_object_get(root, "admin")) != NULL && json_object_get(v, "listen") != NULL)
        c->sources.admin = tag;
    ret = 0;
Exit:
    json_decref(root);
    return ret;
}
