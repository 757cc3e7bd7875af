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

#include "room_int.h" /* the evict below is admin.c's, which links the whole shard */
#include "shard.h"
#include "slots.h"

/* ---- the recorder standing in for shard.c ---- */

typedef struct st_frame_t {
    proto_type_t type;
    uint64_t id;
    int status, code, last;
    char data[256];
    size_t data_len; /* the whole length, even when data[] holds less */
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
        f->last = m->last;
        f->data_len = m->data.len;
        size_t n = m->data.len < sizeof(f->data) - 1 ? m->data.len : sizeof(f->data) - 1;
        if (n != 0) /* a CLOSE_CONN, or an empty chunk, carries no data (UBSan: memcpy from NULL) */
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

int shard_emit_close(const proto_msg_t *m)
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
    unsigned fail_start_after_fetch, fetch_answers;
    unsigned alarm_failures_left;
    uint64_t alarm_times[16];
    int alarm_get; /* party_alarm_get's answer after a failed transaction (PATCH, DELETE) */
    uint64_t alarm_get_at;
} seen;

static void t_on_fetch_answer(party_room_t *room, void *arg, const party_fetch_t *res)
{
    (void)room, (void)arg, (void)res;
    ++seen.fetch_answers;
}

static int t_on_start(party_room_t *room)
{
    ++seen.starts;
    if (seen.fail_start_after_fetch) {
        assert_int_equal(party_fetch(room, "t", "other", NULL, NULL, NULL, NULL, 0, t_on_fetch_answer, NULL), 0);
        return -1;
    }
    return 0;
}

static void t_on_stop(party_room_t *room)
{
    (void)room;
    ++seen.stops;
}

