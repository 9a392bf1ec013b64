"""Instruction counts of the binding's hot paths under callgrind (stable on a noisy machine,
unlike times): the instructions spent inside one m.get() of a hit, per key of m.get_many() in
batches of 1,000 hits, and inside one step of iterating m.items(), on a map of N entries from
bench/dataset.py.  Instructions do not show what get_many saves (the memory waits it
overlaps), only what its extra passes cost; the benchmark's times show the rest.

    .venv/bin/python bench/callgrind.py [N]      (default 1,000,000; needs valgrind)

The snapshot is built and saved outside valgrind; under it, a child opens the file and looks up
every key once, or iterates every item once, with collection switched on only inside the
binding's functions (--toggle-collect), so the Python loop around them is not counted.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dataset  # noqa: E402

import sharedmap  # noqa: E402

CHILD = r"""
import sys, sharedmap
m = sharedmap.open(sys.argv[1])
if sys.argv[2] == "get":
    keys = [k for k in m]           # fresh str objects, hash not yet computed
    get = m.get
    for k in keys:
        get(k)
elif sys.argv[2] == "get_many":
    keys = [k for k in m]
    many = m.get_many
    for i in range(0, len(keys), 1000):
        many(keys[i : i + 1000])
else:
    for item in m.items():
        pass
"""

# the C functions whose inclusive cost is one call of each path
PATHS = {
    "m.get (hit)": ("get", "reader_get"),
    "get_many, per key": ("get_many", "reader_get_many"),
    "items() step": ("items", "snapiter_next"),
}


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        snap = os.path.join(tmp, "map.snap")
        sharedmap.rbtree(dataset.make(n)).save(snap)
        out = os.path.join(tmp, "callgrind.out")
        results = {}
        for label, (mode, fn) in PATHS.items():
            subprocess.run(
                ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                 "--collect-atstart=no", f"--toggle-collect={fn}",
                 sys.executable, "-c", CHILD, snap, mode],
                check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            text = open(out).read()
            total = int(re.search(r"^summary: (\d+)", text, re.M).group(1))
            results[label] = total / n
        for label, per in results.items():
            print(f"{label:18s} {per:8.1f} instructions per lookup or step  ({n:,} entries)")


if __name__ == "__main__":
    main()
