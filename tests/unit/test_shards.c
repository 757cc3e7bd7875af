/*
 * test_shards.c — router/shards.c in one process, without a shard process: the slot table file (first start,
 * reload, a file that is not this node's, a backup copy), and the frames a shard sends, over a real link (a
 * socketpair; this test plays the shard with the real codec) to real WebSocket connections (socketpairs through
 * ws.c): ATTACH puts a connection in its room, BROADCAST fans out once per room except the listed cids, SEND goes to
 * one connection, CLOSE_CONN closes one without telling the shard back, a client's message reaches the shard as
 * MESSAGE, and a link that goes away closes its rooms' connections with 1011.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "router.h"

static config_t conf;
static char dir[] = "/tmp/partyd-test-shards-XXXXXX";
static const ws_config_t ws_conf = {.max_message = 4096, .max_output = 1 << 20, .ping_ms = 60000};
static const ws_callbacks_t ws_cb = {shards_on_ws_message, shards_on_ws_closed, NULL};

static void reset_router(void)
{
    memset(router.shards, 0, sizeof(router.shards));
    memset(&router.slots, 0, sizeof(router.slots));
    router.num_shards = 0;
}

static void slots_file(char *out, size_t len, const char *suffix)
{
    snprintf(out, len, "%s/slots%s", dir, suffix);
}

/* ---- the slot table ---- */

static void test_first_start_writes_rendezvous_table(void **state)
{
    (void)state;
    char path[BASE_PATH_MAX];
    slots_file(path, sizeof(path), "");
    unlink(path);
    reset_router();
    const int ids[] = {1, 0};
    assert_int_equal(shards_init(ids, 2), 0);
    assert_int_equal(router.num_shards, 2);
    assert_int_equal(router.ids[0], 0); /* sorted */
    assert_int_equal(router.ids[1], 1);
    slots_table_t want;
    slots_shard_t list[] = {{0, 1.0}, {1, 1.0}};
    assert_int_equal(slots_build(&want, list, 2), 0);
    assert_memory_equal(&router.slots, &want, sizeof(want));
    assert_int_equal(access(path, R_OK), 0);
    /* a room's owner is its slot's entry */
    uint16_t slot;
    uint16_t owner = shards_owner("main", 4, "lobby", 5, &slot);
    assert_int_equal(slot, slots_of_room("main", 4, "lobby", 5));
    assert_int_equal(owner, want.owner[slot]);
}

static void test_reload_keeps_the_recorded_table(void **state)
{
    (void)state;
    reset_router();
    const int ids[] = {0, 1};
    assert_int_equal(shards_init(ids, 2), 0);
    /* a table that is not the rendezvous one (a move happened): recorded, and found again as it is */
    for (size_t s = 0; s < SLOTS_COUNT; ++s)
        router.slots.owner[s] = (uint16_t)(s % 3 == 0);
    assert_int_equal(shards_save_slots(), 0);
    slots_table_t saved = router.slots;
    reset_router();
    assert_int_equal(shards_init(ids, 2), 0);
    assert_memory_equal(&router.slots, &saved, sizeof(saved));
    /* a backup copy has the same bytes */
    char sub[BASE_PATH_MAX], a[BASE_PATH_MAX + 8], b[BASE_PATH_MAX + 8];
    snprintf(sub, sizeof(sub), "%s/backup", dir);
    assert_true(mkdir(sub, 0700) == 0 || errno == EEXIST);
    assert_int_equal(shards_save_slots_in(sub), 0);
    snprintf(a, sizeof(a), "%s/slots", dir);
    snprintf(b, sizeof(b), "%s/slots", sub);
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    static char ba[64 << 10], bb[64 << 10];
    size_t na = fread(ba, 1, sizeof(ba), fa), nb = fread(bb, 1, sizeof(bb), fb);
    fclose(fa);
    fclose(fb);
    assert_int_equal(na, nb);
    assert_memory_equal(ba, bb, na);
}

