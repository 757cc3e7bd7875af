/*
 * config.c — the embedded default, a configuration's life (default, dispose) and the lookups every process makes on
 * it (see config.h). Reading partyd.json is read.c, the command line args.c, --print-config print.c.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base.h"
#include "config_int.h"
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
    "             \"fetch_ms\": 30000, \"request_ms\": 60000, \"stall_ms\": 5000, \"stall_kill_ms\": 30000, \"quarantine_ms\": 10000},\n"
    "  \"parties\": {\"main\": {\"kind\": \"chat\"}, \"relay\": {\"kind\": \"relay\"}, \"counter\": {\"kind\": \"counter\"}},\n"
    "  \"log_level\": \"info\"\n"
    "}\n";

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
    config_cluster_dispose(&c->cluster);
    config_cors_free(&c->cors);
    free(c->source);
    cfg_parties_free(c);
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

const partydef_t *partydefs_find(const partydefs_t *d, const char *name, size_t len)
{
    for (size_t i = 0; i < d->num_defs; ++i)
        if (strlen(d->defs[i].conf->name) == len && memcmp(d->defs[i].conf->name, name, len) == 0)
            return &d->defs[i];
    return NULL;
}
