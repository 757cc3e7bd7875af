// engine.cpp — script parties in a shard: one JSContext per process (made at the first room of a script party, after
// the shard installed its signal handlers — JS_NewContext chains SIGSEGV/SIGILL for wasm and must come after them),
// one realm per party, each room an instance of the party's default export.
//
// Rooting: every JS value kept across calls hangs off a room's token (a JSObject whose reserved slot points at the
// JsRoom; the prelude keeps the room's objects in a WeakMap keyed by it) or a party's host object, and those two are
// JS::PersistentRooted. Everything else lives in JS::Rooted on the stack.
//
// Jobs: js::RunJobs after every entry into JS, so what follows an `await` of storage (whose promises are already
// settled) runs in the same callback of the room, inside the output gate like a C party's writes and sends.
#include "jsint.h"
#include "js.h"

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

extern "C" {
extern const char js_prelude[];
}

namespace {

// The engine's heap cap for the whole shard (JS_NewContext's default, 32 MiB, runs out at a few thousand rooms).
constexpr uint32_t HEAP_BYTES = 1024u * 1024 * 1024;

JSContext *cx;

struct JsParty {
    js_script_t *script;
    JS::PersistentRooted<JSObject *> global;
    JS::PersistentRooted<JSObject *> host; // the prelude's object of entry points
    bool failed = false;
};

struct JsRoom {
    JsRoom(JsParty *p, party_room_t *rm) : party(p), room(rm), token(cx) {}
    JsParty *party;
    party_room_t *room;
    JS::PersistentRooted<JSObject *> token;
    std::unordered_map<double, party_request_t *> requests; // answered from JS later, by id
    double next_rid = 1;
};

JsRoom *current;                      // the room whose callback runs (console's tag)
std::unordered_set<JsRoom *> live_rooms; // for the teardown at exit

const JSClass global_class = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps};
const JSClass token_class = {"PartydRoom", JSCLASS_HAS_RESERVED_SLOTS(1)};

// ---- helpers ----

std::string to_utf8(JSContext *c, JS::HandleValue v)
{
    JS::RootedString s(c, JS::ToString(c, v));
    if (!s)
        return std::string();
    JSLinearString *lin = JS_EnsureLinearString(c, s);
    if (!lin)
        return std::string();
    std::string out(JS::GetDeflatedUTF8StringLength(lin), '\0');
    JS::DeflateStringToUTF8Buffer(lin, mozilla::Span<char>(out.data(), out.size()));
    return out;
}

// Takes the pending exception: its text with its stack (for logs and start errors).
std::string take_exception(JSContext *c)
{
    JS::RootedValue e(c);
    if (!JS_GetPendingException(c, &e)) {
        JS_ClearPendingException(c);
        return "uncatchable error (out of memory, or the engine stopped the script)";
    }
    JS_ClearPendingException(c);
    std::string text = to_utf8(c, e);
    if (e.isObject()) {
        JS::RootedObject o(c, &e.toObject());
        JS::RootedValue v(c);
        if (JS_GetProperty(c, o, "fileName", &v) && v.isString()) {
            JS::RootedValue line(c);
            std::string where = to_utf8(c, v);
            if (JS_GetProperty(c, o, "lineNumber", &line) && line.isNumber())
                where += ":" + std::to_string((long)line.toNumber());
            text += " (at " + where + ")";
        }
        if (JS_GetProperty(c, o, "stack", &v) && v.isString()) {
            std::string st = to_utf8(c, v);
            if (!st.empty())
                text += "\n" + st;
        }
    }
    JS_ClearPendingException(c);
    return text;
}

// The inline source map esbuild appended to the bundle, decoded (JSON), or "" when there is none.
std::string source_map(const js_script_t *s)
{
    static const char mark[] = "//# sourceMappingURL=data:application/json;base64,";
    std::string src(s->source, s->len);
    size_t at = src.rfind(mark);
    if (at == std::string::npos)
        return std::string();
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = at + sizeof(mark) - 1; i < src.size(); ++i) {
        char ch = src[i];
        int v = ch >= 'A' && ch <= 'Z' ? ch - 'A' : ch >= 'a' && ch <= 'z' ? ch - 'a' + 26 : ch >= '0' && ch <= '9' ? ch - '0' + 52
                : ch == '+' ? 62 : ch == '/' ? 63 : -1;
        if (v < 0)
            break; // '=', the newline
        acc = (acc << 6) | (unsigned)v;
        if ((bits += 6) >= 8) {
            bits -= 8;
            out += (char)((acc >> bits) & 0xff);
        }
    }
    return out;
}

JSString *new_string(JSContext *c, const void *p, size_t n)
{
    return JS_NewStringCopyUTF8N(c, JS::UTF8Chars(static_cast<const char *>(p), n));
}

