/*
 * test_proto.c — the router⇄shard codec: every message type round-trips, truncated input asks for more, and
 * malformed or oversized input is refused without crashing.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "proto.h"

#define CAP (1 << 20)

static const proto_header_t headers[] = {{PROTO_STR("host"), PROTO_STR("127.0.0.1:1999")}, {PROTO_STR("x-empty"), PROTO_STR("")}};
static const uint64_t except[] = {7, 1ull << 40, 0};

static proto_msg_t sample(proto_type_t type)
{
    proto_msg_t m = {.type = type};
    switch (type) {
    case PROTO_HELLO:
        m.version = PROTO_VERSION;
        m.role = PROTO_ROLE_SHARD;
        m.shard = 3;
        m.pid = 4242;
        break;
    case PROTO_OPEN:
        m.id = 99;
        m.party = PROTO_STR("main");
        m.room = PROTO_STR("room%41");
        m.conn_id = PROTO_STR("a b!");
        m.path = PROTO_STR("/parties/main/room%41/x");
        m.query = PROTO_STR("_pk=a+b%21");
        m.headers = headers;
        m.num_headers = 2;
        break;
    case PROTO_ATTACH:
    case PROTO_ACCEPT:
        m.id = UINT64_MAX;
        break;
    case PROTO_ADMIN:
        m.id = 3;
        m.method = PROTO_STR("rooms");
        m.data = PROTO_STR("{\"limit\":10}");
        break;
    case PROTO_REJECT:
        m.id = 5;
        m.status = 403;
        m.data = PROTO_STR("forbidden");
        break;
    case PROTO_MESSAGE:
    case PROTO_SEND:
        m.id = 12;
        m.binary = 1;
        m.data = proto_str("\0\1\2\xff", 4);
        break;
    case PROTO_CLOSE:
        m.id = 12;
        m.code = 1001;
        m.reason = PROTO_STR("going away");
        m.clean = 1;
        break;
    case PROTO_BROADCAST:
        m.party = PROTO_STR("relay");
        m.room = PROTO_STR("r");
        m.data = PROTO_STR("hello");
        m.except = except;
        m.num_except = 3;
        break;
    case PROTO_CLOSE_CONN:
        m.id = 1;
        m.code = 4000;
        m.reason = PROTO_STR("replaced");
        break;
    case PROTO_FETCH:
    case PROTO_REQUEST:
        m.id = 77;
        m.party = PROTO_STR("main");
        m.room = PROTO_STR("r");
        m.method = PROTO_STR("POST");
        m.path = PROTO_STR("/parties/main/r");
        m.query = PROTO_STR("");
        m.headers = headers;
        m.num_headers = 2;
        m.data = PROTO_STR("{\"content\":\"hi\"}");
        break;
    case PROTO_FETCH_REPLY:
    case PROTO_RESPONSE:
        m.id = 77;
        m.status = 201;
        m.headers = headers;
        m.num_headers = 1;
        m.data = PROTO_STR("{}");
        break;
    case PROTO_SLOT:
    case PROTO_SLOT_REPLY:
        m.id = 4;
        m.method = PROTO_STR("import");
        m.slot = 16383;
        m.last = 1;
        m.status = type == PROTO_SLOT_REPLY ? 200 : 0;
        m.data = proto_str("\0\0\0\1k\0\0\0\1v", 10);
        break;
    case PROTO_ADMIN_REPLY:
        m.id = 3;
        m.status = 200;
        m.data = PROTO_STR("{\"rooms\":[]}");
        break;
    }
    return m;
}

static void assert_str_eq(proto_str_t a, proto_str_t b)
{
    assert_int_equal(a.len, b.len);
    if (a.len != 0)
        assert_memory_equal(a.base, b.base, a.len);
}

static void assert_msg_eq(const proto_msg_t *a, const proto_msg_t *b)
{
    assert_int_equal(a->type, b->type);
    assert_true(a->id == b->id);
    assert_int_equal(a->version, b->version);
    assert_int_equal(a->role, b->role);
    assert_int_equal(a->shard, b->shard);
    assert_int_equal(a->pid, b->pid);
    assert_str_eq(a->party, b->party);
    assert_str_eq(a->room, b->room);
    assert_str_eq(a->conn_id, b->conn_id);
    assert_str_eq(a->method, b->method);
    assert_str_eq(a->path, b->path);
    assert_str_eq(a->query, b->query);
    assert_str_eq(a->data, b->data);
    assert_str_eq(a->reason, b->reason);
    assert_int_equal(a->binary, b->binary);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->code, b->code);
    assert_int_equal(a->clean, b->clean);
    assert_int_equal(a->slot, b->slot);
    assert_int_equal(a->last, b->last);
    assert_int_equal(a->num_headers, b->num_headers);
    for (size_t i = 0; i < a->num_headers; ++i) {
        assert_str_eq(a->headers[i].name, b->headers[i].name);
        assert_str_eq(a->headers[i].value, b->headers[i].value);
    }
    assert_int_equal(a->num_except, b->num_except);
    for (size_t i = 0; i < a->num_except; ++i)
        assert_true(a->except[i] == b->except[i]);
}

static void test_roundtrip_every_type(void **state)
{
    (void)state;
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    for (int t = PROTO_HELLO; t <= PROTO_TYPE_MAX_; ++t) {
        base_buf_t buf;
        base_buf_init(&buf);
        proto_msg_t in = sample((proto_type_t)t), out;
        assert_int_equal(proto_encode(&buf, &in, CAP), 0);
        long n = proto_decode(&dec, base_buf_head(&buf), base_buf_len(&buf), &out);
        assert_int_equal(n, (long)base_buf_len(&buf));
        assert_msg_eq(&in, &out);
        base_buf_dispose(&buf);
    }
    proto_decoder_dispose(&dec);
}

/* Frames back to back in one buffer decode one after the other. */
static void test_stream_of_frames(void **state)
{
    (void)state;
    base_buf_t buf;
    base_buf_init(&buf);
    for (int i = 0; i < 1000; ++i) {
        proto_msg_t m = sample(PROTO_MESSAGE);
        m.id = (uint64_t)i;
        assert_int_equal(proto_encode(&buf, &m, CAP), 0);
    }
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    size_t off = 0;
    for (int i = 0; i < 1000; ++i) {
        proto_msg_t out;
        long n = proto_decode(&dec, base_buf_head(&buf) + off, base_buf_len(&buf) - off, &out);
        assert_true(n > 0);
        assert_true(out.id == (uint64_t)i);
        off += (size_t)n;
    }
    assert_int_equal(off, base_buf_len(&buf));
    proto_decoder_dispose(&dec);
    base_buf_dispose(&buf);
}

