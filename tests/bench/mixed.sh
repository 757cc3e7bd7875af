#!/bin/sh
# mixed.sh — an echo's latency on a node whose other rooms write: what the shards' WAL syncs cost the rooms that do
# not write (a shard's loop waits for its sync, see README "Known limits").
#
# Starts a fresh partyd (durability sync, 2 shards, 127.0.0.1 only, a temp data dir) and measures `partyload echo`
# (C connections in rooms of two, R msgs/s in all) twice: alone, and while `partyload writes` keeps W keep-alive
# connections busy POSTing to the counter's rooms (started 1 s before the echo and measured over the same time).
# Then stops partyd with SIGTERM and removes everything it made.
#
# usage: tests/bench/mixed.sh [--writers W] [--connections C] [--rate R] [--duration S] [--build DIR]
# Defaults: --writers 4 --connections 100 --rate 10000 --duration 6. Prints the echo's JSON line of each phase with
# "phase" ("alone", "with_writes") and "writes_per_s" added, then a summary line. Exit status 0 when both phases
# were measured, 1 otherwise.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
writers=4
connections=100
rate=10000
duration=6
build="$root/build"

usage() {
    sed -n '2,15s/^# \{0,1\}//p' "$0"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --writers) writers=${2:?--writers needs a value}; shift 2 ;;
    --connections) connections=${2:?--connections needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    --help | -h) usage; exit 0 ;;
    *) echo "mixed.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in "$writers" "$connections" "$rate" "$duration"; do
    case "$v" in '' | *[!0-9]*) echo "mixed.sh: expected a whole number, got $v" >&2; exit 2 ;; esac
done

partyd="$build/partyd"
partyload="$build/tests/bench/partyload"
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
need_built mixed.sh "$build" "$partyd" "$partyload"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-mixed.XXXXXX")
pid=""
wpid=""
# shellcheck disable=SC2317 # called from the traps
cleanup() {
    for p in "$wpid" "$pid"; do
        if [ -n "$p" ]; then
            kill -TERM "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    wpid=""
    pid=""
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "mixed.sh: interrupted; stopping" >&2; exit 130' INT TERM

printf '{"durability": "sync", "shards": 2, "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"listen": "127.0.0.1:0"}, "log_level": "warn"}\n' \
    >"$tmp/partyd.json"
"$partyd" --config "$tmp/partyd.json" --data-dir "$tmp/data" >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
partyd_ready 10 "$pid" "$tmp" mixed.sh || exit 1

failed=0
for phase in alone with_writes; do
    writes_per_s=0
    if [ $phase = with_writes ]; then
        "$partyload" writes --port "$port" --connections "$writers" --duration "$((duration + 2))" >"$tmp/writes" &
        wpid=$!
        sleep 1
    fi
    line=$("$partyload" echo --port "$port" --connections "$connections" --rate "$rate" --duration "$duration" --pid "$pid")
    if [ -n "$wpid" ]; then
        wait "$wpid"
        wpid=""
        writes_per_s=$(json_field per_s "$(cat "$tmp/writes")")
        [ -n "$writes_per_s" ] || { echo "mixed.sh: partyload writes printed nothing" >&2; failed=1; writes_per_s=0; }
    fi
    if [ -z "$line" ]; then
        echo "mixed.sh: partyload echo ($phase) printed nothing" >&2
        failed=1
        continue
    fi
    printf '%s\n' "$line" | sed "s/^{/{\"phase\":\"$phase\",\"writes_per_s\":$writes_per_s,/"
    eval "p50_$phase=$(json_field p50_ms "$line") p99_$phase=$(json_field p99_ms "$line")"
done

kill -TERM "$pid"
wait "$pid" || { echo "mixed.sh: partyd did not exit cleanly after SIGTERM" >&2; failed=1; }
pid=""
if [ $failed = 0 ]; then
    echo "summary: echo p50/p99 ms alone ${p50_alone:-?}/${p99_alone:-?}, with $writers writers (${writes_per_s} writes/s)" \
        "${p50_with_writes:-?}/${p99_with_writes:-?} ($connections connections, $rate msgs/s, $duration s, 2 shards, $(nproc) CPUs shared with partyload)"
fi
exit $failed
