/*
 * fuzz_config.c — the configuration parser on any bytes: config_apply_json over a fresh embedded default, then
 * disposed. It must accept or refuse with a message naming the field — never crash, leak, or leave the config half
 * made: an accepted config prints (--print-config) and reads back to the same text, and a refused one still disposes.
 *
 * No side effects: the parser reads the environment ({"env": NAME}) and asks the file system whether a "serve"
 * folder exists, both read-only; but a "module" party would dlopen whatever file the bytes name and run its
 * constructors, so inputs that name a module are skipped before the parser sees them (module.c is a dlopen and three
 * checks, covered by the integration tests with real modules).
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int names_a_module(const uint8_t *data, size_t size)
{
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    int found = 0;
    json_t *parties = json_object_get(root, "parties");
    const char *name;
    json_t *p;
    json_object_foreach(parties, name, p)
    {
        if (json_object_get(p, "module") != NULL)
            found = 1;
    }
    json_decref(root);
    return found;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (names_a_module(data, size))
        return 0;
    config_t conf;
    config_init_default(&conf);
    char err[512];
    err[0] = '\0';
    if (config_apply_json(&conf, (const char *)data, size, "fuzz", NULL, err, sizeof(err)) != 0) {
        if (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)
            abort(); /* a refusal always says why */
    } else {
        /* what was accepted prints, and the printed text is a config that reads back to itself */
        char *json = config_to_json(&conf);
        if (json == NULL)
            abort();
        config_t again;
        config_init_default(&again);
        if (config_apply_json(&again, json, strlen(json), "printed", NULL, err, sizeof(err)) != 0)
            abort();
        char *json2 = config_to_json(&again);
        if (json2 == NULL || strcmp(json, json2) != 0)
            abort();
        free(json2);
        free(json);
        config_dispose(&again);
    }
    config_dispose(&conf);
    return 0;
}