// The bytes of a Uint8Array/any view (the prelude turns ArrayBuffers into views); false when v is none.
bool view_bytes(JS::HandleValue v, const uint8_t **p, size_t *n)
{
    if (!v.isObject() || !JS_IsArrayBufferViewObject(&v.toObject()))
        return false;
    JSObject *o = &v.toObject();
    bool shared;
    JS::AutoCheckCannotGC nogc;
    *p = static_cast<const uint8_t *>(JS_GetArrayBufferViewData(o, &shared, nogc));
    *n = JS_GetArrayBufferViewByteLength(o);
    return true;
}

JSObject *new_uint8array(JSContext *c, const void *p, size_t n)
{
    JS::RootedObject a(c, JS_NewUint8Array(c, n));
    if (!a)
        return nullptr;
    bool shared;
    JS::AutoCheckCannotGC nogc;
    if (n != 0)
        memcpy(JS_GetUint8ArrayData(a, &shared, nogc), p, n);
    return a;
}

JSObject *new_arraybuffer(JSContext *c, const void *p, size_t n)
{
    JS::RootedObject a(c, JS::NewArrayBuffer(c, n));
    if (!a)
        return nullptr;
    bool shared;
    JS::AutoCheckCannotGC nogc;
    if (n != 0)
        memcpy(JS::GetArrayBufferData(a, &shared, nogc), p, n);
    return a;
}

bool throw_errno(JSContext *c, const char *what, int err)
{
    const char *why = err == -EMSGSIZE   ? "over its size limit"
                      : err == -ENOTCONN ? "the connection is closed"
                      : err == -EINVAL   ? "an argument is out of range"
                      : err == -EIO      ? "the storage failed"
                                         : strerror(-err);
    JS_ReportErrorUTF8(c, "%s: %s", what, why);
    return false;
}

// The room a native is called for: its first argument, the token. Throws when the room has stopped.
JsRoom *room_arg(JSContext *c, const JS::CallArgs &args)
{
    if (args.length() < 1 || !args[0].isObject() || JS::GetClass(&args[0].toObject()) != &token_class) {
        JS_ReportErrorUTF8(c, "partyd: not a room");
        return nullptr;
    }
    const JS::Value &slot = JS::GetReservedSlot(&args[0].toObject(), 0);
    if (slot.isUndefined()) {
        JS_ReportErrorUTF8(c, "partyd: this room has stopped (its objects are not usable after it was evicted)");
        return nullptr;
    }
    return static_cast<JsRoom *>(slot.toPrivate());
}

party_conn_t *conn_arg(JSContext *c, JsRoom *r, JS::HandleValue v)
{
    std::string id = to_utf8(c, v);
    party_conn_t *conn = party_room_connection(r->room, id.c_str());
    if (conn == nullptr)
        JS_ReportErrorUTF8(c, "connection %s: not open in this room", id.c_str());
    return conn;
}

#define NATIVE(name) bool name(JSContext *c, unsigned argc, JS::Value *vp)
#define ROOM()                                                                                                                 \
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);                                                                          \
    JsRoom *r = room_arg(c, args);                                                                                             \
    if (r == nullptr)                                                                                                          \
        return false;

// ---- natives without a room ----

NATIVE(n_log)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    int level = args.get(0).isInt32() ? args[0].toInt32() : 2;
    std::string msg = to_utf8(c, args.get(1));
    if (current != nullptr)
        party_log(current->room, level, "%s", msg.c_str());
    else
        fprintf(stderr, "partyd: script %s: %s\n", "(module)", msg.c_str()); // only at the module's top level
    args.rval().setUndefined();
    return true;
}

bool serialize(JSContext *c, JS::HandleValue v, std::string &out)
{
    JSAutoStructuredCloneBuffer buf(JS::StructuredCloneScope::DifferentProcess, nullptr, nullptr);
    if (!buf.write(c, v))
        return false;
    out.clear();
    buf.data().ForEachDataChunk([&](const char *p, size_t n) {
        out.append(p, n);
        return true;
    });
    return true;
}

bool deserialize(JSContext *c, const void *p, size_t n, JS::MutableHandleValue v)
{
    JSStructuredCloneData data(JS::StructuredCloneScope::DifferentProcess);
    if (!data.AppendBytes(static_cast<const char *>(p), n)) {
        JS_ReportOutOfMemory(c);
        return false;
    }
    return JS_ReadStructuredClone(c, data, JS_STRUCTURED_CLONE_VERSION, JS::StructuredCloneScope::DifferentProcess, v,
                                  JS::CloneDataPolicy(), nullptr, nullptr);
}

NATIVE(n_serialize)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    std::string s;
    if (!serialize(c, args.get(0), s))
        return false;
    JSObject *a = new_uint8array(c, s.data(), s.size());
    if (!a)
        return false;
    args.rval().setObject(*a);
    return true;
}

