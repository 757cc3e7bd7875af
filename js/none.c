/*
 * none.c — the stand-in for engine.cpp when partyd is built without SpiderMonkey: js_party_load refuses every
 * script party at start (bundle.c says how to get the engine).
 */
#include "jsint.h"
#include "js.h"

const party_t js_party = {.abi_version = PARTY_ABI_VERSION, .kind = "script"};

int js_available(void)
{
    return 0;
}

int js_probe(js_script_t *s, int *hibernate, char *err, size_t errlen)
{
    (void)s, (void)hibernate, (void)err, (void)errlen;
    return -1;
}
