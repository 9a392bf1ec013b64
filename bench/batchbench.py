"""The batched-lookups part of the benchmark, in Python: per-key cost of looking up a batch of
keys at once (sharedmap's get_many / get_array) against what a user would write instead.

    python batchbench.py run OUT.json      the driver (run.sh runs it with the main virtualenv)
    python batchbench.py worker '<json>'   one size and key kind in a fresh process (the driver)
    python batchbench.py cleanup           remove what a killed run left (run.sh's cleanup trap)

For each size N and key kind (str: dataset.py's str -> str map; int: random signed 64-bit keys
with int values, the same N), one fresh worker process builds everything from the same data:
  the dict (the in-process reference), sharedmap (rbtree(d).share(), then sharedmap(name)),
  py-lmdb (putmulti into one environment in /dev/shm, a read txn and cursor), Redis (redis-server
  started by the driver on a private port and Unix socket in a temp dir, no persistence, loaded
  by pipelined MSETs; redis-py with hiredis) and, for int keys, NumPy arrays of the sorted keys
  and their values.
Then, per batch of BATCH keys (random hits of the map, or fresh random misses), the call a user
makes for the whole batch, with the conversions that user pays included:
  get_many      m.get_many(keys)
  dict          [d.get(k) for k in keys]
  get_loop      [m.get(k) for k in keys]               (sharedmap one key at a time)
  lmdb          cur.getmulti(encoded keys), values decoded (missing keys are omitted by getmulti:
                no per-key alignment is paid for them)
  redis_unix    r.mget(keys) over the Unix socket (decode_responses for str; int() for ints)
  redis_tcp     the same over loopback TCP
  get_array     m.get_array(int64 array, 'int64', default=0)   (int keys only)
  numpy         searchsorted on the sorted key array, the found values, default 0 elsewhere
Key objects are fresh for every repetition and method (made from a blob or an array, never the
inserted objects); ns per key = the median over REPS repetitions of PROBES keys in batches of
BATCH, the methods' order rotating every repetition.  Stdlib + numpy + the peers' modules.
"""
import gc
import glob
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dataset  # noqa: E402
from machine import machine  # noqa: E402

SHM_DIR = "/dev/shm"
PREFIX = "smbench-batch-"  # every name this file creates starts with it
FILE_DIR = os.path.join(SHM_DIR, PREFIX + "files")
REDIS_TMP_PREFIX = PREFIX + "redis-"
clock = time.perf_counter_ns


def env_list(name, default):
    v = os.environ.get(name)
    return [x.strip() for x in v.split(",") if x.strip()] if v is not None else default


