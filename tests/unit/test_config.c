/*
 * test_config.c — the configuration: the embedded default parses to the documented values, and every kind of bad
 * input is refused with a message naming the field.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"

static void test_default(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 1999);
    assert_string_equal(c.prefix, "parties");
    assert_true(c.shards >= 1 && c.shards == (int)sysconf(_SC_NPROCESSORS_ONLN));
    assert_string_equal(c.data_dir, "./.partyd");
    assert_true(c.admin_enabled);
    assert_string_equal(c.admin_host, "127.0.0.1");
    assert_int_equal(c.admin_port, 1998);
    assert_int_equal(c.limits.message_bytes, 1048576);
    assert_int_equal(c.limits.output_bytes, 8388608);
    assert_int_equal(c.limits.output_total_bytes, 268435456);
    assert_int_equal(c.limits.connections, 100000);
    assert_int_equal(c.limits.connections_per_ip, 0); /* off: behind a proxy every client has one address */
    assert_int_equal(c.limits.connects_per_ip_per_s, 0);
    assert_int_equal(c.timers.ping_ms, 30000);
    assert_int_equal(c.num_parties, 3);
    assert_non_null(config_find_party(&c, "main", 4));
    assert_string_equal(config_find_party(&c, "main", 4)->kind, "chat");
    assert_string_equal(config_find_party(&c, "relay", 5)->kind, "relay");
    assert_string_equal(config_find_party(&c, "counter", 7)->kind, "counter");
    /* the file says nothing of hibernation: the party's own default applies (resolved in shard/module.c) */
    assert_int_equal(config_find_party(&c, "counter", 7)->hibernate, -1);
    assert_int_equal(config_find_party(&c, "main", 4)->hibernate, -1);
    assert_null(config_find_party(&c, "mai", 3));
    config_dispose(&c);
}

