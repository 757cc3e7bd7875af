/*
 * serve.c — what a request for the "serve" folder must pass before h2o's file handler sees it.
 *
 * h2o 2.2.5's file handler opens the path by name with a blocking open(2) and follows symlinks: a FIFO in the folder
 * froze the router's loop (every room, /health and the admin port with it), a symlink led out of the folder, dotfiles
 * were served, a %00 in the path cut the name short (so /index.html%00.png served index.html as image/png), and it
 * answered thousands of overlapping ranges with a multipart body thousands of times the file's size. So the router
 * checks the request first, on the same normalized path h2o will open:
 *
 *   - a NUL, or a segment starting with "." (unless serve.dotfiles), is a 404;
 *   - the path is opened relative to the folder with openat2(RESOLVE_BENEATH): a symlink may point within the folder,
 *     never out of it; O_NONBLOCK, so a FIFO cannot block the loop; what is not a regular file (or a folder whose
 *     index.html is one) is a 404;
 *   - a Range header naming more than one range is dropped, and the whole file is served (RFC 9110 lets a server
 *     ignore Range): one request can no longer ask for the file many times over.
 *
 * On top of the files (PartyKit's serve shape):
 *   - serve.singlePageApp: a GET or HEAD for a path that names no file and whose last segment has no extension (a
 *     client-side route such as /rooms/42) gets the folder's index.html; a missing asset (/app.js) is still a 404;
 *   - cache headers: a hashed asset (a name like app.3f9a1c2b.js or index-BdK3x9_a.js: its stem ends in "." or "-"
 *     and 8 or more letters, digits, "_" or "-", with a digit among them) never changes under its name, so it gets
 *     `Cache-Control: public, max-age=31536000, immutable`; everything else `no-cache` (the browser revalidates
 *     with the ETag, so a new deploy shows at once).
 *
 * What remains: h2o opens the file again by name after this check. Someone who can write into the folder could swap
 * the file in between; the folder is the operator's, so this is a race only its owner can run.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "router.h"

static int dir_fd = -1;

/* Opens `rel` under the folder without leaving it; -errno. */
static int open_beneath(const char *rel)
{
    struct open_how how = {.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY,
                           .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
    int fd = (int)syscall(SYS_openat2, dir_fd, rel, &how, sizeof(how));
    if (fd >= 0 || errno != ENOSYS)
        return fd >= 0 ? fd : -errno;
    /* a kernel before 5.6: resolve by hand, then open what was resolved */
    char joined[PATH_MAX], canon[PATH_MAX];
    size_t root = strlen(router.conf->serve);
    if ((size_t)snprintf(joined, sizeof(joined), "%s/%s", router.conf->serve, rel) >= sizeof(joined))
        return -ENAMETOOLONG;
    if (realpath(joined, canon) == NULL)
        return -errno;
    if (strncmp(canon, router.conf->serve, root) != 0 || (canon[root] != '/' && canon[root] != '\0'))
        return -EXDEV;
    fd = open(canon, how.flags);
    return fd >= 0 ? fd : -errno;
}

/* 1 when `fd` is a regular file (it is closed either way). */
static int is_regular(int fd)
{
    struct stat st;
    int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    close(fd);
    return ok;
}

/* Whether the last segment of `path` names a content-hashed file (see the top of this file). */
static int hashed_name(const char *path, size_t len)
{
    const char *name = path, *end = path + len;
    for (const char *p = path; p < end; ++p)
        if (*p == '/')
            name = p + 1;
    const char *ext = NULL; /* the last "." of the name: the stem ends before it */
    for (const char *p = name; p < end; ++p)
        if (*p == '.')
            ext = p;
    if (ext == NULL || ext == name)
        return 0;
    size_t run = 0;
    int digit = 0;
    for (const char *p = ext - 1; p >= name; --p) {
        char c = *p;
        if (c == '.' || (c == '-' && run >= 8))
            return run >= 8 && digit && p > name;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return 0;
        digit |= c >= '0' && c <= '9';
        ++run;
    }
    return 0;
}

static void cache_headers(h2o_req_t *req, const char *path, size_t len)
{
    if (hashed_name(path, len))
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                       H2O_STRLIT("public, max-age=31536000, immutable"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
}

/* serve.singlePageApp: whether a missing `path` is a client-side route (GET or HEAD, no extension in its last
 * segment) to be answered with index.html. */
static int spa_route(h2o_req_t *req, const char *path, size_t len)
{
    if (!router.conf->serve_spa)
        return 0;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 0;
    for (size_t i = len; i > 0 && path[i - 1] != '/'; --i)
        if (path[i - 1] == '.')
            return 0;
    return 1;
}

static int refuse(h2o_req_t *req)
{
    http_send_error(req, 404, "not found");
    return 1;
}

int serve_check(h2o_req_t *req)
{
    if (dir_fd == -1 && (dir_fd = open(router.conf->serve, O_PATH | O_DIRECTORY | O_CLOEXEC)) == -1) {
        log_error("serve: cannot open %s: %s", router.conf->serve, strerror(errno));
        return refuse(req);
    }
    h2o_iovec_t path = req->path_normalized;
    if (path.len == 0 || path.base[0] != '/' || memchr(path.base, '\0', path.len) != NULL || path.len >= PATH_MAX - 16)
        return refuse(req);
    for (size_t i = 0; i + 1 < path.len; ++i)
        if (path.base[i] == '/' && path.base[i + 1] == '.' && !router.conf->serve_dotfiles)
            return refuse(req);
    char rel[PATH_MAX];
    memcpy(rel, path.base + 1, path.len - 1);
    rel[path.len - 1] = '\0';
    int fd = open_beneath(rel[0] != '\0' ? rel : ".");
    if (fd == -ENOENT && spa_route(req, path.base, path.len)) {
        /* a client-side route: the app's index.html, which h2o's file handler serves under the rewritten path */
        if ((fd = open_beneath("index.html")) < 0 || !is_regular(fd))
            return refuse(req);
        req->path_normalized = h2o_iovec_init(H2O_STRLIT("/index.html"));
        cache_headers(req, "index.html", 10);
        return 0;
    }
    if (fd < 0)
        return refuse(req);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return refuse(req);
    }
    if (S_ISDIR(st.st_mode)) {
        close(fd);
        /* h2o redirects a folder without its "/", else serves its index.html */
        if (path.base[path.len - 1] == '/') {
            memcpy(rel + path.len - 1, "index.html", sizeof("index.html"));
            if ((fd = open_beneath(rel)) < 0 || !is_regular(fd))
                return refuse(req);
        }
    } else {
        if (!is_regular(fd))
            return refuse(req);
    }
    cache_headers(req, path.base, path.len);
    /* one range at most: a list of them is answered with the whole file */
    ssize_t r = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1);
    if (r != -1 && memchr(req->headers.entries[r].value.base, ',', req->headers.entries[r].value.len) != NULL)
        h2o_delete_header(&req->headers, r);
    while ((r = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1)) != -1 &&
           h2o_find_header(&req->headers, H2O_TOKEN_RANGE, r) != -1)
        h2o_delete_header(&req->headers, r); /* several Range headers: the last alone */
    return 0;
}
