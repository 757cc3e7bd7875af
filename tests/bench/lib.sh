# lib.sh — shell functions that writes.sh, alarms.sh, mixed.sh and sidebyside.sh share; they source it. POSIX sh.
# shellcheck shell=sh

# alive PID: the process exists and is not a zombie (a server that died but was not yet waited for is not alive)
alive() {
    _stat=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    case "$_stat" in Z*) return 1 ;; esac
    return 0
}

# wait_for SECONDS PID CMD...: polls every 0.1 s until CMD succeeds; returns 1 after SECONDS, or as soon as PID (the
# server being waited for) is no longer alive
wait_for() {
    _limit=$(($1 * 10))
    _pid=$2
    shift 2
    _i=0
    while ! "$@" >/dev/null 2>&1; do
        _i=$((_i + 1))
        if [ $_i -ge $_limit ] || ! alive "$_pid"; then
            return 1
        fi
        sleep 0.1
    done
}

# partyd_port FILE WHAT: the port of partyd's startup line "WHAT http://127.0.0.1:PORT" in FILE (its stdout);
# WHAT is "listening on" (clients) or "admin on"
partyd_port() {
    sed -n "s|.*$2 http://127\.0\.0\.1:\([0-9]*\).*|\1|p" "$1" | head -1
}

# partyd_ready SECONDS PID DIR WHO: waits until the partyd PID (its output in DIR/stdout and DIR/stderr) has printed
# its client and admin addresses and answers /health with 200, then sets port and admin. Otherwise says why on
# stderr, prefixed with WHO, with what partyd printed, and returns 1.
# shellcheck disable=SC2034 # port and admin are for the caller
partyd_ready() {
    if ! wait_for "$1" "$2" grep -q 'listening on http://127.0.0.1:' "$3/stdout" ||
        ! wait_for "$1" "$2" grep -q 'admin on http://127.0.0.1:' "$3/stdout"; then
        echo "$4: partyd did not start (no client or admin address):" >&2
        cat "$3/stdout" "$3/stderr" >&2
        return 1
    fi
    port=$(partyd_port "$3/stdout" 'listening on')
    admin=$(partyd_port "$3/stdout" 'admin on')
    if ! wait_for "$1" "$2" curl -sf "http://127.0.0.1:$port/health"; then
        echo "$4: partyd on port $port never answered /health with 200:" >&2
        tail -20 "$3/stderr" >&2
        return 1
    fi
}

# need_built WHO BUILD FILE...: every FILE is an executable and curl is installed; otherwise says what is missing on
# stderr, prefixed with WHO, and exits 2 (FILEs are built in BUILD)
need_built() {
    _who=$1
    _build=$2
    shift 2
    for _f in "$@"; do
        if [ ! -x "$_f" ]; then
            echo "$_who: $_f is missing; build first: ninja -C $_build" >&2
            exit 2
        fi
    done
    command -v curl >/dev/null || { echo "$_who: needs curl" >&2; exit 2; }
}

# json_field NAME JSON: the number in field NAME of a one-line JSON object (partyload's), or nothing
json_field() {
    printf '%s\n' "$2" | sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"
}
