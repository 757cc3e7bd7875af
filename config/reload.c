/*
 * reload.c — SIGHUP: the configuration read again, what changed, and what of it applies live (see config.h).
 *
 * The supervisor reads the file once and hands the same bytes to its children (CTL_RELOAD, a memfd), so that every
 * process re-reads exactly what the supervisor checked: a file edited again in between cannot split the node.
 */
#include "config.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"

/* What changes live, by the path --print-config prints it under; a path that starts with one of these (and a party's
 * vars, below) is applied where it is read at each use: the router (admin.token, origins, the per-address caps,
 * drain_ms), the shards (vars, idle_ms, alarm_retry_ms, the per-room and in-memory caps), the supervisor (stall and
 * quarantine timers). Everything else needs a restart. */
static const char *const live_paths[] = {
    "admin.token", "origins", "limits.connections_per_room", "limits.rooms_in_memory", "limits.connections_per_ip",
    "limits.connects_per_ip_per_s", "timers.idle_ms", "timers.alarm_retry_ms", "timers.drain_ms", "timers.stall_ms",
    "timers.stall_kill_ms", "timers.quarantine_ms", NULL,
};

static int is_live(const char *path)
{
    for (size_t i = 0; live_paths[i] != NULL; ++i)
        if (strcmp(path, live_paths[i]) == 0)
            return 1;
    /* parties.NAME.vars and parties.NAME.origins of a party that stays */
    if (strncmp(path, "parties.", 8) == 0) {
        const char *dot = strchr(path + 8, '.');
        return dot != NULL && (strncmp(dot, ".vars", 5) == 0 || strcmp(dot, ".origins") == 0);
    }
    return 0;
}

int config_reread(const config_t *old, const char *text, size_t len, config_t *fresh, char *err, size_t errlen)
{
    config_init_default(fresh);
    if (text != NULL) {
        char *copy = xstrdup(old->source), *base = realpath(dirname(copy), NULL);
        int r = config_apply_json(fresh, text, len, old->source, base, err, errlen);
        free(base);
        free(copy);
        if (r != 0)
            goto Error;
        free(fresh->source);
        fresh->source = xstrdup(old->source);
    }
    if (config_apply_env(fresh, err, errlen) != 0)
        goto Error;
    /* the flags set only what needs a restart (host, port, shards, data_dir, admin.listen, log_level): keep them */
    free(fresh->host);
    fresh->host = xstrdup(old->host);
    fresh->port = old->port;
    fresh->shards = old->shards;
    free(fresh->data_dir);
    fresh->data_dir = xstrdup(old->data_dir);
    fresh->admin_enabled = old->admin_enabled;
    free(fresh->admin_host);
    fresh->admin_host = old->admin_host != NULL ? xstrdup(old->admin_host) : NULL;
    fresh->admin_port = old->admin_port;
    fresh->log_level = old->log_level;
    fresh->sources = old->sources;
    if (config_check(fresh, err, errlen) != 0)
        goto Error;
    return 0;
Error:
    config_dispose(fresh);
    return -1;
}

static void append(char *buf, size_t cap, const char *path)
{
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n != 0 ? ", " : "", path);
}

static int same(json_t *a, json_t *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && json_equal(a, b));
}

/* Walks two printed configs side by side and sorts each differing leaf path into live or restart. */
static void diff(json_t *a, json_t *b, const char *path, char *live, size_t live_cap, char *restart, size_t restart_cap)
{
    if (json_is_object(a) && json_is_object(b)) {
        const char *key;
        json_t *v;
        char sub[512];
        json_object_foreach(a, key, v)
        {
            snprintf(sub, sizeof(sub), "%s%s%s", path, *path != '\0' ? "." : "", key);
            json_t *w = json_object_get(b, key);
            if (w == NULL || (strcmp(path, "parties") == 0 && (!same(json_object_get(v, "kind"), json_object_get(w, "kind")) ||
                                                              !same(json_object_get(v, "module"), json_object_get(w, "module")))))
                append(restart, restart_cap, sub); /* a party gone, or another kind or module */
            else
                diff(v, w, sub, live, live_cap, restart, restart_cap);
        }
        json_object_foreach(b, key, v)
        {
            if (json_object_get(a, key) == NULL) {
                snprintf(sub, sizeof(sub), "%s%s%s", path, *path != '\0' ? "." : "", key);
                /* a var added to a party that stays is live; a new party or anything else needs a restart */
                if (is_live(sub))
                    append(live, live_cap, sub);
                else
                    append(restart, restart_cap, sub);
            }
        }
        return;
    }
    if (json_equal(a, b))
        return;
    if (is_live(path))
        append(live, live_cap, path);
    else
        append(restart, restart_cap, path);
}

