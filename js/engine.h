// engine.h — what engine.cpp and natives.cpp share inside js/ (C++ only; not for other folders): the engine's context,
// a party's realm and a room's JS side, and the helpers both use. Everything here runs on the shard's loop thread.
#ifndef PARTYD_JS_ENGINE_H
#define PARTYD_JS_ENGINE_H

#include "jsint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <js/Array.h>
#include <js/ArrayBuffer.h>
#include <js/CharacterEncoding.h>
#include <js/CompilationAndEvaluation.h>
#include <js/Conversions.h>
#include <js/Exception.h>
#include <js/Initialization.h>
#include <js/Modules.h>
#include <js/Object.h>
#include <js/Promise.h>
#include <js/SourceText.h>
#include <js/StructuredClone.h>
#include <js/experimental/TypedData.h>
#include <jsapi.h>
#include <jsfriendapi.h>

namespace jsb {

extern JSContext *cx;

// A script party in this shard: its realm, and the prelude's entry points in it.
struct JsParty {
    js_script_t *script;
    JS::PersistentRooted<JSObject *> global;
    JS::PersistentRooted<JSObject *> host; // the prelude's object of entry points
};

// A room's JS side: the token (a JSObject whose reserved slot points here until the room stops) roots everything the
// prelude keeps for the room; the requests it holds are answered from JS by id.
struct JsRoom {
    JsRoom(JsParty *p, party_room_t *rm) : party(p), room(rm), token(cx) {}
    JsParty *party;
    party_room_t *room;
    JS::PersistentRooted<JSObject *> token;
    std::unordered_map<double, party_request_t *> requests;
    double next_rid = 1;
};

extern JsRoom *current;    // the room whose callback runs (console's tag)
extern const char *making; // the party whose realm is being made (console's tag at the module's top level)
extern const JSClass token_class;
extern const JSFunctionSpec natives[]; // natives.cpp: the functions the prelude gets as N

std::string to_utf8(JSContext *c, JS::HandleValue v);
// Takes the pending exception: its text with its place and stack.
std::string take_exception(JSContext *c);
JSString *new_string(JSContext *c, const void *p, size_t n);
JSObject *new_uint8array(JSContext *c, const void *p, size_t n);
JSObject *new_arraybuffer(JSContext *c, const void *p, size_t n);

} // namespace jsb

#endif
