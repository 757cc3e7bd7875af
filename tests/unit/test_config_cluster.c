/*
 * test_config_cluster.c — the "cluster" key of partyd.json (config/cluster.c): absent, nothing changes; the defaults;
 * every field parsed; errors name the field; a non-loopback peer listener without a secret is refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char err[512];

static int apply(config_t *c, const char *json)
{
    err[0] = '\0';
    return config_apply_json(c, json, strlen(json), "t.json", NULL, err, sizeof(err));
}

static void test_absent(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    assert_int_equal(c.cluster.enabled, 0);
    assert_int_equal(apply(&c, "{\"shards\": 2}"), 0);
    assert_int_equal(c.cluster.enabled, 0);
    config_dispose(&c);
}

static void test_defaults_and_fields(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    assert_int_equal(apply(&c, "{\"cluster\": {\"etcd\": [\"http://127.0.0.1:2379\"]}}"), 0);
    assert_int_equal(c.cluster.enabled, 1);
    assert_int_equal(c.cluster.num_etcd, 1);
    assert_string_equal(c.cluster.name, "partyd");
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    assert_string_equal(c.cluster.node, host);
    assert_string_equal(c.cluster.peer_host, "127.0.0.1");
    assert_int_equal(c.cluster.peer_port, 7999);
    assert_null(c.cluster.secret);
    assert_int_equal(c.cluster.lease_ttl_ms, 10000);
    setenv("TEST_CLUSTER_SECRET", "0123456789abcdef", 1);
    assert_int_equal(apply(&c, "{\"cluster\": {\"etcd\": [\"http://a:1\", \"https://b:2\"], \"name\": \"prod\", \"node\": \"n1\","
                               " \"peer\": {\"listen\": \"0.0.0.0:7001\", \"advertise\": \"10.0.0.5:7001\"},"
                               " \"secret\": {\"env\": \"TEST_CLUSTER_SECRET\"}, \"lease_ttl_ms\": 4000}}"),
                     0);
    assert_int_equal(c.cluster.num_etcd, 2);
    assert_string_equal(c.cluster.etcd[1], "https://b:2");
    assert_string_equal(c.cluster.name, "prod");
    assert_string_equal(c.cluster.node, "n1");
    assert_string_equal(c.cluster.peer_host, "0.0.0.0");
    assert_int_equal(c.cluster.peer_port, 7001);
    assert_string_equal(c.cluster.peer_advertise, "10.0.0.5:7001");
    assert_string_equal(c.cluster.secret, "0123456789abcdef");
    assert_int_equal(c.cluster.lease_ttl_ms, 4000);
    config_dispose(&c);
}

static void expect_error(const char *json, const char *field)
{
    config_t c;
    config_init_default(&c);
    assert_int_equal(apply(&c, json), -1);
    if (strstr(err, field) == NULL)
        fail_msg("'%s' does not name %s", err, field);
    config_dispose(&c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{\"cluster\": []}", "t.json: cluster: expected an object");
    expect_error("{\"cluster\": {}}", "cluster.etcd: expected a list");
    expect_error("{\"cluster\": {\"etcd\": [\"127.0.0.1:2379\"]}}", "cluster.etcd: entry 0");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"bogus\": 1}}", "cluster.bogus: unknown key");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"name\": \"a/b\"}}", "cluster.name:");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"node\": \"\"}}", "cluster.node:");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"peer\": {\"listen\": \"nope\"}}}", "cluster.peer.listen:");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"peer\": {\"advertise\": \"x:0\"}}}", "cluster.peer.advertise:");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"lease_ttl_ms\": 1000}}",
                 "cluster.lease_ttl_ms: expected an integer from 2000");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"secret\": 5}}", "cluster.secret: expected a string");
    expect_error("{\"cluster\": {\"etcd\": [\"http://a:1\"], \"peer\": {\"listen\": \"0.0.0.0:7999\"}}}",
                 "cluster.secret: needed when peer.listen (0.0.0.0) is not a loopback address");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absent),
        cmocka_unit_test(test_defaults_and_fields),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
