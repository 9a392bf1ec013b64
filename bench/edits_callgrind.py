"""Where the time of a layered map goes, under callgrind (instruction counts and its simulated
cache misses, stable on a noisy machine, unlike times): per m.get() of a hit and of a miss and
per step of m.items(), on a map of N entries from bench/dataset.py with a 1% delta (made with
compact_at=None) against the same map compacted; and the instructions of publishing 1,000
changes as a delta (edit() + the sets and dels + the commit), by function.

    PYTHONPATH=python bench/.venvs/main/bin/python bench/edits_callgrind.py [N]
                                           (default 100,000; needs valgrind)

The maps are built outside valgrind (names smbench-editscg-*, removed at the end); under it a
child opens one by name and looks up every key once (hits: the map's own keys, fresh objects;
misses: each key reversed + '#', never in the map) or iterates every item, with collection on
only inside the binding's function (--toggle-collect), so the Python loop is not counted.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset  # noqa: E402
import edits  # noqa: E402

import sharedmap  # noqa: E402

PREFIX = "smbench-editscg-"  # not edits.PREFIX: a benchmark running meanwhile keeps its maps


def cleanup():
    for p in glob.glob(f"/dev/shm/*{PREFIX}*") + glob.glob(f"/dev/shm/.*{PREFIX}*"):
        try:
            os.unlink(p)
        except OSError:
            pass

CHILD = r"""
import sys, sharedmap
m = sharedmap.sharedmap(sys.argv[1])
mode = sys.argv[2]
if mode in ("hit", "miss"):
    keys = [k for k in m]
    if mode == "miss":
        keys = [k[::-1] + "#" for k in keys]
    else:
        keys = [k.encode().decode() for k in keys]
    get = m.get
    for k in keys:
        get(k)
elif mode == "items":
    for item in m.items():
        pass
else:  # edit: the changes pickled in argv[3]
    import pickle
    with open(sys.argv[3], "rb") as f:
        changes = pickle.load(f)
    with sharedmap.edit(sys.argv[1], compact_at=None) as e:
        for k, v in changes:
            if v is None:
                del e[k]
            else:
                e[k] = v
"""

PATHS = {"hit": "reader_get", "miss": "reader_get", "items": "snapiter_next"}


def grind(out, name, mode, fn, extra=()):
    subprocess.run(["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={out}",
                    "--collect-atstart=no", f"--toggle-collect={fn}", sys.executable, "-c", CHILD, name, mode,
                    *extra], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    text = open(out).read()
    events = re.search(r"^events: (.*)$", text, re.M).group(1).split()
    summary = [int(x) for x in re.search(r"^summary: (.*)$", text, re.M).group(1).split()]
    return dict(zip(events, summary))


def main():
    import pickle
    import random
    import signal

    def stop(signum, frame):
        raise SystemExit(128 + signum)  # unwinds into the cleanup below

    signal.signal(signal.SIGTERM, stop)

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    d = dataset.make(n)
    keys = list(d)
    rng = random.Random(f"sharedmap-bench/1/edits-cg/{n}")
    first = edits.make_changes(keys, d, n // 100, rng)
    later = edits.make_changes(keys, d, 1000, rng, exclude={k for k, _ in first})
    layered, compacted, plain = (f"{PREFIX}{x}-{n}" for x in ("layered", "compacted", "plain"))
    try:
        sharedmap.rbtree(d).share(plain)
        for nm in (layered, compacted):
            os.link(edits.shm_file(plain), edits.shm_file(nm))
            with sharedmap.edit(nm, compact_at=None) as e:
                for k, v in first:
                    if v is None:
                        del e[k]
                    else:
                        e[k] = v
        sharedmap.compact(compacted)
        assert sharedmap.sharedmap(layered).info()["layer"] and not sharedmap.sharedmap(compacted).info()["layer"]
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "callgrind.out")
            res = {}
            for mode, fn in PATHS.items():
                for nm, lab in ((layered, "layered"), (compacted, "compacted")):
                    ev = grind(out, nm, mode, fn)
                    res[(mode, lab)] = ev
                    per = {k: v / n for k, v in ev.items()}
                    print(f"{mode:5s} {lab:9s} {per['Ir']:7.1f} instructions, D1 misses "
                          f"{(per.get('D1mr', 0) + per.get('D1mw', 0)):5.2f}, LL misses "
                          f"{(per.get('DLmr', 0) + per.get('DLmw', 0)):5.2f} per lookup or step", flush=True)
            # 1,000 changes published as a delta over the plain map: instructions by function
            ch = os.path.join(tmp, "changes.pickle")
            with open(ch, "wb") as f:
                pickle.dump(later, f)
            for fn in ("edit_new", "edit_ass_subscript", "edit_exit"):
                ev = grind(out, plain, "edit", fn, (ch,))
                print(f"edit 1,000 changes over {n:,}: {fn:18s} {ev['Ir']:>12,} instructions, "
                      f"LL misses {ev.get('DLmr', 0) + ev.get('DLmw', 0):,}", flush=True)
                if fn == "edit_exit":  # the commit's own functions, inclusive, per change
                    a = subprocess.run(["callgrind_annotate", "--inclusive=yes", out], capture_output=True,
                                       text=True).stdout
                    shown = set()
                    for line in a.splitlines():
                        mt = re.match(r"\s*([\d,]+) \(.*?\s(src/\w+\.[ch]):(\w+) \[", line)
                        if mt and mt.group(3) not in shown and len(shown) < 12:
                            shown.add(mt.group(3))
                            cols = line.split()
                            ll = [c for c in cols if re.fullmatch(r"[\d,]+|\.", c)]
                            print(f"    {mt.group(2)}:{mt.group(3):24s} {int(mt.group(1).replace(',', '')) / 1000:8.0f} "
                                  f"instructions per change (inclusive)")
                sharedmap.rbtree.remove(plain)
                sharedmap.rbtree(d).share(plain)
    finally:
        cleanup()


if __name__ == "__main__":
    main()