NATIVE(n_deserialize)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    const uint8_t *p;
    size_t n;
    if (!view_bytes(args.get(0), &p, &n)) {
        JS_ReportErrorUTF8(c, "deserialize: expected bytes");
        return false;
    }
    std::string copy(reinterpret_cast<const char *>(p), n); // reading may allocate: no pointer into the GC heap
    return deserialize(c, copy.data(), copy.size(), args.rval());
}

NATIVE(n_utf8_encode)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    std::string s = to_utf8(c, args.get(0));
    JSObject *a = new_uint8array(c, s.data(), s.size());
    if (!a)
        return false;
    args.rval().setObject(*a);
    return true;
}

NATIVE(n_utf8_decode)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    const uint8_t *p;
    size_t n;
    if (!view_bytes(args.get(0), &p, &n)) {
        JS_ReportErrorUTF8(c, "TextDecoder: expected bytes");
        return false;
    }
    std::string copy(reinterpret_cast<const char *>(p), n);
    JSString *s;
    if (party_utf8_valid(copy.data(), copy.size())) {
        s = new_string(c, copy.data(), copy.size());
    } else if (args.get(1).toBoolean()) {
        args.rval().setNull(); // the prelude throws the TypeError of fatal mode
        return true;
    } else {
        size_t len;
        JS::TwoByteCharsZ w = JS::LossyUTF8CharsToNewTwoByteCharsZ(c, JS::UTF8Chars(copy.data(), copy.size()), &len, js::MallocArena);
        if (!w)
            return false;
        s = JS_NewUCStringCopyN(c, w.get(), len);
        JS_free(c, w.get());
    }
    if (!s)
        return false;
    args.rval().setString(s);
    return true;
}

// ---- natives of a room ----

// A message argument: a string (text) or a view (binary). Calls f(data, len, binary).
template <typename F> bool with_message(JSContext *c, JS::HandleValue v, F f)
{
    const uint8_t *p;
    size_t n;
    if (v.isString()) {
        std::string s = to_utf8(c, v);
        return f(s.data(), s.size(), 0);
    }
    if (!view_bytes(v, &p, &n)) {
        JS_ReportErrorUTF8(c, "expected a string, an ArrayBuffer or a view");
        return false;
    }
    std::string copy(reinterpret_cast<const char *>(p), n);
    return f(copy.data(), copy.size(), 1);
}

NATIVE(n_send)
{
    ROOM();
    party_conn_t *conn = conn_arg(c, r, args.get(1));
    if (conn == nullptr)
        return false;
    args.rval().setUndefined();
    return with_message(c, args.get(2), [&](const void *p, size_t n, int bin) {
        int rc = party_send(conn, p, n, bin);
        return rc == 0 || throw_errno(c, "send", rc);
    });
}

NATIVE(n_broadcast)
{
    ROOM();
    JS::RootedObject without(c, args.get(2).isObject() ? &args[2].toObject() : nullptr);
    uint32_t count = 0;
    if (without && !JS::GetArrayLength(c, without, &count))
        return false;
    std::vector<std::string> ids(count);
    std::vector<const char *> ptrs(count);
    for (uint32_t i = 0; i < count; ++i) {
        JS::RootedValue e(c);
        if (!JS_GetElement(c, without, i, &e))
            return false;
        ids[i] = to_utf8(c, e);
        ptrs[i] = ids[i].c_str();
    }
    args.rval().setUndefined();
    return with_message(c, args.get(1), [&](const void *p, size_t n, int bin) {
        int rc = party_broadcast(r->room, p, n, bin, ptrs.data(), count);
        return rc == 0 || throw_errno(c, "broadcast", rc);
    });
}

NATIVE(n_close)
{
    ROOM();
    party_conn_t *conn = conn_arg(c, r, args.get(1));
    if (conn == nullptr)
        return false;
    int32_t code;
    if (!JS::ToInt32(c, args.get(2), &code))
        return false;
    std::string reason = args.get(3).isNullOrUndefined() ? std::string() : to_utf8(c, args[3]);
    int rc = party_conn_close(conn, code, args.get(3).isNullOrUndefined() ? nullptr : reason.c_str());
    args.rval().setUndefined();
    return rc == 0 || rc == -ENOTCONN || throw_errno(c, "close", rc);
}

NATIVE(n_get_state)
{
    ROOM();
    party_conn_t *conn = conn_arg(c, r, args.get(1));
    if (conn == nullptr)
        return false;
    size_t n;
    const void *p = party_conn_state(conn, &n);
    if (p == nullptr || n == 0) {
        args.rval().setNull();
        return true;
    }
    JSString *s = new_string(c, p, n);
    if (!s)
        return false;
    args.rval().setString(s);
    return true;
}

