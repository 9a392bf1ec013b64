"""buildtime.py: build 1M str -> str entries from a dict and publish them (min of 3), beside
pickle.dumps of the same dict, with whichever sharedmap is importable: run it with two builds
(PYTHONPATH=<lib of tests/build-ext.sh> for the other) to compare them on one machine.

    .venv/bin/python bench/buildtime.py
"""
import time, random, sharedmap, pickle, sys
random.seed(1)
d = {("k%d" % random.getrandbits(60)).ljust(random.randint(8, 24), "x"): "v" * random.randint(8, 48) for _ in range(1_000_000)}
best = []
for rep in range(3):
    t = time.perf_counter()
    w = sharedmap.rbtree(d); w.share("bt-test", force=True)
    best.append(time.perf_counter() - t)
    del w
t = time.perf_counter(); pickle.dumps(d); tp = time.perf_counter() - t
sharedmap.rbtree.remove("bt-test")
print(sharedmap.__file__, "build+share min %.3f s, pickle %.3f s, ratio %.2f" % (min(best), tp, min(best) / tp))
