/*
 * test_ws.c — router/ws*.c's connections and output queues, driven over socketpairs on a real h2o loop: a client
 * frame arriving, bytes h2o read past the 101, frames shared between queues, output queued before the 101, the
 * output cap (1008), bad UTF-8 (1007), the closing handshake both ways, pause/resume, and cids that never find a
 * newer record. Every test runs twice: with io_uring batching and with PARTYD_IO_URING=0 (one writev per
 * connection), the two write paths of ws_flush.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <h2o.h>

#include "base.h"
#include "ws.h"

#define MAX_OUTPUT 4096

static h2o_evloop_t *loop;
static const ws_config_t conf = {.max_message = 1024, .max_output = MAX_OUTPUT, .ping_ms = 60000};

/* what the callbacks saw */
static struct {
    int messages, closes;
    int binary;
    uint8_t data[2048];
    size_t len;
    int code, clean;
    char reason[128];
    ws_conn_t *closed_conn;
} seen;

static void on_message(ws_conn_t *conn, int binary, const uint8_t *data, size_t len)
{
    (void)conn;
    ++seen.messages;
    seen.binary = binary;
    assert_true(len <= sizeof(seen.data));
    memcpy(seen.data, data, len);
    seen.len = len;
}

static void on_closed(ws_conn_t *conn, int code, const char *reason, int clean)
{
    ++seen.closes;
    seen.closed_conn = conn;
    seen.code = code;
    seen.clean = clean;
    snprintf(seen.reason, sizeof(seen.reason), "%s", reason);
}

static const ws_callbacks_t callbacks = {on_message, on_closed, NULL};

static int setup(int uring)
{
    if (uring)
        unsetenv("PARTYD_IO_URING");
    else
        setenv("PARTYD_IO_URING", "0", 1);
    memset(&seen, 0, sizeof(seen));
    loop = h2o_evloop_create();
    ws_init(loop, &conf, &callbacks);
    return 0;
}
static int setup_uring(void **state)
{
    (void)state;
    return setup(1);
}
static int setup_writev(void **state)
{
    (void)state;
    return setup(0);
}
static int teardown(void **state)
{
    (void)state;
    ws_dispose();
    h2o_evloop_destroy(loop);
    return 0;
}

/* One loop pass as the router runs it: events, then the end-of-pass flush. */
static void pass(void)
{
    h2o_evloop_run(loop, 10);
    ws_flush();
}

/* Passes until `cond` holds (a deadline of 500 passes, each at most 10 ms idle). */
#define PUMP_UNTIL(cond)                                                                                                        \
    do {                                                                                                                       \
        int n_ = 0;                                                                                                            \
        while (!(cond) && n_++ < 500)                                                                                          \
            pass();                                                                                                            \
        assert_true(cond);                                                                                                     \
    } while (0)

/* A connection attached to one end of a socketpair; *peer is the client's end (non-blocking). */
static ws_conn_t *attached(int *peer, const uint8_t *leftover, size_t len)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ws_conn_t *c = ws_conn_new();
    assert_non_null(c);
    uint8_t copy[256];
    assert_true(len <= sizeof(copy));
    if (len != 0)
        memcpy(copy, leftover, len);
    ws_conn_attach(c, sv[0], len != 0 ? copy : NULL, len);
    *peer = sv[1];
    return c;
}

/* A masked client frame into out; returns its length. */
static size_t client_frame(uint8_t *out, int fin, int opcode, const void *payload, size_t len)
{
    static const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t n = 0;
    out[n++] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        out[n++] = (uint8_t)(0x80 | len);
    } else {
        out[n++] = 0x80 | 126;
        out[n++] = (uint8_t)(len >> 8);
        out[n++] = (uint8_t)len;
    }
    memcpy(out + n, mask, 4);
    n += 4;
    for (size_t i = 0; i < len; ++i)
        out[n + i] = ((const uint8_t *)payload)[i] ^ mask[i % 4];
    return n + len;
}

static void peer_write(int fd, const void *data, size_t len)
{
    assert_int_equal(write(fd, data, len), (ssize_t)len);
}

/* Reads exactly `len` bytes from the client's end, pumping the loop meanwhile. */
static void peer_read(int fd, uint8_t *out, size_t len)
{
    size_t got = 0;
    for (int i = 0; got < len && i < 500; ++i) {
        ssize_t r = read(fd, out + got, len - got);
        if (r > 0)
            got += (size_t)r;
        else
            pass();
    }
    assert_int_equal(got, len);
}

/* Whether the client's end has nothing to read now. */
static int peer_empty(int fd)
{
    uint8_t b;
    return read(fd, &b, 1) == -1 && errno == EAGAIN;
}

