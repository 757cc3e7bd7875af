#!/bin/sh
# alarms.sh — what a shard's alarm check costs as alarms fire and move: the time each call of rooms_fire_alarms
# takes (from the alarm timer and from the 50 ms tick; in builds before it, rooms_tick: due alarms and the eviction
# sweep), measured with a perf uprobe on the shards, before any alarm and
# after each round of alarm sets (tests/bench/alarms.mjs: `POST /parties/counter/aN?alarm=1`, which leaves a
# deleted alarm index entry behind for every alarm that fires or moves); then how late alarms fire
# (alarms.mjs late: 300 alarms 50-199 ms ahead in 100 rooms, each watched by a `ws` client).
#
# It starts a fresh partyd (a new temp data dir, free ports on 127.0.0.1, the default parties), measures, stops it
# with SIGTERM and removes what it made, the uprobes included. Needs perf and the right to add uprobes (root).
#
# usage: tests/bench/alarms.sh [--rounds N] [--sets S] [--rooms R] [--build DIR]
#   --rounds N  rounds of alarm sets (default 3)
#   --sets S    alarm sets per round (default 50000)
#   --rooms R   rooms they are spread over (default 2000)
#   --build DIR partyd's build dir (default build/, with debug symbols: meson's debugoptimized)
# Prints one JSON line per measurement ("calls": how many, "mean_us", "max_us"), one per round (alarms.mjs's) and
# the lateness ("late_p50_ms", "late_p99_ms", "late_max_ms").
# Exit status: 0 measured and every alarm fired; 1 otherwise; 2 bad arguments or setup.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
rounds=3
sets=50000
rooms=2000
build="$root/build"

usage() {
    sed -n '2,18s/^# \{0,1\}//p' "$0"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=${2:?--rounds needs a value}; shift 2 ;;
    --sets) sets=${2:?--sets needs a value}; shift 2 ;;
    --rooms) rooms=${2:?--rooms needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    --help | -h) usage; exit 0 ;;
    *) echo "alarms.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$rounds" "$sets" "$rooms"; do
    case "$v" in '' | *[!0-9]* | 0) echo "alarms.sh: expected a positive number, got $v" >&2; exit 2 ;; esac
done
partyd="$build/partyd"
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
need_built alarms.sh "$build" "$partyd"
command -v perf >/dev/null || { echo "alarms.sh: needs perf (apt-get install linux-perf)" >&2; exit 2; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-alarms.XXXXXX")
pid=""
probes=0
# shellcheck disable=SC2317 # called from the traps
cleanup() {
    [ "$probes" = 1 ] && perf probe -q -d "probe_partyd:$fn*" 2>/dev/null
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "alarms.sh: interrupted; stopping" >&2; exit 130' INT TERM

printf '{"shards": 2, "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"listen": "127.0.0.1:0"}, "log_level": "warn"}\n' >"$tmp/partyd.json"
"$partyd" --config "$tmp/partyd.json" --data-dir "$tmp/data" >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
partyd_ready 10 "$pid" "$tmp" alarms.sh || exit 2
shards=$(pgrep -d, -P "$pid" partyd-shard)
[ -n "$shards" ] || { echo "alarms.sh: found no shard processes under $pid" >&2; exit 2; }

fn=rooms_fire_alarms
nm "$partyd" | grep -q " T $fn\$" || fn=rooms_tick
if ! perf probe -q -x "$partyd" -a "$fn" -a "$fn%return" 2>"$tmp/probe.err"; then
    echo "alarms.sh: cannot add the uprobes (root? debug symbols?):" >&2
    cat "$tmp/probe.err" >&2
    exit 2
fi
probes=1

# ticks WHEN: two seconds of the shards' calls of $fn, as one JSON line
ticks() {
    perf record -q -o "$tmp/perf.data" -e "probe_partyd:$fn" -e "probe_partyd:${fn}__return" -p "$shards" \
        sleep 2 >/dev/null 2>&1
    perf script -i "$tmp/perf.data" -F pid,time,event 2>/dev/null | awk -v when="$1" -v fn="$fn" '
        { t = $2; sub(":", "", t)
          if ($3 ~ /return/) { if (t0[$1] != "") { d = (t - t0[$1]) * 1e6; n++; sum += d; if (d > max) max = d } }
          else t0[$1] = t }
        END { printf "{\"when\":\"%s\",\"probe\":\"%s\",\"calls\":%d,\"mean_us\":%.1f,\"max_us\":%.1f}\n", when, fn, n, n ? sum / n : 0, max }'
}

status=0
ticks "before any alarm"
r=1
while [ $r -le "$rounds" ]; do
    node "$here/alarms.mjs" "$port" "$sets" "$rooms" || status=1
    ticks "after $((r * sets)) alarm sets"
    r=$((r + 1))
done
node "$here/alarms.mjs" "$port" late 100 || status=1
exit $status
