/*
 * test_room.c — the room layer (shard/room.c) on a real RocksDB, driven frame by frame the way shard.c drives it, with
 * the link to the router replaced by a recorder: what rooms emit is checked frame by frame. Covered here because a
 * built-in party cannot make them happen on demand: an alarm whose callback fails is retried with a doubling delay and
 * given up after 6 tries; a failed commit resets the rooms that wrote and answers what they held; rooms_in_memory
 * evicts the least recently used idle room. Time is the test's: the room layer's clock is set (rooms_set_clock) and
 * advanced by the test, never slept for.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shard.h"

/* ---- the recorder standing in for shard.c ---- */

typedef struct st_frame_t {
    proto_type_t type;
    uint64_t id;
    int status, code;
    char data[256];
} frame_t;

static frame_t frames[256];
static size_t num_frames;
static unsigned gates;
static uint64_t pass;
static config_t conf;

int shard_emit(const proto_msg_t *m)
{
    if (num_frames < sizeof(frames) / sizeof(frames[0])) {
        frame_t *f = &frames[num_frames++];
        f->type = m->type;
        f->id = m->id;
        f->status = m->status;
        f->code = m->code;
        size_t n = m->data.len < sizeof(f->data) - 1 ? m->data.len : sizeof(f->data) - 1;
        memcpy(f->data, m->data.base, n);
        f->data[n] = '\0';
    }
    return 0;
}

void shard_event_begin(void)
{
}

void shard_event_end(void)
{
}

int shard_emit_answer(const proto_msg_t *m)
{
    return shard_emit(m);
}

int shard_emit_verdict(const proto_msg_t *m)
{
    return shard_emit(m);
}

void shard_beat_room(const char *key, size_t len)
{
    (void)key;
    (void)len;
}

void shard_gate_event(void)
{
    ++gates;
}

uint64_t shard_pass(void)
{
    return pass;
}

const config_t *shard_config(void)
{
    return &conf;
}

static uint64_t wake_at = UINT64_MAX; /* what room.c last asked for */

void shard_alarms_wake_at(uint64_t wall_ms)
{
    wake_at = wall_ms;
}

/* ---- the clock ---- */

static uint64_t clock_mono = 1000000, clock_wall = 1795968000000;

static uint64_t fake_mono_ms(void)
{
    return clock_mono;
}

static uint64_t fake_wall_ms(void)
{
    return clock_wall;
}

static void advance_ms(unsigned ms)
{
    clock_mono += ms;
    clock_wall += ms;
}

/* ---- a party made for the tests ---- */

static struct {
    unsigned starts, stops, alarms;
    unsigned alarm_failures_left;
    uint64_t alarm_times[16];
} seen;

static int t_on_start(party_room_t *room)
{
    (void)room;
    ++seen.starts;
    return 0;
}

static void t_on_stop(party_room_t *room)
{
    (void)room;
    ++seen.stops;
}

static int t_on_alarm(party_room_t *room)
{
    (void)room;
    if (seen.alarms < 16)
        seen.alarm_times[seen.alarms] = party_now_ms();
    ++seen.alarms;
    if (seen.alarm_failures_left > 0) {
        --seen.alarm_failures_left;
        return -1;
    }
    return 0;
}

/* GET: answers 200; POST: writes a key then answers; PUT ?alarm: sets the alarm 1 ms ahead. */
static void t_on_request(party_room_t *room, party_request_t *req)
{
    const char *m = party_request_method(req);
    if (strcmp(m, "POST") == 0)
        party_storage_put(room, "k", 1, "v", 1);
    if (strcmp(m, "PUT") == 0)
        party_alarm_set(room, party_now_ms() + 1);
    party_respond(req, 200, "text/plain", "ok", 2);
}

static const party_t test_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "test",
    .on_start = t_on_start,
    .on_stop = t_on_stop,
    .on_request = t_on_request,
    .on_alarm = t_on_alarm,
};

static config_party_t test_party_conf = {.name = "t", .kind = "test", .hibernate = -1};
static partydef_t test_partydef = {.conf = &test_party_conf, .party = &test_party, .kind = "test"};
static const partydefs_t test_partydefs = {&test_partydef, 1};

