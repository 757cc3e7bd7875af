/*
 * test_gate.c — the output gate (shard/gate.c) against a fake store (a commit that succeeds or fails on demand) and a
 * fake link (a buffer of the frames that went out, decoded back): nothing an event that wrote emitted leaves before
 * the commit returned, frames emitted before the write included; a failed commit drops exactly that pass's held
 * output and names what in it was owed an answer; answers, broadcasts and accepts are held alike; events that did
 * not write go out at their end.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "gate.h"

#define MAX_FRAME (1 << 20)

static struct {
    base_buf_t out; /* what reached the link */
    int connected;
    int fail_next;  /* the next commit fails */
    size_t pending; /* writes waiting */
    unsigned commits, committed, failed;
    size_t num_closed;
    uint64_t closed0;
    size_t out_at_commit; /* bytes the link had when the commit ran */
    uint64_t rids[16], cids[16];
    size_t num_rids, num_cids;
} fake;

static int f_commit(void *ctx, char *err, size_t errlen)
{
    (void)ctx;
    ++fake.commits;
    fake.out_at_commit = base_buf_len(&fake.out);
    fake.pending = 0;
    if (fake.fail_next) {
        fake.fail_next = 0;
        snprintf(err, errlen, "injected failure");
        return -EIO;
    }
    return 0;
}

static size_t f_pending(void *ctx)
{
    (void)ctx;
    return fake.pending;
}

static int f_connected(void *ctx)
{
    (void)ctx;
    return fake.connected;
}

static void f_out(void *ctx, const void *frames, size_t len)
{
    (void)ctx;
    base_buf_append(&fake.out, frames, len);
}

static void f_committed(void *ctx)
{
    (void)ctx;
    ++fake.committed;
}

static void f_failed(void *ctx, const uint64_t *rids, size_t num_rids, const uint64_t *cids, size_t num_cids,
                     const uint64_t *closed, size_t num_closed)
{
    (void)ctx;
    fake.num_closed = num_closed;
    if (num_closed != 0)
        fake.closed0 = closed[0];
    ++fake.failed;
    assert_true(num_rids <= 16 && num_cids <= 16);
    if (num_rids != 0)
        memcpy(fake.rids, rids, num_rids * sizeof(*rids));
    if (num_cids != 0)
        memcpy(fake.cids, cids, num_cids * sizeof(*cids));
    fake.num_rids = num_rids;
    fake.num_cids = num_cids;
}

static const gate_ops_t ops = {f_commit, f_pending, f_connected, f_out, f_committed, f_failed};

static gate_t *gate;

static int setup(void **state)
{
    (void)state;
    memset(&fake, 0, sizeof(fake));
    base_buf_init(&fake.out);
    fake.connected = 1;
    gate = gate_new(&ops, NULL, MAX_FRAME);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    gate_free(gate);
    base_buf_dispose(&fake.out);
    return 0;
}

/* ---- emitting and reading back ---- */

static int emit(proto_type_t type, uint64_t id)
{
    char tag[24]; /* a broadcast carries no id: every frame carries it in its data too */
    int n = snprintf(tag, sizeof(tag), "%llu", (unsigned long long)id);
    proto_msg_t m = {
        .type = type, .id = id, .status = 200, .party = PROTO_STR("p"), .room = PROTO_STR("r"), .data = proto_str(tag, (size_t)n)};
    gate_kind_t kind = type == PROTO_RESPONSE                         ? GATE_ANSWER
                       : type == PROTO_ACCEPT || type == PROTO_REJECT ? GATE_VERDICT
                       : type == PROTO_CLOSE_CONN                     ? GATE_CLOSE
                                                                      : GATE_FRAME;
    return gate_emit(gate, &m, kind);
}

