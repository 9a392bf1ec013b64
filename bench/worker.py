"""One measurement in a fresh process: `python worker.py '<json args>'`, answering in JSON lines.

driver.py starts this (with the right virtualenv's Python for the peer) once per peer, size and
dimension, so no state leaks from one peer into another.  Modes:
  probes  make the dataset and write the probe files (hit keys, miss keys) for a size
  build   make the dataset, build + publish the peer's structure (timed), check a sample of it
  lookup  attach, then time hit and miss lookups and a full iteration
  attach  time open-by-name + first lookup in this fresh process, then repeated attaches
  tput    attach, wait for "go", run a fixed number of lookups, report start/end times
(reader.py is the lean process of the memory test.)  Stdlib only (plus the peer's own module): it also runs in the sharedmap-1.0.6 venv.
"""
import gc
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import dataset  # noqa: E402
import peers  # noqa: E402

clock = time.perf_counter_ns


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def compile_loop(body, names):
    """A function running `body` once per key of its argument, timed; names bound as locals."""
    params = "".join(f", {n}={n}" for n in names)
    src = (f"def _loop(probes, _clock=_clock{params}):\n"
           f"    t0 = _clock()\n"
           f"    for k in probes:\n"
           + "".join(f"        {line}\n" for line in body.split("\n"))
           + "    return _clock() - t0\n")
    g = dict(names)
    g["_clock"] = clock
    exec(src, g)
    return g["_loop"]


def compile_once(body, names):
    params = "".join(f", {n}={n}" for n in names)
    src = (f"def _once(k{params}):\n"
           + "".join(f"    {line}\n" for line in body.split("\n"))
           + "    return locals().get('v')\n")
    g = dict(names)
    exec(src, g)
    return g["_once"]


def compile_once_get(body):
    """body as a function of (k, get) returning the value (no names bound: compile before open)."""
    if not body.startswith("v = "):
        body = "v = " + body
    src = "def _once(k, get):\n" + "".join(f"    {line}\n" for line in body.split("\n")) + "    return v\n"
    g = {}
    exec(src, g)
    return g["_once"]


def compile_check(body, names):
    """Like compile_once but returns the looked-up value (for correctness checks)."""
    first = body.split("\n")[0]
    if not first.startswith("v = "):
        body = "v = " + body
    return compile_once(body, names)


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def time_lookups(loop, empty, probes, kind, target, reps, budget_s):
    """ns per lookup: median over reps of (loop - empty loop) / count, each rep on fresh key
    objects.  Slow peers are time-boxed: fewer keys per rep and fewer reps (reported)."""
    # calibrate on a few keys first (also warms the code path)
    count = 1
    while True:
        ks = probes.fresh(kind, count)
        t = loop(ks)
        if t > 50e6 or count >= target:
            break
        count = min(target, count * 8)
    per = t / count
    if per * target * reps <= 3 * budget_s * 1e9:  # the full measurement: not a slow peer
        count, nreps = target, reps
    elif t >= budget_s * 1e9 / 2:  # very slow: the calibration run is all the time box allows
        return {"ns": per, "ns_min": per, "count": count, "reps": 1,
                "partial": f"time-boxed: {count} lookup(s), 1 rep (target {target} x {reps})"}
    else:  # time box: fewer keys per rep, then fewer reps
        count = max(1, min(target, int(budget_s / reps * 1e9 / per)))
        nreps = max(1, min(reps, int(budget_s * 1e9 / (per * count))))
    results = []
    for _ in range(nreps):
        ks = probes.fresh(kind, count)
        gc.disable()
        try:
            e = empty(ks)
            t = loop(ks)
        finally:
            gc.enable()
        results.append((t - e) / count)
        del ks
    out = {"ns": median(results), "ns_min": min(results), "count": count, "reps": nreps}
    if count < target:
        out["partial"] = f"time-boxed: {count} lookups x {nreps} reps (target {target} x {reps})"
    return out