NATIVE(n_set_state)
{
    ROOM();
    party_conn_t *conn = conn_arg(c, r, args.get(1));
    if (conn == nullptr)
        return false;
    std::string s = args.get(2).isNull() ? std::string() : to_utf8(c, args[2]);
    int rc = party_conn_set_state(conn, s.data(), s.size());
    args.rval().setUndefined();
    return rc == 0 || throw_errno(c, "setState (the state's JSON is at most 2048 bytes)", rc);
}

NATIVE(n_has_conn)
{
    ROOM();
    std::string id = to_utf8(c, args.get(1));
    args.rval().setBoolean(party_room_connection(r->room, id.c_str()) != nullptr);
    return true;
}

NATIVE(n_conn_ids)
{
    ROOM();
    std::string tag = args.get(1).isNull() ? std::string() : to_utf8(c, args[1]);
    JS::RootedObject arr(c, JS::NewArrayObject(c, 0));
    if (!arr)
        return false;
    uint32_t i = 0;
    for (party_conn_t *conn = nullptr;;) {
        conn = args.get(1).isNull() ? party_room_connections(r->room, conn)
                                    : party_room_connections_tagged(r->room, tag.c_str(), conn);
        if (conn == nullptr)
            break;
        const char *id = party_conn_id(conn);
        JS::RootedString s(c, new_string(c, id, strlen(id)));
        if (!s || !JS_DefineElement(c, arr, i++, s, JSPROP_ENUMERATE))
            return false;
    }
    args.rval().setObject(*arr);
    return true;
}

NATIVE(n_get)
{
    ROOM();
    std::string key = to_utf8(c, args.get(1));
    void *val;
    size_t len;
    int rc = party_storage_get(r->room, key.data(), key.size(), &val, &len);
    if (rc == -ENOENT) {
        args.rval().setUndefined();
        return true;
    }
    if (rc != 0)
        return throw_errno(c, "storage.get", rc);
    bool ok = deserialize(c, val, len, args.rval());
    free(val);
    return ok;
}

NATIVE(n_put)
{
    ROOM();
    std::string key = to_utf8(c, args.get(1)), val;
    if (!serialize(c, args.get(2), val))
        return false;
    int rc = party_storage_put(r->room, key.data(), key.size(), val.data(), val.size());
    args.rval().setUndefined();
    return rc == 0 || throw_errno(c, "storage.put (keys are 1..2048 bytes, values at most 128 KiB once serialized)", rc);
}

NATIVE(n_del)
{
    ROOM();
    std::string key = to_utf8(c, args.get(1));
    int rc = party_storage_delete(r->room, key.data(), key.size());
    if (rc < 0)
        return throw_errno(c, "storage.delete", rc);
    args.rval().setBoolean(rc == 1);
    return true;
}

struct ListCtx {
    JSContext *c;
    JS::HandleObject arr;
    uint32_t n;
    bool ok;
};

