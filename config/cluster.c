/*
 * cluster.c — the "cluster" key (config_cluster.h), syntax only: what the node will do with it is cluster/'s business.
 */
#include "config_cluster.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base.h"

static int fail(char *err, size_t errlen, const char *source, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(char *err, size_t errlen, const char *source, const char *field, const char *fmt, ...)
{
    int n = snprintf(err, errlen, "%s: cluster%s%s: ", source, *field ? "." : "", field);
    if (n >= 0 && (size_t)n < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* an etcd key segment: the node id and the cluster name appear in keys and log lines */
static int id_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; ++i)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' ||
              s[i] == '_' || s[i] == '.'))
            return 0;
    return 1;
}

static int hostport_split(const char *s, char **host, int *port)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s)
        return -1;
    const char *h = s, *he = colon;
    if (*h == '[') {
        if (he[-1] != ']')
            return -1;
        ++h, --he;
    }
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || colon[1] == '\0' || p < 1 || p > 65535 || he <= h)
        return -1;
    free(*host);
    *host = xstrndup(h, (size_t)(he - h));
    *port = (int)p;
    return 0;
}

static int is_loopback(const char *host)
{
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

static void set_string(char **out, const char *s)
{
    free(*out);
    *out = xstrdup(s);
}

int config_cluster_apply(config_cluster_t *cl, const void *json, const char *source, char *err, size_t errlen)
{
    static const char *const keys[] = {"etcd", "name", "node", "peer", "secret", "lease_ttl_ms", NULL};
    json_t *v = (json_t *)json, *f;
    const char *key;
    if (!json_is_object(v))
        return fail(err, errlen, source, "", "expected an object");
    json_object_foreach(v, key, f)
    {
        size_t i = 0;
        while (keys[i] != NULL && strcmp(keys[i], key) != 0)
            ++i;
        if (keys[i] == NULL)
            return fail(err, errlen, source, key, "unknown key");
    }
    if (!cl->enabled) { /* the defaults, the first time the key is seen */
        cl->enabled = 1;
        cl->lease_ttl_ms = 10000;
        set_string(&cl->name, "partyd");
        char host[256] = "";
        gethostname(host, sizeof(host) - 1);
        set_string(&cl->node, host);
        set_string(&cl->peer_host, "127.0.0.1");
        cl->peer_port = 7999;
    }
    if ((f = json_object_get(v, "etcd")) != NULL) {
        if (!json_is_array(f) || json_array_size(f) == 0 || json_array_size(f) > CONFIG_CLUSTER_MAX_ETCD)
            return fail(err, errlen, source, "etcd", "expected a list of 1 to %d endpoints (\"http://host:port\")",
                        CONFIG_CLUSTER_MAX_ETCD);
        for (size_t i = 0; i < json_array_size(f); ++i) {
            const char *s = json_string_value(json_array_get(f, i));
            if (s == NULL || (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) || strlen(s) > 256 ||
                strchr(s + 8, '/') != NULL)
                return fail(err, errlen, source, "etcd", "entry %zu: expected \"http://host:port\" or \"https://host:port\"", i);
        }
        for (size_t i = 0; i < cl->num_etcd; ++i)
            free(cl->etcd[i]);
        free(cl->etcd);
        cl->num_etcd = json_array_size(f);
        cl->etcd = xcalloc(cl->num_etcd, sizeof(char *));
        for (size_t i = 0; i < cl->num_etcd; ++i)
            cl->etcd[i] = xstrdup(json_string_value(json_array_get(f, i)));
    }
    if ((f = json_object_get(v, "name")) != NULL) {
        if (!json_is_string(f) || !id_valid(json_string_value(f)))
            return fail(err, errlen, source, "name", "expected 1 to 64 of A-Z a-z 0-9 _ - .");
        set_string(&cl->name, json_string_value(f));
    }
    if ((f = json_object_get(v, "node")) != NULL) {
        if (!json_is_string(f) || !id_valid(json_string_value(f)))
            return fail(err, errlen, source, "node", "expected 1 to 64 of A-Z a-z 0-9 _ - .");
        set_string(&cl->node, json_string_value(f));
    }
    if ((f = json_object_get(v, "peer")) != NULL) {
        json_t *listen = json_object_get(f, "listen"), *adv = json_object_get(f, "advertise");
        if (!json_is_object(f))
            return fail(err, errlen, source, "peer", "expected an object {\"listen\", \"advertise\"}");
        json_t *pv;
        json_object_foreach(f, key, pv) if (strcmp(key, "listen") != 0 && strcmp(key, "advertise") != 0) return fail(
            err, errlen, source, "peer", "unknown key %s", key);
        if (listen != NULL &&
            (!json_is_string(listen) || hostport_split(json_string_value(listen), &cl->peer_host, &cl->peer_port) != 0))
            return fail(err, errlen, source, "peer.listen", "expected \"host:port\" (port 1 to 65535)");
        if (adv != NULL) {
            char *h = NULL;
            int p;
            if (!json_is_string(adv) || hostport_split(json_string_value(adv), &h, &p) != 0) {
                free(h);
                return fail(err, errlen, source, "peer.advertise", "expected \"host:port\" (port 1 to 65535)");
            }
            free(h);
            set_string(&cl->peer_advertise, json_string_value(adv));
        }
    }
    if ((f = json_object_get(v, "secret")) != NULL) {
        json_t *env = json_object_get(f, "env");
        if (json_is_string(f) && json_string_length(f) > 0) {
            set_string(&cl->secret, json_string_value(f));
        } else if (json_is_object(f) && json_object_size(f) == 1 && json_is_string(env)) {
            const char *val = getenv(json_string_value(env));
            free(cl->secret);
            cl->secret = val != NULL && *val != '\0' ? xstrdup(val) : NULL;
        } else {
            return fail(err, errlen, source, "secret", "expected a string or {\"env\": NAME}");
        }
    }
    if ((f = json_object_get(v, "lease_ttl_ms")) != NULL) {
        if (!json_is_integer(f) || json_integer_value(f) < 2000 || json_integer_value(f) > 600000)
            return fail(err, errlen, source, "lease_ttl_ms", "expected an integer from 2000 to 600000 (etcd's minimum TTL is 2 s)");
        cl->lease_ttl_ms = (unsigned)json_integer_value(f);
    }
    if (cl->num_etcd == 0)
        return fail(err, errlen, source, "etcd", "expected a list of 1 to %d endpoints (\"http://host:port\")",
                    CONFIG_CLUSTER_MAX_ETCD);
    if (cl->secret == NULL && !is_loopback(cl->peer_host))
        return fail(err, errlen, source, "secret",
                    "needed when peer.listen (%s) is not a loopback address: peers authenticate with it", cl->peer_host);
    return 0;
}

void config_cluster_dispose(config_cluster_t *cl)
{
    for (size_t i = 0; i < cl->num_etcd; ++i)
        free(cl->etcd[i]);
    free(cl->etcd);
    free(cl->name);
    free(cl->node);
    free(cl->peer_host);
    free(cl->peer_advertise);
    free(cl->secret);
    memset(cl, 0, sizeof(*cl));
}
