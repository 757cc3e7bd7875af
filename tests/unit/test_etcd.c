/*
 * test_etcd.c — cluster/etcd.c and cluster/member.c against a REAL etcd (Debian's etcd-server), started by the test on
 * free loopback ports and killed at the end: put/get/delete/txn (succeeded false included: the gateway omits it), a
 * txn of 129 ops refused with etcd's word, a lease that lives while kept alive and expires when not, a watch that sees
 * puts and deletes in order, a compaction that cancels a watch and the resume from the read's revision + 1, a dead
 * first endpoint, a mute endpoint (a read retried on the next, a write reported as of unknown outcome), two
 * members that see each other and a leave, and etcd killed (SIGKILL) under a watch and a request.
 * Without an etcd binary the test is skipped (exit 77).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"
#include "etcd.h"
#include "loop.h"
#include "member.h"

static loop_t *loop;
static pid_t etcd_pid;
static char datadir[64] = "/tmp/partyd-etcd-XXXXXX";
static char client_url[64], dead_url[64];
static etcd_t *cli;

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* Runs the loop until *flag is set or `ms` pass; returns *flag. */
static int run_until(const int *flag, uint64_t ms)
{
    uint64_t deadline = base_now_mono_ms() + ms;
    while (!*flag && base_now_mono_ms() < deadline)
        loop_run_once(loop, 50);
    return *flag;
}

/* One request's result, copied out of its callback. */
typedef struct {
    int done, err, code, succeeded;
    char message[512];
    int64_t revision, count, lease_id, lease_ttl;
    size_t n_kvs;
    char keys[8][64], values[8][64];
    int64_t mod_revision[8], create_revision[8], lease[8];
} got_t;

static void on_result(etcd_t *e, const etcd_result_t *r, void *data)
{
    (void)e;
    got_t *g = data;
    memset(g, 0, sizeof(*g));
    g->done = 1;
    g->err = r->err;
    g->code = r->etcd_code;
    g->succeeded = r->succeeded;
    if (r->message != NULL)
        snprintf(g->message, sizeof(g->message), "%s", r->message);
    g->revision = r->revision;
    g->count = r->count;
    g->lease_id = r->lease_id;
    g->lease_ttl = r->lease_ttl;
    g->n_kvs = r->n_kvs;
    for (size_t i = 0; i < r->n_kvs && i < 8; ++i) {
        snprintf(g->keys[i], 64, "%s", r->kvs[i].key);
        snprintf(g->values[i], 64, "%.*s", (int)r->kvs[i].value_len, r->kvs[i].value);
        g->mod_revision[i] = r->kvs[i].mod_revision;
        g->create_revision[i] = r->kvs[i].create_revision;
        g->lease[i] = r->kvs[i].lease;
    }
}

/* waits for the answer, then makes `g` ready for the next request */
#define WAIT(g)                                                                                                                    \
    do {                                                                                                                           \
        assert_true(run_until(&(g).done, 15000));                                                                                  \
        (g).done = 0;                                                                                                              \
    } while (0)

static etcd_t *client(const char *a, const char *b)
{
    const char *eps[] = {a, b};
    etcd_config_t c = {.endpoints = eps, .n_endpoints = b != NULL ? 2 : 1, .request_timeout_ms = 3000};
    const char *err = NULL;
    etcd_t *e = etcd_create(&etcd_io_loop, loop, &c, &err);
    assert_non_null(e);
    return e;
}

static int start_etcd(void **state)
{
    (void)state;
    if (system("command -v etcd >/dev/null 2>&1") != 0) {
        print_message("etcd not installed (apt-get install etcd-server): skipped\n");
        exit(77);
    }
    assert_non_null(mkdtemp(datadir));
    int cport = free_port(), pport = free_port();
    snprintf(client_url, sizeof(client_url), "http://127.0.0.1:%d", cport);
    snprintf(dead_url, sizeof(dead_url), "http://127.0.0.1:%d", free_port()); /* nothing listens there */
    char peer_url[64], cluster[96], log[96];
    snprintf(peer_url, sizeof(peer_url), "http://127.0.0.1:%d", pport);
    snprintf(cluster, sizeof(cluster), "e1=%s", peer_url);
    snprintf(log, sizeof(log), "%s.log", datadir);
    etcd_pid = fork();
    if (etcd_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a crashed test leaves no etcd behind */
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1), dup2(fd, 2);
        execlp("etcd", "etcd", "--name", "e1", "--data-dir", datadir, "--listen-client-urls", client_url, "--advertise-client-urls",
               client_url, "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url, "--initial-cluster", cluster,
               (char *)NULL);
        _exit(127);
    }
    loop = loop_create();
    cli = client(client_url, NULL);
    /* ready when it answers (the brief's /v3/maintenance/status; a range read answers at the same moment) */
    uint64_t deadline = base_now_mono_ms() + 30000;
    for (;;) {
        got_t g = {0};
        etcd_get(cli, "ready", 0, 0, on_result, &g);
        WAIT(g);
        if (g.err == 0)
            break;
        assert_true(base_now_mono_ms() < deadline);
        usleep(100000);
    }
    return 0;
}

