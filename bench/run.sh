#!/usr/bin/env bash
# bench/run.sh: the benchmark of issue 5, end to end on a fresh machine (`make bench` runs it).
#
# Installs what it needs (Debian's libcdb-dev, liblmdb-dev and g++ if missing; two virtualenvs
# under bench/.venvs/: "main" with this tree's sharedmap and the peers, "orig" with sharedmap
# 1.0.6 from PyPI, whose module name collides with ours), builds bench/cbench.c against src/*.c,
# runs the Python benchmark (bench/driver.py) and the C one, then the shared-bitmap part
# (bench/bitmapbench.py, bench/cbitmap.c) and the batched-lookups part (bench/batchbench.py,
# bench/cbatch.c; it also installs Debian's redis-server) and the delta-layers part
# (bench/edits.py, into bench/results/edits/), and writes bench/results/results.json, results.md
# and plot.png.
#
# Settings (environment):  BENCH_QUICK=1 (10K and 100K only, a few minutes), BENCH_SIZES=10000,...,
# BENCH_BYTES_SIZES, BENCH_MEM_SIZES, BENCH_PEERS=dict,sharedmap,..., BENCH_BUILD_TIMEBOX (s),
# BENCH_LOOKUP_BUDGET (s), BENCH_C_SIZES, BENCH_C_PROBES, BENCH_SKIP_C=1, BENCH_SKIP_PY=1,
# BENCH_SKIP_BITMAP=1, BENCH_ONLY=bitmap (the shared-bitmap part alone, into
# bench/results/bitmap/: `make bench-bitmap`), BENCH_SKIP_BATCH=1, BENCH_ONLY=batch (the
# batched-lookups part alone, into bench/results/batch/: `make bench-batch`), BENCH_SKIP_EDITS=1,
# BENCH_ONLY=edits (the delta-layers part alone, into bench/results/edits/: `make bench-edits`);
# see bench/README.md.
# Arguments: --quick (same as BENCH_QUICK=1).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
VENVS="$HERE/.venvs"
BUILD="$HERE/.build"
RESULTS="${BENCH_RESULTS:-$HERE/results}"
PY="${PYTHON:-python3}"

for arg in "$@"; do
    case "$arg" in
        --quick) export BENCH_QUICK=1 ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $arg" >&2; exit 2 ;;
    esac
done
QUICK="${BENCH_QUICK:-0}"
[ "$QUICK" = "0" ] && QUICK=""
ONLY="${BENCH_ONLY:-}"
case "$ONLY" in
    ""|bitmap|batch|edits) ;;
    *) echo "run.sh: BENCH_ONLY=$ONLY: the parts that run alone are bitmap, batch and edits" >&2; exit 2 ;;
esac
BITMAP=1
[ -n "${BENCH_SKIP_BITMAP:-}" ] && [ "$BENCH_SKIP_BITMAP" != 0 ] && BITMAP=""
BATCH=1
[ -n "${BENCH_SKIP_BATCH:-}" ] && [ "$BENCH_SKIP_BATCH" != 0 ] && BATCH=""
EDITS=1
[ -n "${BENCH_SKIP_EDITS:-}" ] && [ "$BENCH_SKIP_EDITS" != 0 ] && EDITS=""
if [ -n "$ONLY" ]; then
    BITMAP=""
    BATCH=""
    EDITS=""
    [ "$ONLY" = bitmap ] && BITMAP=1
    [ "$ONLY" = batch ] && BATCH=1
    [ "$ONLY" = edits ] && EDITS=1
    RESULTS="${BENCH_RESULTS:-$HERE/results/$ONLY}"  # the full run's results stay as they are
fi

say() { printf '\n=== %s\n' "$*" >&2; }
T0=$(date +%s)

