"""demo.py: the main job (`make demo`): one map shared by several reader processes, beside the
same data held as a plain dict in each of them.

A publisher makes 1,000,000 str->str entries (deterministic from --seed), publishes them with
sharedmap, and pickles the same dict to a file.  Then two rounds of worker processes (real
processes, started with 'spawn'), run one after the other:

  sharedmap  each worker attaches to the published map by name;
  dict       each worker unpickles its own dict from the file (what people do to share a table).

In each round every worker looks up the same number of random keys for a fixed time, all
workers at once, then reports its lookups per second and its memory: RSS and PSS from
/proc/self/smaps_rollup, read while every worker of the round is still alive (PSS splits a
shared page between the processes that map it, so the PSS of the readers adds up to the memory
they really cost).  Nothing here is a pass/fail test; the figures depend on the machine.
"""
from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import pickle
import platform
import random
import sys
import tempfile
import time

ALPHABET = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
TRANSLATE = bytes(ALPHABET[b % len(ALPHABET)] for b in range(256))
KEY_LEN = (8, 24)
VALUE_LEN = (8, 48)
MiB = 1024 * 1024


def make_data(n: int, seed: int) -> dict[str, str]:
    """n distinct str->str entries: ASCII keys of 8-24 chars, values of 8-48, from seed."""
    rng = random.Random(seed)
    data: dict[str, str] = {}
    while len(data) < n:
        todo = n - len(data)
        klens = rng.randbytes(todo)
        vlens = rng.randbytes(todo)
        blob = rng.randbytes(todo * (KEY_LEN[1] + VALUE_LEN[1])).translate(TRANSLATE).decode("ascii")
        pos = 0
        for i in range(todo):
            kl = KEY_LEN[0] + klens[i] % (KEY_LEN[1] - KEY_LEN[0] + 1)
            vl = VALUE_LEN[0] + vlens[i] % (VALUE_LEN[1] - VALUE_LEN[0] + 1)
            data[blob[pos : pos + kl]] = blob[pos + kl : pos + kl + vl]
            pos += KEY_LEN[1] + VALUE_LEN[1]
    return data


def smaps_rollup() -> dict[str, int]:
    """This process's memory counters from /proc/self/smaps_rollup, in bytes."""
    out: dict[str, int] = {}
    with open("/proc/self/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def fresh(keys: list[str]) -> list[str]:
    """New str objects equal to keys, with no cached hash."""
    return [k.encode().decode() for k in keys]


def worker(kind: str, source: str, probe_file: str, seconds: float, start: "mp.synchronize.Barrier",
           done: "mp.synchronize.Barrier", results: "mp.Queue[dict]") -> None:
    """One reader process: load the probes, attach (or unpickle), look up for `seconds`, report."""
    report: dict = {"pid": os.getpid(), "kind": kind}
    try:
        with open(probe_file, "rb") as f:
            probes, expected = pickle.load(f)
        gc.collect()
        report["idle"] = smaps_rollup()  # interpreter + probe keys, before the data

        if kind == "sharedmap":
            import sharedmap
        t0 = time.perf_counter()
        if kind == "sharedmap":
            table = sharedmap.sharedmap(source)
        else:
            with open(source, "rb") as f:
                table = pickle.load(f)
        report["attach_s"] = time.perf_counter() - t0
        get = table.get

        # an untimed pass that checks the answers
        report["correct"] = sum(1 for k, v in zip(fresh(probes), expected) if get(k) == v)
        report["probes"] = len(probes)

        start.wait()
        lookups = 0
        t_start = time.perf_counter()
        cpu_start = time.thread_time()
        while time.perf_counter() - t_start < seconds:
            for k in probes:
                get(k)
            lookups += len(probes)
        report["cpu_s"] = time.thread_time() - cpu_start
        report["elapsed_s"] = time.perf_counter() - t_start
        report["lookups"] = lookups
        report["mem"] = smaps_rollup()  # after the lookups, every worker still alive
    except BaseException as e:  # report it, and keep the barriers from hanging the others
        report["error"] = f"{type(e).__name__}: {e}"
        start.abort()
        done.abort()
        results.put(report)
        raise
    results.put(report)
    try:
        done.wait(timeout=120)
    except Exception:
        pass


def run_round(ctx, kind: str, source: str, probe_files: list[str], seconds: float) -> list[dict]:
    n = len(probe_files)
    start, done = ctx.Barrier(n), ctx.Barrier(n)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(kind, source, pf, seconds, start, done, results), daemon=True)
        for pf in probe_files
    ]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=seconds + 300))
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in reports if "error" in r]
    if errors:
        raise SystemExit(f"demo: a {kind} worker failed: {errors[0]}")
    return sorted(reports, key=lambda r: r["pid"])


