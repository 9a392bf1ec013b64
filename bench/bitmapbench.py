"""The shared-bitmap part of the benchmark (issue 15), in Python: per-call cost, memory per bit,
and lost updates between two processes, for four ways to keep a bitset.

    python bitmapbench.py run OUT.json      the driver (run.sh runs it with the main virtualenv)
    python bitmapbench.py worker '<json>'   one measurement in a fresh process (the driver runs it)
    python bitmapbench.py cleanup           remove what a killed run left (run.sh's cleanup trap)

Variants, each in its own fresh worker process (sharedmap 1.0.6 with its own virtualenv):
  sharedmap         this tree's sharedmap.sharedbitmap: b.set(i, True), b.get(i), b.test_and_set(i)
  sharedmap-1.0.6   the original's sharedmap.sharedbitmap: set(i, True), get(i) (no test_and_set);
                    8 bits in each 64-bit word of a SysV shared memory segment, plain `|=` (not
                    atomic)
  SharedMemory      multiprocessing.shared_memory in pure Python: `buf[i >> 3] |= 1 << (i & 7)`,
                    `buf[i >> 3] >> (i & 7) & 1`, and a read-modify-write test-and-set: NOT atomic
                    across processes (a concurrent update of the same byte can be lost)
  bytearray         the same statements on a plain in-process bytearray: the floor (not shared)

Per call: the statement runs once per index in a compiled loop, methods bound beforehand, the
empty loop over the same list subtracted; indices are fresh random lists each repetition (from
the seed, the same lists for every variant), even indices for the bits that get set and odd
ones, never set, for `get` of a clear bit; `get` reads the bits just set, shuffled.  ns per call
is the median over every repetition of every round (rounds alternate the variants in fresh
processes, so a drifting machine load hits all alike).  Stdlib only besides the variant's own
module: this file also runs in the sharedmap-1.0.6 virtualenv.
"""
import array
import ctypes
import gc
import json
import os
import platform
import random
import subprocess
import sys
import time

from machine import machine  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHM_DIR = "/dev/shm"
OURS, ORIG, SHM, BYTEARRAY = "sharedmap", "sharedmap-1.0.6", "SharedMemory", "bytearray"
VARIANTS = (OURS, ORIG, SHM, BYTEARRAY)
OPS = ("set", "get", "get_clear", "test_and_set")
PREFIX = "smbench-bitmap-"  # every name this file creates starts with it

clock = time.perf_counter_ns


def env_list(name, default):
    v = os.environ.get(name)
    return [int(x) for x in v.split(",") if x.strip()] if v else default