static int stop_etcd(void **state)
{
    (void)state;
    if (etcd_pid > 0) {
        kill(etcd_pid, SIGKILL);
        waitpid(etcd_pid, NULL, 0);
    }
    etcd_destroy(cli);
    loop_destroy(loop);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf %s %s.log", datadir, datadir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_kv(void **state)
{
    (void)state;
    got_t p = {0}, g = {0}, d = {0};
    etcd_put(cli, "kv/a", "one\0x", 5, 0, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, 0);
    assert_true(p.revision > 0);
    etcd_put(cli, "kv/b", "two", 3, 0, on_result, &p);
    WAIT(p);
    etcd_get(cli, "kv/", 1, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, 0);
    assert_int_equal(g.n_kvs, 2);
    assert_int_equal(g.count, 2);
    assert_string_equal(g.keys[0], "kv/a");
    assert_string_equal(g.keys[1], "kv/b");
    assert_string_equal(g.values[1], "two");
    assert_int_equal(g.mod_revision[1], p.revision);
    etcd_delete(cli, "kv/a", 0, on_result, &d);
    WAIT(d);
    assert_int_equal(d.err, 0);
    assert_int_equal(d.count, 1);
    etcd_get(cli, "kv/a", 0, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, 0);
    assert_int_equal(g.n_kvs, 0);
    assert_int_equal(g.count, 0); /* omitted by the gateway: 0 */
    etcd_delete(cli, "kv/", 1, on_result, &d);
    WAIT(d);
    assert_int_equal(d.count, 1);
}

static void test_txn(void **state)
{
    (void)state;
    got_t p = {0}, t = {0};
    etcd_put(cli, "txn/k", "v1", 2, 0, on_result, &p);
    WAIT(p);
    /* holds: mod_revision is the put's revision, the value is v1 */
    etcd_cmp_t ok[] = {{.key = "txn/k", .target = ETCD_CMP_MOD, .result = ETCD_EQUAL, .number = p.revision},
                       {.key = "txn/k", .target = ETCD_CMP_VALUE, .result = ETCD_EQUAL, .value = "v1", .value_len = 2}};
    etcd_op_t put2[] = {{.kind = ETCD_OP_PUT, .key = "txn/k", .value = "v2", .value_len = 2}};
    etcd_op_t get[] = {{.kind = ETCD_OP_GET, .key = "txn/k"}};
    etcd_txn(cli, ok, 2, put2, 1, get, 1, on_result, &t);
    WAIT(t);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.succeeded, 1);
    assert_int_equal(t.n_kvs, 0);
    /* fails: the key exists (create_revision != 0), and the same stale mod_revision: the failure branch reads */
    etcd_cmp_t stale[] = {{.key = "txn/k", .target = ETCD_CMP_CREATE, .result = ETCD_EQUAL, .number = 0}};
    etcd_txn(cli, stale, 1, put2, 1, get, 1, on_result, &t);
    WAIT(t);
    assert_int_equal(t.err, 0);
    assert_int_equal(t.succeeded, 0); /* `succeeded` was omitted */
    assert_int_equal(t.n_kvs, 1);
    assert_string_equal(t.values[0], "v2");
    etcd_txn(cli, ok, 1, put2, 1, NULL, 0, on_result, &t);
    WAIT(t);
    assert_int_equal(t.succeeded, 0);
    /* 129 ops: etcd's own error, reported clearly */
    etcd_op_t *many = calloc(ETCD_TXN_MAX_OPS + 1, sizeof(*many));
    for (int i = 0; i <= ETCD_TXN_MAX_OPS; ++i)
        many[i] = (etcd_op_t){.kind = ETCD_OP_GET, .key = "txn/k"};
    etcd_txn(cli, NULL, 0, many, ETCD_TXN_MAX_OPS + 1, NULL, 0, on_result, &t);
    WAIT(t);
    free(many);
    assert_int_equal(t.err, -EREMOTEIO);
    assert_int_equal(t.code, 3);
    assert_non_null(strstr(t.message, "too many operations"));
}