cleanup() {
    # whatever a killed run left in shared memory (names are ours alone: smbench-*)
    rm -rf /dev/shm/smbench 2>/dev/null || true
    rm -f /dev/shm/sharedmap.smbench-* /dev/shm/sm_smbench-* /dev/shm/smbench-* 2>/dev/null || true
    # the bitmap part: its bitmaps, SharedMemory files and 1.0.6's SysV segments (stdlib only)
    rm -f /dev/shm/sharedbitmap.smbench-* 2>/dev/null || true
    "$PY" "$HERE/bitmapbench.py" cleanup 2>/dev/null || true
    # the batch part: its maps and LMDB files in /dev/shm, a Redis server a killed run left
    "$PY" "$HERE/batchbench.py" cleanup 2>/dev/null || true
    # the edits part: its maps, their bases and edit locks, its LMDB files (all smbench-edits-*)
    rm -f /dev/shm/*smbench-edits-* /dev/shm/.*smbench-edits-* 2>/dev/null || true
    if [ -x "$VENVS/orig/bin/python" ]; then  # sharedmap 1.0.6 keeps its maps in SysV shm
        "$VENVS/orig/bin/python" - <<'EOF' 2>/dev/null || true
import itertools, sharedmap
for n, kind in itertools.product((10000, 100000, 1000000, 10000000), ("str", "bytes")):
    try:
        sharedmap.rbtree.remove(f"smbench-sharedmap-1_0_6-{n}-{kind}")
    except Exception:
        pass
EOF
    fi
}
trap cleanup EXIT
# The bitmap steps: a TERM or INT while one runs stops it (it cleans up after itself), then
# exits, which runs the cleanup above.  Bash runs a trap only once its foreground command is
# done, so those steps run in the background under `wait`, which a trapped signal interrupts at
# once.  (The trap is set for them only: the other steps keep the default behaviour.)
CHILD=""
run_child() {
    "$@" &
    CHILD=$!
    local rc=0
    wait "$CHILD" || rc=$?
    CHILD=""
    return "$rc"
}
on_signal() {
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null || true
        wait "$CHILD" 2>/dev/null || true
    fi
    exit 143
}

# ------------------------------------------------------------------ system packages
need=()
command -v gcc >/dev/null || need+=(gcc)
command -v g++ >/dev/null || need+=(g++)
if [ -z "$ONLY" ] || [ -n "$BATCH" ]; then  # cbench's and cbatch's peers; bitmap and edits need neither
    [ -f /usr/include/cdb.h ] || need+=(libcdb-dev)
    [ -f /usr/include/lmdb.h ] || need+=(liblmdb-dev)
fi
if [ -n "$BATCH" ]; then  # the batch part's Redis peer (started by batchbench.py itself)
    command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || need+=(redis-server)
fi
if [ ${#need[@]} -gt 0 ]; then
    say "apt-get install ${need[*]}"
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ------------------------------------------------------------------ virtualenvs
mkvenv() {  # mkvenv NAME REQUIREMENTS...: create/refresh when the requirement list changed
    local dir="$VENVS/$1"; shift
    local want="$*"
    if [ ! -x "$dir/bin/python" ] || [ "$(cat "$dir/.bench-reqs" 2>/dev/null)" != "$want" ]; then
        say "virtualenv $dir: $want"
        rm -rf "$dir"
        "$PY" -m venv "$dir" || return 1
        "$dir/bin/pip" install -q --disable-pip-version-check "$@" || return 1
        echo "$want" > "$dir/.bench-reqs"
    fi
}
mkdir -p "$VENVS" "$BUILD" "$RESULTS"
mkvenv main "setuptools>=77" wheel lmdb==3.0.0 marisa-trie==1.4.1 shared-memory-dict==0.7.2 \
    UltraDict==0.0.6 sqlitedict==2.1.0 matplotlib numpy==2.4.6 redis==8.1.0 hiredis==3.5.0
# sharedmap 1.0.6 is an sdist with C++ sources: pip compiles it with g++ (the batch and edits
# parts alone do not need it).
if { [ -z "$ONLY" ] || [ "$ONLY" = bitmap ]; } && ! mkvenv orig sharedmap==1.0.6; then
    echo "run.sh: sharedmap 1.0.6 did not install: its rows will say n/a" >&2
    rm -rf "$VENVS/orig"
fi

# This tree's sharedmap, built from a copy of the sources (the work tree stays untouched).
say "building this tree's sharedmap into $VENVS/main"
rm -rf "$BUILD/src"
mkdir -p "$BUILD/src"
tar -C "$ROOT" --exclude=./bench --exclude=./.git --exclude=./build --exclude=./.venv \
    --exclude='*.egg-info' --exclude='__pycache__' -cf - . | tar -C "$BUILD/src" -xf -
if ! SHAREDMAP_WERROR=0 "$VENVS/main/bin/pip" install -q --disable-pip-version-check --no-deps \
        --no-build-isolation --force-reinstall "$BUILD/src" > "$BUILD/pip-sharedmap.log" 2>&1; then
    tail -20 "$BUILD/pip-sharedmap.log" >&2
    echo "run.sh: this tree's sharedmap did not build: no benchmark without it" >&2
    exit 1
fi

# ------------------------------------------------------------------ C benchmark build
CBENCH="$BUILD/cbench"
rm -f "$CBENCH"
if [ -z "${BENCH_SKIP_C:-}" ] && [ -z "$ONLY" ]; then
    say "building bench/cbench.c (gcc -O2, with src/*.c, -lcdb -llmdb)"
    gcc -O2 -std=c11 -D_GNU_SOURCE -DSM_STATIC -Wall -Wextra -I"$ROOT/include" -I"$ROOT/src" \
        "$ROOT"/src/*.c "$HERE/cbench.c" -lcdb -llmdb -o "$CBENCH" 2> "$BUILD/cbench-build.log" || {
        cat "$BUILD/cbench-build.log" >&2
        echo "run.sh: cbench did not build: the C table will say not run" >&2
        rm -f "$CBENCH"
    }
fi
CBITMAP="$BUILD/cbitmap"
rm -f "$CBITMAP"
if [ -z "${BENCH_SKIP_C:-}" ] && [ -n "$BITMAP" ]; then
    say "building bench/cbitmap.c (gcc -O2, with src/*.c)"
    gcc -O2 -std=c11 -D_GNU_SOURCE -DSM_STATIC -Wall -Wextra -pthread -I"$ROOT/include" -I"$ROOT/src" \
        "$ROOT"/src/*.c "$HERE/cbitmap.c" -o "$CBITMAP" 2> "$BUILD/cbitmap-build.log" || {
        cat "$BUILD/cbitmap-build.log" >&2
        echo "run.sh: cbitmap did not build: the C bitmap tables will say not run" >&2
        rm -f "$CBITMAP"
    }
fi

CBATCH="$BUILD/cbatch"
rm -f "$CBATCH"
if [ -z "${BENCH_SKIP_C:-}" ] && [ -n "$BATCH" ]; then
    say "building bench/cbatch.c (gcc -O2, with src/*.c, -lcdb -llmdb)"
    gcc -O2 -std=c11 -D_GNU_SOURCE -DSM_STATIC -Wall -Wextra -I"$ROOT/include" -I"$ROOT/src" -I"$HERE" \
        "$ROOT"/src/*.c "$HERE/cbatch.c" -lcdb -llmdb -o "$CBATCH" 2> "$BUILD/cbatch-build.log" || {
        cat "$BUILD/cbatch-build.log" >&2
        echo "run.sh: cbatch did not build: the C batch tables will say not run" >&2
        rm -f "$CBATCH"
    }
fi

# ------------------------------------------------------------------ run
PYJSON="$BUILD/python.json"
CJSON="$BUILD/c.json"
BJSON="$BUILD/bitmap.json"
CBJSON="$BUILD/cbitmap.json"
BAJSON="$BUILD/batch.json"
CBAJSON="$BUILD/cbatch.json"
rm -f "$PYJSON" "$CJSON" "$BJSON" "$CBJSON" "$BAJSON" "$CBAJSON"
cleanup
if [ -z "${BENCH_SKIP_PY:-}" ] && [ -z "$ONLY" ]; then
    say "Python benchmark${QUICK:+ (quick)}"
    BENCH_PYTHON="$VENVS/main/bin/python" BENCH_PYTHON_ORIG="$VENVS/orig/bin/python" \
        "$VENVS/main/bin/python" "$HERE/driver.py" "$PYJSON"
fi
if [ -x "$CBENCH" ]; then
    if [ -n "$QUICK" ]; then
        csizes="${BENCH_C_SIZES:-100000,1000000}"; cprobes="${BENCH_C_PROBES:-500000}"; crounds=3
    else
        csizes="${BENCH_C_SIZES:-1000000,10000000}"; cprobes="${BENCH_C_PROBES:-2000000}"; crounds=5
    fi
    say "C benchmark: sizes $csizes, $cprobes probes, $crounds rounds"
    "$CBENCH" -n "$csizes" -p "$cprobes" -r "$crounds" -d /dev/shm > "$CJSON.tmp" && mv "$CJSON.tmp" "$CJSON"
fi

if [ -n "$BITMAP" ]; then
    trap on_signal INT TERM
    if [ -z "${BENCH_SKIP_PY:-}" ]; then
        say "shared bitmap, Python${QUICK:+ (quick)}"
        BENCH_PYTHON="$VENVS/main/bin/python" BENCH_PYTHON_ORIG="$VENVS/orig/bin/python" \
            run_child "$VENVS/main/bin/python" "$HERE/bitmapbench.py" run "$BJSON"
    fi
    if [ -x "$CBITMAP" ]; then
        if [ -n "$QUICK" ]; then
            cbargs=(-b "${BENCH_CBITMAP_BITS:-67108864}" -p "${BENCH_CBITMAP_OPS:-1000000}" -r 3
                    -t "${BENCH_CBITMAP_SECONDS:-0.15}")
        else
            cbargs=(-b "${BENCH_CBITMAP_BITS:-1073741824}" -p "${BENCH_CBITMAP_OPS:-4000000}" -r 5
                    -t "${BENCH_CBITMAP_SECONDS:-0.3}")
        fi
        say "shared bitmap, C: ${cbargs[*]}"
        run_child "$CBITMAP" "${cbargs[@]}" -d /dev/shm > "$CBJSON.tmp" && mv "$CBJSON.tmp" "$CBJSON"
    fi
    trap - INT TERM
fi

if [ -n "$BATCH" ]; then
    trap on_signal INT TERM
    if [ -z "${BENCH_SKIP_PY:-}" ]; then
        say "batched lookups, Python${QUICK:+ (quick)}"
        BENCH_PYTHON="$VENVS/main/bin/python" \
            run_child "$VENVS/main/bin/python" "$HERE/batchbench.py" run "$BAJSON"
    fi
    if [ -x "$CBATCH" ]; then
        if [ -n "$QUICK" ]; then
            caargs=(-n "${BENCH_CBATCH_SIZES:-1000000}" -i "${BENCH_CBATCH_INT_SIZES:-1000000}"
                    -p "${BENCH_CBATCH_PROBES:-500000}" -r 3)
        else
            caargs=(-n "${BENCH_CBATCH_SIZES:-10000000}" -i "${BENCH_CBATCH_INT_SIZES:-10000000}"
                    -p "${BENCH_CBATCH_PROBES:-1000000}" -r 5)
        fi
        caargs+=(-b "${BENCH_BATCH_BATCH:-1000}")
        say "batched lookups, C: ${caargs[*]}"
        run_child "$CBATCH" "${caargs[@]}" -d /dev/shm > "$CBAJSON.tmp" && mv "$CBAJSON.tmp" "$CBAJSON"
    fi
    trap - INT TERM
fi

if [ -n "$EDITS" ]; then
    trap on_signal INT TERM
    if [ -z "${BENCH_SKIP_PY:-}" ]; then
        say "delta layers (edits)${QUICK:+ (quick)}"
        ecmd="make bench"
        [ "$ONLY" = edits ] && ecmd="make bench-edits"
        [ -n "$QUICK" ] && ecmd="$ecmd ARGS=--quick"
        run_child "$VENVS/main/bin/python" "$HERE/edits.py" run --cmd "$ecmd"
    fi
    trap - INT TERM
fi
if [ "$ONLY" = edits ]; then  # its own report (edits.py wrote bench/results/edits/): nothing else ran
    say "done in $(( ($(date +%s) - T0) / 60 )) min $(( ($(date +%s) - T0) % 60 )) s: $HERE/results/edits/results.md"
    exit 0
fi

CMD="make bench"
[ "$ONLY" = bitmap ] && CMD="BENCH_ONLY=bitmap make bench"
[ "$ONLY" = batch ] && CMD="make bench-batch"
[ -n "$QUICK" ] && CMD="BENCH_QUICK=1 $CMD"
rargs=()
[ -n "$BITMAP" ] && rargs=(--bitmap "$BJSON" "$CBJSON")
[ -n "$BATCH" ] && rargs+=(--batch "$BAJSON" "$CBAJSON")
[ "$ONLY" = bitmap ] && rargs+=(--only-bitmap)
[ "$ONLY" = batch ] && rargs+=(--only-batch)
"$VENVS/main/bin/python" "$HERE/report.py" "$PYJSON" "$CJSON" "$RESULTS" "$CMD" ${rargs[@]+"${rargs[@]}"}
say "done in $(( ($(date +%s) - T0) / 60 )) min $(( ($(date +%s) - T0) % 60 )) s: $RESULTS/results.md"
cat "$RESULTS/results.md"
