/*
 * child.c — a child's control socket and signals (see child.h).
 */
#include "child.h"

#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "base.h"

int child_ctl_readable(int ctl_fd, const child_callbacks_t *cb, void *data)
{
    for (;;) {
        ctl_msg_t m;
        int fd;
        int r = ctl_recv(ctl_fd, &m, &fd);
        if (r == -EAGAIN)
            return 0;
        if (r <= 0) {
            if (fd != -1)
                close(fd);
            cb->on_orphaned(data);
            return -1;
        }
        cb->on_record(&m, &fd, data);
        if (fd != -1)
            close(fd);
    }
}

void child_signals_readable(int sfd, const child_callbacks_t *cb, void *data)
{
    struct signalfd_siginfo si;
    while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        if (si.ssi_signo == SIGTERM)
            cb->on_term(data);
}
