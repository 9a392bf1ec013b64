"""scale.py: the scale benchmark of issue 13 — building a large map from a dict against pickle,
the memory that costs, and streaming builds of 100M entries in bounded memory.

    make bench-scale                       10M and 100M entries: about 15 min on 2 cores
    make bench-scale ARGS=--quick          1M and 3M: a few minutes, for development
    python scale.py run [--quick] [--sizes N,M,...] [--parts dict,stream,sets] [--out DIR]
    python scale.py worker '<json>'        one figure in a fresh process (run's)
    python scale.py cleanup                remove the maps and files a killed run left

Every figure is taken in a fresh worker process: it makes its input (dataset.py's str -> str
data: the dict of dataset.make(n), or the generator dataset.stream(n)), reads its base memory
(ru_maxrss, and VmRSS from /proc/self/status), brings the high-water mark down to the RSS of the
moment (/proc/self/clear_refs), runs one operation with the cyclic GC off, and reads ru_maxrss
again.  Peak = the larger of the two ru_maxrss (what it would say without the reset); above base
= peak - base ru_maxrss (the figure judged) and, exactly, the operation's own high-water mark -
VmRSS at its start (building the dict leaves ru_maxrss above VmRSS, which hides that much of an
operation's peak from the first figure).  The dimensions (DIMENSIONS, each a measure and a
report function):
  dict    at the first size (10M): `rbtree(d); share(name)`, `publish(name, d)` (the streaming
          writer, from the dict) and `pickle.dumps(d)`: time, and peak RSS above the dict
  stream  at every size (10M, 100M): `publish(name, pairs)` and `write(path, pairs)` from the
          generator, and the time of consuming the generator alone; the default memory_limit
  sets    C lookups (bench/cset.c) in a 16-shard map set against one map, at the sizes up to 10M
  dask    sharedmap.dask.write_set on a LocalCluster of 2 worker processes against
          sharedmap.write of the same pairs in one process, at the sizes up to --dask-max (10M)
Targets are issue 13's goals, each a same-run ratio reported met / not met.  Maps are
/dev/shm/sharedmap.smbench-scale-*, files $TMPDIR/smbench-scale-*.smap (or /tmp); all are
removed after each figure, and again when the run ends or is interrupted.  Writes
OUT/results.md and OUT/results.json (default bench/results/scale/).  Stdlib + sharedmap.
"""
import argparse
import collections
import gc
import glob
import json
import os
import pickle
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset  # noqa: E402
from batchreport import fmt_x, human_n  # noqa: E402
from machine import machine  # noqa: E402

import sharedmap  # noqa: E402

PREFIX = "smbench-scale-"  # every map and file this benchmark makes starts with it
SHM_DIR = "/dev/shm"
DEFAULT_BUDGET = 256 << 20  # SM_WRITER_MEMORY_DEFAULT: the writer's memory_limit when not given
MiB = 1 << 20


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def output(op, n):
    """Where op's snapshot goes: {"name": map} or {"path": file}, or {} (none)."""
    kind = OPS[op][2]
    if kind == "map":
        return {"name": f"{PREFIX}{op}-{n}"}
    if kind == "file":
        return {"path": os.path.join(tempfile.gettempdir(), f"{PREFIX}{op}-{n}.smap")}
    if kind == "dir":
        return {"path": os.path.join(tempfile.gettempdir(), f"{PREFIX}{op}-{n}.set")}
    return {}


def snapshot_path(a):
    return a.get("path") or os.path.join(SHM_DIR, "sharedmap." + a["name"])


def snapshot_bytes(a):
    """The bytes of what the operation made: its file, or the files of its set directory."""
    p = snapshot_path(a)
    if os.path.isdir(p):
        return sum(os.path.getsize(os.path.join(p, f)) for f in os.listdir(p))
    return os.path.getsize(p)


# ------------------------------------------------------------------ the worker

