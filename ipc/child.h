/*
 * child.h — what every child process (router, shard) does with its control socket and its signals, written once for
 * both loops: the owner watches the two fds on its loop (h2o's or loop.h's) and calls these when they are readable.
 * The callbacks run inside these calls, on that loop; the fds stay the owner's (it closes them).
 */
#ifndef PARTYD_CHILD_H
#define PARTYD_CHILD_H

#include "ctl.h"

typedef struct st_child_callbacks_t {
    /* A record from the supervisor. `*fd` is the attached descriptor or -1: set it to -1 to keep it, else it is closed
     * when this returns. */
    void (*on_record)(const ctl_msg_t *msg, int *fd, void *data);
    /* The supervisor's end of the control socket closed (or reading it failed): the child should shut down. Runs once,
     * and no record follows. */
    void (*on_orphaned)(void *data);
    /* SIGTERM arrived (through the signalfd of ctl_child_signals). */
    void (*on_term)(void *data);
} child_callbacks_t;

/* The control socket `ctl_fd` is readable: handles every record waiting. Returns 0, or -1 after on_orphaned ran (stop
 * watching the socket then). */
int child_ctl_readable(int ctl_fd, const child_callbacks_t *cb, void *data);
/* The signalfd `sfd` is readable: on_term for each SIGTERM read (the others ctl_child_signals blocks do not come). */
void child_signals_readable(int sfd, const child_callbacks_t *cb, void *data);

#endif
