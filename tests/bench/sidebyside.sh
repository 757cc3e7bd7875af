#!/bin/sh
# sidebyside.sh — partyd next to the PartyKit runtime ("the anchor"), in one run on this machine: both run the same
# relay and counter room logic and are driven, one at a time, by the same load generator (partyload); it prints
# partyd/anchor ratios per scenario.
#
# The anchor is the npm package partykit 0.0.115, its `dev` server (miniflare + workerd), offline and on 127.0.0.1
# only, serving tests/bench/anchor/ (relay: `this.room.broadcast(message, [sender.id])`; counter: storage get/put).
# It is installed (once; skipped when present) into ${PARTYD_ANCHOR_DIR:-$HOME/.cache/partyd-anchor} with
# `npm install partykit@0.0.115 partysocket@1.3.0 ws`; its dist/bin.mjs is patched so that everything it listens on,
# and every port it probes, is 127.0.0.1 (this version hard-codes 0.0.0.0 and binds its inspector proxy to all
# addresses, with no flag). Every run checks with `ss -ltunp` that the server's processes listen on loopback only,
# and refuses to run otherwise. See tests/bench/RESULTS.md, "side by side", for the details.
#
# For each scenario and each server (partyd first, then the anchor) it starts the server fresh (partyd: a new temp
# data dir; the anchor: .partykit/state deleted), runs `partyload SCENARIO ... --port P --pid SERVER_PID` (capped
# with `timeout`), appends the JSON line to the results file, stops the server (SIGTERM, then SIGKILL to its process
# group after 10 s) and pauses 2 s. A failed run is recorded and shown in the table; the script goes on.
#
# usage: tests/bench/sidebyside.sh [--only NAME[,NAME...]] [--duration S] [--out FILE] [--skip-anchor]
#                                  [--skip-install] [--build DIR] [--list]
#   --only        run these scenarios only: a name from --list, or a partyload scenario (broadcast, idle, ...)
#   --duration S  measured seconds per run (default 10)
#   --out FILE    the results, one JSON line per run (default /tmp/partyd-sidebyside-DATE.jsonl)
#   --skip-anchor partyd only
#   --skip-install do not install or patch the anchor; an error if it is not there
#   --build DIR   partyd's build dir (default build/; `ninja -C build` first)
#   --list        print the scenarios and exit
# Exit status: 0 every run measured; 1 a run failed (see the table); 2 bad arguments or setup; 130 interrupted.
# shellcheck disable=SC2317 # functions called from traps and by name (start_$server)
# shellcheck disable=SC2086 # pid lists are split on purpose
set -u

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
root=$(cd "$here/../.." && pwd)
duration=10
only=""
out=""
skip_anchor=0
skip_install=0
build="$root/build"
list=0
anchor_dir=${PARTYD_ANCHOR_DIR:-$HOME/.cache/partyd-anchor}
stop_timeout=10 # seconds between SIGTERM and SIGKILL
settle=2        # seconds between runs
start_timeout=60

say() { echo "sidebyside.sh: $*" >&2; }
die() { say "$*"; exit 2; }
usage() { sed -n '2,28s/^# \{0,1\}//p' "$0"; }

while [ $# -gt 0 ]; do
    case "$1" in
    --only) only=${2:?--only needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --out) out=${2:?--out needs a value}; shift 2 ;;
    --skip-anchor) skip_anchor=1; shift ;;
    --skip-install) skip_install=1; shift ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    --list) list=1; shift ;;
    --help | -h) usage; exit 0 ;;
    *) say "unknown argument $1"; usage >&2; exit 2 ;;
    esac
done
case "$duration" in '' | *[!0-9]* | 0) die "--duration: expected a whole number of seconds > 0, got $duration" ;; esac

