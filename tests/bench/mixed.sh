#!/bin/sh
# mixed.sh — an echo's latency on a node whose other rooms are busy: what the shards' WAL syncs cost the rooms that
# do not write (a shard's loop waits for its sync, see README "Known limits"), or what a big room's fan-out costs
# the small rooms beside it (the router writes it in slices, README "How it is built").
#
# Starts a fresh partyd (durability sync, 2 shards, 127.0.0.1 only, a temp data dir) and measures `partyload echo`
# (C connections in rooms of two of the relay party "echo", R msgs/s in all) twice: alone, and beside the other
# load, started 1 s before the echo and measured over the same time:
#   --beside writes     `partyload writes`: W keep-alive connections POSTing to the counter's rooms;
#   --beside broadcast  `partyload broadcast`: one relay room of N clients receiving 20 msgs/s in all (N - 1
#                       deliveries each).
# Then stops partyd with SIGTERM and removes everything it made.
#
# usage: tests/bench/mixed.sh [--beside writes|broadcast] [--writers W] [--clients N] [--connections C] [--rate R]
#                             [--duration S] [--build DIR]
# Defaults: --beside writes --writers 4 --clients 1000 --connections 100 --rate 10000 --duration 6. Prints the echo's
# JSON line of each phase with "phase" ("alone", "with_writes" or "with_broadcast") and "beside_per_s" (writes/s or
# deliveries/s) added, then a summary line. Exit status 0 when both phases were measured, 1 otherwise.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
beside=writes
writers=4
clients=1000
connections=100
rate=10000
duration=6
build="$root/build"

usage() {
    sed -n '2,21s/^# \{0,1\}//p' "$0"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --beside) beside=${2:?--beside needs a value}; shift 2 ;;
    --writers) writers=${2:?--writers needs a value}; shift 2 ;;
    --clients) clients=${2:?--clients needs a value}; shift 2 ;;
    --connections) connections=${2:?--connections needs a value}; shift 2 ;;
    --rate) rate=${2:?--rate needs a value}; shift 2 ;;
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    --help | -h) usage; exit 0 ;;
    *) echo "mixed.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$beside" in writes | broadcast) ;; *) echo "mixed.sh: --beside: writes or broadcast, not $beside" >&2; exit 2 ;; esac
for v in "$writers" "$clients" "$connections" "$rate" "$duration"; do
    case "$v" in '' | *[!0-9]*) echo "mixed.sh: expected a whole number, got $v" >&2; exit 2 ;; esac
done

partyd="$build/partyd"
partyload="$build/tests/bench/partyload"
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
need_built mixed.sh "$build" "$partyd" "$partyload"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-mixed.XXXXXX")
pid=""
bpid=""
# shellcheck disable=SC2317 # called from the traps
cleanup() {
    for p in "$bpid" "$pid"; do
        if [ -n "$p" ]; then
            kill -TERM "$p" 2>/dev/null
            wait "$p" 2>/dev/null
        fi
    done
    bpid=""
    pid=""
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "mixed.sh: interrupted; stopping" >&2; exit 130' INT TERM

# the echo has a relay party of its own: partyload names its rooms r0, r1, … in every scenario
printf '{"durability": "sync", "shards": 2, "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"listen": "127.0.0.1:0"}, "log_level": "warn", "parties": {"relay": {"kind": "relay"}, "echo": {"kind": "relay"}, "counter": {"kind": "counter"}}}\n' \
    >"$tmp/partyd.json"
"$partyd" --config "$tmp/partyd.json" --data-dir "$tmp/data" >"$tmp/stdout" 2>"$tmp/stderr" &
pid=$!
partyd_ready 10 "$pid" "$tmp" mixed.sh || exit 1

failed=0
for phase in alone "with_$beside"; do
    beside_per_s=0
    if [ "$phase" = with_writes ]; then
        "$partyload" writes --port "$port" --connections "$writers" --duration "$((duration + 2))" >"$tmp/beside" &
        per_s_field=per_s
    elif [ "$phase" = with_broadcast ]; then
        "$partyload" broadcast --port "$port" --rooms 1 --clients "$clients" --rate "$(awk -v n="$clients" 'BEGIN { print 20 / n }')" \
            --duration "$((duration + 2))" >"$tmp/beside" &
        per_s_field=delivered_per_s
    fi
    if [ "$phase" != alone ]; then
        bpid=$!
        sleep 1
    fi
    line=$("$partyload" echo --port "$port" --party echo --connections "$connections" --rate "$rate" --duration "$duration" --pid "$pid")
    if [ -n "$bpid" ]; then
        wait "$bpid"
        bpid=""
        beside_per_s=$(json_field "$per_s_field" "$(cat "$tmp/beside")")
        [ -n "$beside_per_s" ] || { echo "mixed.sh: partyload $beside printed nothing" >&2; failed=1; beside_per_s=0; }
    fi
    if [ -z "$line" ]; then
        echo "mixed.sh: partyload echo ($phase) printed nothing" >&2
        failed=1
        continue
    fi
    printf '%s\n' "$line" | sed "s/^{/{\"phase\":\"$phase\",\"beside_per_s\":$beside_per_s,/"
    eval "p50_$phase=$(json_field p50_ms "$line") p99_$phase=$(json_field p99_ms "$line")"
done

kill -TERM "$pid"
wait "$pid" || { echo "mixed.sh: partyd did not exit cleanly after SIGTERM" >&2; failed=1; }
pid=""
if [ $failed = 0 ]; then
    if [ "$beside" = writes ]; then
        what="with $writers writers (${beside_per_s} writes/s) ${p50_with_writes:-?}/${p99_with_writes:-?}"
    else
        what="beside a room of $clients (${beside_per_s} deliveries/s) ${p50_with_broadcast:-?}/${p99_with_broadcast:-?}"
    fi
    echo "summary: echo p50/p99 ms alone ${p50_alone:-?}/${p99_alone:-?}, $what" \
        "($connections connections, $rate msgs/s, $duration s, 2 shards, $(nproc) CPUs shared with partyload)"
fi
exit $failed
