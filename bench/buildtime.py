"""buildtime.py: build N (default 1M) str -> str entries from a dict and publish them,
`rbtree(d)` + `share()`, beside `pickle.dumps` of the same dict, three times each,
alternating, in one process (so that, unlike `make bench-scale`'s fresh processes, the later
rounds get back pages the process has already touched); the fastest of each, with its user
and system CPU.  With whichever sharedmap is importable: run it with two builds
(PYTHONPATH=<lib of tests/build-ext.sh> for the other) to compare them on one machine.

    .venv/bin/python bench/buildtime.py [N]
"""
import pickle
import random
import resource
import sys
import time

import sharedmap


def timed(f):
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    f()
    t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    return t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime


def build(d):
    sharedmap.rbtree(d).share("bt-test", force=True)


n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
random.seed(1)
d = {("k%d" % random.getrandbits(60)).ljust(random.randint(8, 24), "x"): "v" * random.randint(8, 48)
     for _ in range(n)}
ours, theirs = [], []
for rep in range(3):
    ours.append(timed(lambda: build(d)))
    theirs.append(timed(lambda: pickle.dumps(d)))
sharedmap.rbtree.remove("bt-test")
a, b = min(ours), min(theirs)
print(f"{sharedmap.__file__}: {n:,} entries, rbtree(d) + share() min {a[0]:.3f} s (user {a[1]:.2f} s, "
      f"sys {a[2]:.2f} s), pickle.dumps min {b[0]:.3f} s (user {b[1]:.2f} s, sys {b[2]:.2f} s), "
      f"ratio {a[0] / b[0]:.2f}")