/* The ids of the frames that reached the link, in order (unique within a test), read from their data. */
static size_t sent(uint64_t *ids, size_t max)
{
    proto_decoder_t dec;
    proto_decoder_init(&dec, MAX_FRAME);
    size_t n = 0, off = 0;
    while (off < base_buf_len(&fake.out)) {
        proto_msg_t m;
        long r = proto_decode(&dec, base_buf_head(&fake.out) + off, base_buf_len(&fake.out) - off, &m);
        assert_true(r > 0);
        assert_true(n < max);
        char tag[24];
        assert_true(m.data.len < sizeof(tag));
        memcpy(tag, m.data.base, m.data.len);
        tag[m.data.len] = '\0';
        ids[n++] = strtoull(tag, NULL, 10);
        off += (size_t)r;
    }
    proto_decoder_dispose(&dec);
    return n;
}

static void assert_sent(const uint64_t *want, size_t n)
{
    uint64_t ids[64];
    size_t got = sent(ids, 64);
    assert_int_equal(got, n);
    for (size_t i = 0; i < n; ++i)
        assert_int_equal(ids[i], want[i]);
}

static int end_pass(void)
{
    char err[128];
    return gate_end_pass(gate, err, sizeof(err));
}

/* ---- tests ---- */

/* An event that did not write goes out at its end; one that wrote waits for the commit, and the commit runs before
 * any of it is out — the frames it emitted before the write too. */
static void test_nothing_leaves_before_the_commit_returned(void **state)
{
    (void)state;
    gate_event_begin(gate);
    emit(PROTO_SEND, 1);
    gate_event_end(gate);
    assert_sent((uint64_t[]){1}, 1);

    gate_event_begin(gate);
    emit(PROTO_SEND, 2); /* before the write */
    fake.pending = 1;
    gate_hold(gate);
    emit(PROTO_BROADCAST, 3);
    gate_event_end(gate);
    gate_event_begin(gate); /* another room, no write: not held */
    emit(PROTO_SEND, 4);
    gate_event_end(gate);
    assert_sent((uint64_t[]){1, 4}, 2);

    assert_int_equal(end_pass(), 1);
    assert_int_equal(fake.commits, 1);
    /* when the commit ran, the link had frames 1 and 4 and nothing of the held event */
    uint64_t ids[8];
    size_t all = base_buf_len(&fake.out);
    fake.out.size = fake.out.off + fake.out_at_commit;
    assert_int_equal(sent(ids, 8), 2);
    fake.out.size = fake.out.off + all;
    assert_sent((uint64_t[]){1, 4, 2, 3}, 4);
    assert_int_equal(fake.committed, 1);
    assert_int_equal(gate_pass(gate), 1);
}

/* Answers (RESPONSE), broadcasts, verdicts (ACCEPT, REJECT) and closes are held alike; a failed commit drops all of
 * them and names the requests and connections that were owed, the connections whose close was dropped, and nothing
 * else. */
static void test_answers_broadcasts_and_accepts_held_alike(void **state)
{
    (void)state;
    gate_event_begin(gate);
    emit(PROTO_RESPONSE, 10);
    emit(PROTO_ACCEPT, 11);
    gate_hold(gate);
    emit(PROTO_BROADCAST, 12);
    emit(PROTO_REJECT, 13);
    emit(PROTO_RESPONSE, 14);
    emit(PROTO_CLOSE_CONN, 15);
    gate_event_end(gate);
    assert_sent(NULL, 0);

    fake.fail_next = 1;
    assert_int_equal(end_pass(), -EIO);
    assert_sent(NULL, 0);
    assert_int_equal(fake.failed, 1);
    assert_int_equal(fake.committed, 0);
    assert_int_equal(fake.num_rids, 2);
    assert_int_equal(fake.rids[0], 10);
    assert_int_equal(fake.rids[1], 14);
    assert_int_equal(fake.num_cids, 2);
    assert_int_equal(fake.cids[0], 11);
    assert_int_equal(fake.cids[1], 13);
    /* the dropped close is named too, so the room layer can close the connection again (a zombie socket otherwise) */
    assert_int_equal(fake.num_closed, 1);
    assert_int_equal(fake.closed0, 15);
}

