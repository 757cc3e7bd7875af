/*
 * link.c — proto frames over a Unix stream socket, on any loop (see link.h).
 */
#include "link.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "loop.h"

/* What one readable event reads at most before decoding: the loops are level-triggered, so the rest waits for the next
 * pass instead of keeping this link's peer in front of everything else. */
#define LINK_READ_MAX (4 << 20)
#define LINK_READ_CHUNK (64 << 10)

struct st_link_t {
    const link_io_t *io;
    void *handle; /* the owner's loop's, for our fd */
    int fd;
    base_buf_t in; /* read, not decoded yet (a partial frame) */
    const link_callbacks_t *cb;
    void *data;
    proto_decoder_t dec;
    size_t max_frame;
    proto_role_t peer_role;
    base_buf_t out;     /* frames not written yet */
    /* link_cancel: positions count every byte ever queued; out's head is at head_pos, and the frames taken out of it
     * (holes, by position, all at or after head_pos) still count, so that later tickets stay valid */
    uint64_t head_pos;
    link_ticket_t *holes;
    size_t num_holes, cap_holes;
    size_t hole_bytes;
    unsigned ready : 1; /* peer HELLO received */
    unsigned failed : 1;
    unsigned in_read : 1;
    unsigned closed : 1; /* link_close called inside on_frame: free when the read loop ends */
    unsigned congested : 1;
    unsigned waiting : 1;      /* for the socket to become writable */
    unsigned read_stopped : 1; /* link_read_stop: nothing more is decoded or read until link_read_resume */
};

static void link_free(link_t *link)
{
    link->io->close(link->handle);
    proto_decoder_dispose(&link->dec);
    base_buf_dispose(&link->in);
    base_buf_dispose(&link->out);
    free(link->holes);
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

/* Reads what the socket holds (up to LINK_READ_MAX). Returns NULL, or why the link failed. */
static const char *link_read(link_t *link)
{
    for (size_t total = 0; total < LINK_READ_MAX;) {
        char *dst = base_buf_reserve(&link->in, LINK_READ_CHUNK);
        ssize_t n = read(link->fd, dst, LINK_READ_CHUNK);
        if (n > 0) {
            base_buf_commit(&link->in, (size_t)n);
            total += (size_t)n;
            continue;
        }
        if (n == 0)
            return "connection closed by peer";
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN)
            return NULL;
        return strerror(errno);
    }
    return NULL;
}

/* Decodes and dispatches the frames in the input until it runs out, the link is closed or link_read_stop is called.
 * Returns 0, or -1 when the link was freed (closed from on_frame, or failed: `why` set by the caller's read, or a
 * malformed frame). */
