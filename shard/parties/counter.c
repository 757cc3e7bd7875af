/*
 * counter.c — the counter party: HTTP, storage and the alarm in a few lines, and it hibernates.
 *
 *   GET              → 200 {"room","count","alarmAt"}   (alarmAt: epoch ms, or null)
 *   POST             → count + 1, stored, broadcast {"type":"count","count":N}; 200 {"room","count"}
 *   POST ?alarm=MS   → the room's alarm set MS ms from now (not counted); 200 {"room","count","alarmAt"}
 *   the alarm        → count + 1, stored, broadcast {"type":"alarm","count":N}
 *   WebSocket        → {"type":"count","count":N} on connect and with every change
 *   "increment"      (a text message) → count + 1, stored, broadcast as for POST (the sender gets it too: it is the
 *                    acknowledgement, held by the output gate until the write is committed); anything else sent gets
 *                    {"type":"error"}
 *
 * The count is read from storage by on_start, so an evicted room (or a restarted node) goes on where it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parties.h"

typedef struct st_counter_t {
    long long count;
} counter_t;

static int counter_on_start(party_room_t *room)
{
    counter_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return -ENOMEM;
    party_room_set_data(room, c);
    void *v;
    size_t len;
    int r = party_storage_get(room, "count", 5, &v, &len);
    if (r == 0) {
        c->count = strtoll(v, NULL, 10);
        free(v);
    } else if (r != -ENOENT) {
        return r;
    }
    return 0;
}

static void counter_on_stop(party_room_t *room)
{
    free(party_room_data(room));
}

static json_t *alarm_json(party_room_t *room)
{
    uint64_t at;
    return party_alarm_get(room, &at) == 0 ? json_integer((json_int_t)at) : json_null();
}

/* count + 1, stored and announced as {"type":TYPE,"count":N}. */
static int increment(party_room_t *room, const char *type)
{
    counter_t *c = party_room_data(room);
    char text[32];
    int n = snprintf(text, sizeof(text), "%lld", c->count + 1);
    int r = party_storage_put(room, "count", 5, text, (size_t)n);
    if (r != 0)
        return r;
    ++c->count;
    char msg[64];
    n = snprintf(msg, sizeof(msg), "{\"type\":\"%s\",\"count\":%lld}", type, c->count);
    party_broadcast(room, msg, (size_t)n, 0, NULL, 0);
    return 0;
}

static int counter_on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    (void)req;
    counter_t *c = party_room_data(room);
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "{\"type\":\"count\",\"count\":%lld}", c->count);
    party_send(conn, msg, (size_t)n, 0);
    return 0;
}

static void counter_on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    static const char bad[] = "{\"type\":\"error\",\"error\":\"the counter takes one message: increment\"}";
    static const char failed[] = "{\"type\":\"error\",\"error\":\"the count could not be stored\"}";
    if (binary || len != sizeof("increment") - 1 || memcmp(data, "increment", len) != 0)
        party_send(conn, bad, sizeof(bad) - 1, 0);
    else if (increment(room, "count") != 0)
        party_send(conn, failed, sizeof(failed) - 1, 0);
}

static void counter_on_request(party_room_t *room, party_request_t *req)
{
    counter_t *c = party_room_data(room);
    const char *method = party_request_method(req);
    if (strcmp(method, "GET") == 0) {
        parties_respond_json(
            req, 200,
            json_pack("{s:s, s:I, s:o}", "room", party_room_id(room), "count", (json_int_t)c->count, "alarmAt", alarm_json(room)));
        return;
    }
    if (strcmp(method, "POST") != 0) {
        party_response_header(req, "allow", "GET, POST");
        parties_respond_json(req, 405, json_pack("{s:s}", "error", "method not allowed"));
        return;
    }
    char ms[24];
    long n = party_request_query_param(req, "alarm", ms, sizeof(ms));
    if (n != -1) {
        char *end;
        long long delay = n > 0 ? strtoll(ms, &end, 10) : -1;
        if (n <= 0 || *end != '\0' || delay < 0 || delay > 365LL * 24 * 3600 * 1000) {
            parties_respond_json(req, 400, json_pack("{s:s}", "error", "alarm must be a number of milliseconds"));
            return;
        }
        party_alarm_set(room, party_now_ms() + (uint64_t)delay);
        parties_respond_json(
            req, 200,
            json_pack("{s:s, s:I, s:o}", "room", party_room_id(room), "count", (json_int_t)c->count, "alarmAt", alarm_json(room)));
        return;
    }
    if (increment(room, "count") != 0) {
        parties_respond_json(req, 500, json_pack("{s:s}", "error", "the count could not be stored"));
        return;
    }
    parties_respond_json(req, 200, json_pack("{s:s, s:I}", "room", party_room_id(room), "count", (json_int_t)c->count));
}

static int counter_on_alarm(party_room_t *room)
{
    return increment(room, "alarm");
}

const party_t party_counter = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "counter",
    .on_start = counter_on_start,
    .on_stop = counter_on_stop,
    .on_connect = counter_on_connect,
    .on_message = counter_on_message,
    .on_request = counter_on_request,
    .on_alarm = counter_on_alarm,
    .hibernate = 1,
};
