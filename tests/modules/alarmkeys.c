/*
 * alarmkeys.c — a test party (tests/integration/failure-moves.test.mjs): a room of many keys with an alarm, whose
 * on_alarm records how many of the room's keys it saw, so the test can tell whether an alarm ran before its room's
 * data was whole, on which shard, and how many times.
 *
 *   PUT ?keys=N&size=S&at=MS   writes the keys k000.. k(N-1), S bytes each, and sets the alarm at MS (wall ms)
 *   GET                        {"keys": the number of k keys, "alarm": 0 or 1 (an alarm is set)}
 *   on_alarm                   appends "party/room keys pid\n" to the file $PARTYD_TEST_ALARM_LOG (one write)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "party.h"

static int count_cb(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    (void)key, (void)key_len, (void)value, (void)value_len;
    ++*(long *)arg;
    return 0;
}

static long count_keys(party_room_t *room)
{
    party_list_t o = {.prefix = "k", .prefix_len = 1};
    long n = 0;
    if (party_storage_list(room, &o, count_cb, &n) < 0)
        return -1;
    return n;
}

static void on_request(party_room_t *room, party_request_t *req)
{
    char arg[32];
    if (strcmp(party_request_method(req), "PUT") == 0) {
        long keys = party_request_query_param(req, "keys", arg, sizeof(arg)) > 0 ? atol(arg) : 1;
        long size = party_request_query_param(req, "size", arg, sizeof(arg)) > 0 ? atol(arg) : 1;
        unsigned long long at = party_request_query_param(req, "at", arg, sizeof(arg)) > 0 ? strtoull(arg, NULL, 10) : 0;
        if (keys < 0 || keys > 1000 || size < 0 || size > PARTY_VALUE_MAX) {
            party_respond(req, 400, "text/plain", "bad", 3);
            return;
        }
        char *v = malloc((size_t)size + 1);
        memset(v, 'x', (size_t)size);
        for (long i = 0; i < keys; ++i) {
            char k[16];
            int kl = snprintf(k, sizeof(k), "k%03ld", i);
            party_storage_put(room, k, (size_t)kl, v, (size_t)size);
        }
        free(v);
        if (at != 0)
            party_alarm_set(room, at);
        party_respond(req, 200, "text/plain", "ok", 2);
        return;
    }
    uint64_t at;
    char body[64];
    int n = snprintf(body, sizeof(body), "{\"keys\":%ld,\"alarm\":%d}", count_keys(room), party_alarm_get(room, &at) == 0);
    party_respond(req, 200, "application/json", body, (size_t)n);
}

static int on_alarm(party_room_t *room)
{
    const char *path = getenv("PARTYD_TEST_ALARM_LOG");
    if (path == NULL)
        return 0;
    char line[512];
    int n = snprintf(line, sizeof(line), "%s/%s %ld %d\n", party_room_party(room), party_room_id(room), count_keys(room),
                     (int)getpid());
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd != -1) {
        if (write(fd, line, (size_t)n) != n)
            n = -1;
        close(fd);
    }
    return 0;
}

PARTY_EXPORT const party_t partyd_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "alarmkeys",
    .on_request = on_request,
    .on_alarm = on_alarm,
};