# The scenarios: name | servers | seconds allowed beyond --duration before the run is killed | partyload arguments.
# @D@ is --duration, @ADMIN@ partyd's admin port. Offered loads (64-byte binary messages, deliveries/s): 1×100 at
# 2/s per client ≈20k/s; at 10/s ≈100k/s (ANCHOR.md's ceiling for the anchor; here, with partyload on the same 2
# cores, the anchor saturates at ≈45k/s, queues the rest and loses what is not delivered 2 s after the last send);
# 100×10 at 2/s ≈18k/s; 1×1000 at 0.02/s ≈20k/s; echo 10k/s over 50 rooms of two. The "-80k" and "-36k" runs are
# the operating points the issue quotes for the anchor (1×100 at 80k/s, 100×10 at 36k/s): CPU per delivery compared
# there. Storage writes acknowledged through the output gate: writes-64 over HTTP POST, increments-64 over WebSocket
# (64 clients, each alone in a counter room, one "increment" in flight each), the same counter logic on both servers.
scenario_table() {
    cat <<'EOF'
broadcast-1x100-mod   both   60  broadcast --rooms 1 --clients 100 --rate 2 --size 64 --duration @D@
broadcast-1x100-high  both   60  broadcast --rooms 1 --clients 100 --rate 10 --size 64 --duration @D@
broadcast-1x100-80k   both   60  broadcast --rooms 1 --clients 100 --rate 8 --size 64 --duration @D@
broadcast-100x10      both   60  broadcast --rooms 100 --clients 10 --rate 2 --size 64 --duration @D@
broadcast-100x10-36k  both   60  broadcast --rooms 100 --clients 10 --rate 4 --size 64 --duration @D@
broadcast-1x1000-low  both   60  broadcast --rooms 1 --clients 1000 --rate 0.02 --size 64 --duration @D@
echo-10k              both   60  echo --connections 100 --rate 10000 --size 64 --duration @D@
idle-1000             both   60  idle --connections 1000 --rooms 10 --hold @D@
idle-15000            partyd 120 idle --connections 15000 --rooms 150 --hold @D@
churn                 both   60  churn --connections 50 --duration @D@
writes-64             both   30  writes --connections 64 --rooms 1000 --duration @D@
increments-64         both   30  increments --connections 64 --duration @D@
wake                  partyd 120 wake --admin-port @ADMIN@ --rooms 100 --keys 100 --requests 5000
EOF
}
# why a partyd-only scenario has no anchor figure
anchor_na() {
    case "$1" in
    idle-15000) echo "not run on the anchor: ~200 KB per idle connection there (~3 GB)" ;;
    wake) echo "the anchor has no eviction control" ;;
    *) echo "partyd only" ;;
    esac
}

if [ $list = 1 ]; then
    scenario_table | awk '{ n = $1; s = $2; $1 = $2 = $3 = ""; sub(/^ +/, ""); printf "%-22s %-7s partyload %s\n", n, s, $0 }'
    exit 0
fi

# the selected scenarios, in table order
selected=""
if [ -n "$only" ]; then
    for want in $(echo "$only" | tr ',' ' '); do
        scenario_table | awk -v w="$want" '$1 == w || $4 == w { f = 1 } END { exit !f }' ||
            die "--only: no scenario $want (see --list)"
    done
fi
selected=$(scenario_table | awk -v only=",$only," 'only == ",," || index(only, "," $1 ",") || index(only, "," $4 ",") { print $1 }' | tr '\n' ' ')

partyd="$build/partyd"
partyload="$build/tests/bench/partyload"
for b in "$partyd" "$partyload"; do
    [ -x "$b" ] || die "$b is missing; build first: ninja -C $build"
done
for c in curl node ss pgrep setsid timeout; do
    command -v "$c" >/dev/null || die "needs $c"
done

anchor_pkg="$anchor_dir/node_modules/partykit"
anchor_bin="$anchor_pkg/dist/bin.mjs"
patch_marker="// partyd-anchor: listens on and probes 127.0.0.1 only (patched by tests/bench/sidebyside.sh)"

# pkg_version NAME: the installed version of an npm package in the anchor dir, or nothing
pkg_version() {
    node -p 'require(process.argv[1]).version' "$anchor_dir/node_modules/$1/package.json" 2>/dev/null
}
anchor_installed() {
    [ -f "$anchor_bin" ] && [ "$(pkg_version partykit)" = 0.0.115 ] && [ "$(pkg_version partysocket)" = 1.3.0 ] &&
        [ -n "$(pkg_version ws)" ] && [ -n "$(pkg_version workerd)" ]
}
anchor_patched() {
    grep -qxF "$patch_marker" "$anchor_bin" 2>/dev/null && ! grep -q '0\.0\.0\.0' "$anchor_bin"
}

