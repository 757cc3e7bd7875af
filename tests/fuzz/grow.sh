#!/bin/sh
# Grows the fuzz corpora: runs each target for N seconds from its corpus, then merges (-merge=1) into
# tests/fuzz/corpus/NAME only the inputs that add coverage. Commit what it adds.
#   tests/fuzz/grow.sh [SECONDS [NAME...]]     default 60 seconds, every target
# Needs clang (deploy/install-deps --test); builds build-fuzz when it is not there.
set -eu
cd "$(dirname "$0")/../.."
secs=${1:-60}
[ $# -gt 0 ] && shift
names="$*"
if [ -z "$names" ]; then
    for d in tests/fuzz/corpus/*/; do names="$names $(basename "$d")"; done
fi
if [ ! -f build-fuzz/build.ninja ]; then
    CC=clang meson setup build-fuzz -Dfuzz=true -Db_lundef=false >/dev/null
fi
for n in $names; do ninja -C build-fuzz "tests/fuzz/fuzz_$n" >/dev/null; done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in $names; do
    bin="$(pwd)/build-fuzz/tests/fuzz/fuzz_$n"
    corpus="$(pwd)/tests/fuzz/corpus/$n"
    mkdir -p "$tmp/$n"
    before=$(ls "$corpus" | wc -l)
    # new inputs go to a scratch folder; the corpus itself is only read here
    if ! (cd "$tmp" && "$bin" -max_total_time="$secs" -timeout=20 -artifact_prefix="$tmp/$n-" "$tmp/$n" "$corpus" \
        >"$tmp/$n.log" 2>&1); then
        echo "grow: fuzz_$n failed; the input is in build-fuzz/crashes:" >&2
        mkdir -p build-fuzz/crashes && cp "$tmp/$n"-* build-fuzz/crashes/ 2>/dev/null || true
        grep -a -m1 -A20 'ERROR:\|runtime error' "$tmp/$n.log" >&2
        exit 1
    fi
    # keeps only inputs that add coverage over what the corpus has (libFuzzer names them by content hash)
    (cd "$tmp" && "$bin" -merge=1 "$corpus" "$tmp/$n" >"$tmp/$n.merge.log" 2>&1)
    echo "fuzz_$n: $before -> $(ls "$corpus" | wc -l) inputs" >&2
done
