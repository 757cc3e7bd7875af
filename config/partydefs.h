/*
 * partydefs.h — the configured parties resolved to their code: the table the router (edge hooks) and the shards
 * (rooms) look parties up in.
 *
 * config/ reads the file only; it never knows which kinds are built in nor loads a module. The table is filled where
 * parties live, by shard/module.c (module_resolve), which node/ calls once at start before forking the router and
 * the shards; they get it read-only, like the config. The entries point into the config_t, which outlives them.
 */
#ifndef PARTYD_PARTYDEFS_H
#define PARTYD_PARTYDEFS_H

#include <stddef.h>

#include "config.h"
#include "party.h"

typedef struct st_partydef_t {
    const config_party_t *conf; /* the name, vars, module path: what the file says */
    const party_t *party;       /* the callbacks: a built-in's, or the module's */
    const char *kind;           /* the built-in kind, or the module party's own kind (for logs and the admin API) */
    void *handle;               /* the module's dlopen handle; NULL for a built-in */
    int hibernate;              /* the file's "hibernate", else the party's own default */
} partydef_t;

typedef struct st_partydefs_t {
    partydef_t *defs; /* one per config party, in the config's order */
    size_t num_defs;
} partydefs_t;

/* The party named `name` (len bytes), or NULL; a pointer into the table. No allocation, no state: any loop. */
const partydef_t *partydefs_find(const partydefs_t *defs, const char *name, size_t len);

#endif
