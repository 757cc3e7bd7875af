/*
 * args.c — the command line: --help and --version, the file (--config, else ./partyd.json), the flags over it, and
 * the rules that span fields, checked once everything is applied (see config.h, config_from_args).
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"
#include "config_int.h"
#include "party.h"
#include "proto.h"

/* Rules that span fields, checked once everything is applied. */
static int check_whole(const config_t *c, char *err, size_t errlen)
{
    if (c->limits.output_bytes < c->limits.message_bytes + 16) {
        snprintf(err, errlen, "limits.output_bytes (%zu) must be larger than limits.message_bytes (%zu)", c->limits.output_bytes,
                 c->limits.message_bytes);
        return -1;
    }
    if (c->admin_enabled && c->admin_token == NULL && strcmp(c->admin_host, "127.0.0.1") != 0 &&
        strcmp(c->admin_host, "::1") != 0 && strcmp(c->admin_host, "localhost") != 0) {
        snprintf(err, errlen,
                 "admin.listen: the admin endpoint on %s (not loopback) needs a token: set admin.token or PARTYD_ADMIN_TOKEN",
                 c->admin_host);
        return -1;
    }
    /* a short token can be guessed over the network; the admin endpoint also slows down wrong ones (router/admin.c) */
    if (c->admin_token != NULL && strlen(c->admin_token) < CONFIG_MIN_TOKEN) {
        snprintf(err, errlen, "admin.token: at least %d bytes (got %zu); a random one: openssl rand -hex 16", CONFIG_MIN_TOKEN,
                 strlen(c->admin_token));
        return -1;
    }
    return 0;
}

/* ---- the command line ---- */

int config_check(const config_t *c, char *err, size_t errlen)
{
    return check_whole(c, err, errlen);
}

static void usage(FILE *out)
{
    fprintf(out, "usage: partyd [options]\n"
                 "\n"
                 "Runs a partyd node: PartyKit-compatible rooms on this machine.\n"
                 "Configuration: the embedded default (partyd --print-config shows the effective one), overlaid by\n"
                 "--config FILE (else ./partyd.json when present), overlaid by the environment (PARTYD_HOST,\n"
                 "PARTYD_PORT, PARTYD_DATA_DIR, PARTYD_SHARDS, PARTYD_ADMIN; PARTYD_ADMIN_TOKEN for the admin token),\n"
                 "overlaid by these flags:\n"
                 "\n"
                 "  --config FILE        read FILE (JSON) over the embedded default\n"
                 "  --host HOST          listen address (default 127.0.0.1)\n"
                 "  --port PORT          listen port (default 1999; 0 picks a free one)\n"
                 "  --shards N|auto      shard processes (default auto: the CPUs this process may use)\n"
                 "  --data-dir DIR       data directory (default ./.partyd)\n"
                 "  --admin HOST:PORT    admin listener (default 127.0.0.1:1998), or \"off\"\n"
                 "  --log-level LEVEL    error, warn, info or debug\n"
                 "  --print-config       print the effective configuration as JSON (and where each value came from)\n"
                 "  -h, --help           this text\n"
                 "  --version            the version\n");
}

