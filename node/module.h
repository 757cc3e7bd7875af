/*
 * module.h — a party loaded from a shared object (see module.c).
 */
#ifndef PARTYD_MODULE_H
#define PARTYD_MODULE_H

#include <stddef.h>

#include "party.h"

/* Loads the module at `path` (absolute) and returns its party, with the dlopen handle in *handle; or NULL with the
 * reason in err (the file, a missing symbol, no PARTY_MODULE_SYMBOL, another ABI version). */
const party_t *module_load(const char *path, void **handle, char *err, size_t errlen);
void module_unload(void *handle);

#endif