static void test_foreign_or_corrupt_table_is_refused(void **state)
{
    (void)state;
    const int two[] = {0, 1}, one[] = {0};
    reset_router();
    assert_int_equal(shards_init(two, 2), 0);
    router.slots.owner[7] = 1;
    assert_int_equal(shards_save_slots(), 0);
    /* the node now has only shard 0, but the file gives a slot to shard 1: refuse to guess */
    reset_router();
    assert_int_equal(shards_init(one, 1), -1);
    /* a truncated file */
    char path[BASE_PATH_MAX];
    slots_file(path, sizeof(path), "");
    assert_int_equal(truncate(path, 100), 0);
    reset_router();
    assert_int_equal(shards_init(two, 2), -1);
    unlink(path);
}

static void test_set_active(void **state)
{
    (void)state;
    reset_router();
    shards_set_active(5, 1);
    shards_set_active(2, 1);
    shards_set_active(9, 1);
    assert_int_equal(router.num_shards, 3);
    assert_int_equal(router.ids[0], 2);
    assert_int_equal(router.ids[1], 5);
    assert_int_equal(router.ids[2], 9);
    shards_set_active(5, 0);
    assert_int_equal(router.num_shards, 2);
    assert_int_equal(router.ids[1], 9);
}

/* ---- frames from a shard ---- */

static struct {
    int fd; /* the shard's end of the link */
    proto_decoder_t dec;
    char in[1 << 16];
    size_t in_len;
} shard;

/* One loop pass as the router runs it. */
static void pass(void)
{
    h2o_evloop_run(router.loop, 10);
    shards_flush();
    ws_flush();
}

static void shard_send(const proto_msg_t *m)
{
    base_buf_t b;
    base_buf_init(&b);
    assert_int_equal(proto_encode(&b, m, 1 << 20), 0);
    assert_int_equal(write(shard.fd, base_buf_head(&b), base_buf_len(&b)), (ssize_t)base_buf_len(&b));
    base_buf_dispose(&b);
}

/* The next frame the router sent to the shard; *out points into `shard.in` until the next call. */
static size_t shard_used; /* bytes of shard.in the last frame took */
static void shard_recv(proto_msg_t *out)
{
    memmove(shard.in, shard.in + shard_used, shard.in_len - shard_used);
    shard.in_len -= shard_used;
    shard_used = 0;
    for (int i = 0; i < 500; ++i) {
        long n = proto_decode(&shard.dec, shard.in, shard.in_len, out);
        assert_true(n != -1);
        if (n > 0) {
            shard_used = (size_t)n;
            return;
        }
        ssize_t r = read(shard.fd, shard.in + shard.in_len, sizeof(shard.in) - shard.in_len);
        if (r > 0)
            shard.in_len += (size_t)r;
        else
            pass();
    }
    fail_msg("no frame from the router");
}

/* A connection to room `key` of shard 0 as http.c leaves it after OPEN, attached to a socketpair; *peer is the
 * client's end. Its pending record is the test's (http.c's in the router). */
static ws_conn_t *conn_in(const char *key, int *peer, router_pending_t **pending)
{
    ws_conn_t *c = ws_conn_new();
    c->shard = 0;
    c->shard_knows = 1;
    size_t len = strlen(key);
    router_pending_t *p = xcalloc(1, sizeof(*p) + len);
    memcpy(p->key, key, len);
    p->key_len = len;
    p->conn = c;
    c->pending = p;
    *pending = p;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    ws_conn_attach(c, sv[0], NULL, 0);
    *peer = sv[1];
    return c;
}

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

static int peer_empty(int fd)
{
    uint8_t b;
    return read(fd, &b, 1) == -1 && errno == EAGAIN;
}

