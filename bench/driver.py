"""Runs every peer at every size in fresh worker processes and writes the raw results (JSON).

    python driver.py OUT.json      (run.sh calls it; settings come from the environment, see README)

The order per size: make the probe files; then for each key kind and each peer: build + publish,
lookups + iteration, attach, memory of 4 readers, throughput of 2 readers vs 1; then remove it.
Peers that cannot do something get {"na": why}; slow ones are time-boxed and say so ("partial").
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import peers  # noqa: E402
from machine import machine as describe_machine  # noqa: E402


def env_list(name, default):
    v = os.environ.get(name)
    return [int(x) for x in v.split(",") if x.strip()] if v is not None else default


def env_num(name, default):
    v = os.environ.get(name)
    return type(default)(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES = env_list("BENCH_SIZES", [10_000, 100_000] if QUICK else [10_000, 1_000_000, 10_000_000])
BYTES_SIZES = env_list("BENCH_BYTES_SIZES", SIZES)
MEM_SIZES = env_list("BENCH_MEM_SIZES", [100_000] if QUICK else [1_000_000])
PEER_NAMES = [p for p in os.environ.get("BENCH_PEERS", ",".join(peers.PEERS)).split(",") if p]
SEED = env_num("BENCH_SEED", 1)
PROBES = env_num("BENCH_PROBES", 100_000 if QUICK else 200_000)
REPS = env_num("BENCH_REPS", 7)
LOOKUP_BUDGET = env_num("BENCH_LOOKUP_BUDGET", 1.5 if QUICK else 4.0)  # s per hit/miss measurement
BUILD_TIMEBOX = env_num("BENCH_BUILD_TIMEBOX", 30.0 if QUICK else 150.0)  # s per build
# A peer whose single lookup would take longer than this at the next size (extrapolated linearly
# from the previous size) is not run there: its figures stop at the largest size finished.
LOOKUP_SKIP_S = env_num("BENCH_LOOKUP_SKIP", 1.0)
ATTACH_PROCS = env_num("BENCH_ATTACH_PROCS", 7 if QUICK else 15)
ATTACH_BUDGET = env_num("BENCH_ATTACH_BUDGET", 5.0 if QUICK else 20.0)  # s of fresh processes per peer
MEM_LOOKUPS = env_num("BENCH_MEM_LOOKUPS", 200_000)
MEM_BUDGET = env_num("BENCH_MEM_BUDGET", 5.0 if QUICK else 10.0)  # s of lookups per memory reader
TPUT_SECONDS = env_num("BENCH_TPUT_SECONDS", 0.7 if QUICK else 2.0)
WORK = os.environ.get("BENCH_WORKDIR", "/tmp/smbench-work")
PY_MAIN = os.environ.get("BENCH_PYTHON", sys.executable)
PY_ORIG = os.environ.get("BENCH_PYTHON_ORIG", os.path.join(HERE, ".venvs", "orig", "bin", "python"))
WORKER = os.path.join(HERE, "worker.py")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def python_for(peer):
    return PY_ORIG if peer == "sharedmap-1.0.6" else PY_MAIN


def run(peer, args, timeout):
    """Run one worker to completion; its last JSON line, or {"error": ...}."""
    args = dict(args, peer=peer)
    try:
        p = subprocess.run([python_for(peer), WORKER, json.dumps(args)], capture_output=True,
                           text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout:.0f} s (time box)"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-800:]}"}
    out = json.loads(lines[-1])
    if p.returncode and "error" not in out:
        out["error"] = f"exit {p.returncode}: {p.stderr.strip()[-800:]}"
    return out


READER = os.path.join(HERE, "reader.py")


def spawn(peer, args):
    """A tput worker, kept waiting on its stdin."""
    args = dict(args, peer=peer)
    return subprocess.Popen([python_for(peer), WORKER, json.dumps(args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def spawn_reader(peer, base):
    """A lean memory reader (reader.py); peer "none" = the harness without a map."""
    if peer == "none":
        tag, path = "-", "-"
    else:
        p = peers.PEERS[peer](base)
        tag, path = p.tag, getattr(p, "path", "-")
    cmd = [python_for(peer), READER, peer, base["kind"], tag, path, base["hits"], str(MEM_LOOKUPS),
           str(MEM_BUDGET)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def spawn_empty():
    code = "import sys; print('{\"ready\": true}', flush=True); sys.stdin.readline()"
    return subprocess.Popen([PY_MAIN, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)


def rollup(pid):
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    return out


def measure_group(procs, timeout):
    """Wait until every process said ready; read their smaps_rollup; release them."""
    infos = []
    deadline = time.time() + timeout
    for p in procs:
        line = p.stdout.readline() if time.time() < deadline else ""
        infos.append(json.loads(line) if line.startswith("{") else {"error": "no answer"})
    rolls = [rollup(p.pid) if "error" not in i else {} for p, i in zip(procs, infos)]
    for p in procs:
        try:
            p.stdin.write("\n")
            p.stdin.flush()
        except (BrokenPipeError, OSError):
            pass
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    keys = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Rss")
    out = {k: sum(r.get(k, 0) for r in rolls) for k in keys}
    out["each_pss"] = [r.get("Pss", 0) for r in rolls]
    out["readers"] = infos
    if any("error" in i for i in infos):
        out["error"] = "; ".join(i.get("error", "")[:300] for i in infos if "error" in i)
    return out


def memory_test(peer, base, n_readers=4):
    procs = [spawn_reader(peer, base) for _ in range(n_readers)]
    out = measure_group(procs, timeout=MEM_BUDGET * 4 + 600)
    done = [i.get("lookups", 0) for i in out["readers"]]
    if done and min(done) < MEM_LOOKUPS:
        out["partial"] = f"time-boxed: {min(done)}-{max(done)} lookups per reader (target {MEM_LOOKUPS})"
    out["lookups_per_reader"] = done
    del out["readers"]
    return out


def baseline_memory(base, n_readers=4):
    empty = measure_group([spawn_empty() for _ in range(n_readers)], 60)
    harness = measure_group([spawn_reader("none", base) for _ in range(n_readers)], 120)
    one = measure_group([spawn_empty()], 60)
    return {"empty4_pss": empty["Pss"], "empty1_pss": one["Pss"], "harness4_pss": harness["Pss"]}


def tput_test(peer, base, ns_per_lookup):
    count = int(min(4_000_000, max(3, TPUT_SECONDS * 1e9 / max(ns_per_lookup, 1.0))))
    args = dict(base, mode="tput", count=count)

    def group(k):
        procs = [spawn(peer, args) for _ in range(k)]
        for p in procs:
            line = p.stdout.readline()
            if not line.startswith("{"):
                raise RuntimeError("tput reader failed")
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        res = [json.loads(p.stdout.readline()) for p in procs]
        for p in procs:
            p.wait(60)
        span = max(r["end"] for r in res) - min(r["start"] for r in res)
        return sum(r["count"] for r in res) / (span / 1e9)

    load_before = os.getloadavg()[0]
    try:
        ones, twos = [], []
        for _ in range(2):  # interleaved, so a drifting machine load hits both alike
            ones.append(group(1))
            twos.append(group(2))
        one, two = max(ones), max(twos)
    except Exception as e:
        return {"error": str(e)}
    # other work on the machine takes the second core from us: keep the load next to the figure
    return {"one_per_s": one, "two_per_s": two, "ratio": two / one, "count": count,
            "loadavg_1min_before": load_before}


def attach_test(peer, base, key):
    args = dict(base, mode="attach", key=key, repeat=200, budget=1.0)
    firsts, warms, imports, errors = [], [], [], []
    stop = time.time() + ATTACH_BUDGET
    for i in range(ATTACH_PROCS):
        r = run(peer, args, timeout=ATTACH_BUDGET + 300)
        if "error" in r:
            errors.append(r["error"])
            break
        firsts.append(r["first_us"])
        imports.append(r["import_us"])
        if r.get("warm_us") is not None:
            warms.append(r["warm_us"])
        if time.time() > stop:  # at least one fresh process, however slow
            break
    if not firsts:
        return {"error": errors[0] if errors else "no result"}
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    out = {"first_us": med(firsts), "first_all": firsts, "warm_us": med(warms) if warms else None,
           "import_us": med(imports), "procs": len(firsts)}
    if len(firsts) < ATTACH_PROCS:
        out["partial"] = f"time-boxed: {len(firsts)} fresh processes (target {ATTACH_PROCS})"
    return out


def first_hit_key(path):
    import dataset

    return dataset.Probes.load(path).fresh("str", 1)[0] if os.path.exists(path) else None


def peer_available():
    """Which peers import in their interpreter (and why not, for those that don't)."""
    avail = {}
    for name in PEER_NAMES:
        cls = peers.PEERS[name]
        py = python_for(name)
        if not os.path.exists(py):
            avail[name] = f"no interpreter at {py}"
            continue
        mods = ";".join(f"import {m}" for m in cls.modules) or "pass"
        p = subprocess.run([py, "-c", mods], capture_output=True, text=True)
        avail[name] = True if p.returncode == 0 else "does not import: " + p.stderr.strip().splitlines()[-1][:200]
    return avail


def versions():
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for d in sys.argv[1:]:\n"
            "    try: out[d] = m.version(d)\n"
            "    except Exception: pass\n"
            "print(json.dumps(out))")
    dists = ["sharedmap", "lmdb", "marisa-trie", "shared-memory-dict", "UltraDict", "sqlitedict",
             "matplotlib", "psutil"]
    v = json.loads(subprocess.run([PY_MAIN, "-c", code, *dists], capture_output=True, text=True).stdout or "{}")
    if os.path.exists(PY_ORIG):
        o = json.loads(subprocess.run([PY_ORIG, "-c", code, "sharedmap"], capture_output=True,
                                      text=True).stdout or "{}")
        if "sharedmap" in o:
            v["sharedmap-1.0.6"] = o["sharedmap"]
    return v