def env_num(name, default):
    v = os.environ.get(name)
    return type(default)(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
BITS = env_list("BENCH_BITMAP_BITS", [1 << 16, 1 << 24])
PROBES = env_num("BENCH_BITMAP_PROBES", 100_000 if QUICK else 200_000)
REPS = env_num("BENCH_BITMAP_REPS", 7)
ROUNDS = env_num("BENCH_BITMAP_ROUNDS", 1 if QUICK else 3)
MEM_BITS = env_num("BENCH_BITMAP_MEM_BITS", 10**8)
RACE_SECONDS = env_num("BENCH_BITMAP_RACE_SECONDS", 0.5 if QUICK else 1.0)
SEED = env_num("BENCH_SEED", 1)
PY_MAIN = os.environ.get("BENCH_PYTHON", sys.executable)
PY_ORIG = os.environ.get("BENCH_PYTHON_ORIG", os.path.join(HERE, ".venvs", "orig", "bin", "python"))


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# ------------------------------------------------------------------ names and SysV keys

def name_for(variant, what):
    return f"{PREFIX}{variant.replace('.', '_')}-{what}"


def orig_key(name):
    """The SysV key sharedmap 1.0.6 derives from a name (native/pytree.h: strtokey, BKDR hash
    of "lyramilk.sharedmemory." + name + the int SHARED_TYPE_BITMAP, which is 1, as for maps)."""
    r = 0
    for c in b"lyramilk.sharedmemory." + name.encode() + (1).to_bytes(4, sys.byteorder):
        r = (r * 131 + (c if c < 128 else c - 256)) & 0xFFFFFFFF
    return r - (1 << 32) if r >= 1 << 31 else r  # key_t is a signed int


def sysv_segment(key):
    """The row of /proc/sysvipc/shm for key (size and rss in bytes), or None."""
    with open("/proc/sysvipc/shm") as f:
        head = f.readline().split()
        for line in f:
            row = dict(zip(head, line.split()))
            if int(row["key"]) == key:
                return {k: int(v) for k, v in row.items() if v.lstrip("-").isdigit()}
    return None


def sysv_remove(key):
    """shmctl(IPC_RMID) on the segment of key.  1.0.6 has no sharedbitmap.remove, and its
    rbtree.remove (same key) skips a segment whose id is 0 (`if (shmid)`), so this calls libc."""
    libc = ctypes.CDLL(None, use_errno=True)
    shmid = libc.shmget(ctypes.c_int(key), ctypes.c_size_t(0), ctypes.c_int(0))
    if shmid < 0:
        return False
    return libc.shmctl(shmid, 0, None) == 0  # IPC_RMID = 0


def all_names():
    names = [name_for(v, f"calls-{n}") for v in VARIANTS for n in BITS]
    names += [name_for(v, w) for v in VARIANTS for w in ("mem", "race")]
    return names


def cleanup():
    """Remove every bitmap, segment and file this benchmark may have left, whoever ran it."""
    for name in all_names():
        key = orig_key(name)
        if sysv_segment(key) is not None:
            sysv_remove(key)
    for f in os.listdir(SHM_DIR):
        if f.startswith((PREFIX, "sharedbitmap." + PREFIX)) or (
                f.startswith(".sharedmap-tmp.") and PREFIX in f):
            try:
                os.unlink(os.path.join(SHM_DIR, f))
            except OSError:
                pass


# ------------------------------------------------------------------ one variant

def _unregister(shm):
    # CPython < 3.13 registers an attached SharedMemory with the resource tracker, which unlinks
    # it when this process exits (gh-82300): the attaching process must unregister it.
    try:
        from multiprocessing import resource_tracker

        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:
        pass


class Handle:
    """One variant's bitset of `bits` bits, created (or attached), and the statements that use it."""

    def __init__(self, variant, name, bits, create=True):
        self.variant, self.name, self.bits = variant, name, bits
        self.shm = None
        if variant == OURS:
            import sharedmap

            b = (sharedmap.sharedbitmap.create(name, bits, force=True) if create
                 else sharedmap.sharedbitmap(name))
            self.obj = b
            self.names = {"set": b.set, "get": b.get, "tas": b.test_and_set}
        elif variant == ORIG:
            import sharedmap

            if create:  # its own force=1 cannot remove a segment whose id is 0 (see sysv_remove)
                sysv_remove(orig_key(name))
            b = sharedmap.sharedbitmap.create(name, bits, 1) if create else sharedmap.sharedbitmap(name)
            self.obj = b
            self.names = {"set": b.set, "get": b.get}
        elif variant == SHM:
            from multiprocessing import shared_memory

            if create:
                try:  # a killed run's leftover
                    old = shared_memory.SharedMemory(name)
                    old.close()
                    old.unlink()
                except FileNotFoundError:
                    pass
                self.shm = shared_memory.SharedMemory(name, create=True, size=(bits + 7) // 8)
            else:
                self.shm = shared_memory.SharedMemory(name)
                _unregister(self.shm)
            self.obj = self.shm
            self.names = {"buf": self.shm.buf}
        elif variant == BYTEARRAY:
            self.obj = bytearray((bits + 7) // 8)
            self.names = {"buf": self.obj}
        else:
            raise ValueError(variant)

    def bodies(self):
        """The statement per op (run once per index i), or None where the variant has none."""
        if self.variant in (OURS, ORIG):
            return {"set": "set(i, True)", "get": "get(i)", "get_clear": "get(i)",
                    "test_and_set": "tas(i)" if self.variant == OURS else None}
        tas = "j = i >> 3\nm = 1 << (i & 7)\nv = buf[j]\nbuf[j] = v | m\nv & m"
        return {"set": "buf[i >> 3] |= 1 << (i & 7)", "get": "buf[i >> 3] >> (i & 7) & 1",
                "get_clear": "buf[i >> 3] >> (i & 7) & 1", "test_and_set": tas}

    def getter(self):
        """A function i -> bit, for the checks."""
        if self.variant in (OURS, ORIG):
            g = self.obj.get
            return lambda i: bool(g(i))
        buf = self.names["buf"]
        return lambda i: bool(buf[i >> 3] >> (i & 7) & 1)

    def close(self, remove=True):
        self.names.clear()
        if self.variant == OURS:
            import sharedmap

            self.obj.close()
            if remove:
                sharedmap.sharedbitmap.remove(self.name)
        elif self.variant == ORIG:
            del self.obj  # detaches (shmdt)
            if remove:
                sysv_remove(orig_key(self.name))
        elif self.variant == SHM:
            self.shm.close()
            if remove:
                self.shm.unlink()
        self.obj = None


def compile_loop(body, names):
    """A function running `body` once per index i of its argument; returns the ns it took."""
    params = "".join(f", {n}={n}" for n in names)
    src = (f"def _loop(indices, _clock=_clock{params}):\n"
           f"    t0 = _clock()\n"
           f"    for i in indices:\n"
           + "".join(f"        {line}\n" for line in body.split("\n"))
           + "    return _clock() - t0\n")
    g = dict(names)
    g["_clock"] = clock
    exec(src, g)
    return g["_loop"]


def random_indices(rng, count, bits, parity):
    """count random indices below bits with the given parity (0: even, 1: odd), as an array."""
    half = bits // 2
    raw = array.array("Q", rng.randbytes(8 * count))
    return array.array("Q", (((x % half) << 1) | parity for x in raw))


def mode_calls(a):
    variant, bits, probes, reps = a["variant"], a["bits"], a["probes"], a["reps"]
    rng = random.Random(a["seed"] * 1000003 + bits)
    h = Handle(variant, name_for(variant, f"calls-{bits}"), bits)
    try:
        bodies = h.bodies()
        loops = {op: compile_loop(body, h.names) for op, body in bodies.items() if body}
        empty = compile_loop("pass", {})
        samples = {op: [] for op in loops}
        empties = []
        last = None
        for rep in range(reps + 1):  # rep 0 warms up (first touch of the pages, code paths)
            seta = random_indices(rng, probes, bits, 0)
            geta = array.array("Q", seta)
            rng.shuffle(geta)
            # lists of int objects made in list order: a list shuffled after the fact would
            # visit its objects in random memory order (cache misses that the empty loop's
            # subtraction does not cancel)
            lists = {"set": list(seta), "get": list(geta),
                     "get_clear": list(random_indices(rng, probes, bits, 1)),
                     "test_and_set": list(random_indices(rng, probes, bits, 0))}
            for op in OPS:
                if op not in loops:
                    continue
                ks = lists[op]
                gc.disable()
                try:
                    e = empty(ks)
                    t = loops[op](ks)
                finally:
                    gc.enable()
                if rep:
                    samples[op].append((t - e) / probes)
                    empties.append(e / probes)
            last = lists
        # checks: the bits set read set, the odd ones clear; a fresh odd bit is claimed once
        get = h.getter()
        bad = sum(1 for i in last["get"][:5000] if not get(i)) + sum(
            1 for i in last["get_clear"][:5000] if get(i))
        check = "ok" if bad == 0 else f"{bad} wrong bits"
        if "tas" in h.names:
            o = last["get_clear"][0]
            if (h.names["tas"](o), h.names["tas"](o)) != (False, True):
                check = "test_and_set did not claim a clear bit exactly once"
        out = {"bits": bits, "probes": probes, "reps": reps, "check": check, "ops": {}}
        for op in OPS:
            if op in samples:
                out["ops"][op] = {"ns": median(samples[op]), "ns_min": min(samples[op]),
                                  "samples": [round(x, 2) for x in samples[op]]}
            else:
                out["ops"][op] = {"na": f"{variant} has no {op}"}
        out["empty_loop_ns"] = median(empties)
        emit(out)
    finally:
        h.close()


def mode_memory(a):
    """Create a bitset of N bits, set one bit on every 1024 (every page touched), measure."""
    variant, n = a["variant"], a["bits"]
    name = name_for(variant, "mem")
    h = Handle(variant, name, n)
    try:
        if variant in (OURS, ORIG):
            s = h.obj.set
            for i in range(0, n, 1024):
                s(i, True)
            s(n - 1, True)
        else:
            buf = h.names["buf"]
            for i in range(0, n, 1024):
                buf[i >> 3] |= 1 << (i & 7)
        out = {"bits": n}
        if variant == OURS:
            st = os.stat(os.path.join(SHM_DIR, "sharedbitmap." + name))
            out.update(what=f"file {SHM_DIR}/sharedbitmap.{name}", size=st.st_size,
                       resident=st.st_blocks * 512, reported_size=h.obj.size())
        elif variant == ORIG:
            seg = sysv_segment(orig_key(name))
            out.update(what="SysV segment (/proc/sysvipc/shm)", size=seg["size"], resident=seg["rss"],
                       reported_size=h.obj.size())
        elif variant == SHM:
            st = os.fstat(h.shm._fd)
            out.update(what=f"file {SHM_DIR}/{name}", size=st.st_size, resident=st.st_blocks * 512)
        else:
            out.update(what="in-process bytearray (sys.getsizeof)", size=sys.getsizeof(h.obj),
                       resident=sys.getsizeof(h.obj))
        out["bytes_per_bit"] = out["size"] / n
        out["resident_per_bit"] = out["resident"] / n
        emit(out)
    finally:
        h.close()


def mode_race(a):
    """Lost updates: this process (role p) sets, checks and clears its own bit p of the first
    word / byte while the other role does the same with bit 1 - p.  Each time its own bit reads
    clear right after it set it, the other process's write-back of a stale word erased it."""
    variant, p = a["variant"], a["role"]
    name = name_for(variant, "race")
    h = Handle(variant, name, 64, create=(p == 0))
    try:
        if variant in (OURS, ORIG):
            body = "set(mine, True)\nif not get(mine): lost += 1\nset(mine, False)"
        else:
            body = "buf[0] |= m\nif not buf[0] & m: lost += 1\nbuf[0] &= ~m & 255"
        names = dict(h.names, mine=p, m=1 << p)
        params = "".join(f", {k}={k}" for k in names)
        src = (f"def _race(stop, _clock=_clock{params}):\n"
               "    lost = 0\n    n = 0\n"
               "    while _clock() < stop:\n"
               "        for _ in range(1024):\n"
               + "".join(f"            {line}\n" for line in body.split("\n"))
               + "        n += 1024\n"
               "    return n, lost\n")
        g = dict(names, _clock=clock)
        exec(src, g)
        emit({"ready": True})
        sys.stdin.readline()  # "go"
        t0 = clock()
        n, lost = g["_race"](t0 + int(a["seconds"] * 1e9))
        t1 = clock()
        emit({"iterations": n, "lost": lost, "start": t0, "end": t1})
        if p == 0:
            sys.stdin.readline()  # the other one is done: remove it
    finally:
        h.close(remove=(p == 0))


# ------------------------------------------------------------------ the driver

def python_for(variant):
    return PY_ORIG if variant == ORIG else PY_MAIN


def run_worker(variant, args, timeout=900):
    args = dict(args, variant=variant)
    try:
        p = subprocess.run([python_for(variant), os.path.abspath(__file__), "worker", json.dumps(args)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-600:]}"}
    return json.loads(lines[-1])


def race(variant, seconds):
    """Two processes on one word; the lost updates each saw and how long they overlapped."""
    cmd = [python_for(variant), os.path.abspath(__file__), "worker"]
    procs = []
    try:
        for role in (0, 1):  # role 0 creates, then role 1 attaches
            pr = subprocess.Popen(cmd + [json.dumps({"mode": "race", "variant": variant, "role": role,
                                                     "seconds": seconds})],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
            procs.append(pr)
            if not pr.stdout.readline().startswith("{"):
                raise RuntimeError(pr.stderr.read()[-400:])
        for pr in procs:
            pr.stdin.write("go\n")
            pr.stdin.flush()
        res = [json.loads(pr.stdout.readline()) for pr in procs]
        procs[0].stdin.write("done\n")
        procs[0].stdin.flush()
        for pr in procs:
            pr.wait(60)
    except Exception as e:
        return {"error": str(e)[-400:]}
    finally:  # an error, or SIGTERM (see drive): no worker outlives this
        for pr in procs:
            if pr.poll() is None:
                pr.kill()
                pr.wait()
    lo, hi = max(r["start"] for r in res), min(r["end"] for r in res)
    longest = max(r["end"] - r["start"] for r in res)
    return {"lost": sum(r["lost"] for r in res), "iterations": sum(r["iterations"] for r in res),
            "per_process": res, "overlap": max(0.0, hi - lo) / longest, "seconds": seconds}


def available():
    out = {}
    for v in VARIANTS:
        py = python_for(v)
        if not os.path.exists(py):
            out[v] = f"no interpreter at {py}"
            continue
        mod = {OURS: "import sharedmap; sharedmap.sharedbitmap.test_and_set",
               ORIG: "import sharedmap; sharedmap.sharedbitmap.create",
               SHM: "from multiprocessing import shared_memory", BYTEARRAY: "pass"}[v]
        p = subprocess.run([py, "-c", mod], capture_output=True, text=True)
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        out[v] = True if p.returncode == 0 else "does not import: " + last[:200]
    return out


def versions():
    code = "import importlib.metadata as m; print(m.version('sharedmap'))"
    v = {"python": platform.python_version()}
    for var in (OURS, ORIG):
        py = python_for(var)
        if os.path.exists(py):
            p = subprocess.run([py, "-c", code], capture_output=True, text=True)
            if p.returncode == 0:
                v[var] = p.stdout.strip()
    return v


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: subprocess.run kills its worker, finally cleans up


def drive(out_path):
    import signal

    signal.signal(signal.SIGTERM, _terminated)
    try:
        _drive(out_path)
    finally:
        cleanup()


def _drive(out_path):
    t_start = time.time()
    avail = available()
    for v, ok in avail.items():
        if ok is not True:
            log(f"bitmap: {v}: {ok}")
    variants = [v for v in VARIANTS if avail[v] is True]
    res = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": QUICK,
                    "loadavg_at_start": os.getloadavg(), "machine": machine(), "versions": versions(),
                    "config": {"bits": BITS, "probes": PROBES, "reps": REPS, "rounds": ROUNDS,
                               "mem_bits": MEM_BITS, "race_seconds": RACE_SECONDS, "seed": SEED},
                    "available": avail},
           "calls": {}, "memory": {}, "race": {}}

    def save():
        res["meta"]["elapsed_s"] = time.time() - t_start
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, out_path)

    cleanup()
    # ---- per call: rounds x sizes x variants (the order of variants rotates every round)
    raw = {}
    for r in range(ROUNDS):
        for bits in BITS:
            order = variants[r % len(variants):] + variants[:r % len(variants)]
            for v in order:
                w = run_worker(v, {"mode": "calls", "bits": bits, "probes": PROBES, "reps": REPS,
                                   "seed": SEED + r})
                raw.setdefault(bits, {}).setdefault(v, []).append(w)
                if "error" in w:
                    log(f"bitmap calls {v} 2^{bits.bit_length() - 1}: {w['error']}")
                else:
                    log(f"bitmap calls round {r + 1}/{ROUNDS} {v} {bits:,} bits: " + ", ".join(
                        f"{op} {x['ns']:.0f} ns" for op, x in w["ops"].items() if "ns" in x)
                        + ("" if w["check"] == "ok" else f" CHECK: {w['check']}"))
    for bits, per in raw.items():
        cb = res["calls"][str(bits)] = {}
        for v, ws in per.items():
            good = [w for w in ws if "error" not in w]
            if not good:
                cb[v] = {"error": ws[0]["error"]}
                continue
            ops = {}
            for op in OPS:
                xs = [x for w in good for x in w["ops"][op].get("samples", [])]
                if xs:
                    ops[op] = {"ns": median(xs), "ns_min": min(xs), "samples": len(xs),
                               "round_medians": [w["ops"][op]["ns"] for w in good]}
                else:
                    ops[op] = {"na": good[0]["ops"][op].get("na", "not measured")}
            checks = sorted({w["check"] for w in good})
            cb[v] = {"ops": ops, "check": "ok" if checks == ["ok"] else "; ".join(checks),
                     "rounds": len(good)}
            if len(good) < len(ws):
                cb[v]["error"] = next(w["error"] for w in ws if "error" in w)
    for v in VARIANTS:
        if avail[v] is not True:
            for bits in BITS:
                res["calls"].setdefault(str(bits), {})[v] = {"na": avail[v]}
    save()
    # ---- memory per bit
    for v in variants:
        m = run_worker(v, {"mode": "memory", "bits": MEM_BITS})
        res["memory"][v] = m
        log(f"bitmap memory {v}: " + (m.get("error") or
                                      f"{m['size']:,} bytes ({m['bytes_per_bit']:.4f} B/bit), "
                                      f"resident {m['resident']:,}"))
    save()
    # ---- lost updates between two processes on one word
    for v in variants:
        if v == BYTEARRAY:
            continue
        rr = res["race"][v] = race(v, RACE_SECONDS)
        log(f"bitmap race {v}: " + (rr.get("error") or
                                    f"{rr['lost']} lost of {rr['iterations']:,} sets "
                                    f"(overlap {rr['overlap']:.2f})"))
    cleanup()
    save()
    log(f"bitmap benchmark (Python) done in {time.time() - t_start:.0f} s")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "run":
        drive(sys.argv[2])
    elif mode == "worker":
        a = json.loads(sys.argv[2])
        {"calls": mode_calls, "memory": mode_memory, "race": mode_race}[a["mode"]](a)
    elif mode == "cleanup":
        cleanup()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