static void test_lease(void **state)
{
    (void)state;
    got_t l = {0}, p = {0}, g = {0}, k = {0};
    etcd_lease_grant(cli, 2, on_result, &l);
    WAIT(l);
    assert_int_equal(l.err, 0);
    assert_int_equal(l.lease_ttl, 2);
    etcd_put(cli, "lease/k", "x", 1, l.lease_id, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, 0);
    /* kept alive for 3 s (past its TTL): it lives */
    for (uint64_t until = base_now_mono_ms() + 3000; base_now_mono_ms() < until;) {
        etcd_lease_keepalive(cli, l.lease_id, on_result, &k);
        WAIT(k);
        assert_int_equal(k.err, 0);
        assert_int_equal(k.lease_ttl, 2);
        int never = 0;
        run_until(&never, 500);
    }
    etcd_get(cli, "lease/k", 0, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.n_kvs, 1);
    assert_int_equal(g.lease[0], l.lease_id);
    /* no more keepalives: the key goes */
    uint64_t deadline = base_now_mono_ms() + 15000;
    do {
        int never = 0;
        run_until(&never, 200);
        etcd_get(cli, "lease/k", 0, 0, on_result, &g);
        WAIT(g);
    } while (g.n_kvs != 0 && base_now_mono_ms() < deadline);
    assert_int_equal(g.n_kvs, 0);
    etcd_lease_keepalive(cli, l.lease_id, on_result, &k);
    WAIT(k);
    assert_int_equal(k.err, 0);
    assert_int_equal(k.lease_ttl, 0); /* gone */
    etcd_put(cli, "lease/k", "x", 1, l.lease_id, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, -EREMOTEIO);
    assert_int_equal(p.code, 5);
}

/* A watch's events, in order, as "PUT key=value" / "DELETE key" lines. */
typedef struct {
    char log[2048];
    int n, created, over, err;
    int64_t compact_revision;
} seen_t;

static void on_watch(etcd_watch_t *w, const etcd_watch_result_t *r, void *data)
{
    (void)w;
    seen_t *s = data;
    if (r->err != 0) {
        s->over = 1;
        s->err = r->err;
        s->compact_revision = r->compact_revision;
        return;
    }
    s->created |= r->created;
    for (size_t i = 0; i < r->n_events; ++i) {
        size_t len = strlen(s->log);
        if (r->events[i].type == ETCD_EVENT_PUT)
            snprintf(s->log + len, sizeof(s->log) - len, "PUT %s=%.*s\n", r->events[i].kv.key, (int)r->events[i].kv.value_len,
                     r->events[i].kv.value);
        else
            snprintf(s->log + len, sizeof(s->log) - len, "DELETE %s\n", r->events[i].kv.key);
        ++s->n;
    }
}

static void run_to_count(seen_t *s, int n)
{
    uint64_t deadline = base_now_mono_ms() + 15000;
    while (s->n < n && !s->over && base_now_mono_ms() < deadline)
        loop_run_once(loop, 50);
}

static void test_watch(void **state)
{
    (void)state;
    seen_t s = {0};
    got_t p = {0};
    etcd_watch_t *w = etcd_watch(cli, "w/", 1, 0, on_watch, &s);
    assert_true(run_until(&s.created, 15000));
    etcd_put(cli, "w/1", "a", 1, 0, on_result, &p);
    WAIT(p);
    etcd_put(cli, "w/2", "b", 1, 0, on_result, &p);
    WAIT(p);
    etcd_put(cli, "other", "c", 1, 0, on_result, &p);
    WAIT(p);
    etcd_delete(cli, "w/1", 0, on_result, &p);
    WAIT(p);
    run_to_count(&s, 3);
    assert_string_equal(s.log, "PUT w/1=a\nPUT w/2=b\nDELETE w/1\n");
    etcd_watch_cancel(w);
    etcd_put(cli, "w/3", "c", 1, 0, on_result, &p);
    WAIT(p);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.over, 0);
}

