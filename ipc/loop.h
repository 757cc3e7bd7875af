/*
 * loop.h — a small epoll event loop for the processes that do not run h2o (the shards): file descriptors watched for
 * reading and writing, one-shot timers on the monotonic clock, and a before-sleep hook where a process does what it
 * batches once per pass (the shard: one storage commit, then one write to the router). Redis's ae is the model.
 *
 * One thread: every function here is called on the loop's thread, from its callbacks or between passes. Level
 * triggered: a callback that leaves bytes unread is called again in the next pass.
 */
#ifndef PARTYD_LOOP_H
#define PARTYD_LOOP_H

#include <stdint.h>

typedef struct st_loop_t loop_t;
typedef struct st_loop_watch_t loop_watch_t;

#define LOOP_READABLE 1
#define LOOP_WRITABLE 2

/* Called with LOOP_READABLE and/or LOOP_WRITABLE (an error or hang-up on the fd reports both that were asked for, so
 * that the owner's read or write sees it). */
typedef void (*loop_watch_cb)(loop_watch_t *watch, int events);

/* A timer, embedded in its owner's struct. Fields starting with `_` are the loop's. */
typedef struct st_loop_timer_t {
    void (*cb)(struct st_loop_timer_t *timer);
    uint64_t _due_ms;
    struct st_loop_timer_t *_next;
    struct st_loop_t *_loop; /* while started */
} loop_timer_t;

/* Creates a loop; aborts if the kernel has no epoll instance to give (out of descriptors at a process's start). */
loop_t *loop_create(void);
/* Frees the loop. Every watch must have been removed and every timer stopped. */
void loop_destroy(loop_t *loop);

/* Watches `fd` (not owned: the caller closes it after loop_unwatch) for reading. Returns the watch, owned by the loop
 * until loop_unwatch; NULL with errno set when epoll refuses the fd. */
loop_watch_t *loop_watch(loop_t *loop, int fd, loop_watch_cb cb, void *data);
/* Also reports writability while `on` (for a sender whose socket's buffer is full; turn it off once written). */
void loop_watch_write(loop_watch_t *watch, int on);
/* Stops (on = 0) or starts again (on = 1) reporting readability; a hang-up or an error on the fd is still reported
 * (as LOOP_READABLE: epoll cannot be told not to). Watches read from loop_watch on. */
void loop_watch_read(loop_watch_t *watch, int on);
/* Stops watching; the watch is freed at the end of the pass, so this is safe inside its own callback and inside
 * another watch's callback of the same pass. The fd stays open. */
void loop_unwatch(loop_watch_t *watch);
/* The fd and the `data` given to loop_watch. */
int loop_watch_fd(const loop_watch_t *watch);
void *loop_watch_data(const loop_watch_t *watch);

/* Starts (or restarts) `timer` to fire once `delay_ms` from now. A timer that fires is stopped before its callback
 * runs, which may start it again. */
void loop_timer_start(loop_t *loop, loop_timer_t *timer, uint64_t delay_ms);
/* Stops it if it is started; then its owner may free it. */
void loop_timer_stop(loop_timer_t *timer);

/* Called at the end of every pass, after the pass's fd and timer callbacks: before the loop sleeps again. */
void loop_set_before_sleep(loop_t *loop, void (*cb)(void *data), void *data);

/* One pass: waits for an fd or the earliest timer (at most `max_wait_ms`; -1: no bound), runs their callbacks, then the
 * before-sleep hook. Returns 0, or -errno when epoll_wait failed for another reason than a signal. */
int loop_run_once(loop_t *loop, int max_wait_ms);

#endif