def time_iteration(peer, h, n, budget_s):
    """items/s of one full pass (the median of up to 3 passes), time-boxed."""
    import itertools

    rates, partial = [], None
    for _ in range(3):
        it, body = peer.items(h)
        src = ("def _walk(it, stop, _clock=_clock, islice=islice):\n"
               "    done = 0\n"
               "    t0 = _clock()\n"
               "    while True:\n"
               "        c = 0\n"
               "        for k, v in islice(it, 65536):\n"
               f"            {body}\n"
               "            c += 1\n"
               "        done += c\n"
               "        if c < 65536 or _clock() > stop: break\n"
               "    return done, _clock() - t0\n")
        g = {"_clock": clock, "islice": itertools.islice}
        exec(src, g)
        gc.disable()
        try:
            done, t = g["_walk"](iter(it), clock() + int(budget_s * 1e9))
        finally:
            gc.enable()
        rates.append(done / (t / 1e9) if t else 0.0)
        if done < n:
            partial = f"time-boxed: {done} of {n} items in {t / 1e9:.1f} s"
            break
        if t > budget_s * 1e9 / 3:
            break
    out = {"items_per_s": median(rates), "passes": len(rates)}
    if partial:
        out["partial"] = partial
    return out


def mode_probes(a):
    t0 = time.perf_counter()
    res = {}
    for kind in a["kinds"]:
        d = dataset.make(a["n"], a["seed"], kind)
        res["data_bytes_per_entry"] = dataset.data_bytes(d) / len(d)
        dataset.hit_probes(d, a["count"], a["seed"]).save(os.path.join(a["dir"], f"hits-{kind}.bin"))
        dataset.miss_probes(d, a["count"], a["seed"]).save(os.path.join(a["dir"], f"misses-{kind}.bin"))
        del d
    res["s"] = time.perf_counter() - t0
    emit(res)


def mode_build(a):
    peer = peers.PEERS[a["peer"]](a)
    t0 = time.perf_counter()
    d = dataset.make(a["n"], a["seed"], a["kind"])
    gen_s = time.perf_counter() - t0
    peer.remove()
    deadline = time.perf_counter() + a["timebox"] if a.get("timebox") and peer.per_item_build else None
    gc.collect()
    gc.disable()  # as a user building a big table would; keeps GC passes out of the timing
    try:
        r = peer.build(d, deadline)
    finally:
        gc.enable()
    r["gen_s"] = gen_s
    if "partial_done" in r:
        done = r["partial_done"]
        r["partial"] = (f"time-boxed: {done} of {a['n']} inserts in {r['fill_s']:.0f} s; "
                        f"build time extrapolated linearly, nothing published")
        r["build_s"] = r["fill_s"] * a["n"] / max(1, done)
        emit(r)
        return
    r["build_s"] = r["fill_s"] + r["publish_s"]
    r["bytes_per_entry"] = r["size"] / a["n"]
    r["data_bytes_per_entry"] = dataset.data_bytes(d) / a["n"]
    # Check a sample of what was published, from a fresh attach in this process.
    h = peer.open()
    body, names = peer.lookup(h)
    get = compile_check(body, names)
    import random

    rng = random.Random(7)
    keys = list(d)
    bad = []
    sample = rng.sample(keys, min(2000, len(keys)))
    stop = time.perf_counter() + 3.0  # a slow peer checks fewer keys
    for i, k in enumerate(sample):
        if i >= 3 and time.perf_counter() > stop:
            break
        want = d[k]
        got = get(k[:1] + k[1:])  # a fresh object
        if got != want:
            bad.append((repr(k), repr(got)[:60], repr(want)[:60]))
    miss = dataset.miss_probes(d, 200, a["seed"] + 1).fresh(a["kind"])
    stop = time.perf_counter() + 1.0
    for i, k in enumerate(miss):
        if i >= 1 and time.perf_counter() > stop:
            break
        got = get(k)
        if got is not None:
            bad.append((repr(k), repr(got)[:60], "None"))
    if peer.ordered and a["n"] <= 100_000:
        it, _ = peer.items(h)
        ks = [k for k, _ in it]
        if ks and isinstance(ks[0], bytes) and a["kind"] == "str":
            ks = [k.decode() for k in ks]
        if ks != sorted(keys):
            bad.append(("iteration", f"{len(ks)} keys", "not the sorted keys"))
    peer.close(h)
    r["check"] = "ok" if not bad else {"errors": len(bad), "examples": bad[:5]}
    emit(r)