static void test_compaction(void **state)
{
    (void)state;
    got_t p = {0}, c = {0}, g = {0};
    etcd_put(cli, "c/1", "a", 1, 0, on_result, &p);
    WAIT(p);
    int64_t old = p.revision;
    etcd_put(cli, "c/1", "b", 1, 0, on_result, &p);
    WAIT(p);
    etcd_put(cli, "c/2", "x", 1, 0, on_result, &p);
    WAIT(p);
    etcd_compact(cli, p.revision, on_result, &c);
    WAIT(c);
    assert_int_equal(c.err, 0);
    /* a watch from before the compaction is cancelled with compact_revision */
    seen_t s = {0};
    etcd_watch(cli, "c/", 1, old, on_watch, &s);
    assert_true(run_until(&s.over, 15000));
    assert_int_equal(s.err, -ECANCELED);
    assert_int_equal(s.compact_revision, p.revision);
    /* a read of the compacted revision is refused too */
    etcd_get(cli, "c/", 1, old, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, -EREMOTEIO);
    assert_int_equal(g.code, 11);
    /* resume: re-read, then watch from the read's revision + 1 */
    etcd_get(cli, "c/", 1, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.n_kvs, 2);
    assert_string_equal(g.values[0], "b");
    seen_t s2 = {0};
    etcd_watch_t *w = etcd_watch(cli, "c/", 1, g.revision + 1, on_watch, &s2);
    etcd_put(cli, "c/3", "y", 1, 0, on_result, &p);
    WAIT(p);
    run_to_count(&s2, 1);
    assert_string_equal(s2.log, "PUT c/3=y\n");
    etcd_watch_cancel(w);
}

static void test_dead_first_endpoint(void **state)
{
    (void)state;
    etcd_t *e = client(dead_url, client_url);
    got_t p = {0}, g = {0};
    etcd_put(e, "ep/k", "v", 1, 0, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, 0);
    etcd_get(e, "ep/k", 0, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, 0);
    assert_string_equal(g.values[0], "v");
    etcd_destroy(e);
    /* only dead endpoints: refused, clearly */
    e = client(dead_url, NULL);
    etcd_get(e, "ep/k", 0, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, -ECONNREFUSED);
    assert_non_null(strstr(g.message, dead_url));
    etcd_destroy(e);
}

/* An endpoint that accepts connections (the kernel's backlog) and never answers: requests time out there. */
static void test_timeouts(void **state)
{
    (void)state;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char mute[64];
    snprintf(mute, sizeof(mute), "http://127.0.0.1:%d", ntohs(a.sin_port));
    const char *eps[] = {mute, client_url};
    etcd_config_t c = {.endpoints = eps, .n_endpoints = 2, .request_timeout_ms = 500};
    const char *err = NULL;
    etcd_t *e = etcd_create(&etcd_io_loop, loop, &c, &err);
    /* a read times out on the mute endpoint and is retried on the next */
    got_t g = {0}, p = {0};
    etcd_get(e, "kv/", 1, 0, on_result, &g);
    WAIT(g);
    assert_int_equal(g.err, 0);
    etcd_destroy(e);
    /* a write that timed out is not retried: its outcome is unknown, and the message says to read back */
    c.n_endpoints = 1;
    e = etcd_create(&etcd_io_loop, loop, &c, &err);
    etcd_put(e, "t/k", "v", 1, 0, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, -ETIMEDOUT);
    assert_non_null(strstr(p.message, "outcome is unknown, read back"));
    etcd_destroy(e);
    close(fd);
}

typedef struct {
    int held, lost, changes;
} mstate_t;

static void on_nodes(member_t *m, void *data)
{
    (void)m;
    ++((mstate_t *)data)->changes;
}

static void on_lease(member_t *m, int held, void *data)
{
    (void)m;
    mstate_t *s = data;
    s->held = held;
    if (!held)
        s->lost = 1;
}

static size_t count_nodes(member_t *m)
{
    size_t n;
    member_nodes(m, &n);
    return n;
}

