/*
 * linger.c — a lingering close for the client connections h2o closes.
 *
 * h2o 2.2.5 answers a request whose body is over the cap (413), or a malformed one (400), and closes the socket at
 * once, while the client may still be sending (lib/http1.c: entity_read_send_error and send_bad_request mark the
 * connection not persistent; once the answer is written, close_connection calls h2o_socket_close). Linux answers
 * data that arrives on a closed socket (or sits unread when it closes) with a TCP reset, and a reset makes the client
 * drop the response it has not read yet: the client sees "connection reset" instead of the 413. Servers avoid this
 * with a lingering close (nginx's lingering_close, RFC 9112 §9.6): shut down the sending side, read and discard what
 * still comes for a moment, then close.
 *
 * h2o has no hook in that path, but the kernel only ends a TCP connection when the last descriptor of it is closed.
 * So the router keeps a duplicate descriptor of every plain TCP connection it hands to h2o (linger_watch, at accept)
 * and asks h2o to tell it when h2o is done with the socket (the socket's on_close callback, which h2o's HTTP/1 server
 * leaves alone). When h2o has closed its descriptor, the connection still stands on the duplicate: it is half-closed
 * and drained for up to LINGER_MS, then closed. A connection the router takes over from h2o (a WebSocket after its
 * 101) goes through linger_export, which drops the duplicate first: the router's own code closes those.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "router.h"

#define LINGER_MS 2000

typedef struct st_linger_t {
    int fd;             /* the duplicate descriptor, owned here */
    h2o_socket_t *sock; /* NULL while h2o owns the connection; the draining socket on fd after */
    h2o_timeout_entry_t timeout;
    void (*prev_cb)(void *data); /* the socket's on_close before linger_watch (router.c's connection counts): chained */
    void *prev_data;
} linger_t;

static struct {
    h2o_loop_t *loop;
    h2o_timeout_t timeout;
    size_t count; /* connections draining now */
} linger;

static void linger_done(linger_t *l)
{
    if (h2o_timeout_is_linked(&l->timeout))
        h2o_timeout_unlink(&l->timeout);
    h2o_socket_close(l->sock); /* closes l->fd */
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

/* h2o disposed of the socket and closed its descriptor; the connection lives on l->fd. */
static void on_h2o_closed(void *data)
{
    linger_t *l = data;
    if (l->prev_cb != NULL)
        l->prev_cb(l->prev_data);
    if (shutdown(l->fd, SHUT_WR) == -1) { /* the connection is already gone */
        close(l->fd);
        free(l);
        return;
    }
    l->sock = h2o_evloop_socket_create(linger.loop, l->fd, 0);
    l->sock->data = l;
    l->timeout.cb = on_linger_timeout;
    h2o_socket_read_start(l->sock, on_linger_read);
    h2o_timeout_link(linger.loop, &linger.timeout, &l->timeout);
    ++linger.count;
}

void linger_watch(h2o_socket_t *sock)
{
    if (linger.loop == NULL)
        return;
    int fd = fcntl(h2o_socket_get_fd(sock), F_DUPFD_CLOEXEC, 0);
    if (fd == -1)
        return; /* out of descriptors: this connection closes without lingering, as h2o would */
    linger_t *l = xcalloc(1, sizeof(*l));
    l->fd = fd;
    l->prev_cb = sock->on_close.cb;
    l->prev_data = sock->on_close.data;
    sock->on_close.cb = on_h2o_closed;
    sock->on_close.data = l;
}

int linger_export(h2o_socket_t *sock, h2o_socket_export_t *info)
{
    if (sock->on_close.cb == on_h2o_closed) {
        linger_t *l = sock->on_close.data;
        sock->on_close.cb = l->prev_cb; /* the export runs it, as h2o_socket_export would have */
        sock->on_close.data = l->prev_data;
        close(l->fd);
        free(l);
    }
    return h2o_socket_export(sock, info);
}

void (*linger_close_cb(h2o_socket_t *sock))(void *)
{
    if (sock->on_close.cb == on_h2o_closed)
        return ((linger_t *)sock->on_close.data)->prev_cb;
    return sock->on_close.cb;
}

void linger_init(h2o_loop_t *loop)
{
    linger.loop = loop;
    h2o_timeout_init(loop, &linger.timeout, LINGER_MS);
}