# Patches dist/bin.mjs so that the dev server stays on 127.0.0.1. Each place must be found exactly once, else it
# fails and leaves the file alone. The original is kept as bin.mjs.orig.
#   1. the dev server's host, hard-coded "0.0.0.0" (passed to miniflare: workerd's socket and miniflare's loopback)
#   2. the inspector proxy: server.listen(port) with no host, i.e. every address
#   3. get-port's hosts to probe: "0.0.0.0", undefined (::) and every interface address -> 127.0.0.1 only
#   4. get-port's probe itself: listen(options) with no host for port 0 -> 127.0.0.1
#   5. the inspector's "is the port free" probe: listen(port) with no host -> 127.0.0.1
# 1 and 3 are the two places where the literal 0.0.0.0 appears; none may be left afterwards.
patch_anchor() {
    node - "$anchor_bin" "$patch_marker" <<'EOF'
const fs = require("fs");
const [file, marker] = process.argv.slice(2);
let src = fs.readFileSync(file, "utf8");
const literal = (s) => (s.match(/0\.0\.0\.0/g) || []).length;
if (literal(src) !== 2) {
  console.error(`expected the literal 0.0.0.0 in 2 places of ${file}, found ${literal(src)}: not partykit 0.0.115, ` +
    `or changed by something else; to reinstall, delete ${file.replace(/\/node_modules\/.*/, "/node_modules")}`);
  process.exit(1);
}
const places = [
  ["dev server host", 'host: "0.0.0.0",', 'host: "127.0.0.1",'],
  ["inspector proxy", "server.listen(props.port);", 'server.listen(props.port, "127.0.0.1");'],
  ["get-port hosts",
   'const interfaces = os8.networkInterfaces();\n  const results = /* @__PURE__ */ new Set([void 0, "0.0.0.0"]);',
   'const interfaces = {};\n  const results = /* @__PURE__ */ new Set(["127.0.0.1"]);'],
  ["get-port probe", "server.listen(options, () => {",
   'server.listen({ ...options, host: options.host ?? "127.0.0.1" }, () => {'],
  ["inspector port probe", "server.listen(\n        port,\n        () => terminator",
   'server.listen(\n        port,\n        "127.0.0.1",\n        () => terminator'],
];
for (const [what, from, to] of places) {
  const n = src.split(from).length - 1;
  if (n !== 1) {
    console.error(`${what}: expected 1 place in ${file}, found ${n}; nothing patched`);
    process.exit(1);
  }
  src = src.replace(from, to);
}
if (literal(src) !== 0) {
  console.error(`0.0.0.0 still in ${file} after patching; nothing patched`);
  process.exit(1);
}
src += `\n${marker}\n`;
if (!fs.existsSync(file + ".orig")) fs.copyFileSync(file, file + ".orig");
fs.writeFileSync(file + ".tmp", src);
fs.renameSync(file + ".tmp", file);
console.error(`patched ${places.length} places of ${file} to 127.0.0.1 (original kept as bin.mjs.orig)`);
EOF
}

if [ $skip_anchor = 0 ]; then
    if [ $skip_install = 1 ]; then
        anchor_installed || die "--skip-install: the anchor is not installed in $anchor_dir (run once without --skip-install)"
        anchor_patched || die "--skip-install: $anchor_bin is not patched to 127.0.0.1 (run once without --skip-install)"
    else
        if anchor_installed; then
            say "anchor: partykit 0.0.115 already installed in $anchor_dir"
        else
            say "anchor: installing partykit@0.0.115 partysocket@1.3.0 ws into $anchor_dir (npm)"
            mkdir -p "$anchor_dir" || die "cannot create $anchor_dir"
            # the bin.mjs of a previous install would be replaced by npm: drop a stale backup with it
            rm -f "$anchor_bin.orig"
            (cd "$anchor_dir" && NO_UPDATE_NOTIFIER=1 npm_config_update_notifier=false \
                npm install --no-audit --no-fund --loglevel=error partykit@0.0.115 partysocket@1.3.0 ws </dev/null >&2) ||
                die "anchor: npm install failed in $anchor_dir"
            anchor_installed || die "anchor: npm install finished but partykit 0.0.115 / partysocket 1.3.0 / ws / workerd are not all in $anchor_dir/node_modules"
        fi
        if anchor_patched; then
            say "anchor: $anchor_bin already patched to 127.0.0.1"
        else
            patch_anchor || die "anchor: could not patch $anchor_bin to 127.0.0.1; refusing to run it"
            anchor_patched || die "anchor: $anchor_bin is not patched after patching"
        fi
    fi
fi