def status(*fields):
    """Fields of /proc/self/status (VmRSS, ...), in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in fields:
                out[k] = int(v.split()[0]) * 1024
    return out


def maxrss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak():
    """Bring the high-water mark down to the RSS of now (Linux >= 4.0); False if refused."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def op_pickle(src, a):
    return {"output_bytes": len(pickle.dumps(src))}


def op_rbtree(src, a):
    t = time.perf_counter()
    w = sharedmap.rbtree(src)
    t_build = time.perf_counter() - t
    w.share(a["name"])
    return {"rbtree_s": t_build, "share_s": time.perf_counter() - t - t_build}


def op_publish(src, a):
    return {"count": sharedmap.publish(a["name"], src)}


def op_write(src, a):
    return {"count": sharedmap.write(a["path"], src)}


def op_consume(src, a):
    collections.deque(src, maxlen=0)
    return {}


PARTS = 16  # partitions of the dask part's input, and shards of its set


def part_seed(seed, i):
    return seed * 1000 + i


def part_pairs(indices, n, seed):
    """The pairs of the dask part's partitions `indices`: partition i is dataset.stream(n //
    PARTS) from its own seed (so any process can make it alone), the last one a little longer."""
    for i in indices:
        yield from dataset.stream(n // PARTS + (n % PARTS if i == PARTS - 1 else 0), part_seed(seed, i))


def make_dask(n, seed):
    """A LocalCluster of 2 worker processes (one thread each), its client, and the bag of the
    pairs of part_pairs, one partition each: made before the clock starts."""
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + [x for x in os.environ.get("PYTHONPATH", "").split(
        os.pathsep) if x])  # the workers import dataset
    import dask.bag as db
    from distributed import Client, LocalCluster
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                           memory_limit=0)
    client = Client(cluster)
    bag = db.from_sequence(range(PARTS), npartitions=PARTS).map_partitions(part_pairs, n, seed)
    return cluster, client, bag


def op_write_parts(src, a):
    return {"count": sharedmap.write(a["path"], src)}


def op_dask_set(src, a):
    import sharedmap.dask
    cluster, client, bag = src
    try:
        count = sharedmap.dask.write_set(bag, a["path"], npartitions=PARTS)
        peaks = client.run(maxrss)  # the workers' own high-water marks (fresh processes)
    finally:
        client.close()
        cluster.close()
    return {"count": count, "worker_peaks": sorted(peaks.values())}


# op: (its input, the function that runs it on that input, what it makes: a map, a file or none)
OPS = {
    "pickle": ("dict", op_pickle, None),
    "rbtree_share": ("dict", op_rbtree, "map"),
    "publish_dict": ("dict", op_publish, "map"),
    "consume": ("stream", op_consume, None),
    "publish_stream": ("stream", op_publish, "map"),
    "write_stream": ("stream", op_write, "file"),
    "write_parts": ("parts", op_write_parts, "file"),
    "dask_set": ("dask", op_dask_set, "dir"),
}


def remove_output(a):
    if "name" in a and os.path.exists(snapshot_path(a)):
        sharedmap.rbtree.remove(a["name"])
    elif "path" in a and os.path.isdir(a["path"]):
        shutil.rmtree(a["path"], ignore_errors=True)
    elif "path" in a and os.path.exists(a["path"]):
        os.unlink(a["path"])


