/*
 * adminguard.c — who may use the admin listener, and where a backup may go.
 *
 * By default the admin listener is on loopback without a token, which a web page the operator has open can still
 * reach: a cross-origin "simple" request (POST with Content-Type: text/plain) is sent without asking, and a
 * DNS-rebinding page (evil.example resolving to 127.0.0.1) is even same-origin to the browser and reads the answers.
 * So, before any admin path:
 *
 *   - without a token, the Host must be a loopback name (127.0.0.1, localhost, [::1]): a rebinding page's Host is its
 *     own name;
 *   - a request whose Origin is not the admin listener's own (what the dashboard sends) is refused;
 *   - without a token, a call that changes something (any method but GET and HEAD) must be one a browser would not
 *     send cross-origin without a CORS preflight, which the listener never grants: Content-Type: application/json or
 *     an X-Partyd-Admin header (partyctl sends both). With a token, its Authorization header is that already;
 *   - wrong tokens are throttled: after ADMIN_FAILS_PER_S wrong ones in a second, every request bearing a token gets
 *     429 for the rest of that second, unchecked, so guessing runs at that rate at most (the right token waits too:
 *     that is the price of not telling a guesser apart from the operator).
 *
 * All three answer 403 (429 for the throttle) before anything is done.
 */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "router.h"

#define ADMIN_FAILS_PER_S 10

static struct {
    uint64_t window_ms; /* the second the failures are counted in */
    unsigned fails;
} guard;

/* "127.0.0.1", "localhost", "[::1]", each with an optional ":port" */
static int host_is_loopback(h2o_iovec_t a)
{
    size_t n = a.len;
    if (n != 0 && a.base[0] == '[') {
        const char *close = memchr(a.base, ']', n);
        return close != NULL && h2o_memis(a.base, (size_t)(close - a.base) + 1, H2O_STRLIT("[::1]")) &&
               (close + 1 == a.base + n || close[1] == ':');
    }
    const char *colon = memchr(a.base, ':', n);
    if (colon != NULL)
        n = (size_t)(colon - a.base);
    return h2o_memis(a.base, n, H2O_STRLIT("127.0.0.1")) || h2o_lcstris(a.base, n, H2O_STRLIT("localhost"));
}

/* The Origin a page served by this listener sends: its scheme and the Host it was asked by. */
static int origin_is_own(h2o_req_t *req, h2o_iovec_t origin)
{
    h2o_iovec_t host = req->input.authority;
    for (int tls = 0; tls < 2; ++tls) {
        size_t sl = tls ? sizeof("https://") - 1 : sizeof("http://") - 1;
        if (origin.len == sl + host.len && h2o_lcstris(origin.base, sl, tls ? "https://" : "http://", sl) &&
            h2o_lcstris(origin.base + sl, host.len, host.base, host.len))
            return 1;
    }
    return 0;
}

static int non_simple(h2o_req_t *req)
{
    if (h2o_find_header_by_str(&req->headers, H2O_STRLIT("x-partyd-admin"), -1) != -1)
        return 1;
    ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    if (i == -1)
        return 0;
    h2o_iovec_t v = req->headers.entries[i].value;
    size_t n = 0;
    while (n < v.len && v.base[n] != ';' && v.base[n] != ' ')
        ++n;
    return h2o_lcstris(v.base, n, H2O_STRLIT("application/json"));
}

int admin_guard(h2o_req_t *req)
{
    int no_token = router.conf->admin_token == NULL;
    if (no_token && !host_is_loopback(req->input.authority)) {
        http_send_error(req, 403, "without admin.token, the admin endpoint answers only to a loopback Host");
        return 1;
    }
    ssize_t o = h2o_find_header_by_str(&req->headers, H2O_STRLIT("origin"), -1);
    if (o != -1 && !origin_is_own(req, req->headers.entries[o].value)) {
        http_send_error(req, 403, "a request from another Origin");
        return 1;
    }
    int reads = h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("GET")) ||
                h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"));
    if (no_token && !reads && !non_simple(req)) {
        http_send_error(req, 403, "a change needs Content-Type: application/json or an X-Partyd-Admin header");
        return 1;
    }
    if (!no_token && h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) != -1) {
        uint64_t now = h2o_now(router.loop);
        if (now - guard.window_ms >= 1000) {
            guard.window_ms = now;
            guard.fails = 0;
        }
        if (guard.fails >= ADMIN_FAILS_PER_S) {
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
            http_send_error(req, 429, "too many wrong tokens; try again in a second");
            return 1;
        }
    }
    return 0;
}

void admin_guard_failed(void)
{
    ++guard.fails;
}

int admin_backup_path(const char *asked, char *out, size_t cap, char *why, size_t whylen)
{
    char root[PATH_MAX], canon[PATH_MAX], parent[PATH_MAX];
    if (router.conf->admin_backup_dir != NULL) {
        snprintf(root, sizeof(root), "%s", router.conf->admin_backup_dir);
    } else {
        /* the default: a folder in the data dir, made on first use */
        char def[PATH_MAX];
        snprintf(def, sizeof(def), "%s/backups", router.conf->data_dir);
        if (mkdir(def, 0750) != 0 && errno != EEXIST) {
            snprintf(why, whylen, "cannot create %s: %s", def, strerror(errno));
            return -1;
        }
        if (realpath(def, root) == NULL) {
            snprintf(why, whylen, "%s: %s", def, strerror(errno));
            return -1;
        }
    }
    size_t rl = strcmp(root, "/") == 0 ? 0 : strlen(root);
    if (asked[0] != '/') {
        /* a name: a new folder in the backup folder */
        if (strchr(asked, '/') != NULL || asked[0] == '.' || asked[0] == '\0' || strlen(asked) > 255) {
            snprintf(why, whylen, "\"dir\" is a name (a new folder in %s) or an absolute path inside it", root);
            return -1;
        }
        snprintf(out, cap, "%s/%s", rl != 0 ? root : "", asked);
        return 0;
    }
    /* an absolute path: its parent, resolved, is the backup folder or inside it; the new folder's own name is not
     * "." or ".." */
    snprintf(parent, sizeof(parent), "%s", asked);
    char *base = strrchr(parent, '/');
    while (base != NULL && base != parent && base[1] == '\0') {
        *base = '\0';
        base = strrchr(parent, '/');
    }
    const char *name = base != NULL ? base + 1 : "";
    if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
        snprintf(why, whylen, "\"dir\" must name a new folder");
        return -1;
    }
    *base = '\0';
    if (realpath(base == parent ? "/" : parent, canon) == NULL) {
        snprintf(why, whylen, "%s: %s", base == parent ? "/" : parent, strerror(errno));
        return -1;
    }
    if (rl != 0 && (strncmp(canon, root, rl) != 0 || (canon[rl] != '/' && canon[rl] != '\0'))) {
        snprintf(why, whylen, "backups go inside %s (admin.backup_dir; \"/\" allows any folder)", root);
        return -1;
    }
    if ((size_t)snprintf(out, cap, "%s/%s", strcmp(canon, "/") == 0 ? "" : canon, name) >= cap) {
        snprintf(why, whylen, "\"dir\" is too long");
        return -1;
    }
    return 0;
}
