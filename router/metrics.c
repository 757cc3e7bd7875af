/*
 * metrics.c — GET /metrics on the admin listener: Prometheus text (docs/operating.md's table is exact), from the
 * router's own counters, every shard's stats (an ADMIN "stats" call, admin.c) and /proc for every partyd process.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "admin_int.h"
#include "ctl.h"

/* ---- /metrics ---- */

static void metric(base_buf_t *b, const char *name, const char *type, const char *help)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
    base_buf_append(b, line, (size_t)n);
}

static void sample(base_buf_t *b, const char *name, const char *labels, double v)
{
    char line[512];
    int n = snprintf(line, sizeof(line), "%s%s%s%s %.17g\n", name, labels[0] != '\0' ? "{" : "", labels,
                     labels[0] != '\0' ? "}" : "", v);
    base_buf_append(b, line, (size_t)n);
}

/* A histogram summed over the shards' answers (field `field`), as Prometheus cumulative buckets. */
static void histogram(base_buf_t *b, admin_call_t *c, const char *field, const char *name, const char *help)
{
    metric(b, name, "histogram", help);
    double buckets[BASE_HIST_NUM + 1] = {0}, sum = 0, count = 0;
    for (int i = 0; i < c->num; ++i) {
        json_t *h = c->status[i] == 200 ? json_object_get(c->result[i], field) : NULL;
        json_t *counts = json_object_get(h, "counts");
        for (size_t k = 0; k <= BASE_HIST_NUM; ++k)
            buckets[k] += (double)json_integer_value(json_array_get(counts, k));
        sum += json_real_value(json_object_get(h, "sum"));
        count += (double)json_integer_value(json_object_get(h, "count"));
    }
    char labels[64], bucket_name[128];
    snprintf(bucket_name, sizeof(bucket_name), "%s_bucket", name);
    double cumulative = 0;
    for (size_t k = 0; k <= BASE_HIST_NUM; ++k) {
        cumulative += buckets[k];
        if (k < BASE_HIST_NUM)
            snprintf(labels, sizeof(labels), "le=\"%g\"", base_hist_bounds[k]);
        else
            snprintf(labels, sizeof(labels), "le=\"+Inf\"");
        sample(b, bucket_name, labels, cumulative);
    }
    char n2[128];
    snprintf(n2, sizeof(n2), "%s_sum", name);
    sample(b, n2, "", sum);
    snprintf(n2, sizeof(n2), "%s_count", name);
    sample(b, n2, "", count);
}

/* The shards' per-party figures, summed per party (`party` label). */
static void party_metrics(base_buf_t *b, admin_call_t *c)
{
    static const struct {
        const char *name, *type, *help, *field, *direction;
    } fams[] = {
        {"partyd_party_connections", "gauge", "Connections held by the party's rooms.", "connections", NULL},
        {"partyd_party_messages_total", "counter",
         "Messages delivered to the party's rooms (in) and sent by them, per recipient (out).", "messages_in", "in"},
        {NULL, NULL, NULL, "messages_out", "out"},
        {"partyd_party_message_bytes_total", "counter", "Payload bytes of those messages.", "bytes_in", "in"},
        {NULL, NULL, NULL, "bytes_out", "out"},
        {"partyd_party_storage_writes_total", "counter", "Storage puts and deletes the party's rooms staged.", "storage_writes",
         NULL},
    };
    const config_t *conf = router.conf;
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); ++f) {
        if (fams[f].name != NULL)
            metric(b, fams[f].name, fams[f].type, fams[f].help);
        const char *name = fams[f].name != NULL ? fams[f].name : fams[f - 1].name;
        for (size_t p = 0; p < conf->num_parties; ++p) {
            double sum = 0;
            for (int i = 0; i < c->num; ++i) {
                json_t *parties = c->status[i] == 200 ? json_object_get(c->result[i], "parties") : NULL;
                sum += (double)json_integer_value(json_object_get(json_object_get(parties, conf->parties[p].name), fams[f].field));
            }
            char l[160];
            /* party names are [a-z0-9-] (proto/names.c): nothing to escape in a label value */
            if (fams[f].direction != NULL)
                snprintf(l, sizeof(l), "party=\"%s\",direction=\"%s\"", conf->parties[p].name, fams[f].direction);
            else
                snprintf(l, sizeof(l), "party=\"%s\"", conf->parties[p].name);
            sample(b, name, l, sum);
        }
    }
}

