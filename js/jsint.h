/*
 * jsint.h — what bundle.c and engine.cpp (or none.c) share inside js/. Not for other folders.
 */
#ifndef PARTYD_JSINT_H
#define PARTYD_JSINT_H

#include <stddef.h>

#include "party.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One script party: filled by bundle.c in the supervisor, read by engine.cpp in the shards. */
typedef struct st_js_script_t {
    char *name;     /* the party's name (the config key) */
    char *path;     /* the script, for messages */
    char *source;   /* the bundle: one ES module, UTF-8 */
    size_t len;
    char *env_json; /* room.env as JSON */
    void *engine;   /* engine.cpp's per-shard state of the party (its realm); NULL until first used */
} js_script_t;

#define JS_SCRIPTS_MAX 64
extern js_script_t js_scripts[JS_SCRIPTS_MAX];
extern size_t js_num_scripts;

/* The party_t of every script party. */
extern const party_t js_party;

/* Evaluates `s` in a fresh engine of this (forked, throw-away) process: 0 with the class's static
 * options.hibernate in *hibernate, or -1 with the reason in err. */
int js_probe(js_script_t *s, int *hibernate, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
