#!/bin/sh
# writes.sh — acknowledged storage writes per second through partyd's output gate, durability "sync" (each
# acknowledged write fsynced, group-committed once per shard loop pass) against "relaxed" (the WAL is written, not
# fsynced).
#
# For each durability it starts a fresh partyd (a new temp data dir, free ports on 127.0.0.1 for clients and admin,
# the default parties), waits for /health, runs `partyload writes`, reads the shards' commit counters from
# /admin/shards, checks that the rooms' stored counts add up (acknowledged <= stored <= sent), stops partyd with
# SIGTERM and removes everything it made. It binds and connects to 127.0.0.1 only.
#
# usage: tests/bench/writes.sh [--duration S] [--connections C] [--rooms R] [--pipeline D] [--shards N]
#                              [--build DIR] [--no-check]
# Prints one JSON line per durability (partyload's, with "durability", "shards", "shard_commits" (storage commits
# during the run, all shards) and "writes_per_commit" added), then a summary line.
# Exit status: 0 both runs measured and checked; 1 otherwise.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
duration=10
connections=64
rooms=1000
pipeline=1
shards=2
build="$root/build"
check=1

usage() {
    sed -n '2,16s/^# \{0,1\}//p' "$0"
}
while [ $# -gt 0 ]; do
    case "$1" in
    --duration) duration=${2:?--duration needs a value}; shift 2 ;;
    --connections) connections=${2:?--connections needs a value}; shift 2 ;;
    --rooms) rooms=${2:?--rooms needs a value}; shift 2 ;;
    --pipeline) pipeline=${2:?--pipeline needs a value}; shift 2 ;;
    --shards) shards=${2:?--shards needs a value}; shift 2 ;;
    --build) build=${2:?--build needs a value}; shift 2 ;;
    --no-check) check=0; shift ;;
    --help | -h) usage; exit 0 ;;
    *) echo "writes.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$shards" in '' | *[!0-9]*) echo "writes.sh: --shards: expected a number, got $shards" >&2; exit 2 ;; esac
case "$rooms" in '' | *[!0-9]*) echo "writes.sh: --rooms: expected a number, got $rooms" >&2; exit 2 ;; esac

partyd="$build/partyd"
partyload="$build/tests/bench/partyload"
# shellcheck source=tests/bench/lib.sh
. "$here/lib.sh"
need_built writes.sh "$build" "$partyd" "$partyload"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/partyd-bench.XXXXXX")
pid=""
lpid=""
cleanup() {
    if [ -n "$lpid" ]; then
        kill -TERM "$lpid" 2>/dev/null
        wait "$lpid" 2>/dev/null
        lpid=""
    fi
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        pid=""
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'echo "writes.sh: interrupted; stopping" >&2; exit 130' INT TERM

# start_partyd DURABILITY: a fresh node; sets pid and port.
start_partyd() {
    dir="$tmp/$1"
    mkdir -p "$dir"
    printf '{"durability": "%s", "shards": %s, "listen": {"host": "127.0.0.1", "port": 0}, "admin": {"listen": "127.0.0.1:0"}, "log_level": "warn"}\n' \
        "$1" "$shards" >"$dir/partyd.json"
    "$partyd" --config "$dir/partyd.json" --data-dir "$dir/data" >"$dir/stdout" 2>"$dir/stderr" &
    pid=$!
    partyd_ready 10 "$pid" "$dir" "writes.sh ($1)"
}

stop_partyd() {
    kill -TERM "$pid"
    wait "$pid"
    rc=$?
    pid=""
    if [ $rc != 0 ]; then
        echo "writes.sh: partyd exited with status $rc after SIGTERM:" >&2
        tail -20 "$tmp/$1/stderr" >&2
        return 1
    fi
}

# commits: storage commits so far, summed over the shards
commits() {
    curl -sf "http://127.0.0.1:$admin/admin/shards" | grep -o '"commits":[0-9]*' | awk -F: '{ s += $2 } END { print s + 0 }'
}

failed=0
for durability in sync relaxed; do
    start_partyd "$durability" || { failed=1; cleanup; continue; }
    commits_before=$(commits)
    # in the background, so that a signal interrupts the wait and the traps stop everything at once
    "$partyload" writes --port "$port" --connections "$connections" --rooms "$rooms" \
        --duration "$duration" --pipeline "$pipeline" --pid "$pid" >"$tmp/$durability/line" &
    lpid=$!
    wait "$lpid"
    status=$?
    lpid=""
    line=$(cat "$tmp/$durability/line")
    if [ -z "$line" ]; then
        echo "writes.sh: partyload ($durability) failed with status $status" >&2
        failed=1
    else
        [ $status = 0 ] || failed=1
        n=$(($(commits) - commits_before))
        wpc=$(awk -v w="$(json_field ok "$line")" -v c="$n" 'BEGIN { printf "%.1f", (c > 0 ? w / c : 0) }')
        printf '%s\n' "$line" |
            sed "s/^{/{\"durability\":\"$durability\",\"shards\":$shards,/; s/}\$/,\"shard_commits\":$n,\"writes_per_commit\":$wpc}/"
        eval "per_s_$durability=$(json_field per_s "$line")"
        if [ $check = 1 ]; then
            # every acknowledged write is in storage, and nothing was stored that was not sent
            ok=$(json_field ok "$line")
            sent=$(json_field requests "$line")
            stored=$(curl -s "http://127.0.0.1:$port/parties/counter/r[0-$((rooms - 1))]" |
                grep -o '"count":[0-9]*' | awk -F: '{ s += $2 } END { print s + 0 }')
            if [ "$stored" -lt "$ok" ] || [ "$stored" -gt "$sent" ]; then
                echo "writes.sh: CHECK FAILED ($durability): the rooms store $stored increments; acknowledged $ok, sent $sent" >&2
                failed=1
            else
                echo "writes.sh: check ($durability): acknowledged $ok <= stored $stored <= sent $sent" >&2
            fi
        fi
    fi
    stop_partyd "$durability" || failed=1
done

if [ -n "${per_s_sync:-}" ] && [ -n "${per_s_relaxed:-}" ]; then
    echo "summary: writes/s sync $per_s_sync, relaxed $per_s_relaxed, relaxed/sync $(awk -v a="$per_s_relaxed" -v b="$per_s_sync" \
        'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }') ($connections connections, $rooms rooms, pipeline $pipeline, $duration s, $shards shards, $(nproc) CPUs shared with partyload)"
else
    echo "summary: incomplete (see the errors above)"
    failed=1
fi
exit $failed
