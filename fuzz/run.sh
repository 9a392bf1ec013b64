#!/usr/bin/env bash
# run.sh: builds and runs the fuzz targets.
#
#   fuzz/run.sh --replay      replay fuzz/corpus and fuzz/regressions through every target,
#                             built with gcc + ASan + UBSan (no clang needed): a plain test
#   fuzz/run.sh [SECONDS]     libFuzzer (clang, ASan + UBSan) on every target for SECONDS
#                             each (default 600); a crash is copied into
#                             fuzz/regressions/TARGET/ and fails the run
#   FUZZ_TARGETS="fuzz_bitmap" fuzz/run.sh ...   only the targets named
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a TARGETS <<< "${FUZZ_TARGETS:-fuzz_reader fuzz_build fuzz_bitmap fuzz_set fuzz_layer}"
OUT=build/fuzz
SRCS=(src/*.c)
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -Iinclude -Isrc"
mkdir -p "$OUT"

# the seed corpus is generated (deterministically) rather than committed as binaries
missing=0
for t in "${TARGETS[@]}"; do
    [ -n "$(ls -A "fuzz/corpus/$t" 2>/dev/null)" ] || missing=1
done
if [ "$missing" = 1 ]; then
    mkdir -p fuzz/corpus/fuzz_reader fuzz/corpus/fuzz_build fuzz/corpus/fuzz_bitmap fuzz/corpus/fuzz_set \
        fuzz/corpus/fuzz_layer
    ${CC:-gcc} $CFLAGS fuzz/make-corpus.c "${SRCS[@]}" -o "$OUT/make-corpus"
    "$OUT/make-corpus" fuzz/corpus/fuzz_reader fuzz/corpus/fuzz_build fuzz/corpus/fuzz_bitmap \
        fuzz/corpus/fuzz_set fuzz/corpus/fuzz_layer
fi

if [ "${1:-}" = "--replay" ]; then
    export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    for t in "${TARGETS[@]}"; do
        ${CC:-gcc} $CFLAGS $SAN "fuzz/$t.c" fuzz/replay.c "${SRCS[@]}" -o "$OUT/$t-replay"
        mkdir -p "fuzz/regressions/$t"
        mapfile -t inputs < <(find "fuzz/corpus/$t" "fuzz/regressions/$t" -type f ! -name '.*' | sort)
        printf '%s: ' "$t"
        "$OUT/$t-replay" "${inputs[@]}"
    done
    exit 0
fi

SECONDS_EACH=${1:-600}
command -v clang >/dev/null || { echo "fuzz/run.sh: clang is needed (apt-get install -y clang)" >&2; exit 1; }
status=0
for t in "${TARGETS[@]}"; do
    clang $CFLAGS -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
        "fuzz/$t.c" "${SRCS[@]}" -o "$OUT/$t"
    work="$OUT/corpus-$t"
    mkdir -p "$work" "$OUT/artifacts-$t" "fuzz/regressions/$t"
    cp -n "fuzz/corpus/$t"/* "$work"/ 2>/dev/null || true
    echo "== $t: ${SECONDS_EACH}s"
    if ! "$OUT/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
            -artifact_prefix="$OUT/artifacts-$t/" -print_final_stats=1 \
            "$work" "fuzz/corpus/$t" 2>&1 | tee "$OUT/$t.log" | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|==[0-9]+==ERROR|SUMMARY)'; then
        :
    fi
    if ls "$OUT/artifacts-$t"/crash-* "$OUT/artifacts-$t"/leak-* "$OUT/artifacts-$t"/timeout-* >/dev/null 2>&1; then
        cp "$OUT/artifacts-$t"/{crash,leak,timeout}-* "fuzz/regressions/$t"/ 2>/dev/null || true
        echo "fuzz/run.sh: $t found a failing input; kept in fuzz/regressions/$t/" >&2
        status=1
    fi
done
exit $status
