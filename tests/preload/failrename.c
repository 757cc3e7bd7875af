/*
 * failrename.c — an LD_PRELOAD library for tests/integration/failure-router.test.mjs. With $PARTYD_TEST_FAIL_RENAME = P:
 * while the file P exists, rename() onto a file named node.json fails with ENOSPC, as on a full disk, without renaming.
 * The supervisor records a new shard in node.json (a temporary file renamed over it) before it starts the shard; this
 * is how a test makes that record fail, and then succeed again, in a node that otherwise runs as usual (a full
 * filesystem would need a mount, and a root test cannot be kept out of a file by its mode).
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int (*rename_fn)(const char *, const char *);

int rename(const char *from, const char *to)
{
    const char *path = getenv("PARTYD_TEST_FAIL_RENAME");
    const char *base = strrchr(to, '/');
    base = base != NULL ? base + 1 : to;
    if (path != NULL && strcmp(base, "node.json") == 0 && access(path, F_OK) == 0) {
        errno = ENOSPC;
        return -1;
    }
    rename_fn real = (rename_fn)dlsym(RTLD_NEXT, "rename");
    return real(from, to);
}