if [ -z "$out" ]; then
    out="${TMPDIR:-/tmp}/partyd-sidebyside-$(date -u +%Y%m%dT%H%M%SZ).jsonl"
fi
: >"$out" || die "cannot write $out"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-sidebyside.XXXXXX") || die "mktemp failed"
spid=""    # the running server's pid (also its process group: it is started with setsid)
lpid=""    # the running partyload (under timeout)
groups=""  # every process group this script started
printed=0
started_at=$(date +%s)

# group_members PGID: the live (not zombie) processes of a process group
group_members() {
    for m in $(pgrep -g "$1" 2>/dev/null); do
        alive "$m" && echo "$m"
    done
}

# stop_server: SIGTERM to the server, SIGKILL to its process group after $stop_timeout s; then ends whatever is
# left in the group (the anchor leaves its esbuild service behind). Returns the server's exit status.
stop_server() {
    [ -n "$spid" ] || return 0
    p=$spid
    kill -TERM "$p" 2>/dev/null
    i=0
    while alive "$p" && [ $i -lt $((stop_timeout * 10)) ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if alive "$p"; then
        say "server $p did not stop within ${stop_timeout}s of SIGTERM; SIGKILL to its process group"
        kill -KILL -- "-$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
    rc=$?
    spid=""
    left=$(group_members "$p" | tr '\n' ' ')
    if [ -n "$left" ]; then
        kill -TERM $left 2>/dev/null
        sleep 0.5
        left=$(group_members "$p" | tr '\n' ' ')
        [ -n "$left" ] && kill -KILL $left 2>/dev/null
    fi
    return $rc
}

# stray_check: no process of a group this script started is left, nor one that runs in or names its temp dir
stray_check() {
    strays=""
    for g in $groups; do
        strays="$strays $(group_members "$g" | tr '\n' ' ')"
    done
    for p in $(pgrep -f 'workerd|partykit|partyd|esbuild|node|partyload' 2>/dev/null); do
        [ "$p" = $$ ] && continue
        # (cat, not a redirect: the process may be gone, and a failed redirect would be reported by the shell)
        # shellcheck disable=SC2002
        case "$(readlink "/proc/$p/cwd" 2>/dev/null) $(cat "/proc/$p/cmdline" 2>/dev/null | tr '\0' ' ')" in
        *"$tmp"*) alive "$p" && strays="$strays $p" ;;
        esac
    done
    strays=$(echo $strays | tr ' ' '\n' | sort -un | tr '\n' ' ')
    if [ -n "${strays% }" ]; then
        say "STRAY processes of this run remained; ending them: $strays"
        ps -o pid,pgid,cmd -p "$(echo $strays | tr ' ' ',')" >&2 2>/dev/null
        kill -KILL $strays 2>/dev/null
        return 1
    fi
    return 0
}

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$lpid" ]; then
        kill -TERM "$lpid" 2>/dev/null
        wait "$lpid" 2>/dev/null
        lpid=""
    fi
    stop_server
    if [ $printed = 0 ] && [ -s "$out" ]; then
        say "partial results:"
        print_table
    fi
    if stray_check; then
        say "no process of this run is left (checked with pgrep)"
    else
        final=1
    fi
    rm -rf "$tmp"
    exit "${final:-0}"
}
trap 'final=$?; cleanup' EXIT
trap 'say "interrupted; stopping"; final=130; cleanup' INT TERM

# check_loopback WHAT: every TCP/UDP listener of the server's process group is on a loopback address
check_loopback() {
    start_err=""
    pids=$(pgrep -g "$spid" 2>/dev/null | paste -sd'|' -)
    if [ -z "$pids" ]; then
        start_err="cannot check its listeners: no processes in group $spid"
    elif ! ss -Hltunp >"$rdir/ss" 2>/dev/null; then
        start_err="cannot check its listeners: ss -ltunp failed"
    elif ! grep -E "pid=($pids)," "$rdir/ss" >"$rdir/ss.mine"; then
        start_err="cannot check its listeners: ss shows none of pids $pids"
    else
        beyond=$(awk '{ print $5 }' "$rdir/ss.mine" | grep -vE '^(127\.[0-9.]+|\[::1\]|\[::ffff:127\.[0-9.]+\]):[0-9]+$' | tr '\n' ' ')
        [ -z "$beyond" ] && return 0
        start_err="listened beyond loopback: $beyond"
        say "$1 LISTENS BEYOND LOOPBACK; refusing to run it:"
        cat "$rdir/ss.mine" >&2
        return 1
    fi
    say "$1: $start_err; refusing to run it"
    return 1
}

