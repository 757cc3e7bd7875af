/*
 * module.c — loading a party from a shared object (a "module" party in the config).
 *
 * The supervisor loads every module while it reads the configuration, before any process starts: the router and the
 * shards are forked from it and find the party's code already mapped. Everything is checked then — the file opens,
 * every symbol it needs resolves (RTLD_NOW), it defines PARTY_MODULE_SYMBOL, and that party_t was built for this
 * partyd's PARTY_ABI_VERSION — so a bad module stops the node at start with a message, never at the first request.
 * Modules are never unloaded while the node runs.
 */
#include "module.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

const party_t *module_load(const char *path, void **handle, char *err, size_t errlen)
{
    /* RTLD_LOCAL: one module's symbols never satisfy another's; the party_* functions come from the partyd binary,
     * which exports exactly those (shard/party.sym) */
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

void module_unload(void *handle)
{
    if (handle != NULL)
        dlclose(handle);
}