static void expect_error(const char *json, const char *field)
{
    config_t c;
    config_init_default(&c);
    char err[512] = "";
    int r = config_apply_json(&c, json, strlen(json), "t.json", NULL, err, sizeof(err));
    if (r != -1 || strstr(err, field) == NULL)
        fail_msg("%s: expected an error naming \"%s\", got %d \"%s\"", json, field, r, err);
    config_dispose(&c);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{\"listen\":{\"port\":70000}}", "listen.port");
    expect_error("{\"listen\":{\"port\":\"80\"}}", "listen.port");
    expect_error("{\"listen\":{\"hots\":\"x\"}}", "listen.hots: unknown key");
    expect_error("{\"nope\":1}", "nope: unknown key");
    expect_error("{\"limits\":{\"message_bytes\":\"x\"}}", "limits.message_bytes");
    expect_error("{\"limits\":{\"message_bytes\":10}}", "limits.message_bytes");
    expect_error("{\"limits\":{\"header_count\":101}}", "limits.header_count");
    expect_error("{\"limits\":{\"bogus\":1}}", "limits.bogus");
    expect_error("{\"limits\":{\"connections\":0}}", "limits.connections");
    expect_error("{\"limits\":{\"connections_per_ip\":-1}}", "limits.connections_per_ip");
    expect_error("{\"limits\":{\"connects_per_ip_per_s\":\"10\"}}", "limits.connects_per_ip_per_s");
    expect_error("{\"limits\":{\"output_total_bytes\":1000}}", "limits.output_total_bytes");
    expect_error("{\"timers\":{\"ping_ms\":1}}", "timers.ping_ms");
    expect_error("{\"shards\":0}", "shards");
    expect_error("{\"shards\":\"many\"}", "shards");
    expect_error("{\"prefix\":\"a/b\"}", "prefix");
    expect_error("{\"prefix\":\"party\"}", "prefix");
    expect_error("{\"durability\":\"maybe\"}", "durability");
    expect_error("{\"admin\":{\"listen\":\"nowhere\"}}", "admin.listen");
    expect_error("{\"admin\":{\"token\":{\"file\":\"x\"}}}", "admin.token");
    expect_error("{\"parties\":{}}", "parties");
    /* an unknown kind is refused where kinds are known (shard/module.c; modules.test.mjs), not here */
    expect_error("{\"parties\":{\"main\":{\"kind\":42}}}", "parties.main.kind");
    expect_error("{\"parties\":{\"main\":{}}}", "parties.main: needs either \"kind\"");
    expect_error("{\"parties\":{\"main\":{\"kind\":\"chat\",\"module\":\"/x.so\"}}}", "not both");
    expect_error("{\"parties\":{\"main\":{\"kind\":\"chat\",\"hibernate\":1}}}", "parties.main.hibernate");
    expect_error("{\"parties\":{\"main\":{\"kind\":\"chat\",\"color\":1}}}", "parties.main.color");
    expect_error("{\"parties\":{\"a.b\":{\"kind\":\"chat\"}}}", "parties.a.b");
    expect_error("{\"origins\":\"https://a.example\"}", "origins");
    expect_error("{\"origins\":[\"a.example\"]}", "origins: expected origins like");
    expect_error("{\"parties\":{\"main\":{\"kind\":\"chat\",\"origins\":[1]}}}", "parties.main.origins");
    expect_error("{\"serve\":{\"dir\":\"/\",\"dotfiles\":\"yes\"}}", "serve.dotfiles");
    expect_error("{\"serve\":{\"dotfiles\":true}}", "serve.dir");
    expect_error("{\"serve\":{\"dir\":\"/\",\"hidden\":true}}", "serve.hidden: unknown key");
    expect_error("{\"admin\":{\"backup_dir\":\"/nonexistent/backups\"}}", "admin.backup_dir");
    expect_error("{\"admin\":{\"backup_dir\":7}}", "admin.backup_dir");
    expect_error("{\"parties\":{\"mine\":{\"module\":\"./no-such-module.so\"}}}",
                 "parties.mine.module: ./no-such-module.so: No such file");
    expect_error("{\"parties\":{\"mine\":{\"module\":42}}}", "parties.mine.module: expected the path");
    /* a script party: the file must exist here; bundling it is js/'s (js.test.mjs) */
    expect_error("{\"parties\":{\"mine\":{\"script\":\"./no-such.ts\"}}}", "parties.mine.script: ./no-such.ts: No such file");
    expect_error("{\"parties\":{\"mine\":{\"script\":\"\"}}}", "parties.mine.script: expected the path");
    expect_error("{\"parties\":{\"mine\":{\"script\":\"/x.ts\",\"kind\":\"chat\"}}}", "not both");
    expect_error("{\"parties\":{\"main\":{\"kind\":\"chat\",\"vars\":[]}}}", "parties.main.vars: expected an object");
    expect_error("{\"serve\":42}", "serve: expected the path of a folder");
    expect_error("{\"timers\":{\"fetch_ms\":5}}", "timers.fetch_ms");
    expect_error("{\"log_level\":\"loud\"}", "log_level");
    expect_error("[1]", "must be a JSON object");
    expect_error("{\"listen\":", "line 1");
    expect_error("{\"prefix\":\"a\",\"prefix\":\"b\"}", "duplicate");
}

static void test_overlay(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    char err[256];
    const char *json = "{\"listen\":{\"port\":0},\"shards\":3,\"limits\":{\"message_bytes\":4096},"
                       "\"parties\":{\"echo\":{\"kind\":\"relay\",\"hibernate\":true}},\"admin\":{\"listen\":\"off\"}}";
    assert_int_equal(config_apply_json(&c, json, strlen(json), "t.json", NULL, err, sizeof(err)), 0);
    assert_int_equal(c.port, 0);
    assert_string_equal(c.host, "127.0.0.1"); /* untouched keys keep the default */
    assert_int_equal(c.shards, 3);
    assert_int_equal(c.limits.message_bytes, 4096);
    assert_int_equal(c.limits.body_bytes, 1048576);
    assert_false(c.admin_enabled);
    /* the file's parties replace the default ones */
    assert_int_equal(c.num_parties, 1);
    assert_null(config_find_party(&c, "main", 4));
    assert_true(config_find_party(&c, "echo", 4)->hibernate);
    config_dispose(&c);
}