/* Every strict prefix of a frame is "incomplete", never a misparse. */
static void test_truncated(void **state)
{
    (void)state;
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    for (int t = PROTO_HELLO; t <= PROTO_TYPE_MAX_; ++t) {
        base_buf_t buf;
        base_buf_init(&buf);
        proto_msg_t in = sample((proto_type_t)t), out;
        assert_int_equal(proto_encode(&buf, &in, CAP), 0);
        for (size_t len = 0; len < base_buf_len(&buf); ++len)
            assert_int_equal(proto_decode(&dec, base_buf_head(&buf), len, &out), -2);
        base_buf_dispose(&buf);
    }
    proto_decoder_dispose(&dec);
}

static void test_frame_cap(void **state)
{
    (void)state;
    base_buf_t buf;
    base_buf_init(&buf);
    char big[2000];
    memset(big, 'x', sizeof(big));
    proto_msg_t m = sample(PROTO_SEND);
    m.data = proto_str(big, sizeof(big));
    /* the encoder refuses, and leaves the buffer as it was */
    proto_msg_t small = sample(PROTO_ACCEPT);
    assert_int_equal(proto_encode(&buf, &small, 1000), 0);
    size_t before = base_buf_len(&buf);
    assert_int_equal(proto_encode(&buf, &m, 1000), -EMSGSIZE);
    assert_int_equal(base_buf_len(&buf), before);
    /* the decoder refuses a header announcing more than the cap before the payload even arrives */
    proto_decoder_t dec;
    proto_decoder_init(&dec, 1000);
    const unsigned char hdr[4] = {0, 0, 0x03, 0xe9}; /* 1001 */
    proto_msg_t out;
    assert_int_equal(proto_decode(&dec, (const char *)hdr, 4, &out), -1);
    assert_non_null(strstr(dec.error, "exceeds the cap"));
    proto_decoder_dispose(&dec);
    base_buf_dispose(&buf);
}