def machine():
    return dict(describe_machine(), loadavg_at_start=os.getloadavg())


def main():
    out_path = sys.argv[1]
    t_start = time.time()
    os.makedirs(WORK, exist_ok=True)
    avail = peer_available()
    for name, ok in avail.items():
        if ok is not True:
            log(f"peer {name}: {ok}")
    res = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": QUICK,
                    "machine": machine(), "versions": versions(),
                    "config": {"sizes": SIZES, "bytes_sizes": BYTES_SIZES, "mem_sizes": MEM_SIZES,
                               "seed": SEED, "probes": PROBES, "reps": REPS,
                               "lookup_budget_s": LOOKUP_BUDGET, "build_timebox_s": BUILD_TIMEBOX,
                               "attach_procs": ATTACH_PROCS, "mem_lookups": MEM_LOOKUPS,
                               "tput_seconds": TPUT_SECONDS},
                    "peers": {n: {"available": avail[n], "shared": peers.PEERS[n].shared,
                                  "ordered": peers.PEERS[n].ordered, "kinds": list(peers.PEERS[n].kinds),
                                  "note": peers.PEERS[n].note} for n in PEER_NAMES}},
           "runs": {}, "baseline_memory": {}}
    last_build = {}  # (peer, kind) -> (n, seconds)
    last_hit = {}  # (peer, kind) -> (n, ns per hit lookup)

    def save():
        res["meta"]["elapsed_s"] = time.time() - t_start
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, out_path)

    for n in SIZES:
        kinds = ["str"] + (["bytes"] if n in BYTES_SIZES else [])
        pdir = os.path.join(WORK, str(n))
        os.makedirs(pdir, exist_ok=True)
        t0 = time.time()
        pr = run("dict", {"mode": "probes", "n": n, "seed": SEED, "kinds": kinds, "dir": pdir,
                          "count": max(PROBES, MEM_LOOKUPS)}, timeout=3600)
        if "error" in pr:
            log(f"probes for {n}: {pr['error']}")
            sys.exit(1)
        log(f"== N={n:,}: probe files in {time.time() - t0:.1f} s "
            f"({pr['data_bytes_per_entry']:.1f} data bytes/entry)")
        res["runs"][str(n)] = {"data_bytes_per_entry": pr["data_bytes_per_entry"]}
        for kind in kinds:
            base = {"n": n, "seed": SEED, "kind": kind, "hits": os.path.join(pdir, f"hits-{kind}.bin"),
                    "misses": os.path.join(pdir, f"misses-{kind}.bin")}
            runs = res["runs"][str(n)][kind] = {}
            for name in PEER_NAMES:
                cls = peers.PEERS[name]
                r = runs[name] = {}
                tag = f"[{n:,} {kind}] {name}"
                if avail[name] is not True:
                    r["na"] = avail[name]
                    continue
                if kind not in cls.kinds:
                    r["na"] = "str keys and values only"
                    continue
                t_peer = time.time()
                prev = last_hit.get((name, kind))
                if prev and prev[1] * n / prev[0] > LOOKUP_SKIP_S * 1e9:
                    r["na"] = (f"not run at this size: one lookup took {fmt_ns(prev[1])} at {prev[0]:,} "
                               f"entries (about {fmt_ns(prev[1] * n / prev[0])} each here, over the "
                               f"{LOOKUP_SKIP_S:g} s time box); its figures stop at {prev[0]:,}")
                    log(f"{tag}: skipped ({r['na']})")
                    continue
                # ---- build + publish
                if name != "dict":
                    prev = last_build.get((name, kind))
                    est = prev[1] * n / prev[0] * 1.15 if prev else 0.0
                    if est > BUILD_TIMEBOX and not cls.per_item_build:
                        r["na"] = (f"not run at this size: its build is estimated at {est:.0f} s from "
                                   f"{prev[0]:,} entries, over the {BUILD_TIMEBOX:.0f} s time box")
                        log(f"{tag}: skipped ({r['na']})")
                        continue
                    b = run(name, dict(base, mode="build", timebox=BUILD_TIMEBOX),
                            timeout=BUILD_TIMEBOX * 3 + 600)
                    r["build"] = b
                    if "error" in b or "partial" in b:
                        msg = b.get("error") or b.get("partial")
                        log(f"{tag}: build: {msg}")
                        if "partial" in b:
                            r["na"] = "not measured at this size beyond the time-boxed build"
                        run(name, dict(base, mode="remove"), timeout=300)
                        continue
                    last_build[(name, kind)] = (n, b["build_s"])
                    if b.get("check") != "ok":
                        log(f"{tag}: WRONG RESULTS: {b.get('check')}")
                # ---- lookups + iteration
                lk = run(name, dict(base, mode="lookup", count=PROBES, reps=REPS, budget=LOOKUP_BUDGET,
                                    iterate=(kind == "str")), timeout=LOOKUP_BUDGET * 8 + 900)
                r["lookup"] = lk
                if "hit" in lk:
                    last_hit[(name, kind)] = (n, lk["hit"]["ns"])
                if "error" in lk:
                    log(f"{tag}: lookup: {lk['error'][:300]}")
                # ---- the multi-process dimensions: str maps only
                if kind == "str" and name != "dict" and "error" not in lk:
                    r["attach"] = attach_test(name, base, first_hit_key(base["hits"]))
                    if n in MEM_SIZES:
                        r["memory"] = memory_test(name, base)
                        r["tput"] = tput_test(name, base, lk["hit"]["ns"])
                if name != "dict":
                    run(name, dict(base, mode="remove"), timeout=300)
                r["wall_s"] = time.time() - t_peer
                log(summary(tag, r))
                save()
            if kind == "str" and n in MEM_SIZES:
                res["baseline_memory"][str(n)] = baseline_memory(base)
                save()
    shutil.rmtree(WORK, ignore_errors=True)
    save()
    log(f"python benchmark done in {time.time() - t_start:.0f} s")


