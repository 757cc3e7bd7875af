/*
 * etcd_loop.c — etcd_io_loop: the etcd client's etcd_io_t on ipc/loop.c's loop (a shard's, or any process on it).
 */
#include <stdlib.h>

#include "base.h"
#include "etcd.h"
#include "loop.h"

typedef struct st_io_fd_t {
    loop_watch_t *watch;
    void (*cb)(void *data, int fd, int events);
    void *data;
} io_fd_t;

typedef struct st_io_timer_t {
    loop_timer_t timer; /* first: the loop hands it back */
    loop_t *loop;
    void (*cb)(void *data);
    void *data;
} io_timer_t;

static void io_on_watch(loop_watch_t *watch, int events)
{
    io_fd_t *f = loop_watch_data(watch);
    f->cb(f->data, loop_watch_fd(watch),
          ((events & LOOP_READABLE) ? ETCD_IO_READ : 0) | ((events & LOOP_WRITABLE) ? ETCD_IO_WRITE : 0));
}

static void io_fd_events(void *handle, int events)
{
    io_fd_t *f = handle;
    loop_watch_read(f->watch, (events & ETCD_IO_READ) != 0);
    loop_watch_write(f->watch, (events & ETCD_IO_WRITE) != 0);
}

static void *io_fd_watch(void *loop, int fd, int events, void (*cb)(void *data, int fd, int events), void *data)
{
    io_fd_t *f = xcalloc(1, sizeof(*f));
    f->cb = cb;
    f->data = data;
    if ((f->watch = loop_watch(loop, fd, io_on_watch, f)) == NULL) {
        free(f);
        return NULL;
    }
    io_fd_events(f, events);
    return f;
}

/* The loop skips a watch removed earlier in the pass, so the wrapper can go at once. */
static void io_fd_unwatch(void *handle)
{
    io_fd_t *f = handle;
    loop_unwatch(f->watch);
    free(f);
}

static void io_on_timer(loop_timer_t *timer)
{
    io_timer_t *t = (io_timer_t *)timer;
    t->cb(t->data);
}

static void *io_timer_new(void *loop, void (*cb)(void *data), void *data)
{
    io_timer_t *t = xcalloc(1, sizeof(*t));
    t->timer.cb = io_on_timer;
    t->loop = loop;
    t->cb = cb;
    t->data = data;
    return t;
}

static void io_timer_start(void *timer, uint64_t ms)
{
    io_timer_t *t = timer;
    loop_timer_start(t->loop, &t->timer, ms);
}

static void io_timer_stop(void *timer)
{
    loop_timer_stop(&((io_timer_t *)timer)->timer);
}

static void io_timer_free(void *timer)
{
    io_timer_stop(timer);
    free(timer);
}

const etcd_io_t etcd_io_loop = {io_fd_watch,    io_fd_events,  io_fd_unwatch, io_timer_new,
                                io_timer_start, io_timer_stop, io_timer_free};