static void test_env_token(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    char err[256];
    setenv("PARTYD_TEST_TOKEN", "s3cret", 1);
    const char *json = "{\"admin\":{\"listen\":\"[::1]:0\",\"token\":{\"env\":\"PARTYD_TEST_TOKEN\"}}}";
    assert_int_equal(config_apply_json(&c, json, strlen(json), "t.json", NULL, err, sizeof(err)), 0);
    assert_string_equal(c.admin_token, "s3cret");
    assert_string_equal(c.admin_host, "::1");
    char *printed = config_to_json(&c);
    assert_null(strstr(printed, "s3cret")); /* never printed */
    free(printed);
    config_dispose(&c);
}

static void test_vars(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    char err[256];
    setenv("PARTYD_TEST_VAR", "from-env", 1);
    unsetenv("PARTYD_TEST_UNSET");
    const char *json = "{\"parties\":{\"p\":{\"kind\":\"relay\",\"vars\":{\"A\":\"literal\",\"B\":{\"env\":\"PARTYD_TEST_VAR\"},"
                       "\"C\":{\"env\":\"PARTYD_TEST_UNSET\"}}}}}";
    assert_int_equal(config_apply_json(&c, json, strlen(json), "t.json", NULL, err, sizeof(err)), 0);
    const config_party_t *p = config_find_party(&c, "p", 1);
    assert_non_null(p);
    assert_string_equal(config_party_var(p, "A"), "literal");
    assert_string_equal(config_party_var(p, "B"), "from-env");
    assert_null(config_party_var(p, "C")); /* an unset environment variable: no such var */
    assert_null(config_party_var(p, "D"));
    char *printed = config_to_json(&c);
    assert_null(strstr(printed, "from-env")); /* the environment's values stay there */
    assert_non_null(strstr(printed, "PARTYD_TEST_VAR"));
    free(printed);
    config_dispose(&c);
}

static int run_args(int argc, char **argv)
{
    config_t c;
    int r = config_from_args(&c, argc, argv);
    config_dispose(&c);
    return r;
}

/* origins at node and party level; serve with dotfiles; the backup folder; --print-config shows them all */
static void test_origins_serve_backup(void **state)
{
    (void)state;
    config_t c;
    config_init_default(&c);
    char err[512] = "";
    const char *json =
        "{\"origins\":[\"https://a.example\"],\"serve\":{\"dir\":\"/tmp\",\"dotfiles\":true},"
        "\"admin\":{\"backup_dir\":\"/tmp\"},\"parties\":{\"main\":{\"kind\":\"chat\"},"
        "\"open\":{\"kind\":\"relay\",\"origins\":[\"http://localhost:8080\"]},\"none\":{\"kind\":\"relay\",\"origins\":[]}}}";
    assert_int_equal(config_apply_json(&c, json, strlen(json), "t.json", NULL, err, sizeof(err)), 0);
    const config_party_t *main_p = config_find_party(&c, "main", 4), *open_p = config_find_party(&c, "open", 4),
                         *none = config_find_party(&c, "none", 4);
    assert_true(config_origin_allowed(&c, main_p, "https://a.example", 17));
    assert_true(config_origin_allowed(&c, main_p, "HTTPS://A.example", 17)); /* scheme and host are case-insensitive */
    assert_false(config_origin_allowed(&c, main_p, "https://a.example.evil", 22));
    assert_false(config_origin_allowed(&c, main_p, "https://a.exampl", 16));
    assert_true(config_origin_allowed(&c, open_p, "http://localhost:8080", 21)); /* the party's own list wins */
    assert_false(config_origin_allowed(&c, open_p, "https://a.example", 17));
    assert_false(config_origin_allowed(&c, none, "https://a.example", 17)); /* [] refuses every Origin */
    assert_string_equal(c.serve, "/tmp");
    assert_true(c.serve_dotfiles);
    assert_string_equal(c.admin_backup_dir, "/tmp");
    char *printed = config_to_json(&c);
    assert_non_null(strstr(printed, "\"dotfiles\": true"));
    assert_non_null(strstr(printed, "\"backup_dir\": \"/tmp\""));
    assert_non_null(strstr(printed, "\"http://localhost:8080\""));
    /* what was printed reads back the same */
    config_t again;
    config_init_default(&again);
    assert_int_equal(config_apply_json(&again, printed, strlen(printed), "printed", NULL, err, sizeof(err)), 0);
    assert_true(again.serve_dotfiles);
    assert_false(config_origin_allowed(&again, config_find_party(&again, "none", 4), "https://a.example", 17));
    config_dispose(&again);
    free(printed);
    config_dispose(&c);

    /* nothing set: any Origin */
    config_init_default(&c);
    assert_true(config_origin_allowed(&c, config_find_party(&c, "main", 4), "https://anything.example", 24));
    config_dispose(&c);
}

