/*
 * link.c — proto frames over an h2o socket (see link.h).
 */
#include "link.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct st_link_t {
    h2o_socket_t *sock;
    const link_callbacks_t *cb;
    void *data;
    proto_decoder_t dec;
    size_t max_frame;
    proto_role_t peer_role;
    base_buf_t out;     /* frames not written yet */
    unsigned ready : 1; /* peer HELLO received */
    unsigned failed : 1;
    unsigned in_read : 1;
    unsigned closed : 1; /* link_close called inside on_frame: free when the read loop ends */
    unsigned congested : 1;
    unsigned waiting : 1;      /* for the socket to become writable */
    unsigned read_stopped : 1; /* link_read_stop: no frame is decoded until link_read_resume */
};

static void link_free(link_t *link)
{
    if (link->sock != NULL)
        h2o_socket_close(link->sock);
    proto_decoder_dispose(&link->dec);
    base_buf_dispose(&link->out);
    free(link);
}

static void link_fail(link_t *link, const char *why)
{
    link->failed = 1;
    if (link->cb->on_closed != NULL)
        link->cb->on_closed(link, why);
    link_free(link);
}

static int check_hello(link_t *link, const proto_msg_t *m)
{
    if (m->type != PROTO_HELLO) {
        log_error("link: the first frame is %s, not HELLO", proto_type_name(m->type));
        return -1;
    }
    if (m->version != PROTO_VERSION) {
        log_error("link: the peer speaks protocol version %u, this process speaks %u; refusing it", m->version, PROTO_VERSION);
        return -1;
    }
    if (m->role != link->peer_role) {
        log_error("link: the peer says it is a %s, expected a %s", m->role == PROTO_ROLE_ROUTER ? "router" : "shard",
                  link->peer_role == PROTO_ROLE_ROUTER ? "router" : "shard");
        return -1;
    }
    return 0;
}

/* Decodes and dispatches the frames in the socket's input until it runs out or link_read_stop is called. 0, or -1 when
 * the link was freed (closed from on_frame, or failed on a malformed frame). */
static int link_decode(link_t *link)
{
    h2o_socket_t *sock = link->sock;
    size_t off = 0;
    const char *why = NULL;
    link->in_read = 1;
    while (!link->closed && !link->read_stopped) {
        proto_msg_t msg;
        long n = proto_decode(&link->dec, sock->input->bytes + off, sock->input->size - off, &msg);
        if (n == -2)
            break;
        if (n == -1) {
            log_error("link: malformed frame: %s", link->dec.error);
            why = "malformed frame";
            break;
        }
        off += (size_t)n;
        if (!link->ready) {
            if (check_hello(link, &msg) != 0) {
                why = "refused HELLO";
                break;
            }
            link->ready = 1;
            if (link->cb->on_hello != NULL)
                link->cb->on_hello(link, &msg);
        } else {
            link->cb->on_frame(link, &msg);
        }
    }
    link->in_read = 0;
    if (link->closed) {
        link_free(link);
        return -1;
    }
    h2o_buffer_consume(&sock->input, off);
    if (why != NULL) {
        link_fail(link, why);
        return -1;
    }
    return 0;
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    link_t *link = sock->data;
    if (err != NULL) {
        link_fail(link, err);
        return;
    }
    link_decode(link);
}

void link_read_stop(link_t *link)
{
    if (link->read_stopped || link->failed)
        return;
    link->read_stopped = 1;
    if (h2o_socket_is_reading(link->sock))
        h2o_socket_read_stop(link->sock);
}

int link_read_resume(link_t *link)
{
    if (!link->read_stopped)
        return 0;
    link->read_stopped = 0;
    if (link_decode(link) != 0)
        return -1;
    if (!link->read_stopped)
        h2o_socket_read_start(link->sock, on_read);
    return 0;
}

int link_read_is_stopped(const link_t *link)
{
    return link->read_stopped;
}