def fmt_ns(ns):
    if ns >= 1e8:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    return f"{ns / 1e3:.0f} µs" if ns >= 1e4 else f"{ns:.0f} ns"


def summary(tag, r):
    parts = []
    b = r.get("build", {})
    if "build_s" in b:
        parts.append(f"build {b['build_s']:.2f}s {b.get('bytes_per_entry', 0):.0f}B/e")
    lk = r.get("lookup", {})
    if "hit" in lk:
        parts.append(f"hit {lk['hit']['ns']:.0f}ns miss {lk['miss']['ns']:.0f}ns")
    if "iter" in lk and "items_per_s" in lk["iter"]:
        parts.append(f"iter {lk['iter']['items_per_s'] / 1e6:.1f}M/s")
    a = r.get("attach", {})
    if "first_us" in a:
        parts.append(f"attach {a['first_us']:.0f}us")
    m = r.get("memory", {})
    if "Pss" in m:
        parts.append(f"4 readers {m['Pss'] / 2**20:.0f}MiB")
    t = r.get("tput", {})
    if "ratio" in t:
        parts.append(f"2proc x{t['ratio']:.2f}")
    return f"{tag}: " + ", ".join(parts) + f" ({r.get('wall_s', 0):.0f}s)"


if __name__ == "__main__":
    main()