int config_from_args(config_t *c, int argc, char **argv)
{
    enum { O_CONFIG = 256, O_HOST, O_PORT, O_SHARDS, O_DATA_DIR, O_ADMIN, O_LOG_LEVEL, O_PRINT, O_VERSION };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"host", required_argument, NULL, O_HOST},
        {"port", required_argument, NULL, O_PORT},
        {"shards", required_argument, NULL, O_SHARDS},
        {"data-dir", required_argument, NULL, O_DATA_DIR},
        {"admin", required_argument, NULL, O_ADMIN},
        {"log-level", required_argument, NULL, O_LOG_LEVEL},
        {"print-config", no_argument, NULL, O_PRINT},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, O_VERSION},
        {NULL, 0, NULL, 0},
    };
    char err[512];
    const char *config_path = NULL, *admin_flag = NULL;
    int print = 0, o;

    config_init_default(c);

    /* first pass: find --config and the answers that need no config */
    opterr = 0;
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case O_CONFIG:
            config_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 1;
        case O_VERSION:
            printf("partyd %s (protocol %d, party ABI %d)\n", PARTYD_VERSION, PROTO_VERSION, PARTY_ABI_VERSION);
            return 1;
        case '?':
            if (optopt != 0)
                fprintf(stderr, "partyd: option %s needs a value (see --help)\n", argv[optind - 1]);
            else
                fprintf(stderr, "partyd: unknown option %s (see --help)\n", argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "partyd: unexpected argument \"%s\" (see --help)\n", argv[optind]);
        return -1;
    }

    /* the file */
    if (config_path == NULL && access("partyd.json", F_OK) == 0)
        config_path = "partyd.json";
    if (config_path != NULL) {
        char *text = NULL;
        size_t len = 0;
        int r = base_read_file(config_path, &text, &len);
        if (r != 0) {
            fprintf(stderr, "partyd: cannot read config %s: %s\n", config_path, strerror(-r));
            return -1;
        }
        /* the file's relative paths are relative to its folder, wherever partyd was started */
        char *copy = xstrdup(config_path), *base = realpath(dirname(copy), NULL);
        r = config_apply_json(c, text, len, config_path, base, err, sizeof(err));
        free(base);
        free(copy);
        free(text);
        if (r != 0) {
            fprintf(stderr, "partyd: bad config: %s\n", err);
            return -1;
        }
        free(c->source);
        c->source = xstrdup(config_path);
    }

    /* the environment: what a container sets per instance (env.c) */
    if (config_apply_env(c, err, sizeof(err)) != 0) {
        fprintf(stderr, "partyd: bad config: %s\n", err);
        return -1;
    }

    /* the flags win */
    cfg_err_t e = {err, sizeof(err), "command line", NULL};
    optind = 1;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        char *end;
        long n;
        int r = 0;
        switch (o) {
        case O_HOST:
            free(c->host);
            c->host = xstrdup(optarg);
            c->sources.host = "flag --host";
            break;
        case O_PORT:
            n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 0 || n > 65535)
                r = cfg_fail(&e, "--port", "expected a port from 0 to 65535, got \"%s\"", optarg);
            else
                c->port = (int)n;
            c->sources.port = "flag --port";
            break;
        case O_SHARDS:
            n = strtol(optarg, &end, 10);
            if (strcmp(optarg, "auto") == 0) {
                json_t *a = json_string("auto");
                r = cfg_set_shards(&e, "--shards", c, a);
                json_decref(a);
            } else if (*optarg == '\0' || *end != '\0' || n < 1 || n > CONFIG_MAX_SHARDS) {
                r = cfg_fail(&e, "--shards", "expected \"auto\" or a number from 1 to %d, got \"%s\"", CONFIG_MAX_SHARDS, optarg);
            } else {
                c->shards = (int)n;
            }
            c->sources.shards = "flag --shards";
            break;
        case O_DATA_DIR:
            free(c->data_dir);
            c->data_dir = xstrdup(optarg);
            c->sources.data_dir = "flag --data-dir";
            break;
        case O_ADMIN:
            r = cfg_set_admin_listen(&e, "--admin", c, optarg);
            admin_flag = optarg;
            c->sources.admin = "flag --admin";
            break;
        case O_LOG_LEVEL:
            r = cfg_set_log_level(&e, "--log-level", c, optarg);
            break;
        case O_PRINT:
            print = 1;
            break;
        }
        if (r != 0) {
            fprintf(stderr, "partyd: %s\n", err);
            return -1;
        }
    }
    if (check_whole(c, err, sizeof(err)) != 0) {
        /* a rule broken by a flag is the flag's fault, not the file's or the embedded default's */
        if (admin_flag != NULL && strncmp(err, "admin.listen: ", 14) == 0)
            fprintf(stderr, "partyd: --admin %s: %s\n", admin_flag, err + 14);
        else
            fprintf(stderr, "partyd: bad config (%s): %s\n", c->source, err);
        return -1;
    }
    return print ? 2 : 0;
}
