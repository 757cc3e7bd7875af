// natives.cpp — the host functions the prelude calls (its N): text and structured clone, and the room's own — send,
// broadcast, close, connection state, connections, storage, the alarm, answering a request. Each room function takes
// the room's token first and throws once the room has stopped, so a JS object kept past its room cannot reach a
// freed one. Strings go to party.h as UTF-8 (lone surrogates become U+FFFD); bytes are copied out of the GC heap
// before anything can allocate.
#include "jsint.h"
#include "js.h"

#include "engine.h"

extern "C" { // proto/'s header is C's, without guards of its own
#include "base.h"
}

#include <sys/random.h>
#include <time.h>

namespace jsb {

const JSClass token_class = {"PartydRoom", JSCLASS_HAS_RESERVED_SLOTS(1)};
JsRoom *current;
const char *making;


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

JSString *new_string(JSContext *c, const void *p, size_t n)
{
    return JS_NewStringCopyUTF8N(c, JS::UTF8Chars(static_cast<const char *>(p), n));
}

// The bytes of a Uint8Array/any view (the prelude turns ArrayBuffers into views); false when v is none.
static bool view_bytes(JS::HandleValue v, const uint8_t **p, size_t *n)
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

static bool throw_errno(JSContext *c, const char *what, int err)
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
static JsRoom *room_arg(JSContext *c, const JS::CallArgs &args)
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

static party_conn_t *conn_arg(JSContext *c, JsRoom *r, JS::HandleValue v)
{
    std::string id = to_utf8(c, v);
    party_conn_t *conn = party_room_connection(r->room, id.c_str());
    if (conn == nullptr)
        JS_ReportErrorUTF8(c, "connection %s: not open in this room", id.c_str());
    return conn;
}

#define NATIVE(name) static bool name(JSContext *c, unsigned argc, JS::Value *vp)
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
    else // the module's top level, as its realm is made: no room yet
        log_msg(level >= LOG_ERROR && level <= LOG_DEBUG ? (log_level_t)level : LOG_INFO, "party %s: %s",
                making != nullptr ? making : "?", msg.c_str());
    args.rval().setUndefined();
    return true;
}

static bool serialize(JSContext *c, JS::HandleValue v, std::string &out)
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

static bool deserialize(JSContext *c, const void *p, size_t n, JS::MutableHandleValue v)
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

static int list_one(void *arg, const void *key, size_t key_len, const void *value, size_t value_len)
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
    auto answer = [&](const void *p, size_t n) {
        if (party_respond(req, status, has_type ? type.c_str() : nullptr, p, n) != 0) {
            static const char why[] = "the room's response was not valid";
            party_log(r->room, 1, "onRequest: the response (status %d) was refused; answering 500", (int)status);
            party_respond(req, 500, "text/plain", why, strlen(why));
        }
        return true;
    };
    if (args.get(4).isNullOrUndefined()) {
        answer(nullptr, 0);
    } else if (!with_message(c, args[4], [&](const void *p, size_t n, int) { return answer(p, n); })) {
        static const char why[] = "the response body is not a string or bytes";
        JS_ClearPendingException(c);
        party_respond(req, 500, "text/plain", why, strlen(why));
    }
    return true;
}

NATIVE(n_delete_all)
{
    ROOM();
    long rc = party_storage_delete_all(r->room);
    args.rval().setUndefined();
    return rc >= 0 || throw_errno(c, "storage.deleteAll", (int)rc);
}

// commit(tok, [[key, value | DELETED], ...]): a transaction's writes, all or none (party_storage_transaction).
struct CommitCtx {
    JSContext *c;
    JS::HandleObject ops;
    uint32_t n;
    bool js_failed; // an exception is pending
    int err;        // a storage error
};

