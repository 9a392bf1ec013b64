"""A PyTorch Dataset that reads its batches from a sharedmap, beside the same Dataset over a dict.

The table: N items, each an int ID (a random signed 64-bit number, as a catalogue's IDs are) with
a feature row of `dim` float32s and an int label.  It is published once as two maps,

    NAME.features   ID -> bytes of dim float32s (an embedding table's rows)
    NAME.labels     ID -> int

and the Dataset holds two readers.  A reader pickles by reference (its name; unpickling attaches
again), so a DataLoader worker gets the map in O(1) with either start method: with 'fork' it
inherits the mapping, with 'spawn' the Dataset is pickled and the readers re-attach by name.
Either way every worker reads the one copy in /dev/shm, and nothing it does writes to it.

The same data in a plain dict costs every worker its own copy sooner or later: with 'spawn' the
dict is pickled into each worker; with 'fork' the workers start by sharing the parent's pages,
but every lookup changes the reference count of the object it returns, which writes to its page,
so after an epoch each worker has its own copy of (nearly) every page of the dict.

Reading a batch: DataLoader, when batch_size is set, passes the whole list of indices of a batch
to `Dataset.__getitems__` (torch >= 2.0), so a batch is one call,

    features = self.features.get_array(ids, "float32", width=dim)   # (n, dim) NumPy array
    labels = self.labels.get_many(ids)                               # list of n ints

(get_array copies the rows straight from the map into one array, no Python object per item;
get_many returns Python objects, for values of any type).  The default collate_fn expects
__getitems__ to return a list of samples and stacks them; this Dataset returns the batch already
stacked (a dict of arrays), so the DataLoader is given collate_fn=default_convert, which turns
the arrays into tensors without a copy.  (The same Dataset works with
`DataLoader(ds, sampler=BatchSampler(...), batch_size=None)`: __getitem__ takes a list too.)

Run (from the repository, after `make install-py`, which installs torch into .venv when it can;
or `.venv/bin/pip install torch numpy`):

    .venv/bin/python examples/torch_dataset.py                       # N=1,000,000, dim=16
    .venv/bin/python examples/torch_dataset.py --n 100000 --dim 64
    .venv/bin/python examples/torch_dataset.py --table sharedmap --start-method spawn

Each (table, start method) pair runs in a fresh Python process (so no run inherits another's
heap): it builds its Dataset, runs one shuffled epoch with num_workers=2 and, with the workers
still alive after the last batch, reads /proc/PID/smaps_rollup of the main process and of each
worker.  USS (Private_Clean + Private_Dirty) is what a process alone costs; PSS adds its share
of the pages it shares with others, so the PSS of all the processes adds up to what the job
costs the machine.  Table "none" is the baseline: the same Dataset, ids and batches with no
table (zeros), i.e. what torch and the ids cost.  A spawned worker costs about 150 MiB USS
before it reads anything: torch's libraries, relocated afresh in every process that imports
them (forked workers share the parent's).  The maps are removed at the end (also after an
error or Ctrl-C).

Measured 2026-12-02 on the development machine (2 cores, shared with a benchmark; Linux 6.18,
Python 3.11.7, torch 2.13.0+cpu, NumPy 2.4.6), the last lines of

    .venv/bin/python examples/torch_dataset.py --n 1000000 --dim 16

    summary, MiB: PSS of main + workers; a worker's USS at the end of the epoch; (+x): above the no-table baseline
                        fork PSS all       fork USS worker       spawn PSS all      spawn USS worker
      none           291.7                   7.6               570.9                 152.2
      sharedmap      392.9 ( +101.2)         7.5 (   -0.1)     673.5 ( +102.6)       152.3 (   +0.1)
      dict           929.0 ( +637.3)       182.3 ( +174.7)    1461.7 ( +890.8)       454.5 ( +302.3)

The two maps are 103.8 MiB in /dev/shm and cost the job about that, once, with either start
method (each worker's USS does not grow at all). The dicts cost 285 MiB in the main process (its
+329 MiB, less the baseline's +45 of the ids), and then each worker its own copy: with fork a
worker starts at 4.7 MiB USS and ends the epoch at 182 MiB, as reference counting copied nearly
every page of the values it read; with spawn a worker holds the whole pickled copy (+302 MiB)
from the start. So with 2 workers the dict costs 6.3x (fork) or 8.7x (spawn) the memory of the
sharedmap, and each further worker adds 175-302 MiB to the dict's figure and nothing to the
sharedmap's. Epoch times (printed with each run: 14.6 s sharedmap, 17.0 s dict with fork) are
dominated by the DataLoader's own per-batch cost (passing tensors between processes) on this
loaded machine: not a benchmark.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_convert

import sharedmap

MiB = 1024 * 1024
TABLES = ("none", "sharedmap", "dict")  # none: the baseline, a Dataset of the ids alone
START_METHODS = ("fork", "spawn")


# ------------------------------------------------------------------ the data

def make_ids(n: int, seed: int) -> np.ndarray:
    """n distinct random int64 IDs (the order of the Dataset: index i is item ids[i])."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(-(2**63), 2**63 - 1, size=n + n // 8 + 16, dtype=np.int64))
    rng.shuffle(ids)
    return ids[:n]


