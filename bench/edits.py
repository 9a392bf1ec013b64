"""edits.py: the delta-layers benchmark — publishing a few changes to a large map as a delta
layer (`sharedmap.edit`) against a full republish and an LMDB write transaction, what a delta
costs the readers, and what compacting it costs.

    make bench-edits                        1M and 10M entries: about 15-25 min on 2 cores
    make bench-edits ARGS=--quick           100K and 1M: a couple of minutes, for development
    python edits.py run [--quick] [--sizes N,M,...] [--out DIR]
    python edits.py worker '<json>'         every figure of one size, in a fresh process (run's)
    python edits.py cleanup                 remove the maps, bases, locks and LMDB files a killed
                                            run left

One worker process per size n builds dataset.py's str -> str dict of n entries, publishes it as a
plain snapshot (kept under a name of its own, the "keep" link, so the same base can be put back
under the edited name by a hard link in no time: a delta commit links the plain snapshot as its
base and never writes to it), and an LMDB environment of the same entries in /dev/shm.  Then:
  publish  for 1, 1,000 and 100,000 changes (80% overwrites of existing keys, 10% inserts of new
           keys, 10% deletes, in random order; fresh key objects), the time from the list of
           changes to the change being visible to a new reader:
             delta   `with sharedmap.edit(name, compact_at=None) as e:` the sets and dels
             full    `b = sharedmap.rbtree(reader)`, the sets and dels, `b.share(name, force=True)`
             lmdb    one write txn: put / delete of the encoded keys and values, commit
             delta2  the same delta commit on top of an existing delta of 1% of n
           best of REPS (full at 10M: best of 2); the base is put back before each rep, and LMDB's
           changes are undone (untimed) after each.
  lookups  base + a 1% delta (made with compact_at=None) against the same map after
           `sharedmap.compact(name)`, both readers open at once and measured alternately: hits
           (random keys of the edited map, so 1% of them in the delta) and misses (fresh random
           keys), `get` bound, fresh key objects in random order, the empty loop subtracted,
           median of 7 reps of 200K probes; and one full `for k, v in m.items()` (best of 3).
  compact  `sharedmap.compact(name)` of n + a 1% delta against full builds of the same entries:
           `sharedmap.rbtree(d).share(name)` from the dict and `sharedmap.publish(name, pairs,
           sorted=True)` from the sorted list of pairs.
Targets (goals, reported met / not met, never asserted): 1,000 changes into 10M ≤ 1/100 of the
full republish and ≤ LMDB's transaction; lookups with a 1% delta ≤ 1.15× compacted (hits and
misses); compaction of 10M + 1% ≤ the full build.  Every name this benchmark makes starts with
smbench-edits- (maps /dev/shm/sharedmap.smbench-edits-*, their bases .sharedmap-base.*, locks
.sharedmap-edit.*, LMDB files /dev/shm/smbench-edits-*); all are removed when a worker ends and
when the run ends or is interrupted.  Writes OUT/results.md and OUT/results.json (default
bench/results/edits/).  Stdlib + sharedmap + py-lmdb.
"""
import argparse
import gc
import glob
import json
import os
import platform
import random
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset  # noqa: E402
from batchreport import fmt_x, human_n  # noqa: E402
from machine import machine  # noqa: E402
from report import fmt_s  # noqa: E402

import sharedmap  # noqa: E402

PREFIX = "smbench-edits-"
SHM_DIR = "/dev/shm"
COUNTS = (1, 1_000, 100_000)
clock = time.perf_counter


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def shm_file(name):
    return os.path.join(SHM_DIR, "sharedmap." + name)


