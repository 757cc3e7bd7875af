/*
 * test_link.c — ipc/link.c's read bound over a real socketpair on a real loop (ipc/loop.c, as in a shard), both ends
 * real links: a receiver
 * that calls link_read_stop in on_frame gets no further frame, even with more already read, until link_read_resume,
 * which first hands over what was read and then reads the socket again (the shard bounds a loop pass this way).
 * And link_cancel: frames taken back before they were written never arrive, whatever the order they are taken back
 * in and however the writes fall; one written, or taken back already, is -EALREADY and the output is left alone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "link.h"
#include "loop.h"

static size_t received;
static uint64_t last_id;
static int closed;

static void on_frame(link_t *link, const proto_msg_t *msg)
{
    assert_int_equal(msg->type, PROTO_MESSAGE);
    assert_int_equal(msg->id, last_id + 1); /* in order, none lost, none twice */
    last_id = msg->id;
    if (++received % 3 == 0)
        link_read_stop(link);
}

static void on_closed(link_t *link, const char *why)
{
    (void)link;
    (void)why;
    closed = 1;
}

static const link_callbacks_t receiver_cb = {NULL, on_frame, on_closed, NULL};
static const link_callbacks_t sender_cb = {NULL, on_frame, on_closed, NULL};

static void send_messages(link_t *sender, uint64_t from, size_t n)
{
    for (size_t i = 0; i < n; ++i) {
        proto_msg_t m = {.type = PROTO_MESSAGE, .id = from + i, .data = PROTO_STR("hello")};
        assert_int_equal(link_emit(sender, &m), 0);
    }
    link_flush(sender);
}

/* Runs the loop until `want` frames arrived (or a bound of passes: then the assertion after it fails). */
static void run_until(loop_t *loop, size_t want)
{
    for (int i = 0; i < 200 && received < want; ++i)
        loop_run_once(loop, 10);
}

static void test_stop_and_resume(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    loop_t *loop = loop_create();
    link_t *sender = link_open(&link_io_loop, loop, fds[0], 1 << 16, PROTO_ROLE_ROUTER, 0, &sender_cb, NULL);
    link_t *receiver = link_open(&link_io_loop, loop, fds[1], 1 << 16, PROTO_ROLE_SHARD, 0, &receiver_cb, NULL);
    link_flush(receiver);
    send_messages(sender, 1, 10);

    run_until(loop, 3);
    assert_int_equal(received, 3);
    assert_true(link_read_is_stopped(receiver));
    for (int i = 0; i < 5; ++i) /* more is readable, and already read: nothing is handed over while stopped */
        loop_run_once(loop, 10);
    assert_int_equal(received, 3);

    assert_int_equal(link_read_resume(receiver), 0);
    run_until(loop, 6);
    assert_int_equal(received, 6);
    assert_true(link_read_is_stopped(receiver));
    assert_int_equal(link_read_resume(receiver), 0);
    run_until(loop, 9);
    assert_int_equal(received, 9);
    assert_int_equal(link_read_resume(receiver), 0);
    run_until(loop, 10);
    assert_int_equal(received, 10);
    assert_false(link_read_is_stopped(receiver));

    /* reading again: frames sent after the resume arrive */
    send_messages(sender, 11, 2);
    run_until(loop, 12);
    assert_int_equal(received, 12);
    assert_true(link_read_is_stopped(receiver));
    assert_int_equal(link_read_resume(receiver), 0); /* nothing waits: it only reads again */
    assert_false(link_read_is_stopped(receiver));
    assert_int_equal(received, 12);
    assert_false(closed);

    link_close(sender);
    link_close(receiver);
    loop_run_once(loop, 0); /* frees the unwatched fds' records */
    loop_destroy(loop);
}

static uint64_t got_ids[64];
static size_t num_got;

static void on_frame_record(link_t *link, const proto_msg_t *msg)
{
    (void)link;
    assert_int_equal(msg->type, PROTO_MESSAGE);
    assert_true(num_got < 64);
    got_ids[num_got++] = msg->id;
}

static const link_callbacks_t record_cb = {NULL, on_frame_record, on_closed, NULL};

static void emit_ticketed(link_t *sender, uint64_t id, size_t len, link_ticket_t *t)
{
    static char body[4096];
    proto_msg_t m = {.type = PROTO_MESSAGE, .id = id, .data = proto_str(body, len)};
    assert_int_equal(link_emit_ticket(sender, &m, t), 0);
    assert_true(t->len > len);
}