static void test_message_in(void **state)
{
    (void)state;
    int peer;
    attached(&peer, NULL, 0);
    uint8_t f[64];
    peer_write(peer, f, client_frame(f, 1, WS_OP_TEXT, "hello", 5));
    PUMP_UNTIL(seen.messages == 1);
    assert_int_equal(seen.binary, 0);
    assert_int_equal(seen.len, 5);
    assert_memory_equal(seen.data, "hello", 5);
    /* a message in two fragments, the second sent later */
    peer_write(peer, f, client_frame(f, 0, WS_OP_BINARY, "ab", 2));
    pass();
    assert_int_equal(seen.messages, 1);
    peer_write(peer, f, client_frame(f, 1, WS_OP_CONT, "cd", 2));
    PUMP_UNTIL(seen.messages == 2);
    assert_int_equal(seen.binary, 1);
    assert_memory_equal(seen.data, "abcd", 4);
    assert_int_equal(ws_stats()->messages_in, 2);
    close(peer);
    PUMP_UNTIL(seen.closes == 1);
    assert_int_equal(seen.code, 1006);
    assert_int_equal(seen.clean, 0);
}

/* Bytes h2o read past the upgrade request are the start of the stream. */
static void test_leftover(void **state)
{
    (void)state;
    uint8_t f[64];
    size_t n = client_frame(f, 1, WS_OP_TEXT, "early", 5);
    int peer;
    attached(&peer, f, n);
    assert_int_equal(seen.messages, 1);
    assert_memory_equal(seen.data, "early", 5);
    close(peer);
}

/* One frame in two queues: both clients get the same bytes; the frame lives until the last queue released it. */
static void test_shared_frame(void **state)
{
    (void)state;
    int p1, p2;
    ws_conn_t *a = attached(&p1, NULL, 0), *b = attached(&p2, NULL, 0);
    ws_frame_t *f = ws_frame_new(WS_OP_TEXT, "xyz", 3);
    ws_conn_send(a, f);
    ws_conn_send(b, f);
    assert_int_equal(f->refcnt, 3);
    ws_frame_release(f);
    ws_flush();
    uint8_t got[5];
    peer_read(p1, got, 5);
    assert_memory_equal(got, "\x81\x03xyz", 5);
    peer_read(p2, got, 5);
    assert_memory_equal(got, "\x81\x03xyz", 5);
    assert_true(peer_empty(p1));
    close(p1);
    close(p2);
    PUMP_UNTIL(seen.closes == 2);
}

/* Output queued while the upgrade is pending goes out, in order, once the socket is attached. */
static void test_pending_queue(void **state)
{
    (void)state;
    ws_conn_t *c = ws_conn_new();
    assert_non_null(c);
    for (int i = 0; i < 3; ++i) {
        char m = (char)('0' + i);
        ws_frame_t *f = ws_frame_new(WS_OP_TEXT, &m, 1);
        ws_conn_send(c, f);
        ws_frame_release(f);
    }
    ws_flush(); /* nothing to write to yet */
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ws_conn_attach(c, sv[0], NULL, 0);
    uint8_t got[9];
    peer_read(sv[1], got, 9);
    assert_memory_equal(got, "\x81\x01" "0\x81\x01" "1\x81\x01" "2", 9);
    close(sv[1]);
    PUMP_UNTIL(seen.closes == 1);
}

/* A client that does not read: once its queue would pass max_output it is closed with 1008, the others go on. */
static void test_output_cap(void **state)
{
    (void)state;
    int slow_peer, ok_peer;
    ws_conn_t *slow = attached(&slow_peer, NULL, 0), *ok = attached(&ok_peer, NULL, 0);
    uint8_t payload[1000];
    memset(payload, 'p', sizeof(payload));
    ws_frame_t *f = ws_frame_new(WS_OP_BINARY, payload, sizeof(payload));
    for (int i = 0; i < 4; ++i)
        ws_conn_send(slow, f); /* 4 × 1004 bytes: under the cap */
    assert_int_equal(seen.closes, 0);
    ws_conn_send(slow, f); /* the fifth passes it */
    assert_int_equal(seen.closes, 1);
    assert_ptr_equal(seen.closed_conn, slow);
    assert_int_equal(seen.code, 1008);
    assert_int_equal(ws_stats()->slow_consumers, 1);
    assert_false(ws_conn_is_open(slow));
    ws_conn_send(ok, f);
    ws_frame_release(f);
    ws_flush();
    uint8_t got[1004];
    peer_read(ok_peer, got, sizeof(got));
    assert_memory_equal(got, "\x82\x7e\x03\xe8", 4);
    /* the slow one gets a close frame with 1008 and nothing of the dropped frames after it */
    uint8_t close_hdr[4];
    peer_read(slow_peer, close_hdr, 4);
    assert_int_equal(close_hdr[0], 0x88);
    assert_int_equal(close_hdr[2] << 8 | close_hdr[3], 1008);
    close(slow_peer);
    close(ok_peer);
}

