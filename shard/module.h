/*
 * module.h — a party's code: the built-in kinds (parties/) and parties loaded from shared objects, resolved for every
 * configured party (see module.c). The supervisor (node/) calls module_resolve once at start, before it forks the
 * router and the shards; they inherit the table and the mapped modules.
 */
#ifndef PARTYD_MODULE_H
#define PARTYD_MODULE_H

#include <stddef.h>

#include "config.h"
#include "partydefs.h"

/* Resolves every party of `conf` into `defs` (allocated here; free with module_release): a kind must be built in; a
 * module is first loaded in a forked child, so that one whose constructor aborts or crashes fails this call with a
 * message instead of killing the caller, then loaded here (RTLD_NOW: every symbol resolves now, not at the first
 * request). Returns 0, or -1 with the reason in err, naming the field ("parties.NAME.module: ..."); then nothing is
 * left loaded. */
int module_resolve(partydefs_t *defs, const config_t *conf, char *err, size_t errlen);
/* Frees the table. Modules stay mapped (a forked child may still run their code until it exits). */
void module_release(partydefs_t *defs);

#endif