void config_diff(const config_t *old, const config_t *fresh, char *live, size_t live_cap, char *restart, size_t restart_cap)
{
    *live = *restart = '\0';
    char *ta = config_to_json(old), *tb = config_to_json(fresh);
    json_t *a = json_loads(ta, 0, NULL), *b = json_loads(tb, 0, NULL);
    json_object_del(a, "sources");
    json_object_del(b, "sources");
    diff(a, b, "", live, live_cap, restart, restart_cap);
    json_decref(a);
    json_decref(b);
    free(ta);
    free(tb);
    /* the printed token is "(hidden)": compare the secrets themselves */
    int had = old->admin_token != NULL, has = fresh->admin_token != NULL;
    if (had && has && strcmp(old->admin_token, fresh->admin_token) != 0)
        append(live, live_cap, "admin.token");
}

static void swap_str(char **a, char **b)
{
    char *t = *a;
    *a = *b;
    *b = t;
}

/* The vars a reload replaced, kept for as long as the process runs (see config_apply_live); reachable from here, so
 * that a leak checker does not count them. */
static struct st_retired_t {
    config_var_t *vars;
    struct st_retired_t *next;
} *retired;

void config_apply_live(config_t *conf, config_t *fresh)
{
    swap_str(&conf->admin_token, &fresh->admin_token);
    swap_str(&conf->tls_cert, &fresh->tls_cert); /* the files are read again by the router in any case */
    swap_str(&conf->tls_key, &fresh->tls_key);
    config_origins_t t = conf->origins;
    conf->origins = fresh->origins;
    fresh->origins = t;
    conf->limits.connections_per_room = fresh->limits.connections_per_room;
    conf->limits.rooms_in_memory = fresh->limits.rooms_in_memory;
    conf->limits.connections_per_ip = fresh->limits.connections_per_ip;
    conf->limits.connects_per_ip_per_s = fresh->limits.connects_per_ip_per_s;
    conf->timers.idle_ms = fresh->timers.idle_ms;
    conf->timers.alarm_retry_ms = fresh->timers.alarm_retry_ms;
    conf->timers.drain_ms = fresh->timers.drain_ms;
    conf->timers.stall_ms = fresh->timers.stall_ms;
    conf->timers.stall_kill_ms = fresh->timers.stall_kill_ms;
    conf->timers.quarantine_ms = fresh->timers.quarantine_ms;
    for (size_t i = 0; i < conf->num_parties; ++i) {
        config_party_t *p = &conf->parties[i];
        for (size_t k = 0; k < fresh->num_parties; ++k) {
            config_party_t *q = &fresh->parties[k];
            if (strcmp(p->name, q->name) != 0)
                continue;
            /* A party's code may hold a var's value (party_var gives the string itself), so the old ones are kept: a
             * reload keeps the vars it replaces, which a reload a minute would take years to notice. */
            struct st_retired_t *r = xmalloc(sizeof(*r));
            *r = (struct st_retired_t){p->vars, retired};
            retired = r;
            p->vars = q->vars;
            p->num_vars = q->num_vars;
            q->vars = NULL;
            q->num_vars = 0;
            config_origins_t o = p->origins;
            p->origins = q->origins;
            q->origins = o;
        }
    }
}

int config_reload_fd(config_t *conf, int fd, char *err, size_t errlen)
{
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size > (16 << 20)) {
        snprintf(err, errlen, "reload: cannot read the configuration handed over: %s", strerror(errno));
        return -1;
    }
    size_t len = (size_t)st.st_size, got = 0;
    char *text = xmalloc(len + 1);
    while (got < len) {
        ssize_t r = pread(fd, text + got, len - got, (off_t)got);
        if (r <= 0) {
            snprintf(err, errlen, "reload: cannot read the configuration handed over: %s", r == 0 ? "short" : strerror(errno));
            free(text);
            return -1;
        }
        got += (size_t)r;
    }
    config_t fresh;
    /* an empty text: the node runs without a file (the environment may still say something new) */
    int r = config_reread(conf, len != 0 ? text : NULL, len, &fresh, err, errlen);
    free(text);
    if (r != 0)
        return -1;
    config_apply_live(conf, &fresh);
    config_dispose(&fresh);
    return 0;
}
