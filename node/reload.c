/*
 * reload.c — SIGHUP in the supervisor: the file read again and checked, what changed logged (see node.h).
 */
#include "node.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "base.h"
#include "router_main.h"

int node_reload_prepare(const config_t *conf, config_t *fresh)
{
    char err[1024], live[2048], restart[2048];
    char *text = NULL;
    size_t len = 0;
    int has_file = strcmp(conf->source, "embedded default") != 0, fd = -1, r;
    if (has_file && (r = base_read_file(conf->source, &text, &len)) != 0) {
        log_error("SIGHUP: keeping the old settings: cannot read %s: %s", conf->source, strerror(-r));
        return -1;
    }
    if (config_reread(conf, text, len, fresh, err, sizeof(err)) != 0) {
        log_error("SIGHUP: keeping the old settings: %s", err);
        goto Error;
    }
    if (fresh->tls_cert != NULL) {
        /* the router reads them again: check them here first, so that a bad one changes nothing anywhere */
        struct ssl_ctx_st *ctx = router_tls_context(fresh, err, sizeof(err));
        if (ctx == NULL) {
            log_error("SIGHUP: keeping the old settings: %s", err);
            config_dispose(fresh);
            goto Error;
        }
        SSL_CTX_free(ctx);
    }
    if ((fd = memfd_create("partyd-config", MFD_CLOEXEC)) == -1 || (len != 0 && write(fd, text, len) != (ssize_t)len)) {
        log_error("SIGHUP: keeping the old settings: memfd: %s", strerror(errno));
        config_dispose(fresh);
        goto Error;
    }
    free(text);
    config_diff(conf, fresh, live, sizeof(live), restart, sizeof(restart));
    log_info("SIGHUP: configuration read again from %s%s; changed live: %s%s", conf->source,
             fresh->tls_cert != NULL ? "; TLS certificate and key reloaded" : "", *live != '\0' ? live : "nothing",
             *restart != '\0' ? "" : "; nothing that needs a restart");
    if (*restart != '\0')
        log_warn("SIGHUP: changed, but applied only after a restart: %s", restart);
    return fd;
Error:
    if (fd != -1)
        close(fd);
    free(text);
    return -1;
}