# started_group: waits until the server leads its own process group (between fork and exec, setsid has not run
# yet) and remembers the group for the final check
started_group() {
    groups="$groups $spid"
    i=0
    while :; do
        g=$(ps -o pgid= -p "$spid" 2>/dev/null | tr -d ' ')
        [ "$g" = "$spid" ] && return 0
        if [ -z "$g" ] || [ $i -ge 100 ]; then
            say "server $spid is not its own process group leader (pgid ${g:-none: it exited})"
            return 1
        fi
        i=$((i + 1))
        sleep 0.02
    done
}

# start_partyd: a fresh partyd; sets spid, sport, sadmin
start_partyd() {
    d="$rdir/partyd"
    mkdir -p "$d"
    cat >"$d/partyd.json" <<'EOF'
{"shards": 2, "durability": "sync", "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"listen": "127.0.0.1:0"},
 "log_level": "warn",
 "parties": {"relay": {"kind": "relay"}, "counter": {"kind": "counter"}, "kv": {"kind": "kv"}}}
EOF
    setsid "$partyd" --config "$d/partyd.json" --data-dir "$d/data" >"$d/stdout" 2>"$d/stderr" </dev/null &
    spid=$!
    started_group || return 1
    partyd_ready "$start_timeout" "$spid" "$d" sidebyside.sh || return 1
    sport=$port
    sadmin=$admin
    check_loopback partyd
}

free_port() {
    node -e 'const s = require("net").createServer(); s.listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close(); });'
}

# start_anchor: the PartyKit dev server on a free port, fresh state; sets spid, sport
start_anchor() {
    d="$rdir/anchor"
    mkdir -p "$d"
    rm -rf "$aproj/.partykit"
    sport=$(free_port) || { say "no free port"; return 1; }
    sadmin=""
    (cd "$aproj" && NO_UPDATE_NOTIFIER=1 CI=1 exec setsid node "$anchor_bin" dev --port "$sport" \
        --disable-request-cf-fetch --no-hotkeys </dev/null >"$d/stdout" 2>"$d/stderr") &
    spid=$!
    started_group || return 1
    if ! wait_for "$start_timeout" "$spid" curl -sf -o /dev/null "http://127.0.0.1:$sport/parties/relay/x"; then
        say "the anchor (partykit dev, port $sport) never answered GET /parties/relay/x with 200:"
        tail -20 "$d/stdout" >&2
        tail -20 "$d/stderr" >&2
        return 1
    fi
    check_loopback "the anchor"
}

# record RUN SERVER KIND EXIT ERROR LINEFILE COMMAND: one JSON line into the results file
record() {
    node -e '
const fs = require("fs");
const [run, server, kind, exit, error, file, command] = process.argv.slice(1);
let m = null;
try {
  const lines = fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim().startsWith("{"));
  if (lines.length) m = JSON.parse(lines[lines.length - 1]);
} catch {}
const o = { run, server, kind, exit: Number(exit) };
if (command) o.command = command;
if (error) o.error = error;
else if (!m && o.exit === 0) o.error = "partyload printed no JSON line";
console.log(JSON.stringify(m ? { ...o, ...m } : o));
' "$@" >>"$out"
}

