/*
 * loop.c — the small epoll loop (see loop.h).
 */
#include "loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base.h"

#define MAX_EVENTS 64

struct st_loop_watch_t {
    loop_t *loop;
    int fd;
    int writing;
    int not_reading; /* loop_watch_read(w, 0): no EPOLLIN (hang-ups and errors are reported all the same) */
    int removed;
    loop_watch_cb cb;
    void *data;
    loop_watch_t *next_removed;
};

struct st_loop_t {
    int epfd;
    loop_timer_t *timers;  /* sorted by due time, earliest first */
    loop_watch_t *removed; /* freed at the end of the pass */
    void (*before_sleep)(void *data);
    void *before_sleep_data;
};

loop_t *loop_create(void)
{
    loop_t *loop = xcalloc(1, sizeof(*loop));
    if ((loop->epfd = epoll_create1(EPOLL_CLOEXEC)) == -1) {
        log_error("epoll_create1: %s", strerror(errno));
        abort();
    }
    return loop;
}

static void free_removed(loop_t *loop)
{
    while (loop->removed != NULL) {
        loop_watch_t *w = loop->removed;
        loop->removed = w->next_removed;
        free(w);
    }
}

void loop_destroy(loop_t *loop)
{
    free_removed(loop);
    close(loop->epfd);
    free(loop);
}

static int watch_ctl(loop_watch_t *w, int op)
{
    struct epoll_event ev = {.events = (w->not_reading ? 0 : EPOLLIN) | (w->writing ? EPOLLOUT : 0), .data.ptr = w};
    return epoll_ctl(w->loop->epfd, op, w->fd, &ev);
}

loop_watch_t *loop_watch(loop_t *loop, int fd, loop_watch_cb cb, void *data)
{
    loop_watch_t *w = xcalloc(1, sizeof(*w));
    *w = (loop_watch_t){.loop = loop, .fd = fd, .cb = cb, .data = data};
    if (watch_ctl(w, EPOLL_CTL_ADD) == -1) {
        int err = errno;
        free(w);
        errno = err;
        return NULL;
    }
    return w;
}

void loop_watch_write(loop_watch_t *w, int on)
{
    if (w->removed || w->writing == !!on)
        return;
    w->writing = !!on;
    if (watch_ctl(w, EPOLL_CTL_MOD) == -1)
        log_error("epoll_ctl(MOD, fd %d): %s", w->fd, strerror(errno));
}

void loop_watch_read(loop_watch_t *w, int on)
{
    if (w->removed || w->not_reading == !on)
        return;
    w->not_reading = !on;
    if (watch_ctl(w, EPOLL_CTL_MOD) == -1)
        log_error("epoll_ctl(MOD, fd %d): %s", w->fd, strerror(errno));
}

void loop_unwatch(loop_watch_t *w)
{
    if (w->removed)
        return;
    w->removed = 1;
    epoll_ctl(w->loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->next_removed = w->loop->removed;
    w->loop->removed = w;
}

int loop_watch_fd(const loop_watch_t *w)
{
    return w->fd;
}

void *loop_watch_data(const loop_watch_t *w)
{
    return w->data;
}

void loop_timer_stop(loop_timer_t *t)
{
    if (t->_loop == NULL)
        return;
    for (loop_timer_t **p = &t->_loop->timers; *p != NULL; p = &(*p)->_next)
        if (*p == t) {
            *p = t->_next;
            break;
        }
    t->_loop = NULL;
    t->_next = NULL;
}

void loop_timer_start(loop_t *loop, loop_timer_t *t, uint64_t delay_ms)
{
    loop_timer_stop(t);
    t->_due_ms = base_now_mono_ms() + delay_ms;
    t->_loop = loop;
    loop_timer_t **p = &loop->timers;
    while (*p != NULL && (*p)->_due_ms <= t->_due_ms)
        p = &(*p)->_next;
    t->_next = *p;
    *p = t;
}

void loop_set_before_sleep(loop_t *loop, void (*cb)(void *data), void *data)
{
    loop->before_sleep = cb;
    loop->before_sleep_data = data;
}

int loop_run_once(loop_t *loop, int max_wait_ms)
{
    int wait_ms = max_wait_ms;
    if (loop->timers != NULL) {
        uint64_t now = base_now_mono_ms(), due = loop->timers->_due_ms;
        int until = due <= now ? 0 : due - now > INT32_MAX ? INT32_MAX : (int)(due - now);
        if (wait_ms < 0 || until < wait_ms)
            wait_ms = until;
    }
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, wait_ms);
    int ret = 0;
    if (n == -1) {
        n = 0;
        if (errno != EINTR)
            ret = -errno;
    }
    for (int i = 0; i < n; ++i) {
        loop_watch_t *w = events[i].data.ptr;
        if (w->removed)
            continue; /* removed by an earlier callback of this pass */
        int what = 0;
        if ((events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0)
            what |= LOOP_READABLE;
        if ((events[i].events & EPOLLOUT) != 0 || (w->writing && (events[i].events & (EPOLLHUP | EPOLLERR)) != 0))
            what |= LOOP_WRITABLE;
        w->cb(w, what);
    }
    /* the due timers; at most as many as there were, so that one restarted with no delay waits for the next pass */
    uint64_t now = base_now_mono_ms();
    size_t budget = 0;
    for (loop_timer_t *t = loop->timers; t != NULL; t = t->_next)
        ++budget;
    while (budget-- > 0 && loop->timers != NULL && loop->timers->_due_ms <= now) {
        loop_timer_t *t = loop->timers;
        loop_timer_stop(t);
        t->cb(t);
    }
    if (loop->before_sleep != NULL)
        loop->before_sleep(loop->before_sleep_data);
    free_removed(loop);
    return ret;
}