def worker(a):
    n, (source, op, made) = a["n"], OPS[a["op"]]
    t = time.perf_counter()
    src = (dataset.make(n, a["seed"]) if source == "dict" else dataset.stream(n, a["seed"]) if source == "stream"
           else part_pairs(range(PARTS), n, a["seed"]) if source == "parts" else make_dask(n, a["seed"]))
    out = {"op": a["op"], "n": n, "input_s": time.perf_counter() - t}
    gc.collect()
    out["base"] = {"maxrss": maxrss(), **status("VmRSS"), "reset": reset_peak()}
    gc.disable()
    try:
        t, cpu = time.perf_counter(), time.process_time()
        out.update(op(src, a))
        out["time_s"], out["cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
        hwm = maxrss()  # the operation's own high-water mark, when the reset worked
        out["peak"] = {"maxrss": max(hwm, out["base"]["maxrss"]), "hwm": hwm, **status("VmRSS")}
        if made:
            out["snapshot_bytes"] = snapshot_bytes(a)
    finally:
        gc.enable()
        remove_output(a)
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------ the driver

def cleanup():
    """Remove every map, temporary and file whose name holds PREFIX (a killed run's too)."""
    for d in (SHM_DIR, tempfile.gettempdir()):
        for p in glob.glob(os.path.join(d, f"*{PREFIX}*")) + glob.glob(os.path.join(d, f".*{PREFIX}*")):
            try:
                if os.path.isdir(p) and not os.path.islink(p):
                    shutil.rmtree(p)
                else:
                    os.unlink(p)
            except OSError:
                pass


def run_worker(cfg, op, n):
    a = {"op": op, "n": n, "seed": cfg.seed, **output(op, n)}
    t, load = time.time(), os.getloadavg()
    try:
        p = subprocess.run([sys.executable, os.path.abspath(__file__), "worker", json.dumps(a)],
                           capture_output=True, text=True, timeout=cfg.timeout)
    except subprocess.TimeoutExpired:
        res = {"op": op, "n": n, "error": f"killed after {cfg.timeout} s"}
    else:
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if p.returncode == 0 and lines else {
            "op": op, "n": n, "error": f"exit {p.returncode}: {p.stderr.strip()[-800:]}"}
    cleanup()
    res["elapsed_s"], res["loadavg_before"] = time.time() - t, load
    if "error" in res:
        log(f"scale {op} {human_n(n)}: {res['error']}")
    else:
        log(f"scale {op} {human_n(n)}: {res['time_s']:.2f} s, peak RSS {res['peak']['maxrss'] / MiB:.0f} MiB "
            f"(base {res['base']['maxrss'] / MiB:.0f} MiB), whole worker {res['elapsed_s']:.0f} s")
    return res


def combine(runs):
    """The figures of cfg.reps runs of one operation: the fastest time (and its split), the
    memory of the run with the highest peak; every run is kept under "runs"."""
    ok = [r for r in runs if "error" not in r] or runs[:1]
    fast = min(ok, key=lambda r: r.get("time_s", 0))
    high = max(ok, key=lambda r: r.get("peak", {}).get("hwm", 0) - r.get("base", {}).get("VmRSS", 0))
    return {**fast, "base": high.get("base"), "peak": high.get("peak"), "runs": runs}


def measure_dict(cfg):
    n, ops = cfg.sizes[0], ("pickle", "rbtree_share", "publish_dict")
    runs = {op: [] for op in ops}
    for _ in range(cfg.reps):  # the operations alternate, so a noisy moment hits them alike
        for op in ops:
            runs[op].append(run_worker(cfg, op, n))
    return {"n": n, "reps": cfg.reps, "ops": {op: combine(rs) for op, rs in runs.items()}}


def measure_stream(cfg):
    return {"sizes": cfg.sizes, "runs": {str(n): {op: run_worker(cfg, op, n)
                                                  for op in ("consume", "publish_stream", "write_stream")}
                                         for n in cfg.sizes}}


def measure_dask(cfg):
    """The same pairs (PARTS partitions of their own seeds) written as a 16-shard set by Dask on a
    LocalCluster of 2 worker processes, and as one file by the single-process streaming writer."""
    try:
        import dask  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as e:
        return {"error": f"dask[distributed] is not installed here ({e}): pip install sharedmap[dask]"}
    sizes = [n for n in cfg.sizes if n <= cfg.dask_max]
    return {"sizes": sizes, "max": cfg.dask_max, "all": cfg.sizes,
            "runs": {str(n): {op: run_worker(cfg, op, n) for op in ("write_parts", "dask_set")} for n in sizes}}


def report_dask(res):
    if "error" in res:
        return [], [res["error"]]
    rows = ["| entries | operation | time | per entry | × single process | peak RSS: client (workers) | "
            "output |", "|---|---|---|---|---|---|---|"]
    for n in res["sizes"]:
        r = res["runs"][str(n)]
        one = r["write_parts"].get("time_s")
        for op, label in (("write_parts", "`write(path, pairs)`, one process"),
                          ("dask_set", f"`sharedmap.dask.write_set(bag, path)`, {PARTS} shards")):
            x = r[op]
            if "error" in x:
                rows.append(f"| {human_n(n)} | {label} | {x['error'][:200]} | | | | |")
                continue
            workers = ", ".join(fmt_mib(b) for b in x.get("worker_peaks", []))
            rows.append(f"| {human_n(n)} | {label} | {fmt_s(x['time_s'])} | {x['time_s'] / n * 1e9:.0f} ns | "
                        f"{fmt_x(x['time_s'] / one) if one else ''} | {fmt_mib(x['peak']['maxrss'])}"
                        f"{f' ({workers})' if workers else ''} | {fmt_mib(x.get('snapshot_bytes'))} |")
    body = [f"The same pairs, {PARTS} partitions of dataset.stream from seeds of their own: written as one "
            "snapshot file by the single-process streaming writer (`sharedmap.write`, default memory_limit), "
            f"and as a {PARTS}-shard map set by `sharedmap.dask.write_set` on a `distributed.LocalCluster` of 2 "
            "worker processes with a thread each (made before the clock starts): the keys sampled for the "
            "bounds, the pairs shuffled into their ranges by Dask, each range sorted and written by a worker, "
            "the manifest by the client. Peak RSS: the client's ru_maxrss, and each worker's. Not a target of "
            "the issue: the figures say what a cluster costs and gains on one 2-core machine."
            + (f" Sizes above {human_n(res['max'])} are not run here (--dask-max): Dask's shuffle holds "
               "every pair as a Python tuple in the workers." if any(n > res["max"] for n in res.get("all", []))
               else "")] + [""] + rows
    return [], body


ROOT = os.path.dirname(HERE)


def build_cset():
    """bench/cset.c compiled as run.sh compiles cbench (gcc -O2, with src/*.c): its path."""
    out = os.path.join(tempfile.gettempdir(), f"{PREFIX}cset-{os.getpid()}")
    srcs = sorted(glob.glob(os.path.join(ROOT, "src", "*.c")))
    cmd = [os.environ.get("CC", "gcc"), "-O2", "-std=c11", "-D_GNU_SOURCE", "-I", os.path.join(ROOT, "include"),
           "-I", os.path.join(ROOT, "src"), *srcs, os.path.join(HERE, "cset.c"), "-o", out, "-pthread"]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return out


def measure_sets(cfg):
    """C lookups (bench/cset.c) in a 16-shard set vs one map, at the sizes up to 10M (the
    target's size; the 100M of the stream part would not fit twice in /dev/shm beside it)."""
    sizes = [n for n in cfg.sizes if n <= 10_000_000] or cfg.sizes[:1]
    try:
        exe = build_cset()
    except (OSError, subprocess.CalledProcessError) as e:
        return {"error": f"cset.c did not build: {getattr(e, 'stderr', '') or e}"}
    try:
        args = [exe, "-n", ",".join(map(str, sizes)), "-k", "16", "-r", "5", "-d", SHM_DIR,
                "-s", str(cfg.seed)]
        log(f"sets: {' '.join(args)}")
        r = subprocess.run(args, capture_output=True, text=True, timeout=cfg.timeout)
        if r.returncode:
            return {"error": (r.stderr or r.stdout)[-2000:]}
        return {"sizes": sizes, "cset": json.loads(r.stdout)}
    finally:
        os.unlink(exe)


# ------------------------------------------------------------------ the report

def fmt_s(s):
    return "n/a" if s is None else f"{s:.2f} s" if s >= 1 else f"{s * 1e3:.0f} ms"


def fmt_mib(b):
    return "n/a" if b is None else f"{b / MiB:,.0f} MiB"


def verdict(ok):
    return "n/a" if ok is None else "met" if ok else "**not met**"


def above(r):
    """Peak above the base: ru_maxrss after - ru_maxrss before (the figure judged), and the
    operation's own high-water mark above VmRSS at its start."""
    if "peak" not in r:
        return None, None
    return r["peak"]["maxrss"] - r["base"]["maxrss"], r["peak"]["hwm"] - r["base"]["VmRSS"]


def judged_at(n, want):
    return "" if n == want else f" (judged at {human_n(n)}: {human_n(want)} not run)"


def report_dict(res):
    n, ops = res["n"], res["ops"]
    note = judged_at(n, 10_000_000)
    pk, rb, pu = ops["pickle"], ops["rbtree_share"], ops["publish_dict"]
    tp = pk.get("time_s")
    targets = []
    for r, what in ((rb, "`rbtree(d); w.share(name)`"), (pu, "`publish(name, d)` (streaming writer)")):
        x = r["time_s"] / tp if tp and "time_s" in r else None
        targets.append((f"{what} from a dict of {human_n(10_000_000)} str → str: time ≤ 0.5× "
                        f"`pickle.dumps(d)`{note}",
                        f"{fmt_s(r.get('time_s'))} vs {fmt_s(tp)}: {fmt_x(x)}" if x else
                        r.get("error", "not measured"), verdict(x and x <= 0.5)))
    up, own = above(rb)
    snap = rb.get("snapshot_bytes")
    goal = snap + 24 * n if snap else None
    ok = goal and up is not None and up <= goal
    targets.append((f"`rbtree(d); w.share(name)` at {human_n(10_000_000)}: peak RSS above the dict ≤ "
                    f"snapshot size + 24 bytes/entry{note}",
                    f"{fmt_mib(up)} (its own high-water mark above VmRSS: {fmt_mib(own)}) vs {fmt_mib(snap)} + "
                    f"{fmt_mib(24 * n)} = {fmt_mib(goal)}" if goal and up is not None else
                    rb.get("error", "not measured"),
                    verdict(ok) + ("" if not goal or (own <= goal) == ok else
                                   f"; by the high-water mark: {verdict(own <= goal)}")))
    up, own = above(pu)
    targets.append((f"`publish(name, d)` at {human_n(10_000_000)}: peak RSS above the dict within the "
                    f"writer's documented budget, memory_limit ({fmt_mib(DEFAULT_BUDGET)}; not an issue 13 "
                    f"target){note}",
                    f"{fmt_mib(up)} (its own high-water mark above VmRSS: {fmt_mib(own)})" if up is not None
                    else pu.get("error", "not measured"),
                    verdict(up is not None and own <= DEFAULT_BUDGET)))
    rows = ["| operation | time | CPU | × pickle.dumps | base ru_maxrss (VmRSS) | peak ru_maxrss | above the dict: "
            "by ru_maxrss (own high-water − VmRSS) | per entry | output |", "|---|---|---|---|---|---|---|---|---|"]
    for r, label in ((pk, "`pickle.dumps(d)`"), (rb, "**`rbtree(d); w.share(name)`**"),
                     (pu, "`sharedmap.publish(name, d)`")):
        if "error" in r:
            rows.append(f"| {label} | {r['error'][:200]} | | | | | | | |")
            continue
        up, own = above(r)
        out = r.get("output_bytes") or r.get("snapshot_bytes")
        split = (f" ({fmt_s(r['rbtree_s'])} + {fmt_s(r['share_s'])})" if "rbtree_s" in r else "")
        rows.append(f"| {label} | {fmt_s(r['time_s'])}{split} | {fmt_s(r['cpu_s'])} | "
                    f"{fmt_x(r['time_s'] / tp) if tp else 'n/a'} | "
                    f"{fmt_mib(r['base']['maxrss'])} ({fmt_mib(r['base']['VmRSS'])}) | "
                    f"{fmt_mib(r['peak']['maxrss'])} | {fmt_mib(up)} ({fmt_mib(own)}) | "
                    f"{up / n:.1f} B ({own / n:.1f} B) | {fmt_mib(out)} ({out / n:.1f} B/entry) |")
    body = [f"From a dict of {human_n(n)} str → str entries already in memory (dataset.py), each "
            f"operation in {res['reps']} fresh processes that first build the dict, the operations "
            "alternating: the fastest time (rbtree's is `rbtree(d)` + `share()`), with its CPU time "
            "(user + system; below the time, the process waited or other work had the CPU), and the "
            "memory of the run with the highest peak. \"Above the dict\" is ru_maxrss after the operation minus "
            "ru_maxrss once the dict is built (the figure judged) and, in parentheses, the operation's "
            "own high-water mark (reset to the RSS of its start) minus VmRSS at its start: building "
            "the dict leaves ru_maxrss above VmRSS (by the blobs of its last chunk of generation), "
            "which hides that much of an operation's peak from the first figure. `share()` writes "
            "the snapshot through a shared mapping of /dev/shm (unmapped before it returns), so the "
            "published map's pages count in rbtree's peak RSS; `publish()` writes into the file "
            "with pwrite and never maps it, so its peak holds none of them. pickle's peak holds the "
            "bytes it returns (and its memo of every object). The streaming writer's budget is "
            f"memory_limit, {fmt_mib(DEFAULT_BUDGET)} by default."] + [""] + rows
    if not all(r.get("base", {}).get("reset", True) for r in ops.values()):
        body += ["", "/proc/self/clear_refs refused the reset: the high-water figures are ru_maxrss "
                 "minus VmRSS, an upper bound."]
    return targets, body


def report_stream(res):
    sizes = res["sizes"]
    runs = res["runs"]
    small, large = sizes[0], sizes[-1]
    note = judged_at(large, 100_000_000)
    targets = []
    for op, label in (("publish_stream", "`publish(name, pairs)`"), ("write_stream", "`write(path, pairs)`")):
        r = runs[str(large)][op]
        peak = r.get("peak", {}).get("maxrss")
        targets.append((f"{label} of {human_n(100_000_000)} pairs from a generator, default memory_limit: "
                        f"peak RSS ≤ 512 MiB{note}", fmt_mib(peak) if peak else r.get("error", "not measured"),
                        verdict(peak and peak <= 512 * MiB)))
        t0, t1 = (runs[str(m)][op].get("time_s") for m in (small, large))
        x = t1 / large / (t0 / small) if t0 and t1 and large != small else None
        targets.append((f"{label}: time per entry at {human_n(100_000_000)} ≤ 2× at {human_n(10_000_000)}"
                        + ("" if (small, large) == (10_000_000, 100_000_000) else
                           f" (judged at {human_n(large)} against {human_n(small)})"),
                        f"{t1 / large * 1e9:.0f} ns vs {t0 / small * 1e9:.0f} ns: {fmt_x(x)}" if x else
                        "not measured", verdict(x and x <= 2)))
    rows = ["| entries | operation | time | per entry | writer's own per entry | CPU | peak ru_maxrss "
            "(base) | snapshot | bytes / entry |", "|---|---|---|---|---|---|---|---|---|"]
    for n in sizes:
        con = runs[str(n)]["consume"].get("time_s")
        for op, label in (("consume", "consume the generator only"), ("publish_stream", "`publish(name, pairs)`"),
                          ("write_stream", "`write(path, pairs)`")):
            r = runs[str(n)][op]
            if "error" in r:
                rows.append(f"| {human_n(n)} | {label} | {r['error'][:200]} | | | | | | |")
                continue
            own = f"{(r['time_s'] - con) / n * 1e9:.0f} ns" if con and op != "consume" else ""
            snap = r.get("snapshot_bytes")
            rows.append(f"| {human_n(n)} | {label} | {fmt_s(r['time_s'])} | {r['time_s'] / n * 1e9:.0f} ns | "
                        f"{own} | {fmt_s(r['cpu_s'])} | {fmt_mib(r['peak']['maxrss'])} "
                        f"({fmt_mib(r['base']['maxrss'])}) | {fmt_mib(snap) if snap else ''} | "
                        f"{f'{snap / n:.1f}' if snap else ''} |")
    body = ["Streaming builds from a generator (`dataset.stream(n)`: the pairs `make(n)` would put "
            "in its dict, made chunk by chunk, never held), with the default memory_limit "
            f"({fmt_mib(DEFAULT_BUDGET)}); the map is published into /dev/shm, the file written to "
            f"{tempfile.gettempdir()}, and the writer's runs spill to $TMPDIR (or /tmp). Peak RSS is "
            "the worker's whole ru_maxrss (base: after importing sharedmap, before the first pair). "
            "\"Writer's own\" = (time − the generator-only time at that size) / entries. CPU = the "
            "worker's user + system time over the operation."] + [""] + rows
    short = [f"{human_n(n)} {op}: {r['count']:,}" for n in sizes for op, r in runs[str(n)].items()
             if r.get("count", n) != n]
    if short:
        body += ["", "Fewer entries than pairs (a key the generator drew twice is one entry): "
                 + ", ".join(short) + "."]
    return targets, body


def report_sets(res):
    if "error" in res:
        return [("lookups in a 16-shard set ≤ 1.1× one map", res["error"][:200], verdict(None))], \
            ["The set dimension failed: " + res["error"]]
    per = res["cset"]["sizes"]
    big = str(max(int(n) for n in per))
    note = judged_at(int(big), 10_000_000)
    targets = []
    for what, label in (("hit", "hits"), ("miss", "misses"), ("many", "get_many (batches of 1,000)")):
        r = per[big]
        x = r[f"set_{what}_ns"] / r[f"one_{what}_ns"]
        targets.append((f"C lookups in a 16-shard set, {label}: ≤ 1.1× one map of the same entries{note}",
                        f"{r[f'set_{what}_ns']:.0f} ns vs {r[f'one_{what}_ns']:.0f} ns: {fmt_x(x)}", verdict(x <= 1.1)))
    rows = ["| entries | lookup | one map | 16-shard set | set / one |", "|---|---|---|---|---|"]
    for n in sorted(per, key=int):
        r = per[n]
        for what, label in (("hit", "sm_get, hit"), ("miss", "sm_get, miss"), ("many", "sm_get_many, per key")):
            one, st = r[f"one_{what}_ns"], r[f"set_{what}_ns"]
            rows.append(f"| {human_n(int(n))} | {label} | {one:.0f} ns | {st:.0f} ns | {fmt_x(st / one)} |")
    body = ["`bench/cset.c` (built with gcc -O2 and src/*.c, cbench's data and probes): one map published "
            "to /dev/shm, and the same entries cut by rank into 16 shards, written as a set with its "
            "manifest, packed and published under one name (as `sharedmap load-set` does) and attached "
            f"as readers attach; {res['cset']['probes']:,} probes, each lookup reading its value, the "
            f"contenders alternating over {res['cset']['rounds']} rounds, the median of each. A key is "
            "routed by its first 2 bytes (a 64K-entry table) or a branch-free search over the bounds' "
            "8-byte prefixes."] + [""] + rows
    return targets, body


Dimension = collections.namedtuple("Dimension", "name title measure report")
DIMENSIONS = [
    Dimension("dict", "Building from a dict in memory, against pickle (targets a, b)", measure_dict, report_dict),
    Dimension("stream", "Streaming builds in bounded memory (target c)", measure_stream, report_stream),
    Dimension("sets", "Lookups in a 16-shard map set vs one map (target d)", measure_sets, report_sets),
    Dimension("dask", "Dask on a LocalCluster of 2 workers vs the single-process streaming writer", measure_dask,
              report_dask),
]


def write_report(res, out_dir, cmd):
    meta = res["meta"]
    m = meta["machine"]
    lines = ["# sharedmap benchmark results: scale (issue 13)", "",
             f"Command: `{cmd}`{' (quick mode)' if meta['quick'] else ''}. Run {meta['started']} on "
             f"{m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; "
             f"load average at start {', '.join(f'{x:.1f}' for x in meta['loadavg_at_start'])}; "
             f"it took {meta['elapsed_s'] / 60:.1f} min.",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(meta["versions"].items())) + ".", "",
             "Ratios are measured in the same run; targets are goals, not test thresholds. "
             "See bench/README.md for what each figure measures.", "", "## Targets", "",
             "| target | measured | result |", "|---|---|---|"]
    sections = []
    for dim in DIMENSIONS:
        if dim.name not in res["dimensions"]:
            continue
        targets, body = dim.report(res["dimensions"][dim.name])
        lines += [f"| {t} | {x} | {ok} |" for t, x, ok in targets]
        sections += ["", f"## {dim.title}", ""] + body
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(lines + sections) + "\n")
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(res, f, indent=1)