static int link_decode(link_t *link, const char *why)
{
    size_t off = 0;
    const char *head = base_buf_head(&link->in);
    size_t len = base_buf_len(&link->in);
    link->in_read = 1;
    while (!link->closed && !link->read_stopped) {
        proto_msg_t msg;
        long n = proto_decode(&link->dec, head + off, len - off, &msg);
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
    base_buf_consume(&link->in, off);
    base_buf_shrink(&link->in, 1 << 20);
    if (why != NULL) {
        link_fail(link, why);
        return -1;
    }
    return 0;
}

void link_on_readable(link_t *link)
{
    if (link->failed || link->closed)
        return;
    if (link->read_stopped) {
        /* reading is off (io->want_read), yet the loop reports a hang-up or an error, which epoll always does: see if
         * the peer is gone rather than be woken for it again and again */
        char c;
        ssize_t n = recv(link->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n == 0 || (n == -1 && errno != EAGAIN && errno != EINTR))
            link_fail(link, n == 0 ? "connection closed by peer" : strerror(errno));
        return;
    }
    link_decode(link, link_read(link));
}

void link_read_stop(link_t *link)
{
    if (link->read_stopped || link->failed)
        return;
    link->read_stopped = 1;
    link->io->want_read(link->handle, 0);
}

int link_read_resume(link_t *link)
{
    if (!link->read_stopped)
        return 0;
    link->read_stopped = 0;
    if (link_decode(link, NULL) != 0)
        return -1;
    if (!link->read_stopped)
        link->io->want_read(link->handle, 1);
    return 0;
}

int link_read_is_stopped(const link_t *link)
{
    return link->read_stopped;
}

link_t *link_open(const link_io_t *io, void *loop, int fd, size_t max_frame, proto_role_t role, int shard,
                  const link_callbacks_t *cb, void *data)
{
    link_t *link = xcalloc(1, sizeof(*link));
    link->io = io;
    link->fd = fd;
    /* the link's reads and writes must never wait: a loop tells it when they can go on */
    int flags = fcntl(fd, F_GETFL);
    if (flags == -1 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
        log_warn("link: fcntl(O_NONBLOCK): %s", strerror(errno));
    link->cb = cb;
    link->data = data;
    link->max_frame = max_frame;
    link->peer_role = role == PROTO_ROLE_ROUTER ? PROTO_ROLE_SHARD : PROTO_ROLE_ROUTER;
    proto_decoder_init(&link->dec, max_frame);
    base_buf_init(&link->out);
    base_buf_init(&link->in);
    link->handle = io->watch(loop, fd, link);
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

int link_emit_ticket(link_t *link, const proto_msg_t *msg, link_ticket_t *ticket)
{
    uint64_t end = link->head_pos + base_buf_len(&link->out) + link->hole_bytes;
    int ret = link_emit(link, msg);
    ticket->pos = end;
    ticket->len = ret == 0 ? (size_t)(link->head_pos + base_buf_len(&link->out) + link->hole_bytes - end) : 0;
    return ret;
}

int link_cancel(link_t *link, const link_ticket_t *ticket)
{
    if (link->failed || link->closed)
        return -ENOTCONN;
    if (ticket->pos < link->head_pos || ticket->len == 0)
        return -EALREADY;
    /* where it is in `out`: the holes before it are not there */
    size_t i = 0, before = 0;
    for (; i < link->num_holes && link->holes[i].pos <= ticket->pos; ++i) {
        if (link->holes[i].pos == ticket->pos)
            return -EALREADY; /* taken back already */
        before += link->holes[i].len;
    }
    size_t at = (size_t)(ticket->pos - link->head_pos) - before;
    size_t len = base_buf_len(&link->out);
    if (at + ticket->len > len)
        return -EALREADY; /* not ours (a ticket used twice): leave the output as it is */
    char *head = link->out.data + link->out.off;
    memmove(head + at, head + at + ticket->len, len - at - ticket->len);
    link->out.size -= ticket->len;
    if (base_buf_len(&link->out) == 0) {
        /* nothing left to write: every byte queued so far was written or taken back */
        link->head_pos += link->hole_bytes + ticket->len;
        link->num_holes = link->hole_bytes = 0;
        link->out.off = link->out.size = 0;
        base_buf_shrink(&link->out, 1 << 20);
        return 0;
    }
    if (link->out.capacity > (1 << 20) && base_buf_len(&link->out) < link->out.capacity / 4) {
        /* give the memory back now, not when the peer reads again: the queue of a stopped shard may be mostly frames
         * taken back, and it may stay stopped */
        size_t left = base_buf_len(&link->out);
        memmove(link->out.data, link->out.data + link->out.off, left);
        link->out.off = 0;
        link->out.size = left;
        link->out.capacity = left * 2;
        link->out.data = xrealloc(link->out.data, link->out.capacity);
    }
    if (link->num_holes == link->cap_holes) {
        link->cap_holes = link->cap_holes != 0 ? link->cap_holes * 2 : 16;
        link->holes = xrealloc(link->holes, link->cap_holes * sizeof(*link->holes));
    }
    if (i < link->num_holes)
        memmove(link->holes + i + 1, link->holes + i, (link->num_holes - i) * sizeof(*link->holes));
    link->holes[i] = *ticket;
    ++link->num_holes;
    link->hole_bytes += ticket->len;
    return 0;
}

/* `n` bytes of out were written: head_pos moves past them and past the holes among them. */
static void link_advance(link_t *link, size_t n)
{
    uint64_t cur = link->head_pos;
    size_t i = 0;
    for (; i < link->num_holes && link->holes[i].pos - cur <= n; ++i) {
        n -= (size_t)(link->holes[i].pos - cur);
        cur = link->holes[i].pos + link->holes[i].len;
        link->hole_bytes -= link->holes[i].len;
    }
    link->head_pos = cur + n;
    if (i == 0)
        return;
    link->num_holes -= i;
    memmove(link->holes, link->holes + i, link->num_holes * sizeof(*link->holes));
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

/* Writes are the link's own: write() on the socket, as much as the kernel takes; when it takes no more, the owner's
 * loop says when it is writable again (io->want_write, link_on_writable). In the router this also keeps h2o's
 * h2o_socket_write out of it: in h2o 2.2.5 a write that completes at once, started outside h2o's own callbacks (as
 * our end-of-pass flush is), leaves the socket registered for EPOLLOUT with no write callback, and the next writable
 * event aborts the process in write_pending. */
static void link_write(link_t *link);

void link_on_writable(link_t *link)
{
    if (!link->waiting || link->failed || link->closed)
        return;
    link->waiting = 0;
    link->io->want_write(link->handle, 0);
    link_write(link);
}

static void link_write(link_t *link)
{
    while (base_buf_len(&link->out) != 0) {
        ssize_t n = write(link->fd, base_buf_head(&link->out), base_buf_len(&link->out));
        if (n > 0) {
            base_buf_consume(&link->out, (size_t)n);
            link_advance(link, (size_t)n);
            continue;
        }
        if (n == -1 && errno == EINTR)
            continue;
        if (n == -1 && errno == EAGAIN) {
            link->waiting = 1;
            link->io->want_write(link->handle, 1);
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

/* ---- on loop.h's loop ---- */

static void loop_on_event(loop_watch_t *watch, int events)
{
    link_t *link = loop_watch_data(watch);
    /* writable first: reading may run on_closed, after which the link is gone */
    if ((events & LOOP_WRITABLE) != 0)
        link_on_writable(link);
    else if ((events & LOOP_READABLE) != 0)
        link_on_readable(link);
}

static void *loop_io_watch(void *loop, int fd, link_t *link)
{
    loop_watch_t *w = loop_watch(loop, fd, loop_on_event, link);
    if (w == NULL) {
        log_error("link: cannot watch fd %d: %s", fd, strerror(errno));
        abort();
    }
    return w;
}

static void loop_io_want_write(void *handle, int on)
{
    loop_watch_write(handle, on);
}

static void loop_io_want_read(void *handle, int on)
{
    loop_watch_read(handle, on);
}

static void loop_io_close(void *handle)
{
    int fd = loop_watch_fd(handle);
    loop_unwatch(handle);
    close(fd);
}

const link_io_t link_io_loop = {loop_io_watch, loop_io_want_write, loop_io_want_read, loop_io_close};