const partydefs_t *shard_partydefs(void)
{
    return &test_partydefs;
}

/* ---- fixture ---- */

static char dir[64];
static store_t *store;
static config_party_t *default_parties;
static size_t num_default_parties;

static int setup(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof(seen));
    num_frames = 0;
    gates = 0;
    config_init_default(&conf);
    /* the test party only (the defaults are put back for config_dispose to free) */
    default_parties = conf.parties;
    num_default_parties = conf.num_parties;
    conf.num_parties = 1;
    conf.parties = &test_party_conf;
    conf.timers.alarm_retry_ms = 20;
    conf.timers.idle_ms = 100;
    snprintf(dir, sizeof(dir), "/tmp/partyd-test-room-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    char err[256];
    if (store_open(dir, 0, &store, err, sizeof(err)) != 0)
        return -1;
    rooms_set_clock(fake_mono_ms, fake_wall_ms);
    rooms_init(&conf, store);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    rooms_dispose();
    rooms_set_clock(NULL, NULL);
    store_close(store);
    conf.parties = default_parties;
    conf.num_parties = num_default_parties;
    config_dispose(&conf);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void request(uint64_t rid, const char *method, const char *room)
{
    proto_msg_t m = {.type = PROTO_REQUEST,
                     .id = rid,
                     .party = PROTO_STR("t"),
                     .room = proto_str(room, strlen(room)),
                     .method = proto_str(method, strlen(method)),
                     .path = PROTO_STR("/parties/t/x"),
                     .query = PROTO_STR("")};
    rooms_on_request(&m);
    rooms_run_deferred();
}

/* One loop pass: commit, then the next pass. */
static void end_pass(void)
{
    char err[256];
    assert_int_equal(store_commit(store, err, sizeof(err)), 0);
    rooms_on_committed();
    ++pass;
}

/* Runs ticks and passes for `ms` milliseconds of the test's clock, a tick every 5 ms. */
static void run_for(unsigned ms)
{
    for (unsigned t = 0; t < ms; t += 5) {
        rooms_tick();
        end_pass();
        advance_ms(5);
    }
}

static const frame_t *find_frame(proto_type_t type, uint64_t id)
{
    for (size_t i = 0; i < num_frames; ++i)
        if (frames[i].type == type && frames[i].id == id)
            return &frames[i];
    return NULL;
}

/* ---- tests ---- */

static void test_alarm_retries_double_then_succeed(void **state)
{
    (void)state;
    seen.alarm_failures_left = 2;
    request(1, "PUT", "a");
    end_pass();
    run_for(400);
    assert_int_equal(seen.alarms, 3); /* two failures, then success */
    /* retries come after alarm_retry_ms (20), then 40: the gaps grow */
    uint64_t gap1 = seen.alarm_times[1] - seen.alarm_times[0], gap2 = seen.alarm_times[2] - seen.alarm_times[1];
    assert_true(gap1 >= 20 && gap1 <= 25); /* within a tick of the delay */
    assert_true(gap2 >= 40 && gap2 <= 45);
    run_for(200);
    assert_int_equal(seen.alarms, 3); /* done: no more */
}

/* room.c tells the shard when to wake for alarms (shard_alarms_wake_at): at once after a start, never while none is
 * pending, at the earliest one's time when one is set, and again at once after a failed commit. */
static void test_alarm_wakes_the_shard_when_due(void **state)
{
    (void)state;
    assert_true(wake_at == 0); /* rooms_init: look through the index once */
    rooms_fire_alarms();
    assert_true(wake_at == UINT64_MAX); /* nothing stored: nothing to wake for */

    request(1, "PUT", "w1"); /* its alarm 1 ms ahead */
    end_pass();
    assert_true(wake_at == clock_wall + 1);
    uint64_t first = wake_at;
    request(2, "PUT", "w2"); /* a later alarm does not move the wake-up */
    end_pass();
    assert_true(wake_at == first);

    rooms_fire_alarms(); /* not due yet */
    end_pass();
    assert_int_equal(seen.alarms, 0);
    advance_ms(5);
    rooms_fire_alarms();
    end_pass();
    assert_int_equal(seen.alarms, 2); /* both were due */
    assert_true(wake_at == UINT64_MAX);

    request(3, "PUT", "w3");
    char err[256];
    store_commit(store, err, sizeof(err));
    rooms_on_commit_failed(NULL, 0, NULL, 0);
    assert_true(wake_at == 0);
}

static void test_alarm_given_up_after_six_tries(void **state)
{
    (void)state;
    seen.alarm_failures_left = 100;
    request(1, "PUT", "b");
    end_pass();
    /* 20 + 40 + 80 + 160 + 320 ms of backoff before the sixth try */
    run_for(1000);
    assert_int_equal(seen.alarms, 6);
    run_for(700);
    assert_int_equal(seen.alarms, 6);
}

static void test_alarm_survives_eviction(void **state)
{
    (void)state;
    request(1, "PUT", "c");
    end_pass();
    assert_int_equal(seen.starts, 1);
    /* stop the room right away (as eviction would), then the alarm starts it again */
    rooms_dispose();
    rooms_init(&conf, store);
    assert_int_equal(seen.stops, 1);
    run_for(100);
    assert_int_equal(seen.alarms, 1);
    assert_int_equal(seen.starts, 2);
}

static void test_commit_failure_resets_the_room(void **state)
{
    (void)state;
    request(7, "POST", "w");
    assert_true(gates > 0); /* the write gated the event */
    const frame_t *r = find_frame(PROTO_RESPONSE, 7);
    assert_non_null(r);
    assert_int_equal(r->status, 200);
    /* the commit fails: the held response never left, the room is reset */
    store_discard(store);
    num_frames = 0;
    uint64_t held[1] = {7};
    rooms_on_commit_failed(held, 1, NULL, 0);
    ++pass;
    r = find_frame(PROTO_RESPONSE, 7);
    assert_non_null(r);
    assert_int_equal(r->status, 500);
    assert_int_equal(seen.stops, 1);
    /* the write is gone, and the next event starts the room afresh */
    request(8, "GET", "w");
    assert_int_equal(seen.starts, 2);
}

/* A room that wrote in a pass gates every later event of that pass (its frames never overtake the held ones); in the
 * next pass it does not, and a room that did not write never does. */
static void test_a_room_that_wrote_stays_gated_for_the_pass(void **state)
{
    (void)state;
    request(1, "POST", "g");
    assert_int_equal(gates, 1);
    request(2, "GET", "g"); /* no write, but the same room in the same pass */
    assert_int_equal(gates, 2);
    request(3, "GET", "other");
    assert_int_equal(gates, 2);
    end_pass();
    request(4, "GET", "g");
    assert_int_equal(gates, 2);
}

static void test_rooms_in_memory_evicts_the_least_recently_used(void **state)
{
    (void)state;
    conf.limits.rooms_in_memory = 2;
    request(1, "GET", "r1");
    end_pass();
    request(2, "GET", "r2");
    end_pass();
    request(3, "GET", "r1"); /* r1 is now the most recently used */
    end_pass();
    assert_int_equal(seen.starts, 2);
    request(4, "GET", "r3"); /* a third room: r2 makes way */
    end_pass();
    assert_int_equal(seen.starts, 3);
    assert_int_equal(seen.stops, 1);
    rooms_stats_t st;
    rooms_stats(&st);
    assert_int_equal(st.rooms, 2);
    assert_int_equal(st.evictions, 1);
    request(5, "GET", "r1"); /* still in memory: no start */
    assert_int_equal(seen.starts, 3);
}

static void test_idle_rooms_are_evicted_by_the_sweep(void **state)
{
    (void)state;
    request(1, "GET", "idle");
    end_pass();
    run_for(50);
    assert_int_equal(seen.stops, 0);
    run_for(150); /* idle_ms is 100 */
    assert_int_equal(seen.stops, 1);
    rooms_stats_t st;
    rooms_stats(&st);
    assert_int_equal(st.rooms, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alarm_retries_double_then_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_wakes_the_shard_when_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_given_up_after_six_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_survives_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_resets_the_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_room_that_wrote_stays_gated_for_the_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rooms_in_memory_evicts_the_least_recently_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_rooms_are_evicted_by_the_sweep, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
