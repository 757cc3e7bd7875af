/*
 * fuzz_config.c — the configuration parser on any bytes: config_apply_json over a fresh embedded default, then
 * disposed. It must accept or refuse with a message naming the field — never crash, leak, or leave the config half
 * made: an accepted config prints (--print-config) and reads back to the same text, and a refused one still disposes.
 *
 * No side effects: the parser reads the environment ({"env": NAME}) and asks the file system whether a "serve"
 * folder exists, both read-only. It never loads a "module" party: config/ reads the file only, and shard/module.c
 * resolves parties to their code (covered by the integration tests with real modules).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "config.h"

/* Whether two printed configs say the same, "sources" aside: where a value came from differs by design between the
 * bytes and their printed copy read back (a file's value and the default's may be equal). */
static int same_config(const char *a, const char *b)
{
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    int same = 0;
    if (ja != NULL && jb != NULL) {
        json_object_del(ja, "sources");
        json_object_del(jb, "sources");
        same = json_equal(ja, jb);
    }
    json_decref(ja);
    json_decref(jb);
    return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
        if (json2 == NULL || !same_config(json, json2))
            abort();
        free(json2);
        free(json);
        config_dispose(&again);
    }
    config_dispose(&conf);
    return 0;
}
