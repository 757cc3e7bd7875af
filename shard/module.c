/*
 * module.c — resolving the configured parties to their code: built-in kinds, and parties loaded from shared objects
 * ("module" in the config).
 *
 * The supervisor resolves every party at start, before any process starts: the router and the shards are forked from
 * it and find the party's code already mapped. Everything is checked then — the file opens, every symbol it needs
 * resolves (RTLD_NOW), it defines PARTY_MODULE_SYMBOL, and that party_t was built for this partyd's
 * PARTY_ABI_VERSION — so a bad module stops the node at start with a message, never at the first request.
 *
 * A script party ("script": a .ts or .js file) is js/'s: bundled with esbuild and evaluated once in a forked child
 * here, at start, so that a syntax error stops the node with the file and line (js/js.h).
 *
 * A module runs code as it loads (constructors, and those of the libraries it needs). That code runs first in a child
 * forked for the purpose: a constructor that aborts or crashes kills only the child, and the node refuses to start
 * naming the module, instead of the supervisor dying without a word. Modules are never unloaded while the node runs.
 */
#include "module.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "base.h"
#include "js.h"
#include "parties.h"

/* Loads the module at `path` (absolute) and returns its party, with the dlopen handle in *handle; or NULL with the
 * reason in err (the file, a missing symbol, no PARTY_MODULE_SYMBOL, another ABI version). */
static const party_t *load(const char *path, void **handle, char *err, size_t errlen)
{
    /* RTLD_LOCAL: one module's symbols never satisfy another's; the party_* functions come from the partyd binary,
     * which exports exactly those (api/party.sym) */
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        snprintf(err, errlen, "cannot load %s: %s", path, dlerror());
        return NULL;
    }
    dlerror();
    const party_t *party = dlsym(h, PARTY_MODULE_SYMBOL);
    const char *why = dlerror();
    if (party == NULL) {
        snprintf(err, errlen, "%s defines no %s (%s): a module defines `PARTY_EXPORT const party_t %s = {...}`", path,
                 PARTY_MODULE_SYMBOL, why != NULL ? why : "it is NULL", PARTY_MODULE_SYMBOL);
        dlclose(h);
        return NULL;
    }
    /* abi_version is the first member in every version, so it can be read before trusting the rest */
    if (party->abi_version != PARTY_ABI_VERSION) {
        snprintf(err, errlen, "%s was built for party ABI %u; this partyd has ABI %d: rebuild it against this partyd's party.h",
                 path, party->abi_version, PARTY_ABI_VERSION);
        dlclose(h);
        return NULL;
    }
    if (party->kind == NULL || party->kind[0] == '\0') {
        snprintf(err, errlen, "%s: its party_t has no kind (a name for logs, e.g. .kind = \"mine\")", path);
        dlclose(h);
        return NULL;
    }
    *handle = h;
    return party;
}

/* Loads the module in a forked child and reports how that went: 0 when it loaded, else -1 with the reason (the
 * child's own message, or the signal that killed it). */
static int probe(const char *path, char *err, size_t errlen)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) == -1) {
        snprintf(err, errlen, "cannot try loading %s: pipe: %s", path, strerror(errno));
        return -1;
    }
    fflush(NULL); /* nothing buffered is written twice */
    pid_t pid = fork();
    if (pid == -1) {
        snprintf(err, errlen, "cannot try loading %s: fork: %s", path, strerror(errno));
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        close(pfd[0]);
        char why[600];
        void *h;
        int ok = load(path, &h, why, sizeof(why)) != NULL;
        if (!ok && write(pfd[1], why, strlen(why)) < 0)
            _exit(3);
        /* _exit: no atexit handler, no destructor of the module, no leak report of a process that only tried */
        _exit(ok ? 0 : 1);
    }
    close(pfd[1]);
    char why[600];
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
        snprintf(err, errlen,
                 "loading %s killed the process that tried it with signal %d (%s): the module's constructor, or one of a library "
                 "it needs, crashed or aborted",
                 path, WTERMSIG(status), strsignal(WTERMSIG(status)));
        return -1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(err, errlen, "%s", len != 0 ? why : "loading it failed");
        return -1;
    }
    return 0;
}

int module_resolve(partydefs_t *d, const config_t *conf, char *err, size_t errlen)
{
    d->defs = xcalloc(conf->num_parties != 0 ? conf->num_parties : 1, sizeof(*d->defs));
    d->num_defs = 0;
    for (size_t i = 0; i < conf->num_parties; ++i) {
        const config_party_t *p = &conf->parties[i];
        partydef_t *def = &d->defs[d->num_defs];
        def->conf = p;
        if (p->script != NULL) {
            /* room.env: the party's vars, as the rooms see them (an unset environment variable is left out) */
            json_t *env = json_object();
            for (size_t k = 0; k < p->num_vars; ++k)
                if (p->vars[k].value != NULL)
                    json_object_set_new(env, p->vars[k].name, json_string(p->vars[k].value));
            char *env_json = json_dumps(env, JSON_COMPACT);
            json_decref(env);
            char why[1500];
            int hib = 0;
            def->party = js_party_load(p->name, p->script, env_json, &hib, why, sizeof(why));
            free(env_json);
            if (def->party == NULL) {
                snprintf(err, errlen, "parties.%s.script: %s: %s", p->name, p->script, why);
                goto Error;
            }
            def->kind = "script";
            def->hibernate = p->hibernate != -1 ? p->hibernate : hib;
            ++d->num_defs;
            continue;
        } else if (p->module == NULL) {
            if ((def->party = parties_find_kind(p->kind)) == NULL) {
                snprintf(err, errlen, "parties.%s.kind: unknown kind \"%s\": expected one of %s", p->name, p->kind,
                         parties_kind_list());
                goto Error;
            }
            def->kind = p->kind;
        } else {
            char why[700];
            if (probe(p->module, why, sizeof(why)) != 0 || (def->party = load(p->module, &def->handle, why, sizeof(why))) == NULL) {
                snprintf(err, errlen, "parties.%s.module: %s", p->name, why);
                goto Error;
            }
            def->kind = def->party->kind;
        }
        def->hibernate = p->hibernate != -1 ? p->hibernate : def->party->hibernate;
        ++d->num_defs;
    }
    return 0;
Error:
    /* nothing of this node ran yet: the modules loaded so far can go */
    for (size_t i = 0; i < d->num_defs; ++i)
        if (d->defs[i].handle != NULL)
            dlclose(d->defs[i].handle);
    module_release(d);
    return -1;
}

void module_release(partydefs_t *d)
{
    free(d->defs);
    d->defs = NULL;
    d->num_defs = 0;
}
