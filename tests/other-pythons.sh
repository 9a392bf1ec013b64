#!/usr/bin/env bash
# other-pythons.sh: build the extension with every other CPython from 3.9 on that this machine
# has (python3.X on PATH, or pyenv's versions) and run the Python tests with each build.  The
# main interpreter ($PYTHON) is tested by `make pytest`; a version that is not installed is
# named and skipped.  Each version gets its own venv and build folder under $BUILD/py3.X.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
main=$(${PYTHON:-python3} -c 'import sys; print("%d.%d" % sys.version_info[:2])')
pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
tested=() missing=()
for v in 3.9 3.10 3.11 3.12 3.13; do
    [ "$v" = "$main" ] && continue
    py=""
    for cand in "$(command -v "python$v" 2>/dev/null || true)" \
                $(ls -d "$pyenv_root"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -V | tail -1); do
        if [ -n "$cand" ] && "$cand" -c 'import venv, sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
            py=$cand
            break
        fi
    done
    if [ -z "$py" ]; then
        missing+=("$v")
        continue
    fi
    dir=$BUILD/py$v
    echo "=== Python $v ($py)"
    [ -x "$dir/venv/bin/python" ] || "$py" -m venv "$dir/venv"
    "$dir/venv/bin/python" -m pip install -q --disable-pip-version-check pytest hypothesis
    bash tests/build-ext.sh "$dir/venv/bin/python" "$dir"
    PYTHONPATH="$dir/lib" "$dir/venv/bin/python" -m pytest -q -p no:cacheprovider -m "not heavy" tests/python
    tested+=("$v")
done
echo "other Pythons tested: ${tested[*]:-none}${missing:+; not on this machine: ${missing[*]}}"
