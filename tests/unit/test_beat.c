/*
 * test_beat.c — ipc/beat.c, a shard's heartbeat page, in real shared memory across a real fork: what a child writes
 * (a turn, an event, its room, cut at the caps) the parent reads; after the child died, the page still says what it
 * was running; a reset page reads as "not started"; a copy taken while the sequence is odd (a write under way) comes
 * back with empty strings rather than torn ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "beat.h"

static void test_fork_and_read(void **state)
{
    (void)state;
    beat_t *pages = beat_map(2);
    assert_non_null(pages);
    beat_snapshot_t s;
    beat_read(&pages[1], &s);
    assert_int_equal(s.pass, 0);
    assert_string_equal(s.room, "");

    uint64_t before = base_now_mono_ms();
    pid_t pid = fork();
    assert_true(pid != -1);
    if (pid == 0) {
        beat_turn(&pages[1]);
        beat_turn(&pages[1]);
        beat_event(&pages[1], "on_message");
        beat_room(&pages[1], "chat/lobby", 10);
        _exit(0); /* dies mid-event, as a crashing shard does */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    beat_read(&pages[1], &s);
    assert_int_equal(s.pass, 2);
    assert_true(s.turned_ms >= before && s.since_ms >= before);
    assert_false(s.stopping);
    assert_string_equal(s.callback, "on_message");
    assert_string_equal(s.room, "chat/lobby");
    beat_read(&pages[0], &s);
    assert_int_equal(s.pass, 0); /* the other shard's page is untouched */

    beat_idle(&pages[1]);
    beat_stopping(&pages[1]);
    beat_read(&pages[1], &s);
    assert_string_equal(s.callback, "");
    assert_string_equal(s.room, "");
    assert_true(s.stopping);

    beat_reset(&pages[1]);
    beat_read(&pages[1], &s);
    assert_int_equal(s.pass, 0);
    assert_false(s.stopping);
}

static void test_caps_and_torn(void **state)
{
    (void)state;
    beat_t *b = beat_map(1);
    char long_key[BASE_ROOM_KEY_MAX + 50];
    memset(long_key, 'r', sizeof(long_key));
    beat_event(b, "a_callback_name_longer_than_the_cap");
    beat_room(b, long_key, sizeof(long_key));
    beat_snapshot_t s;
    beat_read(b, &s);
    assert_int_equal(strlen(s.callback), BEAT_CALLBACK_MAX);
    assert_int_equal(strlen(s.room), BASE_ROOM_KEY_MAX);
    beat_room(b, NULL, 0);
    beat_read(b, &s);
    assert_string_equal(s.room, "");
    assert_string_equal(s.callback, "a_callback_name_longer_");

    /* a writer that stopped half-way (odd sequence): no torn strings */
    beat_room(b, "p/r", 3);
    b->seq |= 1;
    beat_read(b, &s);
    assert_string_equal(s.callback, "");
    assert_string_equal(s.room, "");

    /* a NULL page (a shard run without a supervisor) is ignored */
    beat_turn(NULL);
    beat_event(NULL, "x");
    beat_room(NULL, "p/r", 3);
    beat_idle(NULL);
    beat_stopping(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_and_read),
        cmocka_unit_test(test_caps_and_torn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
