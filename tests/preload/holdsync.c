/*
 * holdsync.c — an LD_PRELOAD library for tests/integration/syncgate.test.mjs. With $PARTYD_TEST_HOLD_SYNC = P:
 *   - while the file P exists, fsync and fdatasync wait (and the file "P.waiting" exists, so the test knows a sync is
 *     being held), then do the real call;
 *   - while the file "P.fail" exists, they fail with EIO without syncing;
 *   - when P holds a number, only the process with that pid is held (one shard of a node, the others go on).
 * No disk can be told to take as long as a test likes to sync, or to fail one, and this is how a test sees what a
 * shard lets out while its writes are not yet durable, and what it does when they cannot be made so.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef int (*sync_fn)(int);

/* 0: go on with the real call; -1: fail it */
static int hold(void)
{
    const char *path = getenv("PARTYD_TEST_HOLD_SYNC");
    if (path == NULL)
        return 0;
    char fail[PATH_MAX];
    snprintf(fail, sizeof(fail), "%s.fail", path);
    if (access(fail, F_OK) == 0)
        return -1;
    if (access(path, F_OK) != 0)
        return 0;
    FILE *f = fopen(path, "re");
    if (f != NULL) {
        long pid = 0;
        int got = fscanf(f, "%ld", &pid);
        fclose(f);
        if (got == 1 && pid != (long)getpid())
            return 0;
    }
    char waiting[PATH_MAX];
    snprintf(waiting, sizeof(waiting), "%s.waiting", path);
    int fd = open(waiting, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    if (fd != -1)
        close(fd);
    struct timespec ms = {0, 1000000};
    while (access(path, F_OK) == 0)
        nanosleep(&ms, NULL);
    unlink(waiting);
    return 0;
}

static int call(const char *name, int fd)
{
    sync_fn real = (sync_fn)dlsym(RTLD_NEXT, name);
    if (hold() != 0) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}

int fsync(int fd)
{
    return call("fsync", fd);
}

int fdatasync(int fd)
{
    return call("fdatasync", fd);
}