print_table() {
    printed=1
    node - "$out" <<'EOF'
const fs = require("fs");
const all = fs.readFileSync(process.argv[2], "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
const recs = all.filter((r) => r.run);
const anchorSkipped = all.some((r) => r.meta && r.meta.anchor === "skipped");
const load = [["delivered/s", "delivered_per_s", 1], ["p99 ms", "p99_ms", 1], ["p99 ms to arrival", "arrival_p99_ms", 1],
  ["server CPU us/delivery", "server_cpu_us_per_delivery", 1],
  ["peak RSS KB", "server_rss_kb", 1], ["lost", "lost", 0], ["duplicated", "duplicated", 0], ["out of order", "out_of_order", 0]];
const metrics = {
  broadcast: load, echo: load,
  idle: [["connections open", "connections_open", 0], ["RSS per conn bytes", "rss_per_conn_bytes", 1],
    ["RSS after KB", "server_rss_after_kb", 1], ["connects/s", "connect_per_s", 1]],
  churn: [["connects/s", "connects_per_s", 1], ["p99 ms (connect to 101)", "p99_ms", 1], ["closes unanswered", "closes_unanswered", 0],
    ["peak RSS KB", "server_rss_kb", 1]],
  writes: [["writes/s", "per_s", 1], ["p99 ms", "p99_ms", 1], ["peak RSS KB", "server_rss_kb", 1]],
  increments: [["acknowledged writes/s", "delivered_per_s", 1], ["p99 ms", "p99_ms", 1],
    ["server CPU us/write", "server_cpu_us_per_delivery", 1], ["peak RSS KB", "server_rss_kb", 1], ["lost", "lost", 0],
    ["duplicated", "duplicated", 0], ["out of order", "out_of_order", 0]],
  wake: [["wakes/s", "wakes_per_s", 1], ["p50 ms", "p50_ms", 1], ["p99 ms", "p99_ms", 1], ["peak RSS KB", "server_rss_kb", 1]],
};
const skip = new Set(["run", "server", "kind", "exit", "command", "error", "skipped", "scenario", "duration_s", "client_cpu_s", "server_procs"]);
const fmt = (v) => {
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a >= 100) return Math.round(v).toLocaleString("en-US");
  if (a >= 10) return v.toFixed(1);
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(a >= 1 ? 2 : 3);
};
const metricKeys = (r) => Object.keys(r).filter((k) => typeof r[k] === "number" && !skip.has(k));
const runs = [];
const by = {};
for (const r of recs) {
  if (!by[r.run]) { by[r.run] = {}; runs.push(r.run); }
  by[r.run][r.server] = r;
}
const rows = [["scenario", "metric", "partyd", "anchor", "partyd/anchor"]];
const notes = [];
for (const run of runs) {
  const p = by[run].partyd, a = by[run].anchor;
  const kind = (p || a).kind;
  let ms = metrics[kind];
  if (!ms) { // a scenario without a fixed list: its numeric fields
    const keys = new Set();
    for (const r of [p, a]) if (r) for (const [k, v] of Object.entries(r)) if (typeof v === "number" && !skip.has(k)) keys.add(k);
    ms = [...keys].map((k) => [k, k, 0]);
  }
  const cell = (r, key, anchor) => {
    if (!r) return anchor && anchorSkipped ? "skipped" : "-";
    if (r.skipped) return "n/a";
    if (!(key in r)) return r.error || r.exit ? "FAILED" : "-";
    return fmt(r[key]) + (r.exit ? "!" : "");
  };
  let first = true;
  const present = ms.filter(([, key]) => (p && key in p) || (a && key in a));
  for (const [label, key, ratio] of present.length ? present : [["(no figures)", "", 0]]) {
    let q = "";
    if (ratio && p && a && !p.skipped && !a.skipped && typeof p[key] === "number" && typeof a[key] === "number" && a[key] > 0)
      q = ((x) => (x >= 10 ? x.toFixed(1) : x >= 0.1 ? x.toFixed(2) : x.toPrecision(2)))(p[key] / a[key]);
    rows.push([first ? run : "", label, cell(p, key, false), cell(a, key, true), q]);
    first = false;
  }
  for (const r of [p, a]) {
    if (!r) continue;
    if (r.skipped) notes.push(`${run} ${r.server}: n/a — ${r.skipped}`);
    for (const [k, what] of [["lost", "messages lost (not delivered by --timeout after the last send)"], ["duplicated", "messages duplicated"],
      ["out_of_order", "messages out of order"], ["closes_unanswered", "closes not answered with a close frame (partyload waits 100 ms for it)"]])
      if (!r.skipped && r[k] > 0) notes.push(`${run} ${r.server}: ${fmt(r[k])}${r.expected ? " of " + fmt(r.expected) : r.connects ? " of " + fmt(r.connects) : ""} ${what}`);
    if (r.skipped) continue;
    else if (r.error || r.exit) {
      const figures = r.exit && metricKeys(r).length ? ` (figures marked ! come from this run, which exited ${r.exit})` : "";
      notes.push(`${run} ${r.server}: ${r.error || "partyload exit " + r.exit}${figures}`);
    }
  }
}
const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
for (const [i, r] of rows.entries()) {
  console.log(r.map((c, j) => (j < 2 ? c.padEnd(w[j]) : c.padStart(w[j]))).join("  "));
  if (i === 0) console.log(w.map((n) => "-".repeat(n)).join("  "));
}
console.log("\n(/s: higher is better; ms, us, KB, bytes: lower is better. Same partyload command against each, one server at a time.)");
if (anchorSkipped) notes.unshift("anchor: skipped (--skip-anchor)");
if (notes.length) console.log("\n" + notes.join("\n"));
EOF
}

