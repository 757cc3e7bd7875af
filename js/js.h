/*
 * js.h — parties written in JavaScript or TypeScript, on SpiderMonkey 102 (the only C++ of the tree, and the only
 * folder that includes the engine's headers). docs/javascript.md is the user's side of it.
 *
 * Files:
 *   bundle.c     at start, in the supervisor: the script bundled with esbuild into one ES module, then tried in a
 *                forked child (engine errors stop the node at start, never at the first request)
 *   engine.cpp   in a shard: the JSContext (made lazily at a JS party's first room), one realm per party, each room
 *                an instance of the party's default export; the party_t whose callbacks call into it
 *   natives.cpp  the host functions the prelude calls (storage, send, broadcast, state, text, structured clone)
 *   engine.h     what engine.cpp and natives.cpp share (C++)
 *   prelude.cpp  the JS side: Room/Connection/Storage wrappers over the natives, console, TextEncoder/TextDecoder,
 *                Headers/Request/Response, queueMicrotask, structuredClone; source maps for stack traces
 *   none.c       the stand-in when partyd is built without the engine (-Djs=disabled or no libmozjs-102-dev)
 *
 * Loop: everything runs on the shard's one loop thread; the engine is never touched from another thread.
 * Ownership: the bundles live for the life of the process (loaded before the children fork; they inherit them).
 */
#ifndef PARTYD_JS_H
#define PARTYD_JS_H

#include <stddef.h>

#include "party.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bundles `script` (an absolute path to a .ts/.js file) for the party `name` and checks that its module evaluates
 * and default-exports a class. `env_json` is the party's vars as a JSON object (copied). Returns the party_t every
 * script party shares (its callbacks find their party by the room's party name), with the class's
 * `static options.hibernate` in *hibernate; or NULL with the reason in err (esbuild's message with file and line, an
 * exception at the module's top level, no default export, or a partyd built without the engine). Supervisor only,
 * before any child forks. */
const party_t *js_party_load(const char *name, const char *script, const char *env_json, int *hibernate, char *err,
                             size_t errlen);

/* 1 when this partyd was built with the JavaScript engine. */
int js_available(void);

#ifdef __cplusplus
}
#endif

#endif