def fmt_mib(n: float) -> str:
    return f"{n / MiB:,.1f}"


def fmt_rate(n: float) -> str:
    return f"{n:,.0f}"


def fmt_time(s: float) -> str:
    return f"{s * 1e3:,.2f} ms" if s < 1 else f"{s:,.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--entries", type=int, default=1_000_000, help="entries in the map (default 1,000,000)")
    ap.add_argument("--workers", type=int, default=4, help="reader processes (default 4)")
    ap.add_argument("--seconds", type=float, default=8.0, help="lookup time per round (default 8)")
    ap.add_argument("--probes", type=int, default=100_000, help="distinct random keys each worker looks up (default 100,000)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the data (default 1)")
    args = ap.parse_args()

    import sharedmap

    t_demo = time.perf_counter()
    ncpu = os.cpu_count() or 1
    print(f"sharedmap {sharedmap.__version__} demo: {args.entries:,} str->str entries (keys {KEY_LEN[0]}-{KEY_LEN[1]} "
          f"ASCII chars, values {VALUE_LEN[0]}-{VALUE_LEN[1]}, seed {args.seed}), {args.workers} reader processes, "
          f"{args.seconds:g} s of lookups per round")
    load = os.getloadavg()[0]
    print(f"machine: {ncpu} cores, Linux {platform.release()}, Python {platform.python_version()}; "
          f"load average {load:.2f} at the start{' (other work is running: wall-clock rates suffer)' if load > 0.5 else ''}")
    print()

    t = time.perf_counter()
    data = make_data(args.entries, args.seed)
    t_gen = time.perf_counter() - t
    data_bytes = sum(len(k) + len(v) for k, v in data.items())

    name = f"demo.{os.getpid()}"
    tmpdir = tempfile.mkdtemp(prefix="sharedmap-demo.")
    pickle_path = os.path.join(tmpdir, "dict.pickle")
    probe_files = []
    try:
        t = time.perf_counter()
        w = sharedmap.rbtree(data)
        t_build = time.perf_counter() - t
        t = time.perf_counter()
        w.share(name, force=True)
        t_share = time.perf_counter() - t
        snap_size = sharedmap.sharedmap(name).info()["size"]
        del w

        t = time.perf_counter()
        with open(pickle_path, "wb") as f:
            pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        t_pickle = time.perf_counter() - t
        pickle_size = os.path.getsize(pickle_path)

        print("publisher")
        print(f"  generate the data        {fmt_time(t_gen):>10}   {args.entries:,} entries, {fmt_mib(data_bytes)} MiB of keys and values "
              f"({data_bytes / args.entries:.1f} bytes/entry)")
        print(f"  rbtree(data)             {fmt_time(t_build):>10}")
        print(f"  share(name)              {fmt_time(t_share):>10}   snapshot {fmt_mib(snap_size)} MiB in /dev/shm "
              f"({snap_size / args.entries:.1f} bytes/entry)")
        print(f"  pickle.dump(data)        {fmt_time(t_pickle):>10}   {fmt_mib(pickle_size)} MiB file, for the dict workers")
        print()

        # each worker looks up its own random sample of existing keys
        keys = list(data)
        rng = random.Random(args.seed + 1)
        for i in range(args.workers):
            sample = rng.choices(keys, k=args.probes)
            pf = os.path.join(tmpdir, f"probes.{i}")
            with open(pf, "wb") as f:
                pickle.dump((sample, [data[k] for k in sample]), f, protocol=pickle.HIGHEST_PROTOCOL)
            probe_files.append(pf)
        del keys, data
        gc.collect()

        ctx = mp.get_context("spawn")
        rounds = {}
        for kind, source in (("sharedmap", name), ("dict", pickle_path)):
            print(f"round: {kind} ({args.workers} processes) ...", flush=True)
            rounds[kind] = run_round(ctx, kind, source, probe_files, args.seconds)
    finally:
        try:
            sharedmap.rbtree.remove(name)
        except Exception:
            pass
        for p in probe_files + [pickle_path]:
            try:
                os.unlink(p)
            except OSError:
                pass
        try:
            os.rmdir(tmpdir)
        except OSError:
            pass

    print()
    sm, dc = rounds["sharedmap"], rounds["dict"]
    for rs in (sm, dc):
        for r in rs:
            if r["correct"] != r["probes"]:
                raise SystemExit(f"demo: a {r['kind']} worker got {r['probes'] - r['correct']} wrong answers")
    print(f"every worker checked {args.probes:,} answers first: all correct")
    print()
    print(f"{'':8} | {'sharedmap (one shared copy)':^53} | {'dict (one copy per process)':^53}")
    cols = f"{'lookups/s':>11} {'ns/lookup':>9} {'RSS MiB':>9} {'PSS MiB':>9}"
    print(f"{'worker':8} | {'attach':>10} {cols} | {'load':>10} {cols}")

    def row(r: dict) -> str:
        return (f"{fmt_time(r['attach_s']):>10} {fmt_rate(r['lookups'] / r['elapsed_s']):>11} "
                f"{r['cpu_s'] / r['lookups'] * 1e9:>9,.0f} {fmt_mib(r['mem']['Rss']):>9} {fmt_mib(r['mem']['Pss']):>9}")

    for i, (a, b) in enumerate(zip(sm, dc)):
        print(f"{i + 1:<8} | {row(a)} | {row(b)}")

    def total_rate(rs: list[dict]) -> float:
        return sum(r["lookups"] for r in rs) / max(r["elapsed_s"] for r in rs)

    def total(rs: list[dict], field: str) -> float:
        return sum(r["mem"][field] for r in rs)

    def ns(rs: list[dict]) -> float:
        return sum(r["cpu_s"] for r in rs) / sum(r["lookups"] for r in rs) * 1e9

    def all_row(rs: list[dict]) -> str:
        return (f"{'':>10} {fmt_rate(total_rate(rs)):>11} {ns(rs):>9,.0f} "
                f"{fmt_mib(total(rs, 'Rss')):>9} {fmt_mib(total(rs, 'Pss')):>9}")

    print(f"{'all':<8} | {all_row(sm)} | {all_row(dc)}")
    idle = sum(r["idle"]["Pss"] for r in sm + dc) / len(sm + dc)
    print()
    print(f"All the workers of a round look up at once ({args.workers} processes on {ncpu} cores), each going over its")
    print(f"  {args.probes:,} random existing keys again and again (str objects of its own, unpickled: dict reuses their")
    print("  cached hash after the first pass, sharedmap hashes the key on every lookup).")
    print("lookups/s: per wall-clock second; 'all': the lookups of every worker over the round's wall time.")
    print("ns/lookup: CPU time per lookup (loop included), not counting the time a worker waits for a core.")
    print("RSS counts every page a process maps, shared or not; PSS divides each shared page between the")
    print("  processes that map it, so the PSS column adds up to what the workers cost the machine.")
    print(f"An idle worker (interpreter + its {args.probes:,} probe keys, before attaching or loading): "
          f"PSS {fmt_mib(idle)} MiB each.")
    data_pss_sm = total(sm, "Pss") - sum(r["idle"]["Pss"] for r in sm)
    data_pss_dc = total(dc, "Pss") - sum(r["idle"]["Pss"] for r in dc)
    print(f"Above idle, the {args.workers} sharedmap workers cost {fmt_mib(data_pss_sm)} MiB together "
          f"(the snapshot is {fmt_mib(snap_size)} MiB); the {args.workers} dict workers {fmt_mib(data_pss_dc)} MiB.")
    print(f"Lookups: sharedmap {fmt_rate(total_rate(sm))}/s, dict {fmt_rate(total_rate(dc))}/s "
          f"(ratio {total_rate(sm) / total_rate(dc):.2f}); memory: sharedmap {fmt_mib(total(sm, 'Pss'))} MiB, "
          f"dict {fmt_mib(total(dc, 'Pss'))} MiB PSS in all (ratio {total(sm, 'Pss') / total(dc, 'Pss'):.2f}).")
    print(f"demo took {time.perf_counter() - t_demo:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