static long decode_payload(proto_decoder_t *dec, const void *payload, size_t len)
{
    char frame[512];
    frame[0] = (char)(len >> 24);
    frame[1] = (char)(len >> 16);
    frame[2] = (char)(len >> 8);
    frame[3] = (char)len;
    memcpy(frame + 4, payload, len);
    proto_msg_t out;
    return proto_decode(dec, frame, len + 4, &out);
}

static void test_malformed(void **state)
{
    (void)state;
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    static const struct {
        const char *what;
        const char *bytes;
        size_t len;
    } cases[] = {
        {"not msgpack", "\xc1", sizeof("\xc1") - 1},
        {"an array announcing 2^32 elements", "\xdd\xff\xff\xff\xff\x04\x01", sizeof("\xdd\xff\xff\xff\xff\x04\x01") - 1},
        {"a map announcing 65535 pairs", "\x92\x04\xde\xff\xff\x01\x01", sizeof("\x92\x04\xde\xff\xff\x01\x01") - 1},
        {"a str32 longer than the frame", "\x92\x04\xdb\x00\x01\x00\x00xx", sizeof("\x92\x04\xdb\x00\x01\x00\x00xx") - 1},
        {"not an array", "\x01", sizeof("\x01") - 1},
        {"empty array", "\x90", sizeof("\x90") - 1},
        {"unknown type 0", "\x91\x00", sizeof("\x91\x00") - 1},
        {"unknown type 99", "\x91\x63", sizeof("\x91\x63") - 1},
        {"type is a string", "\x92\xa1x\x01", sizeof("\x92\xa1x\x01") - 1},
        {"ACCEPT without its id", "\x91\x04", sizeof("\x91\x04") - 1},
        {"ACCEPT with an extra field", "\x93\x04\x01\x02", sizeof("\x93\x04\x01\x02") - 1},
        {"ACCEPT with a string id", "\x92\x04\xa1x", sizeof("\x92\x04\xa1x") - 1},
        {"ACCEPT with a negative id", "\x92\x04\xff", sizeof("\x92\x04\xff") - 1},
        {"two objects in one frame", "\x92\x04\x01\x01", sizeof("\x92\x04\x01\x01") - 1},
        {"MESSAGE with str data", "\x94\x06\x01\xc2\xa1x", sizeof("\x94\x06\x01\xc2\xa1x") - 1},
        {"REJECT with status 42", "\x94\x05\x01\x2a\xc4\x00", sizeof("\x94\x05\x01\x2a\xc4\x00") - 1},
        {"CLOSE with code 70000", "\x95\x07\x01\xce\x00\x01\x11\x70\xa0\xc2",
         sizeof("\x95\x07\x01\xce\x00\x01\x11\x70\xa0\xc2") - 1},
        {"HELLO with role 7", "\x95\x01\x01\x07\x00\x00", sizeof("\x95\x01\x01\x07\x00\x00") - 1},
        {"BROADCAST except not uints", "\x96\x09\xa1p\xa1r\xc2\xc4\x00\x91\xa1x",
         sizeof("\x96\x09\xa1p\xa1r\xc2\xc4\x00\x91\xa1x") - 1},
        {"REQUEST headers odd count", "\x99\x0b\x01\xa1p\xa1r\xa3GET\xa1/\xa0\x91\xa1h\xc4\x00",
         sizeof("\x99\x0b\x01\xa1p\xa1r\xa3GET\xa1/\xa0\x91\xa1h\xc4\x00") - 1},
        {"truncated inside (length says 3, object needs more)", "\x92\x04\xcf", sizeof("\x92\x04\xcf") - 1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); ++i) {
        long r = decode_payload(&dec, cases[i].bytes, cases[i].len);
        if (r != -1)
            fail_msg("%s: expected -1, got %ld", cases[i].what, r);
        assert_true(dec.error[0] != '\0');
    }
    /* an empty frame */
    const char zero[4] = {0};
    proto_msg_t out;
    assert_int_equal(proto_decode(&dec, zero, 4, &out), -1);
    proto_decoder_dispose(&dec);
}

