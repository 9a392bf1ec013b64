"""Helpers of the Python tests (plain functions; the fixtures are in conftest.py)."""
import contextlib
import glob
import itertools
import math
import os
import struct
import subprocess
import sys
import textwrap

import sharedmap

SHM_DIR = "/dev/shm"
NAME_PREFIX = f"pytest-{os.getpid()}-"
_counter = itertools.count()

# The directory that holds the sharedmap package under test, so that child processes import
# the same build.
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(sharedmap.__file__)))


def unique_name(tag=""):
    return f"{NAME_PREFIX}{next(_counter)}{tag}"


def my_shm_entries():
    """Everything in /dev/shm that a map of this test run left: published maps and temporaries,
    and the hidden files of edited maps (bases, edit locks), which a plain * does not match."""
    return sorted(glob.glob(os.path.join(SHM_DIR, f"*{NAME_PREFIX}*"))
                  + glob.glob(os.path.join(SHM_DIR, f".*{NAME_PREFIX}*")))


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def run_python(code, *args, timeout=120, check=True):
    """Run code (dedented) in a new Python process; return its CompletedProcess (text)."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=child_env(),
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@contextlib.contextmanager
def spawn_python(code, *args):
    """Run code in a new Python process with pipes for stdin and stdout (text, line-buffered);
    the process is killed if still running when the block ends, and its pipes are closed."""
    proc = subprocess.Popen(
        [sys.executable, "-u", "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=child_env(),
        bufsize=1,
    )
    with proc:
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def tell(proc, line="go"):
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def finish(proc, timeout=60):
    """Wait for proc; fail with its stderr if it did not exit 0."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err
    return out


def same_value(a, b):
    """Equal with the same type; floats compared bit for bit (so -0.0 and NaN count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return struct.pack("<d", a) == struct.pack("<d", b)
    return a == b


def same_items(got, expected):
    got, expected = list(got), list(expected)
    return len(got) == len(expected) and all(
        gk == ek and type(gk) is type(ek) and same_value(gv, ev)
        for (gk, gv), (ek, ev) in zip(got, expected)
    )


def has_nan(d):
    return any(isinstance(v, float) and math.isnan(v) for v in d.values())


def worker_lookup(m, keys):
    """Run in a multiprocessing worker: m arrives pickled (by reference)."""
    return [m.get(k) for k in keys], (m.name, m.path)