def make_features(n: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The (n, dim) float32 feature rows and the n labels (0-999) of the items, from seed."""
    rng = np.random.default_rng(seed + 1)
    return rng.standard_normal((n, dim), dtype=np.float32), rng.integers(0, 1000, size=n)


def publish(name: str, n: int, dim: int, seed: int) -> None:
    """Build the two maps from the data of seed and publish them as NAME.features, NAME.labels."""
    ids = make_ids(n, seed).tolist()
    features, labels = make_features(n, dim, seed)
    w = sharedmap.rbtree(zip(ids, (row.tobytes() for row in features)))  # int keys
    w.share(f"{name}.features", force=True)
    del w
    sharedmap.rbtree(zip(ids, labels.tolist())).share(f"{name}.labels", force=True)


def unpublish(name: str) -> None:
    for suffix in (".features", ".labels"):
        sharedmap.rbtree.remove(name + suffix)  # False if it was not there


# ------------------------------------------------------------------ the Datasets

class ItemDataset(Dataset):
    """Item ids[i] as {"id", "features", "label"}; the table is looked up by lookup()."""

    def __init__(self, ids: np.ndarray, dim: int):
        self.ids = ids  # int64 array: a buffer, so reading it never writes its pages
        self.dim = dim

    def __len__(self) -> int:
        return len(self.ids)

    def __getitems__(self, indices: list[int]) -> dict[str, np.ndarray]:
        """A whole batch in one go (DataLoader calls this with the batch's indices)."""
        ids = self.ids[indices]
        features, labels = self.lookup(ids)
        return {"id": ids, "features": features, "label": labels}

    def __getitem__(self, index):
        if isinstance(index, int):  # one item, as a batch of one, unwrapped
            return {k: v[0] for k, v in self.__getitems__([index]).items()}
        return self.__getitems__(index)  # a list of indices (a BatchSampler, batch_size=None)

    def lookup(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class SharedMapDataset(ItemDataset):
    """Reads a published map: pickling it (spawn) sends the map names, not the data."""

    def __init__(self, ids: np.ndarray, dim: int, name: str):
        super().__init__(ids, dim)
        self.features = sharedmap.sharedmap(f"{name}.features")
        self.labels = sharedmap.sharedmap(f"{name}.labels")

    def lookup(self, ids):
        # One call per batch: the cache misses of all the keys overlap, and get_array writes
        # the rows into one (len(ids), dim) float32 array without a Python object per item.
        features = self.features.get_array(ids, "float32", width=self.dim)
        # get_many returns the values as Python objects (here ints), in the order of ids.
        labels = np.array(self.labels.get_many(ids), dtype=np.int64)
        return features, labels


class DictDataset(ItemDataset):
    """The same data in two plain dicts held by the Dataset (pickled whole with spawn)."""

    def __init__(self, ids: np.ndarray, dim: int, features: dict[int, bytes], labels: dict[int, int]):
        super().__init__(ids, dim)
        self.features = features
        self.labels = labels

    @classmethod
    def from_seed(cls, n: int, dim: int, seed: int) -> "DictDataset":
        ids = make_ids(n, seed)
        features, labels = make_features(n, dim, seed)
        keys = ids.tolist()
        return cls(ids, dim, dict(zip(keys, (row.tobytes() for row in features))),
                   dict(zip(keys, labels.tolist())))

    def lookup(self, ids):
        keys = ids.tolist()
        rows = bytearray().join([self.features[k] for k in keys])  # writable, for torch
        features = np.frombuffer(rows, dtype=np.float32).reshape(len(keys), self.dim)
        labels = np.array([self.labels[k] for k in keys], dtype=np.int64)
        return features, labels


class NoTableDataset(ItemDataset):
    """The baseline of the memory figures: the same ids and batches, no table (zeros)."""

    def lookup(self, ids):
        return np.zeros((len(ids), self.dim), dtype=np.float32), np.zeros(len(ids), dtype=np.int64)


def make_loader(dataset: ItemDataset, start_method: str, batch_size: int = 256, workers: int = 2,
                seed: int = 0, worker_init_fn=None) -> DataLoader:
    """A shuffled DataLoader; its batches are {"id", "features", "label"} of tensors."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=workers,
        multiprocessing_context=start_method if workers else None,
        collate_fn=default_convert,  # the batch is built by __getitems__: arrays -> tensors
        worker_init_fn=worker_init_fn,
    )


# ------------------------------------------------------------------ memory

def smaps_rollup(pid: int | str = "self") -> dict[str, int]:
    """The memory counters of a process from /proc/PID/smaps_rollup, in bytes (+ USS)."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1]) * 1024
    out["USS"] = out.get("Private_Clean", 0) + out.get("Private_Dirty", 0)
    return out


def report_worker(queue, worker_id: int) -> None:
    """worker_init_fn: tell the main process this worker's PID and its memory at the start."""
    queue.put((worker_id, os.getpid(), smaps_rollup()))


def run_one(table: str, start_method: str, args: argparse.Namespace) -> dict:
    """Build the Dataset in this process, run one epoch with the workers, measure; a dict."""
    result: dict = {"table": table, "start_method": start_method}
    gc.collect()
    before = smaps_rollup()
    t0 = time.perf_counter()
    if table == "sharedmap":  # attach to the maps the driver published
        dataset: ItemDataset = SharedMapDataset(make_ids(args.n, args.seed), args.dim, args.name)
        result["table_bytes"] = dataset.features.info()["size"] + dataset.labels.info()["size"]
    elif table == "dict":
        dataset = DictDataset.from_seed(args.n, args.dim, args.seed)
    else:
        dataset = NoTableDataset(make_ids(args.n, args.seed), args.dim)
    gc.collect()
    result["build_s"] = time.perf_counter() - t0
    result["main_growth"] = smaps_rollup()["USS"] - before["USS"]  # the dict, or the ids

    ctx = mp.get_context(start_method)
    queue = ctx.SimpleQueue()
    loader = make_loader(dataset, start_method, args.batch_size, args.workers, args.seed,
                         functools.partial(report_worker, queue))
    seen = []
    t0 = time.perf_counter()
    it = iter(loader)
    for _ in range(len(loader)):  # not to the end: the workers stay alive until `it` goes
        batch = next(it)
        assert batch["features"].shape == (len(batch["id"]), args.dim)
        seen.append(batch["id"].numpy())
    result["epoch_s"] = time.perf_counter() - t0
    # every item exactly once
    result["all_seen"] = bool(np.array_equal(np.sort(np.concatenate(seen)), np.sort(dataset.ids)))
    starts = sorted(queue.get() for _ in range(args.workers))
    result["workers"] = [{"pid": pid, "start": start, "end": smaps_rollup(pid)}
                         for _, pid, start in starts]
    result["main"] = smaps_rollup()
    del it  # shuts the workers down
    return result


# ------------------------------------------------------------------ the driver

def mib(x: float) -> str:
    return f"{x / MiB:8.1f}"


def print_result(r: dict, n: int) -> None:
    w = r["workers"]
    total_pss = r["main"]["Pss"] + sum(x["end"]["Pss"] for x in w)
    print(f"\n{r['table']}, {r['start_method']}: Dataset built in {r['build_s']:.2f} s "
          f"(main process +{r['main_growth'] / MiB:.1f} MiB USS), epoch {r['epoch_s']:.2f} s "
          f"({n / r['epoch_s']:,.0f} items/s)"
          + (f", maps {r['table_bytes'] / MiB:.1f} MiB in /dev/shm" if "table_bytes" in r else ""))
    print("  process      USS start   USS end   PSS end   RSS end   (MiB)")
    print(f"  main         {'':9} {mib(r['main']['USS'])}  {mib(r['main']['Pss'])}  {mib(r['main']['Rss'])}")
    for i, x in enumerate(w):
        print(f"  worker {i}     {mib(x['start']['USS'])}  {mib(x['end']['USS'])}  "
              f"{mib(x['end']['Pss'])}  {mib(x['end']['Rss'])}")
    print(f"  all          PSS {total_pss / MiB:.1f} MiB (workers: "
          f"{sum(x['end']['Pss'] for x in w) / MiB:.1f} MiB)")


def print_summary(results: list[dict]) -> None:
    """PSS of the whole job and USS of a worker, per table and start method, and above none."""
    methods = sorted({r["start_method"] for r in results}, key=START_METHODS.index)
    by = {(r["table"], r["start_method"]): r for r in results}
    print("\nsummary, MiB: PSS of main + workers; a worker's USS at the end of the epoch"
          + ("; (+x): above the no-table baseline" if any(t == "none" for t, _ in by) else ""))
    print(f"  {'':10}" + "".join(f"{m + ' PSS all':>20}{m + ' USS worker':>22}" for m in methods))
    for table in TABLES:
        cells = []
        for m in methods:
            r, base = by.get((table, m)), by.get(("none", m))
            if r is None:
                cells.append(" " * 42)
                continue
            pss = r["main"]["Pss"] + sum(x["end"]["Pss"] for x in r["workers"])
            uss = max(x["end"]["USS"] for x in r["workers"])
            if base is not None and table != "none":
                bpss = base["main"]["Pss"] + sum(x["end"]["Pss"] for x in base["workers"])
                buss = max(x["end"]["USS"] for x in base["workers"])
                cells.append(f"{pss / MiB:8.1f} ({(pss - bpss) / MiB:+7.1f})".rjust(20)
                             + f"{uss / MiB:8.1f} ({(uss - buss) / MiB:+7.1f})".rjust(22))
            else:
                cells.append(f"{pss / MiB:8.1f}{'':10}".rjust(20) + f"{uss / MiB:8.1f}{'':10}".rjust(22))
        if any(c.strip() for c in cells):
            print(f"  {table:10}" + "".join(cells))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000, help="items (default 1,000,000)")
    p.add_argument("--dim", type=int, default=16, help="float32s per feature row (default 16)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers (default 2)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--table", choices=TABLES + ("all",), default="all",
                   help="none is the baseline: the same Dataset and ids without a table")
    p.add_argument("--start-method", choices=START_METHODS + ("both",), default="both")
    p.add_argument("--name", default=f"torch-example-{os.getpid()}", help="base name of the maps")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a child run: JSON out
    args = p.parse_args(argv)

    if args.one:  # one (table, start method), in this fresh process; the maps exist
        print(json.dumps(run_one(args.table, args.start_method, args)))
        return 0

    tables = TABLES if args.table == "all" else (args.table,)
    methods = START_METHODS if args.start_method == "both" else (args.start_method,)
    print(f"{args.n:,} items: int64 ID -> {args.dim} float32s ({args.dim * 4} bytes) and an int "
          f"label; batches of {args.batch_size}, {args.workers} DataLoader workers; "
          f"torch {torch.__version__}, Python {sys.version.split()[0]}")
    t0 = time.perf_counter()
    results = []
    try:
        if "sharedmap" in tables:
            publish(args.name, args.n, args.dim, args.seed)
            print(f"published {args.name}.features and {args.name}.labels in "
                  f"{time.perf_counter() - t0:.2f} s")
        for table in tables:
            for method in methods:
                cmd = [sys.executable, os.path.abspath(__file__), "--one", "--table", table,
                       "--start-method", method, "--n", str(args.n), "--dim", str(args.dim),
                       "--batch-size", str(args.batch_size), "--workers", str(args.workers),
                       "--seed", str(args.seed), "--name", args.name]
                out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
                r = json.loads(out.splitlines()[-1])
                if not r["all_seen"]:
                    raise SystemExit(f"{table}, {method}: some items were never seen")
                print_result(r, args.n)
                results.append(r)
    finally:
        unpublish(args.name)
    print_summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