static void run_until_got(loop_t *loop, size_t want)
{
    for (int i = 0; i < 200 && num_got < want; ++i)
        loop_run_once(loop, 10);
}

static void assert_got(const uint64_t *want, size_t n)
{
    assert_int_equal(num_got, n);
    for (size_t i = 0; i < n; ++i)
        assert_int_equal(got_ids[i], want[i]);
}

static void test_cancel(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    loop_t *loop = loop_create();
    link_t *sender = link_open(&link_io_loop, loop, fds[0], 1 << 16, PROTO_ROLE_ROUTER, 0, &sender_cb, NULL);
    link_t *receiver = link_open(&link_io_loop, loop, fds[1], 1 << 16, PROTO_ROLE_SHARD, 0, &record_cb, NULL);
    link_flush(receiver);

    /* ten frames of different sizes queued; three taken back out of order, one of them twice */
    link_ticket_t t[16];
    for (uint64_t id = 1; id <= 10; ++id)
        emit_ticketed(sender, id, (size_t)id * 100, &t[id]);
    size_t queued = link_backlog(sender);
    assert_int_equal(link_cancel(sender, &t[7]), 0);
    assert_int_equal(link_cancel(sender, &t[3]), 0);
    assert_int_equal(link_cancel(sender, &t[5]), 0);
    assert_int_equal(link_cancel(sender, &t[3]), -EALREADY);
    assert_int_equal(link_backlog(sender), queued - t[3].len - t[5].len - t[7].len);
    link_flush(sender);
    run_until_got(loop, 7);
    assert_got((uint64_t[]){1, 2, 4, 6, 8, 9, 10}, 7);
    assert_int_equal(link_backlog(sender), 0);
    /* written: too late */
    assert_int_equal(link_cancel(sender, &t[10]), -EALREADY);

    /* tickets after holes were written past still point at their frames */
    emit_ticketed(sender, 11, 10, &t[11]);
    emit_ticketed(sender, 12, 20, &t[12]);
    emit_ticketed(sender, 13, 30, &t[13]);
    assert_int_equal(link_cancel(sender, &t[12]), 0);
    link_flush(sender);
    run_until_got(loop, 9);
    assert_got((uint64_t[]){1, 2, 4, 6, 8, 9, 10, 11, 13}, 9);

    /* the last frame taken back empties the output; what comes after is counted from there */
    emit_ticketed(sender, 14, 10, &t[14]);
    assert_int_equal(link_cancel(sender, &t[14]), 0);
    assert_int_equal(link_backlog(sender), 0);
    emit_ticketed(sender, 15, 10, &t[15]);
    emit_ticketed(sender, 16, 10, &t[0]);
    assert_int_equal(link_cancel(sender, &t[15]), 0);
    link_flush(sender);
    run_until_got(loop, 10);
    assert_got((uint64_t[]){1, 2, 4, 6, 8, 9, 10, 11, 13, 16}, 10);

    /* a write that stops inside a frame: the kernel takes part of a big frame; it can no longer be taken back, the
     * frames behind it can */
    int small = 4096;
    assert_int_equal(setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    link_read_stop(receiver);
    size_t sent = 0;
    uint64_t id = 17;
    for (; id < 40 && link_backlog(sender) == 0; ++id, ++sent) { /* until the socket is full */
        emit_ticketed(sender, id, 4000, &t[1]);
        link_flush(sender);
    }
    assert_true(link_backlog(sender) > 0);
    int partial = link_backlog(sender) < t[1].len; /* the last one went in part (or the socket took none of it) */
    assert_int_equal(link_cancel(sender, &t[1]), partial ? -EALREADY : 0);
    emit_ticketed(sender, id, 100, &t[2]);
    emit_ticketed(sender, id + 1, 100, &t[3]);
    assert_int_equal(link_cancel(sender, &t[2]), 0);
    assert_int_equal(link_read_resume(receiver), 0);
    size_t want = 10 + sent - (partial ? 0 : 1) + 1;
    for (int i = 0; i < 500 && num_got < want; ++i) {
        link_flush(sender);
        loop_run_once(loop, 10);
    }
    assert_int_equal(num_got, want);
    assert_int_equal(got_ids[want - 2], partial ? id - 1 : id - 2);
    assert_int_equal(got_ids[want - 1], id + 1);
    assert_false(closed);

    link_close(sender);
    link_close(receiver);
    loop_run_once(loop, 0);
    loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stop_and_resume), cmocka_unit_test(test_cancel)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
