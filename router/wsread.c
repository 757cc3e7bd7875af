/*
 * wsread.c — WebSocket input: the private epoll set's readiness, plain reads into the shared buffer, a batch of
 * io_uring reads when many connections are readable at once, TLS input from h2o, and the frame callbacks (a
 * message, a ping, the peer's close). See ws_int.h.
 */
#include "ws_int.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "base.h"

/* ---- reading ---- */

static int on_frame_message(void *ctx, int opcode, uint8_t *data, size_t len)
{
    ws_conn_t *c = ctx;
    if (c->_state != ST_OPEN)
        return 0; /* closing: data is dropped */
    if (opcode == WS_OP_TEXT && !base_utf8_valid(data, len)) {
        ws__conn_fail(c, 1007, "invalid UTF-8 in a text message");
        return 1;
    }
    ++ws.stats.messages_in;
    ws.cb->on_message(c, opcode == WS_OP_BINARY, data, len);
    return c->_state != ST_OPEN;
}

static int on_frame_control(void *ctx, int opcode, uint8_t *data, size_t len)
{
    ws_conn_t *c = ctx;
    switch (opcode) {
    case WS_OP_PING:
        if (!(c->_flags & F_CLOSE_SENT))
            ws__queue_pong(c, data, len);
        return 0;
    case WS_OP_PONG:
        return 0; /* any input already counts as life */
    case WS_OP_CLOSE: {
        int code = 1005;
        char reason[124] = "";
        if (len == 1) {
            ws__conn_fail(c, 1002, "close frame with a one-byte payload");
            return 1;
        }
        if (len >= 2) {
            code = data[0] << 8 | data[1];
            if (!wsframe_close_code_valid(code)) {
                ws__conn_fail(c, 1002, "invalid close code");
                return 1;
            }
            if (!base_utf8_valid(data + 2, len - 2)) {
                ws__conn_fail(c, 1007, "invalid UTF-8 in the close reason");
                return 1;
            }
            memcpy(reason, data + 2, len - 2);
            reason[len - 2] = '\0';
        }
        c->_flags |= F_CLOSE_RECEIVED;
        /* echo the code, as clients expect to see the one they sent */
        ws__queue_close_frame(c, code == 1005 ? 0 : code, "");
        ws__report(c, code, reason, 1);
        ws__mark_dirty(c);
        return 1;
    }
    }
    return 0;
}

static const wsframe_callbacks_t frame_callbacks = {on_frame_message, on_frame_control};

/* Parses bytes that arrived. */
void ws__conn_consume(ws_conn_t *c, uint8_t *data, size_t len)
{
    c->_last_rx = ws__now();
    c->_flags &= ~F_PING_OUT;
    if (c->_flags & (F_DISCARD_INPUT | F_CLOSE_RECEIVED))
        return;
    wsframe_error_t err;
    if (wsframe_parse(&c->_parser, data, len, ws.conf->max_message, &frame_callbacks, c, &err) == -1)
        ws__conn_fail(c, err.code, err.reason);
}

/* What one read of the connection into `data` (`cap` bytes) returned, bytes or -errno: the bytes are consumed; EOF
 * or an error ends the connection. Returns 1 when the read filled `cap` (more may wait in the socket), else 0. */
static int conn_took(ws_conn_t *c, uint8_t *data, ssize_t r, size_t cap)
{
    if (r > 0) {
        ws.stats.bytes_in += (size_t)r;
        ws__conn_consume(c, data, (size_t)r);
        return (size_t)r == cap;
    }
    if (r != -EAGAIN && r != -EINTR)
        ws__conn_finish(c); /* EOF or error: whatever stage the close handshake was at, the socket is done */
    return 0;
}

static void conn_readable(ws_conn_t *c)
{
    /* a few reads per wake-up keeps one busy client from starving the others; epoll is level-triggered */
    for (int i = 0; i < 4 && c->_fd != -1 && !(c->_flags & F_PAUSED); ++i) {
        ssize_t n = read(c->_fd, ws.rbuf, READ_BUF_SIZE);
        if (!conn_took(c, ws.rbuf, n == -1 ? -errno : n, READ_BUF_SIZE))
            return;
    }
}

/* Reads the n (BATCH_MIN .. BATCH_MAX) readable connections with one submission (see ws_batch_t). */
static void read_batch(ws_conn_t **ready, unsigned n)
{
    ws_batch_t *b = ws.batch;
    for (unsigned i = 0; i < n; ++i) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);
        io_uring_prep_recv(sqe, ready[i]->_fd, b->rslot + (size_t)i * READ_SLOT, READ_SLOT, MSG_DONTWAIT);
        io_uring_sqe_set_data64(sqe, i);
    }
    ws__batch_complete(n);
    for (unsigned i = 0; i < n; ++i) {
        ws_conn_t *c = ready[i];
        int res = b->res[i];
        if (!ws__fd_live(c))
            continue; /* finished by what an earlier connection's bytes caused */
        /* bytes already read are consumed even if that paused this connection meanwhile (its shard's link is
         * congested): a pause stops the next read, as in conn_readable, and must not lose what was taken */
        if (conn_took(c, b->rslot + (size_t)i * READ_SLOT, res, READ_SLOT) && c->_fd != -1)
            conn_readable(c); /* the slot was full: the rest as a lone readable connection is read */
    }
}

void ws__on_epoll_ready(h2o_socket_t *sock, const char *err)
{
    (void)sock, (void)err;
    struct epoll_event evs[BATCH_MAX];
    ws_conn_t *ready[BATCH_MAX];
    unsigned nready = 0;
    int n = epoll_wait(ws.epfd, evs, BATCH_MAX, 0);
    for (int i = 0; i < n; ++i) {
        ws_conn_t *c = evs[i].data.ptr;
        if (!ws__fd_live(c) || (c->_flags & F_PAUSED) || !(evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
            continue;
        ready[nready++] = c;
    }
    if (ws.batch != NULL && nready >= BATCH_MIN) {
        read_batch(ready, nready);
    } else {
        for (unsigned i = 0; i < nready; ++i)
            if (ws__fd_live(ready[i]))
                conn_readable(ready[i]);
    }
    for (int i = 0; i < n; ++i) {
        ws_conn_t *c = evs[i].data.ptr;
        if (ws__fd_live(c) && (evs[i].events & EPOLLOUT) && (c->_flags & F_WANT_WRITE))
            ws__conn_write(c);
    }
}

void ws__on_tls_read(h2o_socket_t *sock, const char *err)
{
    ws_conn_t *c = sock->data;
    if (err != NULL) {
        ws__conn_finish(c);
        return;
    }
    size_t n = sock->input->size;
    ws.stats.bytes_in += n;
    /* h2o decrypted into its buffer, which is ours to unmask in place until consumed */
    ws__conn_consume(c, (uint8_t *)sock->input->bytes, n);
    if (c->_sock != NULL)
        h2o_buffer_consume(&sock->input, n);
}
