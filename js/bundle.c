/*
 * bundle.c — a script party made ready at start, in the supervisor: its TypeScript or JavaScript bundled by esbuild
 * into one ES module, and that module evaluated once in a forked child.
 *
 * Both happen before any child process exists, so a syntax error, a failing import or a throw at the module's top
 * level stops the node at start with esbuild's or the engine's message (file and line), never at a room's first
 * event. The child exists because the engine is made once per process and keeps threads: the supervisor, which forks
 * the router and the shards afterwards, must not have one (each shard makes its own, lazily).
 *
 * esbuild is the project's (node_modules/.bin/esbuild in the script's folder or one above it, as `npm install
 * partykit` brings it), else the one on PATH.
 */
#include "jsint.h"
#include "js.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base.h"

extern char **environ;

js_script_t js_scripts[JS_SCRIPTS_MAX];
size_t js_num_scripts;

/* The project's esbuild: the nearest node_modules/.bin/esbuild at or above the script's folder; NULL when none. */
static char *find_local_esbuild(const char *script)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", script);
    for (char *slash; (slash = strrchr(dir, '/')) != NULL;) {
        *slash = '\0';
        char cand[PATH_MAX + 32];
        snprintf(cand, sizeof(cand), "%s/node_modules/.bin/esbuild", dir);
        if (access(cand, X_OK) == 0)
            return xstrdup(cand);
    }
    return NULL;
}

/* All of a file descriptor's content from offset 0, NUL-terminated; *len without the NUL. */
static char *read_all(int fd, size_t *len)
{
    size_t cap = 65536, n = 0;
    char *s = xmalloc(cap);
    lseek(fd, 0, SEEK_SET);
    for (;;) {
        if (n + 1 >= cap)
            s = xrealloc(s, cap *= 2);
        ssize_t r = read(fd, s + n, cap - 1 - n);
        if (r > 0)
            n += (size_t)r;
        else if (r == 0 || errno != EINTR)
            break;
    }
    s[n] = '\0';
    *len = n;
    return s;
}

/* Runs esbuild on `script`; 0 with the bundle in *out (malloc'ed), or -1 with esbuild's message in err. */
static int run_esbuild(const char *script, char **out, size_t *outlen, char *err, size_t errlen)
{
    char *local = find_local_esbuild(script);
    const char *prog = local != NULL ? local : "esbuild";
    /* memfds, not pipes: esbuild writes its bundle and its messages in any order and any size, and we read both
     * after it exits, without a poll loop */
    int ofd = memfd_create("esbuild-out", MFD_CLOEXEC), efd = memfd_create("esbuild-err", MFD_CLOEXEC);
    if (ofd == -1 || efd == -1) {
        snprintf(err, errlen, "memfd_create: %s", strerror(errno));
        goto Fail;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, ofd, 1);
    posix_spawn_file_actions_adddup2(&fa, efd, 2);
    /* browser platform with workerd's conditions: what partykit's own build of a party uses, so npm packages pick
     * their worker entries; es2022 is what SpiderMonkey 102 runs; an inline source map (without the sources) lets
     * stack traces name the .ts lines (engine.cpp) */
    char *const argv[] = {(char *)prog, (char *)script, "--bundle", "--format=esm", "--platform=browser",
                          "--conditions=workerd,worker,browser", "--target=es2022", "--charset=utf8", "--log-level=error",
                          "--color=false", "--legal-comments=none", "--sourcemap=inline", "--sources-content=false", NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, prog, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        snprintf(err, errlen,
                 "cannot run esbuild (%s): %s. TypeScript parties are bundled with esbuild: `npm install esbuild` in the "
                 "project (or install it on PATH)",
                 prog, strerror(rc));
        goto Fail;
    }
    int status;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    size_t elen;
    char *msg = read_all(efd, &elen);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (elen > 0 && (msg[elen - 1] == '\n' || msg[elen - 1] == ' '))
            msg[--elen] = '\0';
        snprintf(err, errlen, "esbuild could not bundle it:\n%s", elen != 0 ? msg : "(no message)");
        free(msg);
        goto Fail;
    }
    free(msg);
    *out = read_all(ofd, outlen);
    close(ofd);
    close(efd);
    free(local);
    return 0;
Fail:
    if (ofd != -1)
        close(ofd);
    if (efd != -1)
        close(efd);
    free(local);
    return -1;
}

/* js_probe in a forked child: 0 with *hibernate, or -1 with the reason (the child's, or the signal that ended it). */
static int probe(js_script_t *s, int *hibernate, char *err, size_t errlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) == -1) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == -1) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        char why[2048];
        int hib = 0;
        if (js_probe(s, &hib, why + 1, sizeof(why) - 1) == 0)
            why[0] = hib ? 'H' : 'h', why[1] = '\0';
        else
            why[0] = '!';
        if (write(pfd[1], why, strlen(why)) < 0)
            _exit(3);
        /* _exit: the engine is not shut down in a process that only tried */
        _exit(0);
    }
    close(pfd[1]);
    char why[2048];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof(why) - 1 && ((n = read(pfd[0], why + len, sizeof(why) - 1 - len)) > 0 || (n == -1 && errno == EINTR)))
        if (n > 0)
            len += (size_t)n;
    why[len] = '\0';
    close(pfd[0]);
    int status;
    while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
        ;
    if (WIFSIGNALED(status)) {
        snprintf(err, errlen, "evaluating the bundle killed the process that tried it with signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return -1;
    }
    if (len == 0 || why[0] == '!') {
        snprintf(err, errlen, "%s", len > 1 ? why + 1 : "evaluating the bundle failed");
        return -1;
    }
    *hibernate = why[0] == 'H';
    return 0;
}

const party_t *js_party_load(const char *name, const char *script, const char *env_json, int *hibernate, char *err,
                             size_t errlen)
{
    if (!js_available()) {
        snprintf(err, errlen,
                 "this partyd was built without the JavaScript engine: install libmozjs-102-dev (deploy/install-deps) and "
                 "build again (meson option -Djs=enabled)");
        return NULL;
    }
    if (js_num_scripts == JS_SCRIPTS_MAX) {
        snprintf(err, errlen, "at most %d script parties", JS_SCRIPTS_MAX);
        return NULL;
    }
    js_script_t *s = &js_scripts[js_num_scripts];
    memset(s, 0, sizeof(*s));
    if (run_esbuild(script, &s->source, &s->len, err, errlen) != 0)
        return NULL;
    s->name = xstrdup(name);
    s->path = xstrdup(script);
    s->env_json = xstrdup(env_json);
    if (probe(s, hibernate, err, errlen) != 0) {
        free(s->source);
        free(s->name);
        free(s->path);
        free(s->env_json);
        memset(s, 0, sizeof(*s));
        return NULL;
    }
    ++js_num_scripts;
    return &js_party;
}
