/*
 * env.c — the configuration from the environment: PARTYD_HOST, PARTYD_PORT, PARTYD_DATA_DIR, PARTYD_SHARDS and
 * PARTYD_ADMIN, what a container or a Kubernetes pod sets per instance (see config.h).
 *
 * Each variable is turned into the JSON the file would hold and overlaid with config_apply_json, so a value from the
 * environment is checked exactly as the same value in partyd.json, and its errors name the variable.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

typedef struct st_env_var_t {
    const char *name;
    const char *source; /* what --print-config's "sources" says */
    const char *section, *key; /* section NULL: a top-level key */
    int number;                /* digits become a JSON integer (else the string goes through, and fails the check) */
} env_var_t;

static const env_var_t env_vars[] = {
    {"PARTYD_HOST", "env PARTYD_HOST", "listen", "host", 0},
    {"PARTYD_PORT", "env PARTYD_PORT", "listen", "port", 1},
    {"PARTYD_DATA_DIR", "env PARTYD_DATA_DIR", NULL, "data_dir", 0},
    {"PARTYD_SHARDS", "env PARTYD_SHARDS", NULL, "shards", 1},
    {"PARTYD_ADMIN", "env PARTYD_ADMIN", "admin", "listen", 0},
    {NULL, NULL, NULL, NULL, 0},
};

/* "http://127.0.0.1:1998/" (as partyctl takes it) → "127.0.0.1:1998" */
static const char *strip_url(const char *s, char *buf, size_t len)
{
    const char *p = strstr(s, "://");
    if (p == NULL)
        return s;
    snprintf(buf, len, "%s", p + 3);
    buf[strcspn(buf, "/")] = '\0';
    return buf;
}

int config_apply_env(config_t *c, char *err, size_t errlen)
{
    for (const env_var_t *v = env_vars; v->name != NULL; ++v) {
        const char *val = getenv(v->name);
        char buf[512], source[64];
        if (val == NULL || *val == '\0') /* set but empty: unset, as a shell's VAR= leaves it */
            continue;
        if (strcmp(v->name, "PARTYD_ADMIN") == 0)
            val = strip_url(val, buf, sizeof(buf));
        json_t *x;
        char *end;
        long long n = strtoll(val, &end, 10);
        if (v->number && *end == '\0')
            x = json_integer(n);
        else
            x = json_string(val);
        if (x == NULL) {
            snprintf(err, errlen, "environment %s: not UTF-8", v->name);
            return -1;
        }
        json_t *root = v->section != NULL ? json_pack("{s:{s:o}}", v->section, v->key, x) : json_pack("{s:o}", v->key, x);
        char *text = json_dumps(root, 0);
        json_decref(root);
        snprintf(source, sizeof(source), "environment %s", v->name);
        /* relative paths from the environment are relative to the working directory, as a flag's are */
        int r = config_apply_json(c, text, strlen(text), source, NULL, err, errlen);
        free(text);
        if (r != 0)
            return -1;
        if (strcmp(v->key, "host") == 0)
            c->sources.host = v->source;
        else if (strcmp(v->key, "port") == 0)
            c->sources.port = v->source;
        else if (strcmp(v->key, "data_dir") == 0)
            c->sources.data_dir = v->source;
        else if (strcmp(v->key, "shards") == 0)
            c->sources.shards = v->source;
        else
            c->sources.admin = v->source;
    }
    return 0;
}
