/*
 * test_loop.c — ipc/loop.c, the shard's event loop, on real pipes and the real clock: a readable fd wakes the loop and
 * its callback runs once per pass while bytes wait (level-triggered); writability is reported only while asked for; a
 * watch removed by another callback of the same pass is not called; timers fire in due order, once, and a stopped one
 * never; the before-sleep hook ends every pass.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include <cmocka.h>

#include "base.h"
#include "loop.h"

static int reads, writes, sleeps;
static loop_watch_t *pair[2];
static loop_watch_t *removed; /* set: the first callback that runs removes the other watch of the pair */
static int remove_other;

static void on_fd(loop_watch_t *w, int events)
{
    if (events & LOOP_READABLE)
        ++reads;
    if (events & LOOP_WRITABLE)
        ++writes;
    if (remove_other) {
        remove_other = 0;
        removed = w == pair[0] ? pair[1] : pair[0];
        loop_unwatch(removed);
    }
}

static void before_sleep(void *data)
{
    (void)data;
    ++sleeps;
}

static void test_watch(void **state)
{
    (void)state;
    loop_t *loop = loop_create();
    loop_set_before_sleep(loop, before_sleep, NULL);
    int p[2];
    assert_int_equal(pipe(p), 0);
    loop_watch_t *r = loop_watch(loop, p[0], on_fd, NULL), *w = loop_watch(loop, p[1], on_fd, NULL);
    assert_non_null(r);
    assert_non_null(w);
    reads = writes = sleeps = 0;
    assert_int_equal(loop_run_once(loop, 0), 0); /* nothing to read, writability not asked for */
    assert_int_equal(reads + writes, 0);
    assert_int_equal(sleeps, 1);
    assert_int_equal(write(p[1], "x", 1), 1);
    assert_int_equal(loop_run_once(loop, 1000), 0);
    assert_int_equal(reads, 1);
    assert_int_equal(loop_run_once(loop, 1000), 0); /* still unread: called again */
    assert_int_equal(reads, 2);
    loop_watch_write(w, 1);
    assert_int_equal(loop_run_once(loop, 1000), 0);
    assert_int_equal(writes, 1);
    loop_watch_write(w, 0);
    /* both fds are ready in the next pass; whichever callback runs first removes the other, which is then not called */
    loop_watch_write(w, 1);
    pair[0] = r;
    pair[1] = w;
    remove_other = 1;
    reads = writes = 0;
    assert_int_equal(loop_run_once(loop, 1000), 0);
    assert_int_equal(reads + writes, 1);
    loop_unwatch(removed == r ? w : r);
    assert_int_equal(loop_run_once(loop, 0), 0); /* frees the removed watches */
    close(p[0]);
    close(p[1]);
    loop_destroy(loop);
}

static int fired[4], num_fired;
static loop_timer_t timers[3];

static void on_timer_n(loop_timer_t *t)
{
    fired[num_fired++] = (int)(t - timers);
}

static void test_timers(void **state)
{
    (void)state;
    loop_t *loop = loop_create();
    num_fired = 0;
    for (int i = 0; i < 3; ++i)
        timers[i].cb = on_timer_n;
    loop_timer_start(loop, &timers[0], 30);
    loop_timer_start(loop, &timers[1], 10);
    loop_timer_start(loop, &timers[2], 20);
    loop_timer_stop(&timers[2]);
    uint64_t deadline = base_now_mono_ms() + 5000;
    while (num_fired < 2 && base_now_mono_ms() < deadline)
        assert_int_equal(loop_run_once(loop, -1), 0); /* the loop sleeps until the earliest timer */
    assert_int_equal(num_fired, 2);
    assert_int_equal(fired[0], 1);
    assert_int_equal(fired[1], 0);
    assert_int_equal(loop_run_once(loop, 30), 0); /* fired timers are stopped; the stopped one never fires */
    assert_int_equal(num_fired, 2);
    loop_destroy(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_watch), cmocka_unit_test(test_timers)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
