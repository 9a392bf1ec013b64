#!/usr/bin/env bash
# build-ext.sh PYTHON DIR: build the extension with PYTHON (warnings are errors; the SHAREDMAP_*
# switches of setup.py apply) into DIR/lib, its objects in DIR/tmp, with the package's Python
# files beside it: PYTHONPATH=DIR/lib then imports this build.  setup.py runs with PYTHON's own
# setuptools, which must be 77 or newer (pyproject.toml's license is an SPDX string; a venv made
# by Python 3.9-3.11 starts with an older one): the pin makes pip replace it.
set -euo pipefail
cd "$(dirname "$0")/.."
py=$1 dir=$2
"$py" -m pip install -q --disable-pip-version-check "setuptools>=77"
rm -rf "$dir/lib" "$dir/tmp"
SHAREDMAP_WERROR=1 "$py" setup.py -q build_ext --build-lib "$dir/lib" --build-temp "$dir/tmp"
rm -rf python/*.egg-info
cp python/sharedmap/*.py python/sharedmap/*.pyi python/sharedmap/py.typed "$dir/lib/sharedmap/"
mkdir -p "$dir/lib/sharedmap/cli"
cp python/sharedmap/cli/*.py "$dir/lib/sharedmap/cli/"