def median(xs):
    xs = sorted(xs)
    k = len(xs)
    return xs[k // 2] if k % 2 else (xs[k // 2 - 1] + xs[k // 2]) / 2


# ------------------------------------------------------------------ changes

def make_changes(keys, present, count, rng, exclude=()):
    """count changes as (key, value) pairs, value None for a delete: 80% overwrites of keys of
    `keys`, 10% inserts of keys in neither `present` nor `exclude`, 10% deletes of keys of
    `keys` (never one of `exclude`); shuffled, keys fresh str objects."""
    n_del = count // 10
    n_ins = count // 10
    n_ow = count - n_del - n_ins
    picked = []
    seen = set()
    while len(picked) < n_ow + n_del:
        for i in rng.sample(range(len(keys)), n_ow + n_del - len(picked)):
            k = keys[i]
            if k not in exclude and k not in seen:
                seen.add(k)
                picked.append(k)
    inserts = []
    while len(inserts) < n_ins:
        blob, offs = dataset._strings(rng, n_ins - len(inserts) + 8, dataset._KLEN)
        for k in dataset._slices(blob.decode("ascii"), offs):
            if k not in present and k not in exclude and k not in seen and len(inserts) < n_ins:
                seen.add(k)
                inserts.append(k)
    vblob, voffs = dataset._strings(rng, n_ow + n_ins, dataset._VLEN)
    vals = dataset._slices(vblob.decode("ascii"), voffs)
    ch = [(k, v) for k, v in zip(picked[:n_ow] + inserts, vals)] + [(k, None) for k in picked[n_ow:]]
    rng.shuffle(ch)
    # fresh key objects (no cached hash), as changes arriving from elsewhere would be
    return [(k.encode().decode(), v) for k, v in ch]


def apply_dict(d, changes):
    for k, v in changes:
        if v is None:
            del d[k]
        else:
            d[k] = v


# ------------------------------------------------------------------ the worker

class State:
    """The maps and the LMDB environment of one size."""

    def __init__(self, a):
        self.n = n = a["n"]
        self.a = a
        self.name = f"{PREFIX}map-{n}"          # the map edited (delta, lookups, compaction)
        self.keep = f"{PREFIX}keep-{n}"         # the plain base, kept under a name of its own
        self.full = f"{PREFIX}full-{n}"         # the full republish's name
        self.lpath = os.path.join(SHM_DIR, f"{PREFIX}{n}.lmdb")

    def reset(self):
        """Put the plain base back under self.name (a hard link of the keep file)."""
        if os.path.exists(shm_file(self.name)):
            sharedmap.rbtree.remove(self.name)
        os.link(shm_file(self.keep), shm_file(self.name))


def t_delta(st, changes, split=None):
    """The delta publish; split (a list) gets (edit() opened, sets and dels done, committed)."""
    t = clock()
    with sharedmap.edit(st.name, compact_at=None) as e:
        t_open = clock()
        for k, v in changes:
            if v is None:
                del e[k]
            else:
                e[k] = v
        t_set = clock()
    el = clock() - t
    if split is not None:
        split.append((t_open - t, t_set - t_open, el - (t_set - t)))
    return el


def t_full(st, reader, changes):
    t = clock()
    b = sharedmap.rbtree(reader)
    for k, v in changes:
        if v is None:
            del b[k]
        else:
            b[k] = v
    b.share(st.full, force=True)
    el = clock() - t
    del b
    return el


def t_lmdb(env, changes):
    t = clock()
    with env.begin(write=True) as txn:
        put, delete = txn.put, txn.delete
        for k, v in changes:
            if v is None:
                delete(k.encode())
            else:
                put(k.encode(), v.encode())
    return clock() - t


def lmdb_undo(env, d, changes):
    with env.begin(write=True) as txn:
        for k, _ in changes:
            old = d.get(k)
            if old is None:
                txn.delete(k.encode())
            else:
                txn.put(k.encode(), old.encode())


def check_layered(st, changes_expected):
    """A new reader of st.name sees the changes (a few of them), so nothing timed was a no-op."""
    m = sharedmap.sharedmap(st.name)
    for k, v in changes_expected[:50]:
        assert m.get(k) == v, (k, v, m.get(k))
    return m.info().get("layer")


def measure_publish(st, d, keys, lenv, rng, reps, full_reps):
    """Each count: reps runs of the delta, LMDB and delta2 (cheap), full_reps of the full
    republish (the first of each, interleaved)."""
    n = st.n
    reader = sharedmap.sharedmap(st.keep)
    out = {}
    first = make_changes(keys, d, n // 100, rng)
    first_keys = {k for k, _ in first}
    for c in COUNTS:
        if c > n // 2:
            continue
        runs = {"delta": [], "full": [], "lmdb": [], "delta2": []}
        splits = {"delta": [], "delta2": []}
        layer = None
        for rep in range(max(reps, full_reps)):
            ch = make_changes(keys, d, c, rng)
            ch2 = make_changes(keys, d, c, rng, exclude=first_keys)
            gc.collect()
            if rep < reps:
                st.reset()
                runs["delta"].append(t_delta(st, ch, splits["delta"]))
                layer = check_layered(st, ch)
                runs["lmdb"].append(t_lmdb(lenv, ch))
                lmdb_undo(lenv, d, ch)
                # the second delta: over a 1% delta already there
                st.reset()
                t_delta(st, first)
                runs["delta2"].append(t_delta(st, ch2, splits["delta2"]))
                check_layered(st, ch2)
            if rep < full_reps:
                runs["full"].append(t_full(st, reader, ch))
        best = {k: min(v) for k, v in runs.items()}
        # the split (open, sets/dels, commit) of the fastest run of each delta
        split = {k: v[runs[k].index(best[k])] for k, v in splits.items()}
        out[str(c)] = {"best": best, "runs": runs, "split": split, "splits": splits, "layer": layer}
        log(f"edits {human_n(n)} publish {c:,} changes: delta {best['delta'] * 1e3:.2f} ms, "
            f"delta2 {best['delta2'] * 1e3:.2f} ms, full {best['full']:.2f} s, lmdb {best['lmdb'] * 1e3:.2f} ms")
    reader.close()
    if os.path.exists(shm_file(st.full)):
        sharedmap.rbtree.remove(st.full)
    st.reset()
    return out, first


def compile_loop():
    g = {"clock": time.perf_counter_ns}
    exec("def loop(ks, get, clock=clock):\n"
         "    t = clock()\n"
         "    for k in ks:\n"
         "        get(k)\n"
         "    return clock() - t\n"
         "def empty(ks, get, clock=clock):\n"
         "    t = clock()\n"
         "    for k in ks:\n"
         "        pass\n"
         "    return clock() - t\n", g)
    return g["loop"], g["empty"]


def time_lookups_pair(maps, probes, reps):
    """ns per lookup for each map of maps (label -> map): reps rounds, the maps alternating in
    each, fresh key objects for every rep; median and min over the rounds."""
    loop, empty = compile_loop()
    res = {lab: [] for lab in maps}
    for r in range(reps + 1):  # round 0 warms up and is not counted
        order = list(maps) if r % 2 else list(maps)[::-1]
        for lab in order:
            get = maps[lab].get
            ks = probes.fresh("str")
            gc.disable()
            try:
                e = empty(ks, get)
                t = loop(ks, get)
            finally:
                gc.enable()
            if r:
                res[lab].append((t - e) / len(ks))
            del ks
    return {lab: {"ns": median(v), "ns_min": min(v), "runs": v} for lab, v in res.items()}


def time_items(m, passes=3):
    ts = []
    for _ in range(passes):
        gc.disable()
        try:
            t = clock()
            c = 0
            for k, v in m.items():
                c += 1
            ts.append(clock() - t)
        finally:
            gc.enable()
    return {"best_s": min(ts), "runs": ts, "count": c}


def measure_lookups_compact(st, d, first, reps, full_reps, probes_n):
    """Base + the 1% delta `first` against the same map compacted: lookups and iteration (on
    the first rep), and the compaction's time (every rep); then the full builds of the same
    entries.  d is the edited map's dict (first applied)."""
    n = st.n
    hits = dataset.hit_probes(d, probes_n, st.a["seed"] + 7)
    misses = dataset.miss_probes(d, probes_n, st.a["seed"] + 8)
    comp, look = [], None
    for rep in range(reps if n < 10_000_000 else max(2, full_reps)):
        st.reset()
        t_delta(st, first)
        layered = sharedmap.sharedmap(st.name)
        info = layered.info()
        gc.collect()
        t = clock()
        cnt = sharedmap.compact(st.name)
        comp.append(clock() - t)
        assert cnt == len(d), (cnt, len(d))
        if look is None:
            compacted = sharedmap.sharedmap(st.name)
            assert compacted.info().get("layer") is None
            # and the plain base itself (rbtree-built, without the delta): what the delta adds to
            # it, apart from what the compaction's new file does
            base = sharedmap.sharedmap(st.keep)
            maps = {"layered": layered, "compacted": compacted, "base": base}
            look = {"layer": info.get("layer"), "entries": len(layered),
                    "hit": time_lookups_pair(maps, hits, 7),
                    "miss": time_lookups_pair(maps, misses, 7),
                    "items": {lab: time_items(m) for lab, m in maps.items()}}
            for lab in ("layered", "compacted"):
                assert look["items"][lab]["count"] == len(d)
            base.close()
            h, ms, it = look["hit"], look["miss"], look["items"]
            log(f"edits {human_n(n)} lookups (layered / compacted / base): hit {h['layered']['ns']:.0f} / "
                f"{h['compacted']['ns']:.0f} / {h['base']['ns']:.0f} ns, miss {ms['layered']['ns']:.0f} / "
                f"{ms['compacted']['ns']:.0f} / {ms['base']['ns']:.0f} ns, items {it['layered']['best_s']:.2f} / "
                f"{it['compacted']['best_s']:.2f} / {it['base']['best_s']:.2f} s")
            compacted.close()
        layered.close()
    del hits, misses
    gc.collect()
    # the full builds of the same entries
    fname = f"{PREFIX}build-{n}"
    rb, pub = [], []
    pairs = sorted(d.items())
    for rep in range(full_reps):
        gc.collect()
        t = clock()
        sharedmap.rbtree(d).share(fname, force=True)
        rb.append(clock() - t)
        sharedmap.rbtree.remove(fname)
        gc.collect()
        t = clock()
        sharedmap.publish(fname, pairs, sorted=True, force=True)
        pub.append(clock() - t)
        sharedmap.rbtree.remove(fname)
    del pairs
    out = {"compact": {"best_s": min(comp), "runs": comp},
           "rbtree_share": {"best_s": min(rb), "runs": rb},
           "publish_sorted": {"best_s": min(pub), "runs": pub}}
    log(f"edits {human_n(n)} compaction {min(comp):.2f} s, rbtree+share {min(rb):.2f} s, "
        f"publish(sorted) {min(pub):.2f} s")
    return look, out


def worker(a):
    import lmdb

    n = a["n"]
    st = State(a)
    out = {"n": n}
    t = clock()
    d = dataset.make(n, a["seed"])
    out["input_s"] = clock() - t
    keys = list(d)
    rng = random.Random(f"sharedmap-bench/{a['seed']}/edits/{n}")
    try:
        t = clock()
        sharedmap.rbtree(d).share(st.keep)
        out["base_publish_s"] = clock() - t
        out["base_bytes"] = os.path.getsize(shm_file(st.keep))
        st.reset()
        # LMDB: as batchbench builds it (sorted, appended in one txn), writemap for the edits
        t = clock()
        enc = sorted((k.encode(), v.encode()) for k, v in d.items())
        lenv = lmdb.open(st.lpath, map_size=max(1 << 28, 512 * n), subdir=False, sync=False,
                         metasync=False, readahead=False, writemap=True, lock=True)
        with lenv.begin(write=True) as txn:
            txn.cursor().putmulti(enc, append=True)
        del enc
        lenv.sync(True)
        out["lmdb_build_s"] = clock() - t
        out["lmdb_bytes"] = os.stat(st.lpath).st_blocks * 512  # writemap: the file is map_size long
        log(f"edits {human_n(n)}: dict {out['input_s']:.1f} s, base {out['base_publish_s']:.1f} s, "
            f"lmdb {out['lmdb_build_s']:.1f} s")
        out["publish"], first = measure_publish(st, d, keys, lenv, rng, a["fast_reps"], a["full_reps"])
        lenv.close()
        os.unlink(st.lpath)
        if os.path.exists(st.lpath + "-lock"):
            os.unlink(st.lpath + "-lock")
        del keys
        apply_dict(d, first)
        out["first_delta"] = len(first)
        out["lookups"], out["compact"] = measure_lookups_compact(st, d, first, a["reps"], a["full_reps"],
                                                                 a["probes"])
    finally:
        cleanup()
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------ the driver

def cleanup():
    """Remove every map, base, lock and LMDB file whose name holds PREFIX (a killed run's too)."""
    for p in glob.glob(os.path.join(SHM_DIR, f"*{PREFIX}*")) + glob.glob(os.path.join(SHM_DIR, f".*{PREFIX}*")):
        try:
            os.unlink(p)
        except OSError:
            pass


def run_worker(cfg, n):
    full_reps = 2 if n >= 10_000_000 else cfg.reps
    a = {"n": n, "seed": cfg.seed, "reps": cfg.reps, "fast_reps": cfg.fast_reps, "full_reps": full_reps,
         "probes": cfg.probes}
    t, load = time.time(), os.getloadavg()
    p = None
    try:
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", json.dumps(a)],
                             stdout=subprocess.PIPE, stderr=None, text=True)
        stdout, _ = p.communicate(timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        res = {"n": n, "error": f"killed after {cfg.timeout} s"}
    except BaseException:
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    else:
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if p.returncode == 0 and lines else {
            "n": n, "error": f"exit {p.returncode}"}
    cleanup()
    res["elapsed_s"], res["loadavg_before"], res["config"] = time.time() - t, load, a
    log(f"edits {human_n(n)}: " + (res["error"] if "error" in res else f"done in {res['elapsed_s']:.0f} s"))
    return res


# ------------------------------------------------------------------ the report

def fmt_r(x):
    """A ratio; a small one as 1/N, which 0.00× would hide."""
    if x is None:
        return "n/a"
    return f"1/{1 / x:,.0f}" if 0 < x < 0.1 else fmt_x(x)


def verdict(ok):
    return "n/a" if ok is None else "met" if ok else "**not met**"


def ratio(a, b):
    return a / b if a is not None and b else None


def judged(n, want):
    return "" if n == want else f" (judged at {human_n(n)}: {human_n(want)} not run)"


def write_report(res, out_dir, cmd):
    meta = res["meta"]
    m = meta["machine"]
    sizes = [r for r in res["sizes"] if "error" not in r]
    big = sizes[-1] if sizes else None
    lines = ["# sharedmap benchmark results: delta layers (edits)", "",
             f"Command: `{cmd}`{' (quick mode)' if meta['quick'] else ''}. Run {meta['started']} on "
             f"{m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
             f"load average at start {', '.join(f'{x:.1f}' for x in meta['loadavg_at_start'])}; "
             f"it took {meta['elapsed_s'] / 60:.1f} min.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items())) + ".", "",
             "Ratios are measured in the same run (one worker process per size); targets are goals, not "
             "test thresholds. See bench/README.md and the docstring of bench/edits.py for what each "
             "figure measures.", "", "## Targets", "", "| target | measured | result |", "|---|---|---|"]
    for r in res["sizes"]:
        if "error" in r:
            lines.insert(len(lines) - 4, f"**{human_n(r['n'])}: {r['error']}**\n")
    if big:
        n = big["n"]
        note = judged(n, 10_000_000)
        p = big["publish"].get("1000", {}).get("best", {})
        x_full, x_lmdb = ratio(p.get("delta"), p.get("full")), ratio(p.get("delta"), p.get("lmdb"))
        lines.append(f"| 1,000 changes into {human_n(10_000_000)}: delta publish ≤ 1/100 of the full "
                     f"republish{note} | {fmt_s(p.get('delta'))} vs {fmt_s(p.get('full'))}: {fmt_r(x_full)} | "
                     f"{verdict(x_full is not None and x_full <= 0.01)} |")
        lines.append(f"| 1,000 changes into {human_n(10_000_000)}: delta publish ≤ LMDB's write "
                     f"transaction{note} | {fmt_s(p.get('delta'))} vs {fmt_s(p.get('lmdb'))}: {fmt_x(x_lmdb)} | "
                     f"{verdict(x_lmdb is not None and x_lmdb <= 1)} |")
        for r in sizes:
            lk = r["lookups"]
            for what in ("hit", "miss"):
                a_, b_ = lk[what]["layered"]["ns"], lk[what]["compacted"]["ns"]
                x = a_ / b_
                lines.append(f"| lookups ({'hits' if what == 'hit' else 'misses'}) at {human_n(r['n'])} with a 1% delta ≤ 1.15× compacted | "
                             f"{a_:.0f} ns vs {b_:.0f} ns: {fmt_x(x)} | {verdict(x <= 1.15)} |")
        c = big["compact"]
        for key, what in (("rbtree_share", "`rbtree(d).share()`"), ("publish_sorted", "`publish(sorted=True)`")):
            x = ratio(c["compact"]["best_s"], c[key]["best_s"])
            lines.append(f"| compaction of {human_n(10_000_000)} + 1% ≤ the full build, {what}{note} | "
                         f"{fmt_s(c['compact']['best_s'])} vs {fmt_s(c[key]['best_s'])}: {fmt_x(x)} | "
                         f"{verdict(x <= 1)} |")
    # publish table
    lines += ["", "## Publishing changes", "",
              "From the changes in a Python list (80% overwrites, 10% inserts, 10% deletes) to the map "
              "a new reader sees: **delta** = `with sharedmap.edit(name, compact_at=None) as e:` the sets "
              "and dels; **delta over 1%** = the same over an existing delta of 1% of the entries (the "
              "commit rewrites the delta with the new changes merged in); **full** = `b = "
              "sharedmap.rbtree(reader)`, the sets and dels, `b.share(name, force=True)`; **LMDB** = one "
              "write transaction (py-lmdb, `writemap=True, sync=False, metasync=False`, in /dev/shm): "
              "`put`/`delete` of the encoded keys and values and the commit. Best of "
              f"{res['meta']['config']['fast_reps']} runs for delta and LMDB, of {res['meta']['config']['reps']} for the "
              "full republish (2 at 10M), the base put back before each "
              "(in the JSON: every run); a delta's time is split in parentheses as `edit()` (taking the "
              "lock, opening the current version) + the sets and dels in the editor + the commit.", "",
              "| entries | changes | delta | delta over 1% | full republish | LMDB txn | delta / full | "
              "delta / LMDB | delta over 1% / LMDB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in sizes:
        for c, p in r["publish"].items():
            b, sp = p["best"], p["split"]
            parts = {k: " (" + " + ".join(fmt_s(x) for x in sp[k]) + ")" for k in sp}
            lines.append(f"| {human_n(r['n'])} | {int(c):,} | {fmt_s(b['delta'])}{parts['delta']} | "
                         f"{fmt_s(b['delta2'])}{parts['delta2']} | "
                         f"{fmt_s(b['full'])} | {fmt_s(b['lmdb'])} | {fmt_r(b['delta'] / b['full'])} | "
                         f"{fmt_x(b['delta'] / b['lmdb'])} | {fmt_x(b['delta2'] / b['lmdb'])} |")
    lines += ["", "## Lookups and iteration: base + 1% delta vs compacted", "",
              "The map after a 1% delta (made with `compact_at=None`) and the same entries after "
              "`sharedmap.compact(name)`, two readers open at once, measured alternately: `get` bound, "
              f"{res['meta']['config']['probes']:,} fresh probe keys in random order, the empty loop "
              "subtracted, median of 7 rounds (min in the JSON). Hits are random keys of the edited map "
              "(1% of them in the delta), misses fresh random keys. Iteration: one full `for k, v in "
              "m.items()`, best of 3. The plain base (the rbtree-built snapshot the delta lies over, without "
              "it) is measured in the same rounds: layered / base is what the delta adds to its base's "
              "lookups, compacted / base what the new file itself does (about 0.1% of the hit probes, the "
              "inserted keys, are misses on the base).", "",
              "| entries | hit layered | hit compacted | × | miss layered | miss compacted | × | "
              "items() layered | items() compacted | × | base: hit, miss, items() | layered / base: hit, miss, "
              "items() |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sizes:
        lk = r["lookups"]
        h, ms, it = lk["hit"], lk["miss"], lk["items"]
        lines.append(f"| {human_n(r['n'])} | {h['layered']['ns']:.0f} ns | {h['compacted']['ns']:.0f} ns | "
                     f"{fmt_x(h['layered']['ns'] / h['compacted']['ns'])} | {ms['layered']['ns']:.0f} ns | "
                     f"{ms['compacted']['ns']:.0f} ns | {fmt_x(ms['layered']['ns'] / ms['compacted']['ns'])} | "
                     f"{fmt_s(it['layered']['best_s'])} | {fmt_s(it['compacted']['best_s'])} | "
                     f"{fmt_x(it['layered']['best_s'] / it['compacted']['best_s'])} | "
                     f"{h['base']['ns']:.0f} ns, {ms['base']['ns']:.0f} ns, {fmt_s(it['base']['best_s'])} | "
                     f"{fmt_x(h['layered']['ns'] / h['base']['ns'])}, {fmt_x(ms['layered']['ns'] / ms['base']['ns'])}, "
                     f"{fmt_x(it['layered']['best_s'] / it['base']['best_s'])} |")
    lines += ["", "## Compaction vs a full build", "",
              "`sharedmap.compact(name)` of the map + its 1% delta (the streaming writer's merge), against "
              "full builds of the same entries: `sharedmap.rbtree(d).share(name)` from the dict and "
              "`sharedmap.publish(name, pairs, sorted=True)` from the list of pairs already sorted. Best "
              "of the reps.", "",
              "| entries | compact | rbtree(d).share() | publish(sorted=True) | compact / rbtree | "
              "compact / publish |", "|---|---|---|---|---|---|"]
    for r in sizes:
        c = r["compact"]
        lines.append(f"| {human_n(r['n'])} + {r['first_delta']:,} changes | {fmt_s(c['compact']['best_s'])} | "
                     f"{fmt_s(c['rbtree_share']['best_s'])} | {fmt_s(c['publish_sorted']['best_s'])} | "
                     f"{fmt_x(c['compact']['best_s'] / c['rbtree_share']['best_s'])} | "
                     f"{fmt_x(c['compact']['best_s'] / c['publish_sorted']['best_s'])} |")
    lines += ["", "## Setup per size", "", "| entries | dict | base rbtree+share | base size | LMDB build | "
              "LMDB file | worker |", "|---|---|---|---|---|---|---|"]
    for r in sizes:
        lines.append(f"| {human_n(r['n'])} | {fmt_s(r['input_s'])} | {fmt_s(r['base_publish_s'])} | "
                     f"{r['base_bytes'] / 2**20:,.0f} MiB | {fmt_s(r['lmdb_build_s'])} | "
                     f"{r['lmdb_bytes'] / 2**20:,.0f} MiB | {r['elapsed_s']:.0f} s |")
    if res.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {x}" for x in res["notes"]]
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


# ------------------------------------------------------------------ run

def parse(argv):
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(prog="edits.py run")
    p.add_argument("--quick", action="store_true", default=quick, help="100K and 1M entries (BENCH_QUICK=1)")
    p.add_argument("--sizes", default=os.environ.get("BENCH_EDITS_SIZES"), help="comma list (BENCH_EDITS_SIZES)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", 1)))
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_EDITS_REPS", 3)),
                   help="reps of the full republish, compaction and full builds, best kept (at 10M+: 2)")
    p.add_argument("--fast-reps", type=int, default=int(os.environ.get("BENCH_EDITS_FAST_REPS", 7)),
                   help="reps of the delta publishes and LMDB transactions, best kept")
    p.add_argument("--probes", type=int, default=int(os.environ.get("BENCH_EDITS_PROBES", 200_000)))
    p.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_EDITS_TIMEOUT", 3600)),
                   help="s per worker (BENCH_EDITS_TIMEOUT)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "edits"))
    p.add_argument("--cmd", default=None, help="the command the report names (run.sh's)")
    cfg = p.parse_args(argv)
    cfg.sizes = sorted(int(x) for x in (cfg.sizes or ("100000,1000000" if cfg.quick else
                                                      "1000000,10000000")).split(","))
    return cfg


def versions():
    import importlib.metadata as md
    v = {"python": platform.python_version(), "sharedmap": sharedmap.__version__}
    try:
        v["lmdb"] = md.version("lmdb")
        import lmdb
        v["liblmdb"] = ".".join(map(str, lmdb.version()))
    except Exception:
        pass
    return v


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: the worker is stopped, finally cleans up


def run(argv):
    cfg = parse(argv)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)
    t0 = time.time()
    res = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": cfg.quick,
                    "loadavg_at_start": os.getloadavg(), "machine": machine(), "versions": versions(),
                    "config": {"sizes": cfg.sizes, "seed": cfg.seed, "reps": cfg.reps, "fast_reps": cfg.fast_reps,
                               "probes": cfg.probes,
                               "counts": COUNTS}},
           "sizes": []}
    cleanup()
    try:
        for n in cfg.sizes:
            res["sizes"].append(run_worker(cfg, n))
    finally:
        cleanup()
    res["meta"]["elapsed_s"] = time.time() - t0
    cmd = cfg.cmd or "python bench/edits.py run" + (f" {' '.join(argv)}" if argv else "")
    write_report(res, cfg.out, cmd)
    log(f"edits benchmark done in {res['meta']['elapsed_s'] / 60:.1f} min: {cfg.out}/results.md")
    with open(os.path.join(cfg.out, "results.md")) as f:
        print(f.read())


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "run":
        run(sys.argv[2:])
    elif mode == "worker":
        signal.signal(signal.SIGTERM, _terminated)
        worker(json.loads(sys.argv[2]))
    elif mode == "cleanup":
        cleanup()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
