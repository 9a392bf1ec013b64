"""Map sets built with Dask: each worker writes one shard with the streaming writer.

    import dask.bag as db, sharedmap.dask
    pairs = db.read_text("ids-*.tsv").map(str.split).map(lambda kv: (kv[0], int(kv[1])))
    sharedmap.dask.write_set(pairs, "/shared/ids.set", npartitions=16)
    m = sharedmap.open("/shared/ids.set")       # one Mapping over the 16 shards

``pip install sharedmap[dask]`` installs Dask with ``distributed``, pandas and pyarrow.
"""
import bisect
import os
from typing import Any, Optional

from . import write
from .sets import abandon, commit_shards, new_generation, shard_file

__all__ = ["write_set"]


def _sample(pairs: Any, k: int) -> "list[Any]":
    """Up to k keys of a partition, drawn evenly (a partition's pairs are a list here)."""
    pairs = list(pairs)
    step = max(1, len(pairs) // k)
    return [kv[0] for kv in pairs[::step]]


def _split(pairs: Any, bounds: "list[Any]") -> "tuple[list[Any], ...]":
    """The pairs of one partition cut into their key ranges: one list per range."""
    ranges: "list[list[Any]]" = [[] for _ in range(len(bounds) + 1)]
    for kv in pairs:
        ranges[bisect.bisect_right(bounds, kv[0])].append(kv)
    return tuple(ranges)


def _write_shard(i: int, pieces: "list[list[Any]]", path: str, generation: str,
                 memory_limit: Optional[int], mode: int) -> "Optional[tuple[int, str, int, Any]]":
    """Write the pairs of key range i (its pieces, one from each partition) as its shard;
    (index, file name, entries, first key), or None for an empty range."""
    pairs = [kv for piece in pieces for kv in piece]
    if not pairs:
        return None
    pairs.sort(key=lambda kv: kv[0])
    name = shard_file(generation, i)
    count = write(os.path.join(path, name), pairs, sorted=True, memory_limit=memory_limit,
                  mode=mode)
    return i, name, count, pairs[0][0]


def write_set(collection: Any, path: "str | os.PathLike[str]", *, key: Optional[str] = None,
              value: Optional[str] = None, npartitions: Optional[int] = None, force: bool = False,
              mode: int = 0o644, memory_limit: Optional[int] = None, samples: int = 1000) -> int:
    """Write the map set directory ``path`` from a Dask collection; return its entries.

    ``collection`` is a ``dask.bag`` of ``(key, value)`` pairs or a ``dask.dataframe`` with
    a key and a value column (``key=``, ``value=``; by default the first two columns).  The
    keys are sampled (``samples`` from each partition) for the bounds of ``npartitions``
    ranges (default: the collection's number of partitions), every partition is cut into its
    pieces of those ranges where it lies, the pieces of a range are brought to one worker (a
    transfer per piece, not per pair), and it sorts the range and writes it as a shard into
    ``path`` with the streaming writer (so ``path`` must be a directory that the workers and
    the client share).  The client writes the manifest last, atomically, once every shard is
    written (``force=True`` replaces the set there; its readers ``refresh()``).  Empty
    ranges make no shard.  If anything fails, the shards of this write are removed and no
    manifest is written.  Keys should be unique: of pairs with the same key, the writer
    keeps the one that comes last in its range, which the shuffle does not specify.
    """
    import dask  # type: ignore[import-not-found,unused-ignore]
    import dask.bag  # type: ignore[import-not-found,unused-ignore]
    import dask.dataframe as dd  # type: ignore[import-not-found,unused-ignore]

    path = os.fsdecode(path)
    if isinstance(collection, dd.DataFrame):
        columns = list(collection.columns)
        if (key is None or value is None) and len(columns) < 2:
            raise ValueError("the dataframe needs a key and a value column")
        pairs = collection[[columns[0] if key is None else key,
                            columns[1] if value is None else value]].to_bag()
    elif isinstance(collection, dask.bag.Bag):
        pairs = collection
    else:
        raise TypeError(f"a dask.bag or dask.dataframe is required, not {type(collection).__name__}")
    n = npartitions or pairs.npartitions
    sample = sorted(pairs.map_partitions(_sample, samples).compute())
    # n - 1 bounds at the quantiles of the sample, each above the one before
    bounds: "list[Any]" = []
    for j in range(1, n):
        b = sample[len(sample) * j // n] if sample else None
        if b is not None and (not bounds or b > bounds[-1]):
            bounds.append(b)
    nranges = len(bounds) + 1
    # each partition cut into its pieces of the ranges, where it lies (nout: the pieces are
    # outputs of their own, so that only range i's piece of it goes to range i's writer)
    cut = dask.delayed(_split, nout=nranges, pure=True)
    splits = [cut(part, bounds) for part in pairs.to_delayed()]
    pieces = [[split[i] for split in splits] for i in range(nranges)]

    os.makedirs(path, exist_ok=True)
    generation = new_generation()
    try:
        writes = [dask.delayed(_write_shard)(i, pieces[i], path, generation, memory_limit, mode)
                  for i in range(nranges)]
        done = [d for d in dask.compute(*writes) if d is not None]
        return commit_shards(path, generation, done, force=force, mode=mode)
    except BaseException:
        abandon(path, generation)
        raise