int list_one(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
{
    ListCtx *l = static_cast<ListCtx *>(arg);
    JS::RootedValue v(l->c);
    JS::RootedString k(l->c, new_string(l->c, key, key_len));
    JS::RootedObject pair(l->c, JS::NewArrayObject(l->c, 2));
    if (!k || !pair || !deserialize(l->c, value, value_len, &v) || !JS_DefineElement(l->c, pair, 0, k, JSPROP_ENUMERATE) ||
        !JS_DefineElement(l->c, pair, 1, v, JSPROP_ENUMERATE) || !JS_DefineElement(l->c, l->arr, l->n++, pair, JSPROP_ENUMERATE)) {
        l->ok = false;
        return 1;
    }
    return 0;
}

NATIVE(n_list)
{
    ROOM();
    std::string s[3];
    party_list_t o = {};
    for (int i = 0; i < 3; ++i)
        if (!args.get(1 + i).isNull())
            s[i] = to_utf8(c, args[1 + i]);
    if (!args.get(1).isNull())
        o.prefix = s[0].data(), o.prefix_len = s[0].size();
    if (!args.get(2).isNull())
        o.start = s[1].data(), o.start_len = s[1].size();
    if (!args.get(3).isNull())
        o.end = s[2].data(), o.end_len = s[2].size();
    double limit;
    if (!JS::ToNumber(c, args.get(4), &limit))
        return false;
    o.limit = limit > 0 ? (size_t)limit : 0;
    o.reverse = args.get(5).toBoolean();
    JS::RootedObject arr(c, JS::NewArrayObject(c, 0));
    if (!arr)
        return false;
    ListCtx l = {c, arr, 0, true};
    long rc = party_storage_list(r->room, &o, list_one, &l);
    if (!l.ok)
        return false;
    if (rc < 0)
        return throw_errno(c, "storage.list", (int)rc);
    args.rval().setObject(*arr);
    return true;
}

NATIVE(n_get_alarm)
{
    ROOM();
    uint64_t at;
    if (party_alarm_get(r->room, &at) == 0)
        args.rval().setNumber((double)at);
    else
        args.rval().setNull();
    return true;
}

NATIVE(n_set_alarm)
{
    ROOM();
    double at;
    if (!JS::ToNumber(c, args.get(1), &at))
        return false;
    if (!(at >= 0 && at < 9e15)) {
        JS_ReportErrorUTF8(c, "setAlarm: expected a time in ms since the epoch, or a Date");
        return false;
    }
    int rc = party_alarm_set(r->room, (uint64_t)at);
    args.rval().setUndefined();
    return rc == 0 || throw_errno(c, "setAlarm", rc);
}

NATIVE(n_delete_alarm)
{
    ROOM();
    party_alarm_delete(r->room);
    args.rval().setUndefined();
    return true;
}

// respond(tok, rid, status, [name, value, ...], body): answers a request the room holds (once; later calls do nothing).
NATIVE(n_respond)
{
    ROOM();
    args.rval().setUndefined();
    auto it = r->requests.find(args.get(1).isNumber() ? args[1].toNumber() : -1);
    if (it == r->requests.end())
        return true;
    party_request_t *req = it->second;
    r->requests.erase(it);
    int32_t status;
    if (!JS::ToInt32(c, args.get(2), &status))
        status = 500;
    std::string type;
    bool has_type = false;
    if (args.get(3).isObject()) {
        JS::RootedObject hs(c, &args[3].toObject());
        uint32_t n = 0;
        JS::GetArrayLength(c, hs, &n);
        for (uint32_t i = 0; i + 1 < n; i += 2) {
            JS::RootedValue k(c), v(c);
            if (!JS_GetElement(c, hs, i, &k) || !JS_GetElement(c, hs, i + 1, &v))
                break;
            std::string name = to_utf8(c, k), value = to_utf8(c, v);
            if (name == "content-type")
                type = value, has_type = true;
            else if (party_response_header(req, name.c_str(), value.c_str()) != 0)
                party_log(r->room, 1, "onRequest: response header %s dropped (not a valid header)", name.c_str());
        }
    }
    if (JS_IsExceptionPending(c))
        JS_ClearPendingException(c);
    if (args.get(4).isNullOrUndefined()) {
        party_respond(req, status, has_type ? type.c_str() : nullptr, nullptr, 0);
        return true;
    }
    if (!with_message(c, args[4], [&](const void *p, size_t n, int) {
            party_respond(req, status, has_type ? type.c_str() : nullptr, p, n);
            return true;
        })) {
        JS_ClearPendingException(c);
        party_respond(req, 500, "text/plain", "the response body is not a string or bytes", 42);
    }
    return true;
}

const JSFunctionSpec natives[] = {
    JS_FN("log", n_log, 2, 0),
    JS_FN("serialize", n_serialize, 1, 0),
    JS_FN("deserialize", n_deserialize, 1, 0),
    JS_FN("utf8Encode", n_utf8_encode, 1, 0),
    JS_FN("utf8Decode", n_utf8_decode, 2, 0),
    JS_FN("send", n_send, 3, 0),
    JS_FN("broadcast", n_broadcast, 3, 0),
    JS_FN("close", n_close, 4, 0),
    JS_FN("getState", n_get_state, 2, 0),
    JS_FN("setState", n_set_state, 3, 0),
    JS_FN("hasConn", n_has_conn, 2, 0),
    JS_FN("connIds", n_conn_ids, 2, 0),
    JS_FN("get", n_get, 2, 0),
    JS_FN("put", n_put, 3, 0),
    JS_FN("del", n_del, 2, 0),
    JS_FN("list", n_list, 6, 0),
    JS_FN("getAlarm", n_get_alarm, 1, 0),
    JS_FN("setAlarm", n_set_alarm, 2, 0),
    JS_FN("deleteAlarm", n_delete_alarm, 1, 0),
    JS_FN("respond", n_respond, 5, 0),
    JS_FS_END,
};

// ---- the engine and the realms ----

// At the shard's exit: the rooms still in memory, the realms, the engine. Not only tidiness: the engine's GC heap is
// mmap'ed, which LeakSanitizer does not scan, so whatever it still holds at exit would be reported as leaked.
void engine_stop(void)
{
    if (cx == nullptr)
        return;
    for (JsRoom *r : live_rooms) {
        JS::SetReservedSlot(r->token, 0, JS::UndefinedValue());
        party_room_set_data(r->room, nullptr);
        delete r;
    }
    live_rooms.clear();
    for (size_t i = 0; i < js_num_scripts; ++i) {
        delete static_cast<JsParty *>(js_scripts[i].engine);
        js_scripts[i].engine = nullptr;
    }
    JS_DestroyContext(cx);
    cx = nullptr;
    JS_ShutDown();
}

bool engine_start(std::string &err)
{
    if (cx != nullptr)
        return true;
    if (!JS_Init()) {
        err = "JS_Init failed";
        return false;
    }
    cx = JS_NewContext(HEAP_BYTES);
    if (cx == nullptr || !js::UseInternalJobQueues(cx) || !JS::InitSelfHostedCode(cx)) {
        err = "the JavaScript engine could not start (JS_NewContext)";
        cx = nullptr;
        return false;
    }
    atexit(engine_stop);
    return true;
}

// `text` with the bundle's positions replaced by the script's (the prelude reads the source map).
std::string map_stack(JsParty *p, const std::string &text)
{
    JS::RootedValueArray<1> a(cx);
    JS::RootedValue rv(cx);
    JSString *t = new_string(cx, text.data(), text.size());
    if (t == nullptr) {
        JS_ClearPendingException(cx);
        return text;
    }
    a[0].setString(t);
    JS::RootedObject host(cx, p->host);
    if (!JS_CallFunctionName(cx, host, "mapStack", a, &rv) || !rv.isString()) {
        JS_ClearPendingException(cx);
        return text;
    }
    return to_utf8(cx, rv);
}

// Makes the party's realm: the prelude, then the bundle evaluated, its default export handed to the prelude.
// Returns the party, or nullptr with the reason.
JsParty *party_make(js_script_t *s, bool *hibernate, std::string &err)
{
    if (!engine_start(err))
        return nullptr;
    JsParty *p = new JsParty;
    p->script = s;
    p->global.init(cx);
    p->host.init(cx);
    JS::RealmOptions opts;
    p->global = JS_NewGlobalObject(cx, &global_class, nullptr, JS::FireOnNewGlobalHook, opts);
    if (!p->global) {
        err = "cannot make a realm";
        delete p;
        return nullptr;
    }
    JSAutoRealm ar(cx, p->global);
    JS::RootedObject nat(cx, JS_NewPlainObject(cx));
    JS::RootedValue fn(cx), rv(cx);
    JS::CompileOptions popts(cx);
    popts.setFileAndLine("partyd:prelude", 1);
    JS::SourceText<mozilla::Utf8Unit> psrc;
    if (!nat || !JS_DefineFunctions(cx, nat, natives) || !psrc.init(cx, js_prelude, strlen(js_prelude), JS::SourceOwnership::Borrowed) ||
        !JS::Evaluate(cx, popts, psrc, &fn)) {
        err = "the prelude failed: " + take_exception(cx);
        delete p;
        return nullptr;
    }
    JS::RootedValueArray<1> pargs(cx);
    pargs[0].setObject(*nat);
    if (!JS::Call(cx, JS::UndefinedHandleValue, fn, pargs, &rv) || !rv.isObject()) {
        err = "the prelude failed: " + take_exception(cx);
        delete p;
        return nullptr;
    }
    p->host = &rv.toObject();
    {
        std::string map = source_map(s);
        char cwd[4096];
        JS::RootedValueArray<3> margs(cx);
        margs[0].setString(new_string(cx, s->path, strlen(s->path)));
        margs[1].setString(new_string(cx, map.data(), map.size()));
        margs[2].setString(new_string(cx, cwd, getcwd(cwd, sizeof(cwd)) != nullptr ? strlen(cwd) : 0));
        if (!JS_CallFunctionName(cx, p->host, "sourceMap", margs, &rv))
            JS_ClearPendingException(cx); // stacks then name the bundle's lines
    }

    JS::CompileOptions mopts(cx);
    mopts.setFileAndLine(s->path, 1);
    JS::SourceText<mozilla::Utf8Unit> msrc;
    JS::RootedObject mod(cx);
    JS::RootedValue ev(cx);
    if (!msrc.init(cx, s->source, s->len, JS::SourceOwnership::Borrowed) || !(mod = JS::CompileModule(cx, mopts, msrc)) ||
        !JS::ModuleInstantiate(cx, mod) || !JS::ModuleEvaluate(cx, mod, &ev)) {
        err = map_stack(p, take_exception(cx));
        delete p;
        return nullptr;
    }
    js::RunJobs(cx);
    JS::RootedObject pr(cx, ev.isObject() ? &ev.toObject() : nullptr);
    if (pr && JS::IsPromiseObject(pr)) {
        if (JS::GetPromiseState(pr) == JS::PromiseState::Rejected) {
            JS::RootedValue why(cx, JS::GetPromiseResult(pr));
            JS_SetPendingException(cx, why);
            err = "its top level threw: " + map_stack(p, take_exception(cx));
            delete p;
            return nullptr;
        }
    }
    JS::RootedObject ns(cx, JS::GetModuleNamespace(cx, mod));
    JS::RootedValue klass(cx);
    if (!ns || !JS_GetProperty(cx, ns, "default", &klass) || !klass.isObject() || !JS::IsConstructor(&klass.toObject())) {
        JS_ClearPendingException(cx);
        err = "its module has no default export that is a class (export default class MyRoom { ... })";
        delete p;
        return nullptr;
    }
    JS::RootedValueArray<3> iargs(cx);
    iargs[0].set(klass);
    iargs[1].setString(new_string(cx, s->env_json, strlen(s->env_json)));
    iargs[2].setString(new_string(cx, s->name, strlen(s->name)));
    if (!JS_CallFunctionName(cx, p->host, "init", iargs, &rv)) {
        err = take_exception(cx);
        delete p;
        return nullptr;
    }
    *hibernate = rv.toBoolean();
    return p;
}

JsParty *party_of(party_room_t *room)
{
    const char *name = party_room_party(room);
    for (size_t i = 0; i < js_num_scripts; ++i) {
        js_script_t *s = &js_scripts[i];
        if (strcmp(s->name, name) != 0)
            continue;
        if (s->engine == nullptr) {
            std::string err;
            bool hib;
            JsParty *p = party_make(s, &hib, err);
            if (p == nullptr) {
                // it evaluated at start (bundle.c): this is an engine failure, not the script's; the next room retries
                party_log(room, 0, "script %s: %s", s->path, err.c_str());
                return nullptr;
            }
            s->engine = p;
        }
        return static_cast<JsParty *>(s->engine);
    }
    party_log(room, 0, "no script party named %s in this shard", name);
    return nullptr;
}

// Calls host[fn](token, ...args) in the room's realm, then runs the jobs. Returns the call's value in *rv (a promise
// for most), false when the call itself threw (the prelude catches the handlers' exceptions: this is rare).
template <size_t N> bool dispatch(JsRoom *r, const char *fn, JS::RootedValueArray<N> &args, JS::MutableHandleValue rv)
{
    JsRoom *was = current;
    current = r;
    args[0].setObject(*r->token);
    JS::RootedObject host(cx, r->party->host);
    bool ok = JS_CallFunctionName(cx, host, fn, args, rv);
    if (!ok)
        party_log(r->room, 0, "%s: %s", fn, map_stack(r->party, take_exception(cx)).c_str());
    js::RunJobs(cx);
    if (JS_IsExceptionPending(cx))
        party_log(r->room, 0, "%s: %s", fn, map_stack(r->party, take_exception(cx)).c_str());
    current = was;
    return ok;
}

// 0 when rv is not a rejected promise.
int settled_ok(JS::HandleValue rv)
{
    if (!rv.isObject())
        return 0;
    JS::RootedObject pr(cx, &rv.toObject());
    if (!JS::IsPromiseObject(pr))
        return 0;
    return JS::GetPromiseState(pr) == JS::PromiseState::Rejected ? -1 : 0;
}

JsRoom *room_of(party_room_t *room)
{
    return static_cast<JsRoom *>(party_room_data(room));
}

JSString *str(const char *s)
{
    return new_string(cx, s, strlen(s));
}

// The request's URL (http://host/path?query), method and headers as [name, value, ...].
bool request_parts(const party_request_t *req, JS::MutableHandleValue url, JS::MutableHandleValue headers)
{
    const char *host = party_request_header(req, "host"), *q = party_request_query(req);
    std::string u = std::string("http://") + (host != nullptr ? host : "localhost") + party_request_path(req);
    if (q[0] != '\0')
        u += std::string("?") + q;
    url.setString(new_string(cx, u.data(), u.size()));
    JS::RootedObject arr(cx, JS::NewArrayObject(cx, 0));
    if (!arr)
        return false;
    size_t n = party_request_header_count(req);
    for (size_t i = 0; i < n; ++i) {
        const char *name;
        const char *value = party_request_header_at(req, i, &name);
        JS::RootedValue k(cx, JS::StringValue(str(name))), v(cx, JS::StringValue(str(value)));
        JS::RootedObject pair(cx, JS::NewArrayObject(cx, 2));
        if (!pair || !JS_DefineElement(cx, pair, 0, k, JSPROP_ENUMERATE) || !JS_DefineElement(cx, pair, 1, v, JSPROP_ENUMERATE) ||
            !JS_DefineElement(cx, arr, (uint32_t)i, pair, JSPROP_ENUMERATE))
            return false;
    }
    headers.setObject(*arr);
    return true;
}

// ---- the party_t ----

int on_start(party_room_t *room)
{
    JsParty *p = party_of(room);
    if (p == nullptr)
        return -1;
    JSAutoRealm ar(cx, p->global);
    JsRoom *r = new JsRoom(p, room);
    r->token = JS_NewObject(cx, &token_class);
    if (!r->token) {
        delete r;
        return -1;
    }
    JS::SetReservedSlot(r->token, 0, JS::PrivateValue(r));
    party_room_set_data(room, r);
    live_rooms.insert(r);
    JS::RootedValueArray<2> args(cx);
    const char *id = party_room_id(room);
    args[1].setString(new_string(cx, id, strlen(id)));
    JS::RootedValue rv(cx);
    if (!dispatch(r, "start", args, &rv) || settled_ok(rv) != 0)
        return -1; // on_stop follows and frees r
    return 0;
}

void on_stop(party_room_t *room)
{
    JsRoom *r = room_of(room);
    if (r == nullptr)
        return;
    {
        JSAutoRealm ar(cx, r->party->global);
        JS::RootedValueArray<1> args(cx);
        JS::RootedValue rv(cx);
        dispatch(r, "stop", args, &rv);
        JS::SetReservedSlot(r->token, 0, JS::UndefinedValue());
    }
    // requests still held are the room layer's to answer (503) and free
    party_room_set_data(room, nullptr);
    live_rooms.erase(r);
    delete r;
}

int on_connect(party_room_t *room, party_conn_t *conn, const party_request_t *req)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    JS::RootedValueArray<5> args(cx);
    const char *id = party_conn_id(conn);
    args[1].setString(str(id));
    args[2].setString(str(party_request_method(req)));
    if (!request_parts(req, args[3], args[4])) {
        party_log(room, 0, "onConnect: %s", take_exception(cx).c_str());
        return 500;
    }
    JS::RootedValue rv(cx);
    dispatch(r, "connect", args, &rv);
    return 0; // an exception in onConnect is logged; the socket stays open, as on PartyKit
}

