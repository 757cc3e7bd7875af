/*
 * print.c — the effective configuration as JSON, for --print-config (see config.h, config_to_json).
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

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
        json_t *o = p->module != NULL   ? json_pack("{s:s}", "module", p->module)
                    : p->script != NULL ? json_pack("{s:s}", "script", p->script)
                                        : json_pack("{s:s}", "kind", p->kind);
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
    json_object_set_new(timers, "request_ms", json_integer(c->timers.request_ms));
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
    /* where the per-instance values came from: default, file, env VAR or flag --x (a parallel map, not comments) */
    json_object_set_new(root, "sources",
                        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "config", c->source, "listen.host", c->sources.host,
                                  "listen.port", c->sources.port, "data_dir", c->sources.data_dir, "shards",
                                  c->sources.shards, "admin.listen", c->sources.admin));
    /* the token itself is never printed */
    if (c->admin_token != NULL)
        json_object_set_new(json_object_get(root, "admin"), "token", json_string("(hidden)"));
    char *text = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(root);
    return text;
}