static void t_on_close(party_room_t *room, party_conn_t *conn, int code, const char *reason, size_t len, int clean)
{
    (void)room, (void)conn, (void)code, (void)reason, (void)len, (void)clean;
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

static int txn_set_alarm_and_fail(party_room_t *room, void *arg)
{
    (void)arg;
    party_storage_put(room, "t", 1, "x", 1);
    party_alarm_set(room, party_now_ms() + 1);
    return -1;
}

static int txn_delete_alarm_and_fail(party_room_t *room, void *arg)
{
    (void)arg;
    party_alarm_delete(room);
    return -1;
}

/* GET: answers 200; POST: writes a key then answers; PUT ?alarm: sets the alarm 1 ms ahead; PATCH: a transaction
 * that sets the alarm, then fails; DELETE: one that deletes it, then fails (both note party_alarm_get after). */
static void t_on_request(party_room_t *room, party_request_t *req)
{
    const char *m = party_request_method(req);
    if (strcmp(m, "PATCH") == 0 || strcmp(m, "DELETE") == 0) {
        party_storage_transaction(room, m[0] == 'P' ? txn_set_alarm_and_fail : txn_delete_alarm_and_fail, NULL);
        seen.alarm_get = party_alarm_get(room, &seen.alarm_get_at);
    }
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
    .on_close = t_on_close,
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
    rooms_slots_owned(NULL);
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
    rooms_on_commit_failed(NULL, 0, NULL, 0, NULL, 0);
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

/* Issue 17 item 6: a failed transaction puts the alarm back in memory as in storage. */
static void test_alarm_rolled_back_with_its_transaction(void **state)
{
    (void)state;
    request(1, "PATCH", "tx"); /* set inside a failed transaction: there is none */
    assert_int_equal(seen.alarm_get, -ENOENT);
    end_pass();
    request(2, "PUT", "tx"); /* an alarm 1 ms ahead */
    uint64_t at = party_now_ms() + 1;
    end_pass();
    request(3, "DELETE", "tx"); /* deleted inside a failed transaction: still there */
    assert_int_equal(seen.alarm_get, 0);
    assert_true(seen.alarm_get_at == at);
    end_pass();
    run_for(20);
    assert_int_equal(seen.alarms, 1); /* and it fires, once */
}

/* Issue 17 item 12: 64 due alarms, all in frozen slots (rooms moving away), then one in a slot that is not: a check
 * fires that one at once and does not ask to be woken again at once (it spun at 100 % CPU before). */
static void test_frozen_due_alarms_do_not_spin(void **state)
{
    (void)state;
    char name[32];
    uint16_t frozen[64];
    for (int i = 0; i < 64; ++i) {
        snprintf(name, sizeof(name), "frozen-%d", i);
        request((uint64_t)i + 1, "PUT", name);
        frozen[i] = slots_of_room("t", 1, name, strlen(name));
        rooms_slot_freeze(frozen[i], 1);
        end_pass();
        advance_ms(1);
    }
    const char *moving_not = "still-here";
    for (int i = 0; i < 64; ++i)
        assert_true(frozen[i] != slots_of_room("t", 1, moving_not, strlen(moving_not))); /* it shares no slot */
    request(100, "PUT", moving_not);
    end_pass();
    advance_ms(50);
    rooms_fire_alarms();
    end_pass();
    assert_int_equal(seen.alarms, 1);
    assert_true(wake_at > party_now_ms());
    rooms_fire_alarms();
    end_pass();
    assert_int_equal(seen.alarms, 1);
}

/* Issue 17 item 8: an export in the pass a room of its slot wrote in waits for the commit, so a commit that fails
 * ships nothing of those writes (the clients were answered 500 for them). */
static void test_export_ships_only_committed_writes(void **state)
{
    (void)state;
    uint16_t slot = slots_of_room("t", 1, "ex", 2);
    for (int fail = 1; fail >= 0; --fail) {
        request(1, "POST", "ex"); /* writes a key in this pass */
        size_t before = num_frames;
        proto_msg_t m = {.type = PROTO_SLOT, .id = 77, .method = PROTO_STR("export"), .slot = slot};
        shard_slot(&m);
        assert_int_equal(num_frames, before); /* not from the uncommitted batch */
        if (fail) {
            store_discard(store); /* the commit failed */
        } else {
            char err[256];
            assert_int_equal(store_commit(store, err, sizeof(err)), 0);
        }
        shard_slots_after_commit(fail);
        rooms_on_committed();
        ++pass;
        const frame_t *chunk = find_frame(PROTO_SLOT_REPLY, 77);
        assert_non_null(chunk);
        assert_int_equal(chunk->status, 200);
        assert_int_equal(chunk->last, 1);
        if (fail)
            assert_int_equal(chunk->data_len, 0); /* the slot held nothing committed */
        else
            assert_true(chunk->data_len > 0);
        num_frames = 0;
        rooms_slot_freeze(slot, 0);
    }
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
    rooms_on_commit_failed(held, 1, NULL, 0, NULL, 0);
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

static void open_conn(uint64_t cid, const char *room, const char *id)
{
    proto_msg_t m = {.type = PROTO_OPEN,
                     .id = cid,
                     .party = PROTO_STR("t"),
                     .room = proto_str(room, strlen(room)),
                     .conn_id = proto_str(id, strlen(id)),
                     .method = PROTO_STR("GET"),
                     .path = PROTO_STR("/parties/t/x"),
                     .query = PROTO_STR("")};
    rooms_on_open(&m);
}

static void close_conn(uint64_t cid)
{
    proto_msg_t m = {.type = PROTO_CLOSE, .id = cid, .code = 1000, .reason = PROTO_STR(""), .clean = 1};
    rooms_on_close(&m);
}

/* An alarm whose room cannot start for limits.rooms_in_memory waits for room without spending its tries: on_alarm
 * never ran, so it has not failed (issue 17 item 15). */
static void test_alarm_waits_for_room_without_spending_tries(void **state)
{
    (void)state;
    conf.limits.rooms_in_memory = 1;
    request(1, "PUT", "alarmed"); /* its alarm is 1 ms ahead */
    end_pass();
    open_conn(100, "busy", "c"); /* takes the one place: "alarmed" makes way, "busy" cannot (a connection) */
    end_pass();
    assert_int_equal(seen.starts, 2);
    run_for(2000); /* 6 tries would be spent in 20 + 40 + 80 + 160 + 320 ms */
    assert_int_equal(seen.alarms, 0);
    close_conn(100);
    end_pass();
    run_for(100);
    assert_int_equal(seen.alarms, 1);
}

/* What an operator's evict does to the room (rooms_admin_evict, in admin.c). */
static void evict(const char *name)
{
    char key[64];
    snprintf(key, sizeof(key), "t/%s", name);
    party_room_t *room;
    HASH_FIND(hh, rooms.by_key, key, strlen(key), room);
    assert_non_null(room);
    room_close_all_now(room, 1012, "evicted");
    room_destroy(room);
}

/* An evict of a room that wrote in this pass holds the closes (an ATTACH and ACCEPT of the pass may be held: the
 * router must not get the close first); in a later pass it does not (issue 17 item 1). */
static void test_evict_of_a_room_that_wrote_holds_its_closes(void **state)
{
    (void)state;
    request(1, "POST", "e");
    open_conn(200, "e", "c");
    unsigned before = gates;
    evict("e");
    assert_int_equal(gates, before + 1);
    const frame_t *f = find_frame(PROTO_CLOSE_CONN, 200);
    assert_non_null(f);
    assert_int_equal(f->code, 1012);
    end_pass();
    open_conn(201, "e", "d");
    before = gates;
    evict("e");
    assert_int_equal(gates, before);
    assert_non_null(find_frame(PROTO_CLOSE_CONN, 201));
    assert_int_equal(seen.stops, 2);
}

/* A fetch made in an on_start that fails, in a room woken by a close (or an alarm, which does not drop the room
 * either): its answer never reaches the callback, as party.h says (issue 17 item 16). */
static void test_fetch_of_a_failed_start_is_dropped(void **state)
{
    (void)state;
    test_partydef.hibernate = 1;
    open_conn(300, "h", "c");
    end_pass();
    run_for(200); /* idle_ms is 100: the room hibernates with its connection */
    assert_int_equal(seen.stops, 1);
    seen.fail_start_after_fetch = 1;
    num_frames = 0;
    close_conn(300); /* wakes the room for on_close: on_start fetches, then fails */
    test_partydef.hibernate = 0;
    assert_int_equal(seen.starts, 2);
    const frame_t *f = NULL;
    for (size_t i = 0; i < num_frames; ++i)
        if (frames[i].type == PROTO_FETCH)
            f = &frames[i];
    assert_non_null(f);
    proto_msg_t reply = {.type = PROTO_FETCH_REPLY, .id = f->id, .status = 200};
    rooms_on_fetch_reply(&reply);
    assert_int_equal(seen.fetch_answers, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_alarm_retries_double_then_succeed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_wakes_the_shard_when_due, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_given_up_after_six_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_survives_eviction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_rolled_back_with_its_transaction, setup, teardown),
        cmocka_unit_test_setup_teardown(test_frozen_due_alarms_do_not_spin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_export_ships_only_committed_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_failure_resets_the_room, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_room_that_wrote_stays_gated_for_the_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rooms_in_memory_evicts_the_least_recently_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_rooms_are_evicted_by_the_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alarm_waits_for_room_without_spending_tries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_evict_of_a_room_that_wrote_holds_its_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_of_a_failed_start_is_dropped, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
