/*
 * test_link.c — ipc/link.c's read bound over a real socketpair on a real loop (ipc/loop.c, as in a shard), both ends
 * real links: a receiver
 * that calls link_read_stop in on_frame gets no further frame, even with more already read, until link_read_resume,
 * which first hands over what was read and then reads the socket again (the shard bounds a loop pass this way).
 */
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

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_stop_and_resume)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