def mode_lookup(a):
    peer = peers.PEERS[a["peer"]](a)
    t0 = time.perf_counter()
    h = peer.open()
    res = {"open_s": time.perf_counter() - t0}
    hits = dataset.Probes.load(a["hits"])
    misses = dataset.Probes.load(a["misses"])
    kind = a["kind"]
    empty = compile_loop("pass", {})
    body, names = peer.lookup(h)
    loop = compile_loop(body, names)
    budget = a["budget"]
    res["hit"] = time_lookups(loop, empty, hits, kind, a["count"], a["reps"], budget)
    res["miss"] = time_lookups(loop, empty, misses, kind, a["count"], a["reps"], budget)
    if hasattr(peer, "lookup_getitem"):
        body, names = peer.lookup_getitem(h)
        res["hit_getitem"] = time_lookups(compile_loop(body, names), empty, hits, kind, a["count"],
                                          a["reps"], budget)
    if a.get("iterate"):
        try:
            res["iter"] = time_iteration(peer, h, a["n"], budget)
            res["iter"]["ordered"] = peer.ordered
        except peers.NA as e:
            res["iter"] = {"na": str(e)}
    peer.close(h)
    emit(res)


def mode_attach(a):
    """In this fresh process: import the peer's modules (timed apart) and compile the lookup, then
    time open by name + first lookup (the attach a new worker pays); then `repeat` more
    open + lookup + close cycles (warm)."""
    peer = peers.PEERS[a["peer"]](a)
    k0 = a["key"]
    key = k0 if a["kind"] == "str" else k0.encode()
    t0 = clock()
    for mod in peer.modules:
        __import__(mod)
    t1 = clock()
    once = compile_once_get(peer.body())
    getter, popen = peer.getter, peer.open
    gc.disable()
    t2 = clock()
    h = popen()
    v = once(key, getter(h))
    t3 = clock()
    gc.enable()
    res = {"import_us": (t1 - t0) / 1e3, "first_us": (t3 - t2) / 1e3, "ok": v is not None}
    peer.close(h)
    del h
    warm = []
    stop = time.perf_counter() + a["budget"]
    for _ in range(a["repeat"] if res["first_us"] < a["budget"] * 1e6 else 0):
        k = key[:1] + key[1:]
        t2 = clock()
        h = popen()
        once(k, getter(h))
        t3 = clock()
        warm.append((t3 - t2) / 1e3)
        peer.close(h)
        del h
        if time.perf_counter() > stop:
            break
    res["warm_us"] = median(warm) if warm else None
    res["warm_n"] = len(warm)
    emit(res)


def mode_tput(a):
    peer = peers.PEERS[a["peer"]](a)
    h = peer.open()
    body, names = peer.lookup(h)
    loop = compile_loop(body, names)
    probes = dataset.Probes.load(a["hits"])
    loop(probes.fresh(a["kind"], min(1000, a["count"])))
    ks = []
    while len(ks) < a["count"]:  # fresh objects throughout, cycling through the probe file
        ks.extend(probes.fresh(a["kind"], min(len(probes), a["count"] - len(ks))))
    del probes
    emit({"ready": True})
    sys.stdin.readline()
    gc.disable()
    start = clock()
    loop(ks)
    end = clock()
    emit({"start": start, "end": end, "count": len(ks)})


def mode_remove(a):
    peers.PEERS[a["peer"]](a).remove()
    emit({"removed": True})


MODES = {"remove": mode_remove, "probes": mode_probes, "build": mode_build, "lookup": mode_lookup, "attach": mode_attach,
         "tput": mode_tput}

if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    try:
        MODES[args["mode"]](args)
    except peers.NA as e:
        emit({"na": str(e)})
    except Exception as e:  # reported as an error of this peer, not a crash of the run
        import traceback

        emit({"error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()[-2000:]})
        sys.exit(1)