void on_message(party_room_t *room, party_conn_t *conn, const void *data, size_t len, int binary)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    JS::RootedValueArray<3> args(cx);
    args[1].setString(str(party_conn_id(conn)));
    JSObject *ab = nullptr;
    JSString *s = nullptr;
    if (binary ? (ab = new_arraybuffer(cx, data, len)) == nullptr : (s = new_string(cx, data, len)) == nullptr) {
        party_log(room, 0, "onMessage: %s", take_exception(cx).c_str());
        return;
    }
    if (binary)
        args[2].setObject(*ab);
    else
        args[2].setString(s);
    JS::RootedValue rv(cx);
    dispatch(r, "message", args, &rv);
}

void on_close(party_room_t *room, party_conn_t *conn, int, const char *, size_t, int)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    JS::RootedValueArray<2> args(cx);
    args[1].setString(str(party_conn_id(conn)));
    JS::RootedValue rv(cx);
    dispatch(r, "close", args, &rv);
}

void on_error(party_room_t *room, party_conn_t *conn, const char *error)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    JS::RootedValueArray<3> args(cx);
    args[1].setString(str(party_conn_id(conn)));
    args[2].setString(str(error));
    JS::RootedValue rv(cx);
    dispatch(r, "error", args, &rv);
}

void on_request(party_room_t *room, party_request_t *req)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    double rid = r->next_rid++;
    r->requests[rid] = req;
    JS::RootedValueArray<6> args(cx);
    args[1].setNumber(rid);
    args[2].setString(str(party_request_method(req)));
    size_t blen;
    const void *body = party_request_body(req, &blen);
    JSObject *b = new_uint8array(cx, body, blen);
    if (b != nullptr)
        args[5].setObject(*b); // rooted before request_parts allocates
    if (!b || !request_parts(req, args[3], args[4])) {
        party_log(room, 0, "onRequest: %s", take_exception(cx).c_str());
        r->requests.erase(rid);
        party_respond(req, 500, "text/plain", "out of memory", 13);
        return;
    }
    JS::RootedValue rv(cx);
    dispatch(r, "request", args, &rv);
    // a request whose Response is still pending stays held: an event of this room may settle it later, or the room
    // layer answers it 503 when the room stops
}

int on_alarm(party_room_t *room)
{
    JsRoom *r = room_of(room);
    JSAutoRealm ar(cx, r->party->global);
    JS::RootedValueArray<1> args(cx);
    JS::RootedValue rv(cx);
    if (!dispatch(r, "alarm", args, &rv))
        return -1;
    return settled_ok(rv); // a throwing onAlarm is retried, as on PartyKit
}

} // namespace

extern "C" {

const party_t js_party = {
    .abi_version = PARTY_ABI_VERSION,
    .kind = "script",
    .on_start = on_start,
    .on_stop = on_stop,
    .on_connect = on_connect,
    .on_message = on_message,
    .on_close = on_close,
    .on_error = on_error,
    .on_request = on_request,
    .on_alarm = on_alarm,
    .hibernate = 0,
    .before_connect = nullptr,
    .before_request = nullptr,
};

int js_available(void)
{
    return 1;
}

int js_probe(js_script_t *s, int *hibernate, char *err, size_t errlen)
{
    std::string why;
    bool hib = false;
    JsParty *p = party_make(s, &hib, why);
    if (p == nullptr) {
        snprintf(err, errlen, "%s", why.c_str());
        return -1;
    }
    *hibernate = hib;
    return 0;
}

} // extern "C"