/* A failed commit drops exactly what its pass held: not what went out unheld in that pass, not what the next pass
 * holds; what the failure callback emits (the 500s) goes out at once. */
static void test_failed_commit_drops_exactly_that_pass(void **state)
{
    (void)state;
    gate_event_begin(gate);
    gate_hold(gate);
    emit(PROTO_RESPONSE, 20);
    gate_event_end(gate);
    gate_event_begin(gate);
    emit(PROTO_SEND, 21); /* unheld: out at its end */
    gate_event_end(gate);
    fake.fail_next = 1;
    assert_int_equal(end_pass(), -EIO);
    assert_sent((uint64_t[]){21}, 1);
    assert_int_equal(fake.num_rids, 1);
    assert_int_equal(fake.rids[0], 20);
    /* outside an event (as the failure callback is): straight out */
    emit(PROTO_RESPONSE, 22);
    assert_sent((uint64_t[]){21, 22}, 2);

    gate_event_begin(gate);
    gate_hold(gate);
    emit(PROTO_RESPONSE, 23);
    gate_event_end(gate);
    assert_int_equal(end_pass(), 1);
    assert_sent((uint64_t[]){21, 22, 23}, 3);
    assert_int_equal(fake.failed, 1);
    assert_int_equal(fake.committed, 1);
}

/* A pass with nothing held or written commits nothing; writes alone (an alarm index entry) commit; a hold outside an
 * event makes the pass commit. */
static void test_what_makes_a_pass_commit(void **state)
{
    (void)state;
    gate_event_begin(gate);
    emit(PROTO_SEND, 30);
    gate_event_end(gate);
    assert_int_equal(end_pass(), 0);
    assert_int_equal(fake.commits, 0);
    fake.pending = 3;
    assert_int_equal(end_pass(), 1);
    assert_int_equal(fake.commits, 1);
    gate_hold(gate);
    assert_int_equal(end_pass(), 1);
    assert_int_equal(fake.commits, 2);
    assert_int_equal(gate_pass(gate), 3);
}

/* Without a router emits say so and nothing is kept; the router going away drops what was held, and the writes still
 * commit; an event left open is ended by the next begin and by the end of the pass. */
static void test_router_gone_and_open_events(void **state)
{
    (void)state;
    fake.connected = 0;
    gate_event_begin(gate);
    assert_int_equal(emit(PROTO_SEND, 40), -ENOTCONN);
    gate_event_end(gate);
    fake.connected = 1;

    gate_event_begin(gate);
    gate_hold(gate);
    emit(PROTO_RESPONSE, 41);
    gate_event_end(gate);
    gate_drop_held(gate);
    assert_int_equal(end_pass(), 1);
    assert_sent(NULL, 0);

    gate_event_begin(gate);
    emit(PROTO_SEND, 42);
    gate_event_begin(gate); /* ends the first */
    assert_sent((uint64_t[]){42}, 1);
    gate_hold(gate);
    emit(PROTO_SEND, 43);
    assert_int_equal(end_pass(), 1); /* ends the second, commits, releases */
    assert_sent((uint64_t[]){42, 43}, 2);
}

/* A frame over the cap is refused and nothing of it is kept. */
static void test_oversized_frame_refused(void **state)
{
    (void)state;
    gate_t *small = gate_new(&ops, NULL, 64);
    char big[200];
    memset(big, 'a', sizeof(big));
    proto_msg_t m = {.type = PROTO_SEND, .id = 50, .data = proto_str(big, sizeof(big))};
    gate_event_begin(small);
    assert_int_equal(gate_emit(small, &m, GATE_FRAME), -EMSGSIZE);
    gate_event_end(small);
    assert_sent(NULL, 0);
    gate_free(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_nothing_leaves_before_the_commit_returned, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answers_broadcasts_and_accepts_held_alike, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_drops_exactly_that_pass, setup, teardown),
        cmocka_unit_test_setup_teardown(test_what_makes_a_pass_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_router_gone_and_open_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_frame_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