static void test_args(void **state)
{
    (void)state;
    char *ok[] = {"partyd", "--port", "0", "--shards", "2", "--admin", "off", "--data-dir", "/tmp/x", "--log-level", "warn"};
    char *bad_port[] = {"partyd", "--port", "99999"};
    char *bad_flag[] = {"partyd", "--nope"};
    char *missing[] = {"partyd", "--port"};
    char *stray[] = {"partyd", "extra"};
    char *public_admin[] = {"partyd", "--admin", "0.0.0.0:1998"};
    char *no_file[] = {"partyd", "--config", "/nonexistent/partyd.json"};
    char *loopback[] = {"partyd", "--admin", "127.0.0.1:0"};
    unsetenv("PARTYD_ADMIN_TOKEN");
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w"); /* the errors are expected; keep the test output clean */
    int r_ok = run_args(11, ok), r_port = run_args(3, bad_port), r_flag = run_args(2, bad_flag), r_missing = run_args(2, missing),
        r_stray = run_args(2, stray), r_admin = run_args(3, public_admin), r_file = run_args(3, no_file);
    setenv("PARTYD_ADMIN_TOKEN", "fifteen-bytes!!", 1); /* 15 bytes: refused */
    int r_short = run_args(3, loopback);
    setenv("PARTYD_ADMIN_TOKEN", "sixteen-bytes!!!", 1);
    int r_long = run_args(3, loopback);
    unsetenv("PARTYD_ADMIN_TOKEN");
    fclose(stderr);
    stderr = saved;
    assert_int_equal(r_ok, 0);
    assert_int_equal(r_port, -1);
    assert_int_equal(r_flag, -1);
    assert_int_equal(r_missing, -1);
    assert_int_equal(r_stray, -1);
    assert_int_equal(r_admin, -1); /* a non-loopback admin listener needs a token */
    assert_int_equal(r_file, -1);
    assert_int_equal(r_short, -1); /* admin.token: at least 16 bytes */
    assert_int_equal(r_long, 0);
}

/* flags > environment > file > default, and "sources" says which; a bad variable is named */
static void test_env_sources(void **state)
{
    (void)state;
    char path[] = "/tmp/test_config_XXXXXX";
    assert_non_null(mkdtemp(path));
    char file[300];
    snprintf(file, sizeof(file), "%s/partyd.json", path);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fputs("{\"listen\": {\"host\": \"127.0.0.2\", \"port\": 2000}, \"shards\": 2, \"data_dir\": \"data\"}", f);
    fclose(f);
    setenv("PARTYD_PORT", "2001", 1);
    setenv("PARTYD_SHARDS", "3", 1);
    setenv("PARTYD_ADMIN", "http://127.0.0.1:2999/", 1);
    setenv("PARTYD_HOST", "", 1); /* empty: unset */
    char *argv[] = {"partyd", "--config", file, "--shards", "4"};
    config_t c;
    assert_int_equal(config_from_args(&c, 5, argv), 0);
    assert_string_equal(c.host, "127.0.0.2");
    assert_string_equal(c.sources.host, "file");
    assert_int_equal(c.port, 2001);
    assert_string_equal(c.sources.port, "env PARTYD_PORT");
    assert_int_equal(c.shards, 4);
    assert_string_equal(c.sources.shards, "flag --shards");
    assert_int_equal(c.admin_port, 2999);
    assert_string_equal(c.sources.admin, "env PARTYD_ADMIN");
    char want[320];
    snprintf(want, sizeof(want), "%s/data", path); /* relative to the file's folder */
    assert_string_equal(c.data_dir, want);
    char *printed = config_to_json(&c);
    assert_non_null(strstr(printed, "\"listen.port\": \"env PARTYD_PORT\""));
    config_dispose(&c);
    /* the printed config, "sources" and all, reads back */
    config_init_default(&c);
    char err[512];
    assert_int_equal(config_apply_json(&c, printed, strlen(printed), "printed", NULL, err, sizeof(err)), 0);
    config_dispose(&c);
    free(printed);

    setenv("PARTYD_PORT", "port", 1);
    FILE *saved = stderr;
    stderr = fopen("/dev/null", "w");
    int r = config_from_args(&c, 3, argv);
    config_dispose(&c);
    fclose(stderr);
    stderr = saved;
    assert_int_equal(r, -1);
    unsetenv("PARTYD_PORT");
    unsetenv("PARTYD_SHARDS");
    unsetenv("PARTYD_ADMIN");
    unsetenv("PARTYD_HOST");
    unlink(file);
    rmdir(path);
}