static void test_frames(void **state)
{
    (void)state;
    reset_router();
    router.supervisor = getppid(); /* a lost link is a shard restarting, not the node going away */
    const int ids[] = {0};
    assert_int_equal(shards_init(ids, 1), 0);
    ws_init(router.loop, &ws_conf, &ws_cb);
    migrate_init(0);

    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    shard.fd = sv[1];
    proto_decoder_init(&shard.dec, 1 << 20);
    shards_on_up(0, 4242, 0, sv[0]);
    proto_msg_t m;
    shard_recv(&m);
    assert_int_equal(m.type, PROTO_HELLO);
    assert_int_equal(m.role, PROTO_ROLE_ROUTER);
    /* then which slots the shard owns (all of them: it is the only one) */
    shard_recv(&m);
    assert_int_equal(m.type, PROTO_SLOT);
    assert_int_equal(m.method.len, 5);
    assert_memory_equal(m.method.base, "owned", 5);
    assert_int_equal(m.data.len, SLOTS_COUNT / 8);
    for (size_t i = 0; i < SLOTS_COUNT / 8; ++i)
        assert_int_equal((unsigned char)m.data.base[i], 0xff);
    proto_msg_t hello = {.type = PROTO_HELLO, .version = PROTO_VERSION, .role = PROTO_ROLE_SHARD, .shard = 0, .pid = 4242};
    shard_send(&hello);
    for (int i = 0; i < 100 && !shards_all_up(); ++i)
        pass();
    assert_true(shards_all_up());
    assert_int_equal(router.shards[0].state, SHARD_UP);

    /* three connections: a and b in main/r1, c in main/r2 */
    int pa, pb, pc;
    router_pending_t *qa, *qb, *qc;
    ws_conn_t *a = conn_in("main/r1", &pa, &qa), *b = conn_in("main/r1", &pb, &qb), *c = conn_in("main/r2", &pc, &qc);
    uint64_t a_cid = a->cid; /* a's record is freed at the end of the pass that closes it */
    ws_conn_t *all[] = {a, b, c};
    router_pending_t *pendings[] = {qa, qb, qc};
    for (size_t i = 0; i < 3; ++i) {
        proto_msg_t at = {.type = PROTO_ATTACH, .id = all[i]->cid};
        shard_send(&at);
    }
    for (int i = 0; i < 100 && c->room == NULL; ++i)
        pass();
    router_room_t *r1 = shards_find_room("main/r1", 7), *r2 = shards_find_room("main/r2", 7);
    assert_non_null(r1);
    assert_non_null(r2);
    assert_int_equal(r1->count, 2);
    assert_int_equal(r2->count, 1);
    assert_ptr_equal(a->room, r1);
    /* the upgrade is done as far as this test goes: the records are http.c's to free in the router */
    for (size_t i = 0; i < 3; ++i) {
        all[i]->pending = NULL;
        free(pendings[i]);
    }

    /* BROADCAST to main/r1 except b: only a gets it; r2's c gets nothing */
    uint64_t except[] = {b->cid};
    proto_msg_t bc = {.type = PROTO_BROADCAST, .party = PROTO_STR("main"), .room = PROTO_STR("r1"), .data = PROTO_STR("hi"),
                      .except = except, .num_except = 1};
    shard_send(&bc);
    uint8_t got[8];
    peer_read(pa, got, 4);
    assert_memory_equal(got, "\x81\x02hi", 4);
    /* SEND to c, binary: a fence too (frames from one link are handled in order) */
    proto_msg_t sd = {.type = PROTO_SEND, .id = c->cid, .binary = 1, .data = PROTO_STR("c!")};
    shard_send(&sd);
    peer_read(pc, got, 4);
    assert_memory_equal(got, "\x82\x02" "c!", 4);
    assert_true(peer_empty(pb));
    assert_true(peer_empty(pa));

    /* a BROADCAST to main/r1 from another shard (a stale copy of the room on its old shard) reaches no socket */
    int sv1[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv1), 0);
    router.backing_up = 1; /* (keeps the router from moving slots to the new shard meanwhile) */
    shards_on_up(1, 4243, 0, sv1[0]);
    proto_msg_t hello1 = {.type = PROTO_HELLO, .version = PROTO_VERSION, .role = PROTO_ROLE_SHARD, .shard = 1, .pid = 4243};
    proto_msg_t stale = {.type = PROTO_BROADCAST, .party = PROTO_STR("main"), .room = PROTO_STR("r1"), .data = PROTO_STR("no")};
    base_buf_t b1;
    base_buf_init(&b1);
    assert_int_equal(proto_encode(&b1, &hello1, 1 << 20), 0);
    assert_int_equal(proto_encode(&b1, &stale, 1 << 20), 0);
    assert_int_equal(write(sv1[1], base_buf_head(&b1), base_buf_len(&b1)), (ssize_t)base_buf_len(&b1));
    base_buf_dispose(&b1);
    for (int i = 0; i < 100 && router.shards[1].state != SHARD_UP; ++i)
        pass();
    assert_int_equal(router.shards[1].state, SHARD_UP);
    for (int i = 0; i < 5; ++i)
        pass();
    proto_msg_t fence = {.type = PROTO_BROADCAST,
                         .party = PROTO_STR("main"),
                         .room = PROTO_STR("r1"),
                         .data = PROTO_STR("ok"),
                         .except = except,
                         .num_except = 1};
    shard_send(&fence);
    peer_read(pa, got, 4);
    assert_memory_equal(got, "\x81\x02ok", 4);
    assert_true(peer_empty(pa));
    close(sv1[1]);
    for (int i = 0; i < 100 && shards_link(1) != NULL; ++i)
        pass();
    router.backing_up = 0;

    /* a client's message reaches the shard as MESSAGE with its cid */
    static const uint8_t masked[] = {0x81, 0x83, 0, 0, 0, 0, 'y', 'o', '!'};
    assert_int_equal(write(pb, masked, sizeof(masked)), (ssize_t)sizeof(masked));
    shard_recv(&m);
    assert_int_equal(m.type, PROTO_MESSAGE);
    assert_true(m.id == b->cid);
    assert_int_equal(m.data.len, 3);
    assert_memory_equal(m.data.base, "yo!", 3);

    /* CLOSE_CONN: b is closed with the room's code; the shard is not told back (no CLOSE) */
    proto_msg_t cc = {.type = PROTO_CLOSE_CONN, .id = b->cid, .code = 4001, .reason = PROTO_STR("bye")};
    shard_send(&cc);
    peer_read(pb, got, 7);
    assert_memory_equal(got, "\x88\x05\x0f\xa1" "bye", 7);
    assert_int_equal(r1->count, 1);
    /* a's client closes: the shard hears CLOSE for a (and nothing for b before it) */
    static const uint8_t close_frame[] = {0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8};
    assert_int_equal(write(pa, close_frame, sizeof(close_frame)), (ssize_t)sizeof(close_frame));
    shard_recv(&m);
    assert_int_equal(m.type, PROTO_CLOSE);
    assert_true(m.id == a_cid);
    assert_int_equal(m.code, 1000);
    assert_null(shards_find_room("main/r1", 7)); /* the room went with its last connection */

    /* the link goes away: c is closed with 1011 so that its client reconnects */
    close(shard.fd);
    peer_read(pc, got, 4);
    assert_int_equal(got[0], 0x88);
    assert_int_equal(got[2] << 8 | got[3], 1011);
    assert_null(shards_link(0));
    assert_int_equal(router.shards[0].state, SHARD_DOWN);
    assert_null(shards_find_room("main/r2", 7));

    close(pa);
    close(pb);
    close(pc);
    proto_decoder_dispose(&shard.dec);
    ws_dispose();
    shards_dispose();
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_ERROR);
    assert_non_null(mkdtemp(dir));
    config_init_default(&conf);
    free(conf.data_dir);
    conf.data_dir = xstrdup(dir);
    router.conf = &conf;
    router.loop = h2o_evloop_create();
    router.max_frame = 1 << 20;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    h2o_evloop_destroy(router.loop);
    config_dispose(&conf);
    char cmd[BASE_PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_start_writes_rendezvous_table),
        cmocka_unit_test(test_reload_keeps_the_recorded_table),
        cmocka_unit_test(test_foreign_or_corrupt_table_is_refused),
        cmocka_unit_test(test_set_active),
        cmocka_unit_test(test_frames),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