def env_num(name, default):
    v = os.environ.get(name)
    return type(default)(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
SIZES = [int(x) for x in env_list("BENCH_BATCH_SIZES", ["100000", "1000000"] if QUICK
                                  else ["1000000", "10000000"])]
KINDS = env_list("BENCH_BATCH_KINDS", ["str", "int"])
BATCH = env_num("BENCH_BATCH_BATCH", 1000)
PROBES = env_num("BENCH_BATCH_PROBES", 50_000 if QUICK else 100_000)
REPS = env_num("BENCH_BATCH_REPS", 3 if QUICK else 5)
SEED = env_num("BENCH_SEED", 1)
REDIS = os.environ.get("BENCH_BATCH_REDIS", "1") not in ("", "0")
REDIS_SERVER = os.environ.get("BENCH_REDIS_SERVER") or shutil.which("redis-server") or "/usr/bin/redis-server"
PY_MAIN = os.environ.get("BENCH_PYTHON", sys.executable)
METHODS = ("get_many", "dict", "get_loop", "lmdb", "redis_unix", "redis_tcp", "get_array", "numpy")
INT_ONLY = ("get_array", "numpy")


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def map_name(n, kind):
    return f"{PREFIX}{n}-{kind}"


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


# ------------------------------------------------------------------ data

def _distinct(a):
    """The distinct values of a, sorted (np.sort and a mask: np.unique is far slower here)."""
    import numpy as np

    a = np.sort(a)
    keep = np.ones(len(a), dtype=bool)
    keep[1:] = a[1:] != a[:-1]
    return a[keep]


def int_data(n, seed):
    """n distinct random signed 64-bit keys (in random order) and random int values, as arrays."""
    import numpy as np

    rng = np.random.default_rng([seed, n, 64])
    keys = _distinct(rng.integers(-2**63, 2**63 - 1, size=n + n // 1000 + 16, dtype=np.int64))
    while len(keys) < n:  # never in practice
        keys = _distinct(np.concatenate([keys, rng.integers(-2**63, 2**63 - 1, size=n, dtype=np.int64)]))
    keys = rng.permutation(keys)[:n]
    vals = rng.integers(-2**47, 2**47, size=n, dtype=np.int64)
    return keys, vals


class IntProbes:
    """int probe keys as an int64 array: fresh() makes new int objects every call."""

    def __init__(self, arr):
        self.arr = arr

    def fresh(self, kind=None, count=None):
        return self.arr[:count].tolist()

    def array(self):
        return self.arr.copy()


def int_probes(keys, count, seed):
    import numpy as np

    rng = np.random.default_rng([seed, len(keys), 7])
    hits = keys[rng.integers(0, len(keys), size=count)]
    miss = rng.integers(-2**63, 2**63 - 1, size=count + 64, dtype=np.int64)
    sk = np.sort(keys)
    i = np.minimum(np.searchsorted(sk, miss), len(sk) - 1)
    miss = miss[sk[i] != miss][:count]
    return IntProbes(hits), IntProbes(miss)


# ------------------------------------------------------------------ Redis (run by the driver)

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """redis-server on a private port and Unix socket in a temp dir, no persistence."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix=REDIS_TMP_PREFIX)
        self.sock = os.path.join(self.dir, "redis.sock")
        self.port = free_port()
        with open(os.path.join(self.dir, "port"), "w") as f:  # for cleanup(): redis retitles itself
            f.write(str(self.port))
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--unixsocket", self.sock,
             "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--pidfile", os.path.join(self.dir, "redis.pid"),
             "--logfile", os.path.join(self.dir, "redis.log"), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                log_tail = ""
                try:
                    with open(os.path.join(self.dir, "redis.log")) as f:
                        log_tail = f.read()[-400:]
                except OSError:
                    pass
                self.stop()
                raise RuntimeError(f"redis-server did not start: {log_tail}")
            time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: with --save "" it exits without writing anything
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def redis_version():
    try:
        p = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10)
        return p.stdout.split("v=")[1].split()[0] if "v=" in p.stdout else p.stdout.strip()
    except Exception as e:
        return f"? ({e})"


# ------------------------------------------------------------------ the worker

def load_redis(r, items, chunk=2000, per_exec=20):
    """MSETs of `chunk` pairs, `per_exec` MSETs per pipeline round trip."""
    from itertools import chain, islice

    it = iter(items)
    pipe = r.pipeline(transaction=False)
    while True:
        queued = 0
        for _ in range(per_exec):
            flat = list(chain.from_iterable(islice(it, chunk)))
            if not flat:
                break
            pipe.execute_command("MSET", *flat)
            queued += 1
        if queued:
            pipe.execute()
        if queued < per_exec:
            return


def mode_measure(a):
    import numpy as np
    import lmdb
    import sharedmap

    n, kind, seed = a["n"], a["kind"], a["seed"]
    batch, probes, reps = a["batch"], a["probes"], a["reps"]
    out = {"n": n, "kind": kind, "batch": batch, "probes": probes, "reps": reps, "build": {},
           "methods": {}, "checks": {}}
    t0 = time.perf_counter()
    if kind == "str":
        d = dataset.make(n, seed, "str")
        hit_p = dataset.hit_probes(d, probes, seed)
        miss_p = dataset.miss_probes(d, probes, seed)
        karr = varr = None
    else:
        karr, varr = int_data(n, seed)
        d = dict(zip(karr.tolist(), varr.tolist()))
        hit_p, miss_p = int_probes(karr, probes, seed)
    out["build"]["data_s"] = time.perf_counter() - t0

    # ---- sharedmap
    name = map_name(n, kind)
    t0 = time.perf_counter()
    w = sharedmap.rbtree(d)
    w.share(name, force=True)
    del w
    m = sharedmap.sharedmap(name)
    out["build"]["sharedmap_s"] = time.perf_counter() - t0
    out["build"]["sharedmap_bytes"] = m.info()["size"]

    # ---- lmdb
    os.makedirs(FILE_DIR, exist_ok=True)
    lpath = os.path.join(FILE_DIR, f"{n}-{kind}.lmdb")
    for p in (lpath, lpath + "-lock"):
        if os.path.exists(p):
            os.unlink(p)
    t0 = time.perf_counter()
    if kind == "str":  # sorted, so putmulti appends (random inserts take several times longer)
        enc = sorted((k.encode(), v.encode()) for k, v in d.items())
    else:
        enc = sorted((k.to_bytes(8, "little", signed=True), v.to_bytes(8, "little", signed=True))
                     for k, v in d.items())
    env = lmdb.open(lpath, map_size=max(1 << 26, 256 * n), subdir=False, sync=False, metasync=False,
                    readahead=False, lock=True)
    with env.begin(write=True) as txn:
        txn.cursor().putmulti(enc, append=True)
    del enc
    env.sync(True)
    env.close()
    env = lmdb.open(lpath, subdir=False, readonly=True, lock=True, readahead=False)
    txn = env.begin()
    cur = txn.cursor()
    out["build"]["lmdb_s"] = time.perf_counter() - t0
    out["build"]["lmdb_bytes"] = os.path.getsize(lpath)

    # ---- Redis
    rclients = {}
    if a.get("redis"):
        try:
            import redis

            dec = kind == "str"
            ru = redis.Redis(unix_socket_path=a["redis"]["sock"], decode_responses=dec)
            rt = redis.Redis(host="127.0.0.1", port=a["redis"]["port"], decode_responses=dec)
            ru.ping()
            rt.ping()
            t0 = time.perf_counter()
            load_redis(ru, d.items())
            out["build"]["redis_s"] = time.perf_counter() - t0
            info = ru.info("memory")
            out["build"]["redis_used_memory"] = info.get("used_memory")
            out["build"]["redis_dbsize"] = ru.dbsize()
            out["hiredis"] = bool(getattr(redis.utils, "HIREDIS_AVAILABLE", False))
            rclients = {"redis_unix": ru, "redis_tcp": rt}
        except Exception as e:
            out["redis_error"] = f"{type(e).__name__}: {e}"[:300]
    else:
        out["redis_error"] = a.get("redis_na", "not run")

    # ---- numpy (int keys): sorted keys, values in the same order
    if kind == "int":
        order = np.argsort(karr, kind="stable")
        sk, sv = karr[order], varr[order]
        del order
        last = len(sk) - 1

        def np_lookup(q, sk=sk, sv=sv, last=last, np=np):
            i = np.searchsorted(sk, q)
            np.minimum(i, last, out=i)
            return np.where(sk[i] == q, sv[i], 0)

    # ---- the calls, per batch
    dget, mget, gm, ga, getmulti = d.get, m.get, m.get_many, m.get_array, cur.getmulti
    if kind == "str":
        calls = {
            "get_many": gm,
            "dict": lambda b: [dget(k) for k in b],
            "get_loop": lambda b: [mget(k) for k in b],
            "lmdb": lambda b: [v.decode() for _, v in getmulti([k.encode() for k in b])],
        }
        for meth, r in rclients.items():
            calls[meth] = r.mget
    else:
        fb = int.from_bytes
        calls = {
            "get_many": gm,
            "dict": lambda b: [dget(k) for k in b],
            "get_loop": lambda b: [mget(k) for k in b],
            "lmdb": lambda b: [fb(v, "little", signed=True)
                               for _, v in getmulti([k.to_bytes(8, "little", signed=True) for k in b])],
            "get_array": lambda b: ga(b, "int64", default=0),
            "numpy": np_lookup,
        }
        for meth, r in rclients.items():
            calls[meth] = lambda b, g=r.mget: [None if v is None else int(v) for v in g(b)]

    def batches(probe_set, meth):
        if meth in INT_ONLY:
            arr = probe_set.array()
            return [arr[i:i + batch] for i in range(0, len(arr), batch)]
        ks = probe_set.fresh(kind)
        return [ks[i:i + batch] for i in range(0, len(ks), batch)]

    # ---- checks: each method's answers for one batch of hits and one of misses
    for what, ps in (("hit", hit_p), ("miss", miss_p)):
        ref = [dget(k) for k in ps.fresh(kind, batch)]
        for meth, f in calls.items():
            got = f(batches(ps, meth)[0])
            if meth in INT_ONLY:
                got = got.tolist()
                want = [0 if v is None else v for v in ref]
            elif meth == "lmdb":
                want = [v for v in ref if v is not None]  # getmulti omits missing keys
            else:
                want = ref
            ok = list(got) == want
            out["checks"].setdefault(meth, {})[what] = "ok" if ok else "WRONG ANSWERS"

    # ---- timing
    meths = list(calls)
    samples = {(meth, what): [] for meth in meths for what in ("hit", "miss")}
    for rep in range(reps + 1):  # rep 0 warms up (pages, code paths, connections)
        rot = meths[rep % len(meths):] + meths[:rep % len(meths)]
        for meth in rot:
            f = calls[meth]
            for what, ps in (("hit", hit_p), ("miss", miss_p)):
                bs = batches(ps, meth)
                nkeys = sum(len(b) for b in bs)
                gc.collect()
                gc.disable()
                try:
                    t = clock()
                    for b in bs:
                        f(b)
                    t = clock() - t
                finally:
                    gc.enable()
                del bs
                if rep:
                    samples[(meth, what)].append(t / nkeys)
    for (meth, what), xs in samples.items():
        out["methods"].setdefault(meth, {})[what + "_ns"] = median(xs)
        out["methods"][meth][what + "_samples"] = [round(x, 1) for x in xs]
    for meth in METHODS:
        if meth not in calls:
            why = ("int keys only" if meth in INT_ONLY else out.get("redis_error", "not run"))
            out["methods"][meth] = {"na": why}

    # ---- tidy up (the driver stops Redis)
    cur = txn = None
    env.close()
    for p in (lpath, lpath + "-lock"):
        try:
            os.unlink(p)
        except OSError:
            pass
    m.close()
    sharedmap.rbtree.remove(name)
    emit(out)


# ------------------------------------------------------------------ the driver

def cleanup():
    """Remove every map, file and Redis server (by its pid file) a killed run may have left."""
    for f in glob.glob(os.path.join(SHM_DIR, "*" + PREFIX + "*")) + glob.glob(
            os.path.join(SHM_DIR, ".*" + PREFIX + "*")):
        if os.path.isdir(f):
            shutil.rmtree(f, ignore_errors=True)
        else:
            try:
                os.unlink(f)
            except OSError:
                pass
    for d in glob.glob(os.path.join(tempfile.gettempdir(), REDIS_TMP_PREFIX + "*")):
        try:
            with open(os.path.join(d, "redis.pid")) as f:
                pid = int(f.read().strip())
            with open(os.path.join(d, "port")) as f:
                port = f.read().strip()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read()
            if b"redis-server" in cmd and f":{port}".encode() in cmd:
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError):
            pass
        shutil.rmtree(d, ignore_errors=True)


def run_worker(args, timeout=1800):
    try:
        p = subprocess.run([PY_MAIN, os.path.abspath(__file__), "worker", json.dumps(args)],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"killed after {timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode or not lines:
        return {"error": f"exit {p.returncode}: {p.stderr.strip()[-800:]}"}
    return json.loads(lines[-1])


def versions():
    code = ("import importlib.metadata as m\n"
            "for p in ('sharedmap', 'lmdb', 'redis', 'hiredis', 'numpy'):\n"
            "    try: print(p, m.version(p))\n"
            "    except Exception: pass\n")
    v = {"python": platform.python_version(), "redis-server": redis_version()}
    p = subprocess.run([PY_MAIN, "-c", code], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        k, _, x = line.partition(" ")
        v[k] = x
    return v


def _terminated(signum, frame):
    raise SystemExit(128 + signum)  # unwinds: subprocess.run kills its worker, finally cleans up


def drive(out_path):
    signal.signal(signal.SIGTERM, _terminated)
    try:
        _drive(out_path)
    finally:
        cleanup()


def _drive(out_path):
    t_start = time.time()
    res = {"meta": {"started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "quick": QUICK,
                    "loadavg_at_start": os.getloadavg(), "machine": machine(), "versions": versions(),
                    "config": {"sizes": SIZES, "kinds": KINDS, "batch": BATCH, "probes": PROBES,
                               "reps": REPS, "seed": SEED, "redis": REDIS}},
           "runs": {}}

    def save():
        res["meta"]["elapsed_s"] = time.time() - t_start
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, out_path)

    cleanup()
    for n in SIZES:
        for kind in KINDS:
            args = {"mode": "measure", "n": n, "kind": kind, "seed": SEED, "batch": BATCH,
                    "probes": PROBES, "reps": REPS}
            srv = None
            if not REDIS:
                args["redis_na"] = "BENCH_BATCH_REDIS=0"
            elif not os.path.exists(REDIS_SERVER):
                args["redis_na"] = f"no redis-server at {REDIS_SERVER}"
            elif mem_available() < 400 * n + (2 << 30):  # Redis ~100-150 B/key; the worker's own
                args["redis_na"] = (f"not enough memory for Redis at {n:,} keys "
                                    f"({mem_available() / 2**30:.1f} GiB available)")
            else:
                try:
                    srv = RedisServer()
                    args["redis"] = {"sock": srv.sock, "port": srv.port}
                except Exception as e:
                    args["redis_na"] = str(e)[:300]
            t0 = time.time()
            try:
                w = run_worker(args)
            finally:
                if srv is not None:
                    srv.stop()
            w["elapsed_s"] = time.time() - t0
            res["runs"].setdefault(str(n), {})[kind] = w
            if "error" in w:
                log(f"batch {n:,} {kind}: {w['error']}")
            else:
                ms = w["methods"]
                log(f"batch {n:,} {kind} ({w['elapsed_s']:.0f} s): " + ", ".join(
                    f"{k} {v['hit_ns']:.0f}/{v['miss_ns']:.0f}" for k, v in ms.items() if "hit_ns" in v)
                    + " ns/key (hit/miss)"
                    + "".join(f" CHECK {k}: {c}" for k, c in w["checks"].items()
                              if set(c.values()) != {"ok"}))
            save()
    save()
    log(f"batch benchmark (Python) done in {time.time() - t_start:.0f} s")


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "run":
        drive(sys.argv[2])
    elif mode == "worker":
        mode_measure(json.loads(sys.argv[2]))
    elif mode == "cleanup":
        cleanup()
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