static void test_suggest_cpus(void **state)
{
    (void)state;
    static const char *const keys[] = {"listen", "parties", "shards", "timers", NULL};
    assert_string_equal(config_suggest("parites", keys), "parties");
    assert_string_equal(config_suggest("shard", keys), "shards");
    assert_null(config_suggest("zzzzzzzz", keys));
    expect_error("{\"parites\": {}}", "did you mean \"parties\"?");
    expect_error("{\"limits\": {\"mesage_bytes\": 4096}}", "limits.mesage_bytes: unknown key (did you mean \"message_bytes\"?)");
    int n = config_cpus_available();
    assert_true(n >= 1 && n <= sysconf(_SC_NPROCESSORS_ONLN));
}

/* SIGHUP: the text read again, the changes sorted into live and restart, the live ones applied */
static void test_reload(void **state)
{
    (void)state;
    config_t c, fresh;
    char err[512], live[1024], restart[1024];
    config_init_default(&c);
    const char *a = "{\"parties\": {\"p\": {\"kind\": \"chat\", \"vars\": {\"K\": \"one\"}}}}";
    assert_int_equal(config_apply_json(&c, a, strlen(a), "t.json", NULL, err, sizeof(err)), 0);
    const char *b = "{\"durability\": \"relaxed\", \"timers\": {\"idle_ms\": 500},"
                    " \"parties\": {\"p\": {\"kind\": \"chat\", \"vars\": {\"K\": \"two\"}}}}";
    assert_int_equal(config_reread(&c, b, strlen(b), &fresh, err, sizeof(err)), 0);
    config_diff(&c, &fresh, live, sizeof(live), restart, sizeof(restart));
    assert_string_equal(live, "timers.idle_ms, parties.p.vars.K");
    assert_string_equal(restart, "durability");
    const char *kept = config_party_var(config_find_party(&c, "p", 1), "K");
    config_apply_live(&c, &fresh);
    config_dispose(&fresh);
    assert_string_equal(kept, "one"); /* a value a party kept stays readable */
    assert_string_equal(config_party_var(config_find_party(&c, "p", 1), "K"), "two");
    assert_int_equal(c.timers.idle_ms, 500);
    assert_string_equal(c.durability, "sync"); /* a restart applies it */
    /* a bad text changes nothing */
    assert_int_equal(config_reread(&c, "{\"parties\": ", 12, &fresh, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "line 1"));
    config_dispose(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_default),   cmocka_unit_test(test_errors), cmocka_unit_test(test_overlay),
        cmocka_unit_test(test_env_token), cmocka_unit_test(test_vars),   cmocka_unit_test(test_args),
        cmocka_unit_test(test_origins_serve_backup), cmocka_unit_test(test_env_sources),
        cmocka_unit_test(test_suggest_cpus), cmocka_unit_test(test_reload),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