# ------------------------------------------------------------------ run

def parse(argv):
    quick = os.environ.get("BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(prog="scale.py run")
    p.add_argument("--quick", action="store_true", default=quick, help="1M and 3M entries (BENCH_QUICK=1)")
    p.add_argument("--sizes", default=os.environ.get("BENCH_SCALE_SIZES"),
                   help="comma list; the dict part runs at the first (BENCH_SCALE_SIZES)")
    p.add_argument("--parts", default=os.environ.get("BENCH_SCALE_PARTS", ",".join(d.name for d in DIMENSIONS)),
                   help="comma list of dimensions (BENCH_SCALE_PARTS)")
    p.add_argument("--seed", type=int, default=int(os.environ.get("BENCH_SEED", 1)))
    p.add_argument("--reps", type=int, default=int(os.environ.get("BENCH_SCALE_REPS", 3)),
                   help="runs of each dict operation, each in its own process (BENCH_SCALE_REPS)")
    p.add_argument("--timeout", type=int, default=int(os.environ.get("BENCH_SCALE_TIMEOUT", 1800)),
                   help="s per worker (BENCH_SCALE_TIMEOUT)")
    p.add_argument("--dask-max", type=int, default=int(os.environ.get("BENCH_SCALE_DASK_MAX", 10_000_000)),
                   help="the dask part runs at the sizes up to this (BENCH_SCALE_DASK_MAX)")
    p.add_argument("--out", default=os.path.join(HERE, "results", "scale"))
    cfg = p.parse_args(argv)
    cfg.sizes = sorted(int(x) for x in (cfg.sizes or ("1000000,3000000" if cfg.quick else
                                                      "10000000,100000000")).split(","))
    cfg.parts = [x for x in cfg.parts.split(",") if x]
    unknown = set(cfg.parts) - {d.name for d in DIMENSIONS}
    if unknown:
        p.error(f"unknown parts {sorted(unknown)}")
    return cfg


def versions():
    return {"python": platform.python_version(), "sharedmap": sharedmap.__version__}


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: subprocess.run kills its worker, finally cleans up


def run(argv):
    cfg = parse(argv)
    signal.signal(signal.SIGTERM, _terminated)
    signal.signal(signal.SIGINT, _terminated)
    t0 = time.time()
    res = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": cfg.quick,
                    "loadavg_at_start": os.getloadavg(), "machine": machine(), "versions": versions(),
                    "config": {"sizes": cfg.sizes, "parts": cfg.parts, "seed": cfg.seed, "reps": cfg.reps,
                               "memory_limit": DEFAULT_BUDGET, "tmpdir": tempfile.gettempdir()}},
           "dimensions": {}}
    cleanup()
    try:
        for dim in DIMENSIONS:
            if dim.name in cfg.parts:
                res["dimensions"][dim.name] = dim.measure(cfg)
    finally:
        cleanup()
    res["meta"]["elapsed_s"] = time.time() - t0
    os.makedirs(cfg.out, exist_ok=True)
    cmd = "make bench-scale" + (f" ARGS='{' '.join(argv)}'" if argv else "")
    write_report(res, cfg.out, cmd)
    log(f"scale benchmark done in {res['meta']['elapsed_s'] / 60:.1f} min: {cfg.out}/results.md")
    with open(os.path.join(cfg.out, "results.md")) as f:
        print(f.read())


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "run":
        run(sys.argv[2:])
    elif mode == "worker":
        worker(json.loads(sys.argv[2]))
    elif mode == "cleanup":
        cleanup()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