link_t *link_open(h2o_loop_t *loop, int fd, size_t max_frame, proto_role_t role, int shard, const link_callbacks_t *cb, void *data)
{
    link_t *link = xcalloc(1, sizeof(*link));
    link->cb = cb;
    link->data = data;
    link->max_frame = max_frame;
    link->peer_role = role == PROTO_ROLE_ROUTER ? PROTO_ROLE_SHARD : PROTO_ROLE_ROUTER;
    proto_decoder_init(&link->dec, max_frame);
    base_buf_init(&link->out);
    link->sock = h2o_evloop_socket_create(loop, fd, 0);
    link->sock->data = link;
    h2o_socket_read_start(link->sock, on_read);
    proto_msg_t hello = {.type = PROTO_HELLO, .version = PROTO_VERSION, .role = role, .shard = shard, .pid = (uint32_t)getpid()};
    /* written by the caller's next link_flush: a write failing here would free the link before the caller has it */
    link_emit(link, &hello);
    return link;
}

void link_close(link_t *link)
{
    if (link->in_read) {
        link->closed = 1;
        return;
    }
    link_free(link);
}

int link_emit(link_t *link, const proto_msg_t *msg)
{
    if (link->failed || link->closed)
        return -ENOTCONN;
    int ret = proto_encode(&link->out, msg, link->max_frame);
    if (ret == -EMSGSIZE)
        log_warn("link: dropping a %s frame over the cap of %zu bytes", proto_type_name(msg->type), link->max_frame);
    return ret;
}

size_t link_out_mark(const link_t *link)
{
    /* a length, not a position: base_buf_reserve may slide the bytes to the front */
    return base_buf_len(&link->out);
}

void link_take_tail(link_t *link, size_t mark, base_buf_t *dst)
{
    size_t len = base_buf_len(&link->out);
    if (mark >= len)
        return;
    base_buf_append(dst, base_buf_head(&link->out) + mark, len - mark);
    link->out.size -= len - mark;
    if (link->out.size == link->out.off)
        link->out.size = link->out.off = 0;
}

void link_emit_raw(link_t *link, const void *frames, size_t len)
{
    if (link->failed || link->closed)
        return;
    base_buf_append(&link->out, frames, len);
}

/* Writes are the link's own: write() on the socket, as much as the kernel takes; when it takes no more, h2o tells us
 * once the socket is writable again (h2o_socket_notify_write). h2o_socket_write is not used here on purpose: in h2o
 * 2.2.5 a write that completes at once, started outside h2o's own callbacks (as our end-of-pass flush is), leaves the
 * socket registered for EPOLLOUT with no write callback, and the next writable event aborts the process in
 * write_pending. */
static void link_write(link_t *link);

static void on_writable(h2o_socket_t *sock, const char *err)
{
    link_t *link = sock->data;
    link->waiting = 0;
    if (err != NULL) {
        link_fail(link, err);
        return;
    }
    link_write(link);
}

static void link_write(link_t *link)
{
    int fd = h2o_socket_get_fd(link->sock);
    while (base_buf_len(&link->out) != 0) {
        ssize_t n = write(fd, base_buf_head(&link->out), base_buf_len(&link->out));
        if (n > 0) {
            base_buf_consume(&link->out, (size_t)n);
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN) {
            link->waiting = 1;
            h2o_socket_notify_write(link->sock, on_writable);
            return;
        }
        link_fail(link, n == -1 ? strerror(errno) : "write returned 0");
        return;
    }
    base_buf_shrink(&link->out, 1 << 20);
    if (link->congested && link_backlog(link) < LINK_LOW_WATER) {
        link->congested = 0;
        if (link->cb->on_drained != NULL)
            link->cb->on_drained(link);
    }
}

int link_congested(link_t *link)
{
    if (link_backlog(link) > LINK_HIGH_WATER)
        link->congested = 1;
    return link->congested;
}

void link_flush(link_t *link)
{
    if (link->failed || link->closed || link->waiting)
        return;
    link_write(link);
}

size_t link_backlog(const link_t *link)
{
    return base_buf_len(&link->out);
}

int link_is_ready(const link_t *link)
{
    return link->ready;
}

void *link_data(const link_t *link)
{
    return link->data;
}
