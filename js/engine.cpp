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

#include "engine.h"

extern "C" { // proto/'s header is C's, without guards of its own
#include "base.h"
}

#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>

extern "C" {
extern const char js_prelude[];
}

namespace jsb {
JSContext *cx;
}

using namespace jsb;

namespace {

// The engine's heap cap for the whole shard (JS_NewContext's default, 32 MiB, runs out at a few thousand rooms).
constexpr uint32_t HEAP_BYTES = 1024u * 1024 * 1024;

std::unordered_set<JsRoom *> live_rooms; // for the teardown at exit

const JSClass global_class = {"global", JSCLASS_GLOBAL_FLAGS, &JS::DefaultGlobalClassOps};

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

// ---- the engine and the realms ----

// ---- the CPU limit: a watchdog thread interrupts a call into JS that runs too long ----
//
// The loop thread stamps the start of each outermost entry into JS (a callback, with its jobs; a module's
// evaluation); the watchdog, every 50 ms, asks the engine to interrupt when that stamp is older than the limit, and
// the interrupt callback (on the loop thread, inside the engine) ends the script with an uncatchable error. Wall
// time, not CPU time: a handler that waits on nothing can only be computing.
std::atomic<int64_t> entered_us{0}; // monotonic µs of the outermost entry into JS; 0 outside JS
std::atomic<bool> watchdog_on{false};
std::thread watchdog;
int64_t limit_us = 30000 * 1000LL; // PARTYD_JS_CPU_MS, default 30 s as Workers
bool overran;                      // the current outermost entry was interrupted (loop thread only)

int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

bool on_interrupt(JSContext *)
{
    int64_t t = entered_us.load();
    if (t != 0 && mono_us() - t > limit_us) {
        overran = true;
        return false;
    }
    return true;
}

void watchdog_main(void)
{
    while (watchdog_on.load()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        int64_t t = entered_us.load();
        if (t != 0 && mono_us() - t > limit_us)
            JS_RequestInterruptCallback(cx);
    }
}

// One entry into JS, timed when it is the outermost.
struct Entry {
    bool outer;
    Entry() : outer(entered_us.load() == 0)
    {
        if (outer) {
            overran = false;
            entered_us.store(mono_us());
        }
    }
    ~Entry()
    {
        if (outer)
            entered_us.store(0);
    }
    bool interrupted() const { return outer && overran; }
};

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
    watchdog_on.store(false);
    if (watchdog.joinable())
        watchdog.join();
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
    const char *ms = getenv("PARTYD_JS_CPU_MS");
    if (ms != nullptr && atol(ms) >= 10)
        limit_us = atol(ms) * 1000LL;
    JS_AddInterruptCallback(cx, on_interrupt);
    watchdog_on.store(true);
    watchdog = std::thread(watchdog_main);
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
JsParty *party_make(js_script_t *s, bool probing, bool *hibernate, std::string &err)
{
    if (!engine_start(err))
        return nullptr;
    struct Making { // console's tag while the module's top level runs
        explicit Making(const char *name) { making = name; }
        ~Making() { making = nullptr; }
    } tag(s->name);
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
    Entry entry;
    if (!msrc.init(cx, s->source, s->len, JS::SourceOwnership::Borrowed) || !(mod = JS::CompileModule(cx, mopts, msrc)) ||
        !JS::ModuleInstantiate(cx, mod) || !JS::ModuleEvaluate(cx, mod, &ev)) {
        err = entry.interrupted() ? "its top level ran past " + std::to_string(limit_us / 1000) + " ms (PARTYD_JS_CPU_MS): interrupted"
                                  : map_stack(p, take_exception(cx));
        JS_ClearPendingException(cx);
        delete p;
        return nullptr;
    }
    js::RunJobs(cx);
    if (entry.interrupted()) {
        err = "its top level ran past " + std::to_string(limit_us / 1000) + " ms (PARTYD_JS_CPU_MS): interrupted";
        JS_ClearPendingException(cx);
        delete p;
        return nullptr;
    }
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
    JS::RootedValueArray<4> iargs(cx);
    iargs[0].set(klass);
    iargs[1].setString(new_string(cx, s->env_json, strlen(s->env_json)));
    iargs[2].setString(new_string(cx, s->name, strlen(s->name)));
    iargs[3].setBoolean(probing);
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
            JsParty *p = party_make(s, false, &hib, err);
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
void reset(JsRoom *r);

template <size_t N> bool dispatch(JsRoom *r, const char *fn, JS::RootedValueArray<N> &args, JS::MutableHandleValue rv)
{
    JsRoom *was = current;
    current = r;
    args[0].setObject(*r->token);
    JS::RootedObject host(cx, r->party->host);
    bool ok, interrupted;
    {
        Entry entry;
        ok = JS_CallFunctionName(cx, host, fn, args, rv);
        if (!ok && !entry.interrupted())
            party_log(r->room, 0, "%s: %s", fn, map_stack(r->party, take_exception(cx)).c_str());
        js::RunJobs(cx);
        if (JS_IsExceptionPending(cx))
            party_log(r->room, 0, "%s: %s", fn, map_stack(r->party, take_exception(cx)).c_str());
        interrupted = entry.interrupted();
    }
    current = was;
    if (interrupted && (strcmp(fn, "start") == 0 || strcmp(fn, "stop") == 0)) {
        // a start that fails fails its event, and the next one starts afresh; nothing to reset
        party_log(r->room, 0, "%s ran past %lld ms (PARTYD_JS_CPU_MS): interrupted", fn, (long long)(limit_us / 1000));
        return false;
    }
    if (interrupted) {
        party_log(r->room, 0, "%s ran past %lld ms (PARTYD_JS_CPU_MS): interrupted; the room is reset (its connections closed "
                  "with 1011, a new instance started from storage)",
                  fn, (long long)(limit_us / 1000));
        reset(r);
        return false;
    }
    return ok;
}

// After an interrupted handler: the instance may be half-way through anything, so it goes, as on PartyKit: the
// connections are closed (clients reconnect) and a new instance starts (constructor, onStart) from storage. The
// writes the handler made before it was stopped stay: they commit with the pass.
void reset(JsRoom *r)
{
    for (party_conn_t *c = party_room_connections(r->room, nullptr); c != nullptr; c = party_room_connections(r->room, c))
        party_conn_close(c, 1011, "the room was reset: a handler ran too long");
    JS::RootedValueArray<2> args(cx);
    JS::RootedValue rv(cx);
    dispatch(r, "stop", args, &rv);
    const char *id = party_room_id(r->room);
    JSString *s = new_string(cx, id, strlen(id));
    if (s == nullptr) {
        JS_ClearPendingException(cx);
        return;
    }
    args[1].setString(s);
    if (!dispatch(r, "start", args, &rv))
        party_log(r->room, 0, "the reset instance failed in its constructor or onStart (logged above); the room goes on with what it has");
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
    JS::RootedValueArray<3> args(cx);
    args[1].setString(str(party_conn_id(conn)));
    // the connection has left the room, so the prelude cannot look its state up: it comes with the event, for an
    // onClose that reads conn.state (a presence list, say) after the room woke from hibernation
    size_t n;
    const void *state = party_conn_state(conn, &n);
    if (state != nullptr && n != 0) {
        JSString *s = new_string(cx, state, n);
        if (s == nullptr) {
            party_log(room, 0, "onClose: %s", take_exception(cx).c_str());
            return;
        }
        args[2].setString(s);
    } else {
        args[2].setNull();
    }
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
    JsParty *p = party_make(s, true, &hib, why);
    if (p == nullptr) {
        snprintf(err, errlen, "%s", why.c_str());
        return -1;
    }
    *hibernate = hib;
    return 0;
}

} // extern "C"