/* Text that is not UTF-8 fails the connection with 1007; the client gets the close frame. */
static void test_bad_utf8(void **state)
{
    (void)state;
    int peer;
    attached(&peer, NULL, 0);
    uint8_t f[16];
    peer_write(peer, f, client_frame(f, 1, WS_OP_TEXT, "\xc3\x28", 2));
    PUMP_UNTIL(seen.closes == 1);
    assert_int_equal(seen.messages, 0);
    assert_int_equal(seen.code, 1007);
    uint8_t got[4];
    peer_read(peer, got, 4);
    assert_int_equal(got[0], 0x88);
    assert_int_equal(got[2] << 8 | got[3], 1007);
    close(peer);
}

/* The server closes: on_closed runs inside ws_conn_close, the close frame goes out, nothing is sent after it, and
 * the record is gone once the client answered and a pass ended: its cid finds nothing, a new record has another. */
static void test_server_close(void **state)
{
    (void)state;
    int peer;
    ws_conn_t *c = attached(&peer, NULL, 0);
    uint64_t cid = c->cid;
    assert_ptr_equal(ws_conn_find(cid), c);
    ws_conn_close(c, 4000, "replaced");
    assert_int_equal(seen.closes, 1);
    assert_int_equal(seen.code, 4000);
    ws_frame_t *f = ws_frame_new(WS_OP_TEXT, "late", 4);
    ws_conn_send(c, f); /* ignored: a close was queued */
    ws_frame_release(f);
    uint8_t got[12];
    peer_read(peer, got, 12);
    assert_memory_equal(got, "\x88\x0a\x0f\xa0replaced", 12);
    assert_true(peer_empty(peer));
    uint8_t reply[16];
    uint8_t code[2] = {0x0f, 0xa0};
    peer_write(peer, reply, client_frame(reply, 1, WS_OP_CLOSE, code, 2));
    PUMP_UNTIL(ws_conn_find(cid) == NULL);
    assert_int_equal(seen.closes, 1); /* exactly once */
    ws_conn_t *d = ws_conn_new();
    assert_true(d->cid != cid);
    assert_null(ws_conn_find(cid));
    ws_conn_abort(d);
    close(peer);
}

/* The client closes: on_closed with its code, clean, and the close is echoed. */
static void test_client_close(void **state)
{
    (void)state;
    int peer;
    attached(&peer, NULL, 0);
    uint8_t f[32];
    uint8_t payload[4] = {0x03, 0xe8, 'o', 'k'};
    peer_write(peer, f, client_frame(f, 1, WS_OP_CLOSE, payload, 4));
    PUMP_UNTIL(seen.closes == 1);
    assert_int_equal(seen.code, 1000);
    assert_int_equal(seen.clean, 1);
    uint8_t got[4];
    peer_read(peer, got, 4);
    assert_int_equal(got[0], 0x88);
    assert_int_equal(got[2] << 8 | got[3], 1000);
    close(peer);
}

/* A ping is answered by a pong with the same payload, without reaching on_message. */
static void test_ping(void **state)
{
    (void)state;
    int peer;
    attached(&peer, NULL, 0);
    uint8_t f[32];
    peer_write(peer, f, client_frame(f, 1, WS_OP_PING, "p1", 2));
    uint8_t got[4];
    peer_read(peer, got, 4);
    assert_memory_equal(got, "\x8a\x02p1", 4);
    assert_int_equal(seen.messages, 0);
    close(peer);
}

/* A paused connection is not read (its shard is behind); resumed, what waited is delivered. */
static void test_pause_resume(void **state)
{
    (void)state;
    int peer;
    ws_conn_t *c = attached(&peer, NULL, 0);
    ws_conn_pause(c);
    uint8_t f[32];
    peer_write(peer, f, client_frame(f, 1, WS_OP_TEXT, "held", 4));
    for (int i = 0; i < 5; ++i)
        pass();
    assert_int_equal(seen.messages, 0);
    ws_conn_resume(c);
    PUMP_UNTIL(seen.messages == 1);
    assert_memory_equal(seen.data, "held", 4);
    close(peer);
}

/* A message over max_message fails with 1009 before it is buffered. */
static void test_too_big(void **state)
{
    (void)state;
    int peer;
    attached(&peer, NULL, 0);
    uint8_t big[1100], f[1200];
    memset(big, 'b', sizeof(big));
    peer_write(peer, f, client_frame(f, 1, WS_OP_BINARY, big, sizeof(big)));
    PUMP_UNTIL(seen.closes == 1);
    assert_int_equal(seen.code, 1009);
    assert_int_equal(seen.messages, 0);
    close(peer);
}

#define BOTH(t) {#t " (io_uring)", t, setup_uring, teardown, NULL}, {#t " (writev)", t, setup_writev, teardown, NULL}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        BOTH(test_message_in),  BOTH(test_leftover),   BOTH(test_shared_frame), BOTH(test_pending_queue),
        BOTH(test_output_cap),  BOTH(test_bad_utf8),   BOTH(test_server_close), BOTH(test_client_close),
        BOTH(test_ping),        BOTH(test_pause_resume), BOTH(test_too_big),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