/* Arbitrary bytes never crash the decoder and never claim more bytes than given. */
static void test_random_garbage(void **state)
{
    (void)state;
    proto_decoder_t dec;
    proto_decoder_init(&dec, 4096);
    unsigned seed = 12345;
    char buf[300];
    for (int iter = 0; iter < 20000; ++iter) {
        size_t len = (size_t)(rand_r(&seed) % sizeof(buf));
        for (size_t i = 0; i < len; ++i)
            buf[i] = (char)rand_r(&seed);
        if (len >= 4) { /* mostly plausible lengths */
            size_t pl = len - 4;
            buf[0] = 0;
            buf[1] = 0;
            buf[2] = (char)(pl >> 8);
            buf[3] = (char)pl;
        }
        proto_msg_t out;
        long r = proto_decode(&dec, buf, len, &out);
        assert_true(r == -1 || r == -2 || (r > 0 && (size_t)r <= len));
    }
    proto_decoder_dispose(&dec);
}

/* Frames appended to a buffer whose front was consumed (so appending slides the bytes) still decode, in order. */
static void test_encode_after_consume(void **state)
{
    (void)state;
    base_buf_t buf;
    base_buf_init(&buf);
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    char big[5000];
    memset(big, 'b', sizeof(big));
    size_t expect[256], head = 0, tail = 0;
    for (int round = 0; round < 200; ++round) {
        proto_msg_t m = sample(PROTO_SEND);
        m.data = proto_str(big, (size_t)(round * 37) % sizeof(big));
        assert_int_equal(proto_encode(&buf, &m, CAP), 0);
        expect[tail++ % 256] = m.data.len;
        /* a frame refused for its size leaves the buffer as it was */
        size_t before = base_buf_len(&buf);
        assert_int_equal(proto_encode(&buf, &m, 4), -EMSGSIZE);
        assert_int_equal(base_buf_len(&buf), before);
        /* consume every frame but the last (as a partial write would): the front is consumed, so the next append
         * slides what is left to the front of the buffer */
        proto_msg_t out;
        long n;
        while ((n = proto_decode(&dec, base_buf_head(&buf), base_buf_len(&buf), &out)) > 0 && (size_t)n < base_buf_len(&buf)) {
            assert_int_equal(out.type, PROTO_SEND);
            assert_int_equal(out.data.len, expect[head++ % 256]);
            for (size_t k = 0; k < out.data.len; ++k)
                assert_int_equal(out.data.base[k], 'b');
            base_buf_consume(&buf, (size_t)n);
        }
        assert_true(n > 0);
    }
    proto_decoder_dispose(&dec);
    base_buf_dispose(&buf);
}

/* SLOT_REPLY's slot and last-chunk fields are the int and the bool they were when they were named code and binary:
 * these are the bytes PROTO_VERSION 5 put on the wire before the rename, so the format did not change. */
static void test_slot_wire_format(void **state)
{
    (void)state;
    static const char v5[] = "\x00\x00\x00\x13\x97\x10\x04\xa5\x63\x68\x75\x6e\x6b\xcd\x3f\xff\xc3\xcc\xc8\xc4\x02\x6b\x76";
    proto_msg_t m = {.type = PROTO_SLOT_REPLY, .id = 4, .method = PROTO_STR("chunk"), .slot = 16383, .last = 1, .status = 200,
                     .data = PROTO_STR("kv")};
    base_buf_t buf;
    base_buf_init(&buf);
    assert_int_equal(proto_encode(&buf, &m, CAP), 0);
    assert_int_equal(base_buf_len(&buf), sizeof(v5) - 1);
    assert_memory_equal(base_buf_head(&buf), v5, sizeof(v5) - 1);
    proto_decoder_t dec;
    proto_decoder_init(&dec, CAP);
    proto_msg_t out;
    assert_int_equal(proto_decode(&dec, v5, sizeof(v5) - 1, &out), (long)sizeof(v5) - 1);
    assert_int_equal(out.slot, 16383);
    assert_int_equal(out.last, 1);
    assert_int_equal(out.code, 0);
    assert_int_equal(out.binary, 0);
    proto_decoder_dispose(&dec);
    base_buf_dispose(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_every_type),
        cmocka_unit_test(test_stream_of_frames),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_frame_cap),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_encode_after_consume),
        cmocka_unit_test(test_slot_wire_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
