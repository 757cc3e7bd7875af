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
    /* one range at most: a list of them is answered with the whole file */
    ssize_t r = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1);
    if (r != -1 && memchr(req->headers.entries[r].value.base, ',', req->headers.entries[r].value.len) != NULL)
        h2o_delete_header(&req->headers, r);
    while ((r = h2o_find_header(&req->headers, H2O_TOKEN_RANGE, -1)) != -1 &&
           h2o_find_header(&req->headers, H2O_TOKEN_RANGE, r) != -1)
        h2o_delete_header(&req->headers, r); /* several Range headers: the last alone */
    return 0;
}