# the anchor's project: the sources from tests/bench/anchor, copied once before any start (the dev server rebuilds and
# drops every connection when files under it change)
aproj="$tmp/anchor-project"
if [ $skip_anchor = 0 ]; then
    if ! { mkdir -p "$aproj" && cp "$here/anchor/partykit.json" "$aproj/" && cp -R "$here/anchor/src" "$aproj/src"; }; then
        die "cannot copy $here/anchor to $aproj"
    fi
fi

node -e 'console.log(JSON.stringify({ meta: { started: new Date().toISOString(), nproc: require("os").cpus().length,
  duration_s: Number(process.argv[1]), partyd: process.argv[2], anchor: process.argv[3] === "1" ? "skipped" : "partykit 0.0.115 dev" } }))' \
    "$duration" "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" "$skip_anchor" >>"$out"

scenario_table >"$tmp/scenarios"
failed=0
n=0
while read -r name servers extra args <&3; do
    case " $selected " in *" $name "*) ;; *) continue ;; esac
    kind=${args%% *}
    cap=$((duration + extra))
    for server in partyd anchor; do
        if [ $server = anchor ]; then
            [ $skip_anchor = 1 ] && continue
            if [ "$servers" = partyd ]; then
                node -e 'console.log(JSON.stringify({ run: process.argv[1], server: "anchor", kind: process.argv[2], exit: 0, skipped: process.argv[3] }))' \
                    "$name" "$kind" "$(anchor_na "$name")" >>"$out"
                continue
            fi
        fi
        n=$((n + 1))
        rdir="$tmp/run$n"
        mkdir -p "$rdir"
        : >"$rdir/line"
        if ! "$partyload" --help 2>&1 | grep -qE "^ +$kind( |\$)"; then
            say "$name: this partyload has no scenario \"$kind\" (partyload --help); recorded as failed"
            record "$name" "$server" "$kind" 2 "partyload has no scenario $kind" "$rdir/line" ""
            failed=1
            continue
        fi
        say "$name: $server: starting"
        start_err=""
        if ! "start_$server"; then
            record "$name" "$server" "$kind" 0 "${start_err:-$server did not start}" "$rdir/line" ""
            failed=1
            stop_server
            sleep $settle
            continue
        fi
        a=$(echo "$args" | sed "s/@D@/$duration/g; s/@ADMIN@/${sadmin:-0}/g")
        cmd="partyload $a --port $sport --pid $spid"
        say "$name: $server: $cmd (at most ${cap}s)"
        # in the background, so that a signal interrupts the wait and the traps stop everything at once
        # shellcheck disable=SC2086
        timeout -k 5 "$cap" "$partyload" $a --port "$sport" --pid "$spid" >"$rdir/line" 2>"$rdir/err" </dev/null &
        lpid=$!
        wait "$lpid"
        status=$?
        lpid=""
        err=""
        case $status in
        0) ;;
        124 | 137) err="killed after ${cap}s (the run's cap)" ;;
        *) err="partyload exit $status: $(grep -v '^ *$' "$rdir/err" | tail -1)" ;;
        esac
        if [ $status != 0 ]; then
            failed=1
            say "$name: $server: $err"
        fi
        if ! alive "$spid"; then
            err="${err:+$err; }the $server died during the run"
            failed=1
            say "$name: $server died during the run:"
            tail -5 "$rdir/$server/stderr" >&2
        elif ! check_loopback "$server"; then
            err="${err:+$err; }${start_err:-could not check its listeners}"
            failed=1
        fi
        record "$name" "$server" "$kind" "$status" "$err" "$rdir/line" "$cmd"
        if ! stop_server && [ $server = partyd ]; then
            say "$name: partyd exited non-zero after SIGTERM:"
            tail -5 "$rdir/partyd/stderr" >&2
        fi
        sleep $settle
    done
done 3<"$tmp/scenarios"

echo
print_table
echo
echo "results: $out ($(($(date +%s) - started_at)) s)"
exit $failed