void admin_done_metrics(admin_call_t *c)
{
    base_buf_t b;
    base_buf_init(&b);
    const ws_stats_t *ws = ws_stats();
    size_t up = 0, stalled = admin_num_stalled();
    for (int k = 0; k < router.num_shards; ++k)
        up += router.shards[router.ids[k]].state == SHARD_UP;
    metric(&b, "partyd_shards", "gauge", "Shards by state.");
    sample(&b, "partyd_shards", "state=\"up\"", (double)(up - stalled));
    sample(&b, "partyd_shards", "state=\"stalled\"", (double)stalled);
    sample(&b, "partyd_shards", "state=\"down\"", (double)((size_t)router.num_shards - up));
    metric(&b, "partyd_shard_stalled", "gauge", "1 while the shard's loop has not turned for timers.stall_ms.");
    for (int k = 0; k < router.num_shards; ++k) {
        char l[32];
        snprintf(l, sizeof(l), "shard=\"%d\"", router.ids[k]);
        sample(&b, "partyd_shard_stalled", l, (double)router.shards[router.ids[k]].stalled);
    }
    metric(&b, "partyd_quarantined_rooms", "gauge", "Rooms quarantined now for crashing their shard.");
    sample(&b, "partyd_quarantined_rooms", "", (double)quarantine_count());
    metric(&b, "partyd_quarantines_total", "counter", "Quarantines since the router started.");
    sample(&b, "partyd_quarantines_total", "", (double)quarantine_total());
    metric(&b, "partyd_build_info", "gauge", "Always 1; the version and protocols in labels.");
    {
        char l[128];
        snprintf(l, sizeof(l), "version=\"%s\",protocol=\"%d\",party_abi=\"%d\"", PARTYD_VERSION, PROTO_VERSION, PARTY_ABI_VERSION);
        sample(&b, "partyd_build_info", l, 1);
    }
    /* a gauge may not share its family with the counter partyd_connections_total: hence _open */
    metric(&b, "partyd_connections_open", "gauge", "Open WebSocket connections (router).");
    sample(&b, "partyd_connections_open", "", (double)ws->open);
    metric(&b, "partyd_connections_total", "counter", "WebSocket connections accepted.");
    sample(&b, "partyd_connections_total", "", (double)ws->accepted);
    metric(&b, "partyd_websocket_messages_total", "counter", "WebSocket messages, by direction.");
    sample(&b, "partyd_websocket_messages_total", "direction=\"in\"", (double)ws->messages_in);
    sample(&b, "partyd_websocket_messages_total", "direction=\"out\"", (double)ws->messages_out);
    metric(&b, "partyd_websocket_bytes_total", "counter", "WebSocket bytes on the wire, by direction.");
    sample(&b, "partyd_websocket_bytes_total", "direction=\"in\"", (double)ws->bytes_in);
    sample(&b, "partyd_websocket_bytes_total", "direction=\"out\"", (double)ws->bytes_out);
    metric(&b, "partyd_websocket_slow_consumers_total", "counter", "Connections closed for not reading (1008).");
    sample(&b, "partyd_websocket_slow_consumers_total", "", (double)ws->slow_consumers);
    metric(&b, "partyd_http_responses_total", "counter", "HTTP responses of the main listener, by status class.");
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    for (int k = 0; k < 5; ++k) {
        char l[32];
        snprintf(l, sizeof(l), "class=\"%s\"", classes[k]);
        sample(&b, "partyd_http_responses_total", l, (double)router.http_responses[k]);
    }

    static const struct {
        const char *field, *name, *type, *help;
    } per_shard[] = {
        {"rooms", "partyd_rooms", "gauge", "Rooms in memory."},
        {"rooms_hibernating", "partyd_rooms_hibernating", "gauge", "Rooms hibernating with open connections."},
        {"evictions", "partyd_room_evictions_total", "counter", "Rooms evicted from memory."},
        {"connections", "partyd_shard_connections", "gauge", "Connections held by the shard's rooms."},
        {"messages_in", "partyd_room_messages_in_total", "counter", "Messages delivered to rooms."},
        {"messages_out", "partyd_room_messages_out_total", "counter", "Messages sent by rooms (per recipient)."},
        {"bytes_in", "partyd_room_message_bytes_in_total", "counter", "Payload bytes of the messages delivered to rooms."},
        {"bytes_out", "partyd_room_message_bytes_out_total", "counter",
         "Payload bytes of the messages rooms sent (per recipient)."},
        {"storage_bytes", "partyd_storage_bytes", "gauge", "RocksDB's estimate of live data."},
        {"commits", "partyd_storage_commits_total", "counter", "Storage batches committed."},
        {"writes", "partyd_storage_writes_total", "counter", "Storage writes committed."},
        {"failed_commits", "partyd_storage_failed_commits_total", "counter", "Storage commits that failed."},
    };
    for (size_t k = 0; k < sizeof(per_shard) / sizeof(per_shard[0]); ++k) {
        metric(&b, per_shard[k].name, per_shard[k].type, per_shard[k].help);
        for (int i = 0; i < c->num; ++i) {
            json_t *v = c->status[i] == 200 ? json_object_get(c->result[i], per_shard[k].field) : NULL;
            if (v == NULL)
                continue;
            char l[32];
            snprintf(l, sizeof(l), "shard=\"%d\"", c->ids[i]);
            sample(&b, per_shard[k].name, l, (double)json_integer_value(v));
        }
    }
    metric(&b, "partyd_shard_restarts_total", "counter", "Shard restarts.");
    for (int k = 0; k < router.num_shards; ++k) {
        char l[32];
        snprintf(l, sizeof(l), "shard=\"%d\"", router.ids[k]);
        sample(&b, "partyd_shard_restarts_total", l, (double)router.shards[router.ids[k]].restarts);
    }
    party_metrics(&b, c);
    procmetrics_write(&b);
    histogram(&b, c, "latency", "partyd_event_latency_seconds",
              "From a client's message, connection or request reaching its shard to the release of what it produced.");
    histogram(&b, c, "wake", "partyd_room_wake_seconds", "How long a room took to start (on_start, storage reads).");

    h2o_req_t *req = c->req;
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = base_buf_len(&b);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("text/plain; version=0.0.4"));
    h2o_iovec_t body = h2o_strdup(&req->pool, base_buf_head(&b), base_buf_len(&b));
    base_buf_dispose(&b);
    h2o_send_inline(req, body.base, body.len);
}