static int commit_ops(party_room_t *room, void *arg)
{
    CommitCtx *t = static_cast<CommitCtx *>(arg);
    for (uint32_t i = 0; i < t->n; ++i) {
        JS::RootedValue pair(t->c), k(t->c), v(t->c);
        if (!JS_GetElement(t->c, t->ops, i, &pair) || !pair.isObject()) {
            t->js_failed = true;
            return 1;
        }
        JS::RootedObject po(t->c, &pair.toObject());
        if (!JS_GetElement(t->c, po, 0, &k) || !JS_GetElement(t->c, po, 1, &v)) {
            t->js_failed = true;
            return 1;
        }
        std::string key = to_utf8(t->c, k), val;
        int rc;
        if (v.isSymbol()) { // DELETED
            rc = party_storage_delete(room, key.data(), key.size());
            rc = rc < 0 ? rc : 0;
        } else {
            if (!serialize(t->c, v, val)) {
                t->js_failed = true;
                return 1;
            }
            rc = party_storage_put(room, key.data(), key.size(), val.data(), val.size());
        }
        if (rc != 0) {
            t->err = rc;
            return 1;
        }
    }
    return 0;
}

NATIVE(n_commit)
{
    ROOM();
    JS::RootedObject ops(c, args.get(1).isObject() ? &args[1].toObject() : nullptr);
    uint32_t n = 0;
    if (!ops || !JS::GetArrayLength(c, ops, &n))
        return false;
    CommitCtx t = {c, ops, n, false, 0};
    party_storage_transaction(r->room, commit_ops, &t);
    args.rval().setUndefined();
    if (t.js_failed)
        return false;
    return t.err == 0 || throw_errno(c, "storage.transaction (nothing of it was written)", t.err);
}

NATIVE(n_cmp_keys)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    std::string a = to_utf8(c, args.get(0)), b = to_utf8(c, args.get(1));
    args.rval().setInt32(a < b ? -1 : a > b ? 1 : 0); // byte-wise, as storage orders keys
    return true;
}

NATIVE(n_set_tags)
{
    ROOM();
    party_conn_t *conn = conn_arg(c, r, args.get(1));
    if (conn == nullptr)
        return false;
    JS::RootedObject arr(c, args.get(2).isObject() ? &args[2].toObject() : nullptr);
    uint32_t n = 0;
    if (!arr || !JS::GetArrayLength(c, arr, &n))
        return false;
    if (n > PARTY_TAGS_MAX) {
        JS_ReportErrorUTF8(c, "getConnectionTags: at most %d tags", PARTY_TAGS_MAX);
        return false;
    }
    std::vector<std::string> tags(n);
    std::vector<const char *> ptrs(n);
    for (uint32_t i = 0; i < n; ++i) {
        JS::RootedValue e(c);
        if (!JS_GetElement(c, arr, i, &e))
            return false;
        tags[i] = to_utf8(c, e);
        ptrs[i] = tags[i].c_str();
    }
    int rc = party_conn_set_tags(conn, ptrs.data(), n);
    args.rval().setUndefined();
    return rc == 0 || throw_errno(c, "getConnectionTags (1..10 tags of 1..256 bytes, only while connecting)", rc);
}

NATIVE(n_random_fill)
{
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    const uint8_t *p;
    size_t n;
    if (!view_bytes(args.get(0), &p, &n)) {
        JS_ReportErrorUTF8(c, "randomFill: expected bytes");
        return false;
    }
    uint8_t buf[65536];
    if (n > sizeof(buf) || getrandom(buf, n, 0) != (ssize_t)n) {
        JS_ReportErrorUTF8(c, "getRandomValues: no randomness");
        return false;
    }
    {
        JS::AutoCheckCannotGC nogc;
        bool shared;
        memcpy(JS_GetArrayBufferViewData(&args[0].toObject(), &shared, nogc), buf, n);
    }
    args.rval().setUndefined();
    return true;
}

NATIVE(n_mono_ms)
{
    (void)c;
    JS::CallArgs args = JS::CallArgsFromVp(argc, vp);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    args.rval().setNumber((double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6);
    return true;
}

const JSFunctionSpec natives[] = {
    JS_FN("deleteAll", n_delete_all, 1, 0),
    JS_FN("commit", n_commit, 2, 0),
    JS_FN("cmpKeys", n_cmp_keys, 2, 0),
    JS_FN("setTags", n_set_tags, 3, 0),
    JS_FN("randomFill", n_random_fill, 1, 0),
    JS_FN("monoMs", n_mono_ms, 0, 0),
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

} // namespace jsb
