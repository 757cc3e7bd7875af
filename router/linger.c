/*
 * linger.c — a lingering close for the client connections h2o closes.
 *
 * h2o 2.2.5 answers a request whose body is over the cap (413), or a malformed one (400), and closes the socket at
 * once, while the client may still be sending. Linux answers data that arrives on a closed socket (or sits unread
 * when it closes) with a TCP reset, and a reset makes the client drop the response it has not read yet: the client
 * sees "connection reset" instead of the 413. Servers avoid this with a lingering close (nginx's lingering_close,
 * RFC 9112 §9.6): shut down the sending side, read and discard what still comes for a moment, then close.
 *
 * h2o has no hook for that, so partyd provides h2o_socket_close itself: the dynamic linker resolves the library's own
 * calls to it here (libh2o-evloop calls it through its PLT). For an accepted TCP connection that is not writing, the
 * socket is taken over from h2o (h2o_socket_export), half-closed and drained for up to LINGER_MS; every other socket
 * goes to h2o's own h2o_socket_close.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "router.h"

#define LINGER_MS 2000

typedef struct st_linger_t {
    h2o_socket_t *sock;
    h2o_timeout_entry_t timeout;
} linger_t;

static struct {
    h2o_loop_t *loop;
    h2o_timeout_t timeout;
    void (*h2o_close)(h2o_socket_t *sock);
    int exporting;
    size_t count;
} linger;

static void h2o_close(h2o_socket_t *sock)
{
    if (linger.h2o_close == NULL) {
        linger.h2o_close = (void (*)(h2o_socket_t *))dlsym(RTLD_NEXT, "h2o_socket_close");
        if (linger.h2o_close == NULL) {
            log_error("linger: h2o_socket_close not found in libh2o: %s", dlerror());
            abort();
        }
    }
    linger.h2o_close(sock);
}

static void linger_done(linger_t *l)
{
    if (h2o_timeout_is_linked(&l->timeout))
        h2o_timeout_unlink(&l->timeout);
    h2o_close(l->sock);
    free(l);
    --linger.count;
}

static void on_linger_read(h2o_socket_t *sock, const char *err)
{
    linger_t *l = sock->data;
    if (err != NULL) { /* EOF: the client is done */
        linger_done(l);
        return;
    }
    h2o_buffer_consume(&sock->input, sock->input->size);
}

static void on_linger_timeout(h2o_timeout_entry_t *entry)
{
    linger_done(H2O_STRUCT_FROM_MEMBER(linger_t, timeout, entry));
}

/* An accepted TCP connection (not a listener, not a Unix socket, not a pipe)? */
static int is_client_tcp(int fd)
{
    int domain, listening;
    socklen_t len = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == -1 || (domain != AF_INET && domain != AF_INET6))
        return 0;
    len = sizeof(listening);
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && !listening;
}

void h2o_socket_close(h2o_socket_t *sock)
{
    int fd = h2o_socket_get_fd(sock);
    if (linger.loop == NULL || linger.exporting || fd == -1 || sock->ssl != NULL || h2o_socket_is_writing(sock) ||
        !is_client_tcp(fd)) {
        h2o_close(sock);
        return;
    }
    h2o_socket_export_t info;
    linger.exporting = 1; /* h2o_socket_export closes the h2o socket it takes the fd from */
    int r = h2o_socket_export(sock, &info);
    linger.exporting = 0;
    if (r != 0)
        return;
    h2o_buffer_dispose(&info.input);
    if (shutdown(info.fd, SHUT_WR) == -1) {
        close(info.fd);
        return;
    }
    linger_t *l = xcalloc(1, sizeof(*l));
    l->sock = h2o_evloop_socket_create(linger.loop, info.fd, 0);
    l->sock->data = l;
    l->timeout.cb = on_linger_timeout;
    h2o_socket_read_start(l->sock, on_linger_read);
    h2o_timeout_link(linger.loop, &linger.timeout, &l->timeout);
    ++linger.count;
}

void linger_init(h2o_loop_t *loop)
{
    linger.loop = loop;
    h2o_timeout_init(loop, &linger.timeout, LINGER_MS);
}
