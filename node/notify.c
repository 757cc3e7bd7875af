/*
 * notify.c — tells a service manager (systemd, Type=notify) how the node is doing: READY=1 once every shard is linked
 * and /health answers 200, STOPPING=1 when a drain starts (see node.h).
 *
 * The protocol is written here by hand instead of linking libsystemd's sd_notify: it is one datagram of
 * "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the abstract namespace),
 * documented as stable in sd_notify(3); doing it in 40 lines keeps libsystemd out of the build, out of the container
 * image's runtime libraries, and out of every child process we fork. Without $NOTIFY_SOCKET nothing is sent.
 */
#include "node.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "base.h"

int notify_send(const char *state)
{
    const char *path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0')
        return 0;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || len >= sizeof(sa.sun_path))
        return -EINVAL; /* not a socket we know how to reach (systemd also allows vsock: not used here) */
    memcpy(sa.sun_path, path, len);
    if (path[0] == '@')
        sa.sun_path[0] = '\0'; /* the abstract namespace: the name is not NUL-terminated, its length says where it ends */
    socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (path[0] == '/'));
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1)
        return -errno;
    int r = 0;
    if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen) == -1)
        r = -errno;
    close(fd);
    if (r != 0)
        log_warn("cannot tell the service manager \"%.*s\" at %s: %s", (int)strcspn(state, "\n"), state, path, strerror(-r));
    return r;
}