static void test_members(void **state)
{
    (void)state;
    member_callbacks_t cb = {on_nodes, on_lease};
    mstate_t s1 = {0}, s2 = {0};
    member_config_t c1 = {
        .name = "prod", .node = "n1", .advertise = "127.0.0.1:7001", .shards = 2, .version = "0.1.0", .lease_ttl_ms = 4000};
    member_t *m1 = member_start(cli, &c1, &cb, &s1);
    assert_true(run_until(&s1.held, 15000));
    assert_true(member_lease_valid(m1, base_now_mono_ms()));
    assert_true(member_valid_until(m1) <= base_now_mono_ms() + 4000);
    member_config_t c2 = c1;
    c2.node = "n2";
    c2.advertise = "127.0.0.1:7002";
    member_t *m2 = member_start(cli, &c2, &cb, &s2);
    assert_true(run_until(&s2.held, 15000));
    uint64_t deadline = base_now_mono_ms() + 15000;
    while ((count_nodes(m1) != 2 || count_nodes(m2) != 2) && base_now_mono_ms() < deadline)
        loop_run_once(loop, 50);
    size_t n;
    const member_node_t *nodes = member_nodes(m1, &n);
    assert_int_equal(n, 2);
    assert_string_equal(nodes[0].id, "n1");
    assert_string_equal(nodes[1].id, "n2");
    assert_int_equal(nodes[1].state, MEMBER_JOINING);
    assert_non_null(strstr(nodes[1].value, "\"advertise\":\"127.0.0.1:7002\""));
    /* state change seen by the other */
    member_set_state(m2, MEMBER_ACTIVE);
    deadline = base_now_mono_ms() + 15000;
    while (base_now_mono_ms() < deadline && !((nodes = member_nodes(m1, &n)), n == 2 && nodes[1].state == MEMBER_ACTIVE))
        loop_run_once(loop, 50);
    assert_int_equal(member_nodes(m1, &n)[1].state, MEMBER_ACTIVE);
    /* keepalives keep both past two TTLs (a keepalive is sent every TTL/3: a loaded machine has room) */
    int never = 0;
    run_until(&never, 9000);
    assert_int_equal(s1.lost, 0);
    assert_true(member_lease_valid(m1, base_now_mono_ms()));
    assert_int_equal(count_nodes(m1), 2);
    /* n2 leaves: its key goes at once (lease revoked) */
    member_stop(m2, 1);
    deadline = base_now_mono_ms() + 15000;
    while (count_nodes(m1) != 1 && base_now_mono_ms() < deadline)
        loop_run_once(loop, 50);
    assert_int_equal(count_nodes(m1), 1);
    member_stop(m1, 1);
    while (etcd_pending(cli) > 0)
        loop_run_once(loop, 50);
}

/* Last: etcd killed under a watch, a member and a request: each fails clearly, nothing crashes. */
static void test_etcd_killed(void **state)
{
    (void)state;
    seen_t s = {0};
    etcd_watch(cli, "k/", 1, 0, on_watch, &s);
    assert_true(run_until(&s.created, 15000));
    mstate_t ms = {0};
    member_callbacks_t cb = {on_nodes, on_lease};
    member_config_t c = {.name = "prod", .node = "n3", .lease_ttl_ms = 2000};
    member_t *m = member_start(cli, &c, &cb, &ms);
    assert_true(run_until(&ms.held, 15000));
    got_t g = {0};
    etcd_get(cli, "k/", 1, 0, on_result, &g); /* in flight when etcd dies, or refused right after */
    kill(etcd_pid, SIGKILL);
    waitpid(etcd_pid, NULL, 0);
    etcd_pid = 0;
    assert_true(run_until(&s.over, 15000));
    assert_true(s.err == -EIO || s.err == -ECONNREFUSED);
    WAIT(g);
    assert_true(g.err == 0 || g.err == -ECONNREFUSED || g.err == -EIO);
    got_t p = {0};
    etcd_put(cli, "k/1", "v", 1, 0, on_result, &p);
    WAIT(p);
    assert_int_equal(p.err, -ECONNREFUSED);
    assert_non_null(strstr(p.message, client_url));
    /* the member's fence: its lease is no longer valid by its own clock within the TTL */
    assert_true(run_until(&ms.lost, 5000));
    assert_false(member_lease_valid(m, base_now_mono_ms()));
    member_stop(m, 0);
    while (etcd_pending(cli) > 0)
        loop_run_once(loop, 50);
}

int main(void)
{
    log_set_level(LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv),       cmocka_unit_test(test_txn),        cmocka_unit_test(test_lease),
        cmocka_unit_test(test_watch),    cmocka_unit_test(test_compaction), cmocka_unit_test(test_dead_first_endpoint),
        cmocka_unit_test(test_timeouts), cmocka_unit_test(test_members),    cmocka_unit_test(test_etcd_killed),
    };
    return cmocka_run_group_tests(tests, start_etcd, stop_etcd);
}
