"""Map sets built with PySpark: each task writes one shard with the streaming writer.

    import sharedmap.spark
    df = spark.read.parquet("words/")                          # columns word, id, ...
    sharedmap.spark.write_set(df, "/shared/vocab.set", key="word", value="id", num_shards=64)
    m = sharedmap.open("/shared/vocab.set")                     # one Mapping over the shards

The tasks write their shards into a staging directory of the call, ``path/.spark-<generation>``;
the driver moves the shards of the tasks that succeeded into ``path`` and writes the manifest
last (:func:`sharedmap.sets.commit_shards`).  pyspark is not imported here: the functions only
call methods of the objects they are given.

``pip install sharedmap[spark]`` installs PySpark (which needs Java 17 or later).
"""
import os
from collections.abc import Iterable, Iterator
from typing import Any, Optional

from . import write
from .sets import abandon, commit_shards, new_generation, shard_file

__all__ = ["write_set"]

# Spark key column types whose order in Spark is the order of sharedmap's keys: StringType
# sorts by UTF-8 bytes (UTF8String.binaryCompare, the default UTF8_BINARY collation), which is
# code point order, Python's str order and sharedmap's; BinaryType by unsigned bytes; the
# integral types numerically (all of them fit in int64).
_KEY_TYPES = frozenset({"string", "binary", "byte", "short", "integer", "long"})

_PLAIN = (str, bytes, int, float, bool, type(None))


def _plain(x: Any) -> Any:
    """x as one of the types sharedmap takes, if it is a numpy/pandas scalar or a bytearray
    (Spark's binary values); anything else unchanged (sharedmap refuses it with a TypeError)."""
    if isinstance(x, _PLAIN):
        return x
    if isinstance(x, (bytearray, memoryview)):
        return bytes(x)
    item = getattr(x, "item", None)  # numpy scalars, 0-d arrays; pandas scalars are numpy's
    if callable(item) and getattr(x, "ndim", None) == 0:
        return item()
    return x


def _staging_dir(path: str, generation: str) -> str:
    """The directory in path that the tasks of the write `generation` write their shards into."""
    return os.path.join(path, f".spark-{generation}")


def _shard_writer(staging: str, generation: str, memory_limit: Optional[int], mode: int) -> Any:
    """The function of mapPartitionsWithIndex: the rows of partition i, in key order, written as
    shard i into the staging directory; yields (i, file name, entries, first key)."""

    def write_partition(i: int, rows: Iterable[Any]) -> Iterator[Any]:
        first: "list[Any]" = []

        def pairs() -> Iterator[Any]:
            for row in rows:
                k, v = row  # a Row of (key, value) or a pair
                k = _plain(k)
                if not first:
                    first.append(k)
                yield k, _plain(v)

        name = shard_file(generation, i)
        # force=True: a file already there is from an earlier attempt of this same task (a
        # retry, or a speculative copy): the same shard, replaced whole.
        count = write(os.path.join(staging, name), pairs(), sorted=True, memory_limit=memory_limit,
                      force=True, mode=mode)
        yield i, name, count, first[0] if first else None

    return write_partition


def _sorted_rdd(data: Any, key: Optional[str], value: Optional[str], num_shards: Optional[int]) -> Any:
    """The RDD of (key, value) rows, range-partitioned by key and sorted within each partition."""
    if hasattr(data, "rdd") and hasattr(data, "columns"):  # a DataFrame
        columns = list(data.columns)
        if key is None:
            if not columns:
                raise ValueError("the DataFrame has no columns")
            key = columns[0]
        if value is None:
            rest = [c for c in columns if c != key]
            if not rest:
                raise ValueError(f"the DataFrame has no value column besides the key {key!r}")
            value = rest[0]
        for c in (key, value):
            if c not in columns:
                raise ValueError(f"the DataFrame has no column {c!r} (it has {columns})")
        dtype = data.schema[key].dataType
        kind = dtype.typeName()
        if kind not in _KEY_TYPES:
            raise TypeError(f"key column {key!r} is {kind}: a map set's keys are str (string), "
                            f"bytes (binary) or int (byte, short, integer, long)")
        collation = getattr(dtype, "collation", "UTF8_BINARY")
        if kind == "string" and collation not in ("UTF8_BINARY", None):
            raise ValueError(f"key column {key!r} has collation {collation}, which does not sort "
                             f"as sharedmap does (by UTF-8 bytes); cast it to a plain string")
        n = num_shards or max(1, data.rdd.getNumPartitions())
        pairs = data.select(data[key].alias("k"), data[value].alias("v"))
        return pairs.repartitionByRange(n, "k").sortWithinPartitions("k").rdd
    if hasattr(data, "sortByKey"):  # an RDD of pairs
        if key is not None or value is not None:
            raise TypeError("key= and value= name DataFrame columns; an RDD holds (key, value) pairs")
        return data.sortByKey(numPartitions=num_shards or max(1, data.getNumPartitions()))
    raise TypeError(f"a PySpark DataFrame or RDD is required, not {type(data).__name__}")


def write_set(data: Any, path: "str | os.PathLike[str]", *, key: Optional[str] = None,
              value: Optional[str] = None, num_shards: Optional[int] = None, force: bool = False,
              mode: int = 0o644, memory_limit: Optional[int] = None) -> int:
    """Write the map set directory ``path`` from a PySpark DataFrame or RDD; return its entries.

    ``data`` is a DataFrame with a key and a value column (``key=``, ``value=``; by default
    the first column and the first other one; the rest are ignored) or an RDD of
    ``(key, value)`` pairs.  Keys are str, bytes or int (int64), one kind in a set: a
    DataFrame's key column is a string (default collation), binary or integral column, and
    any other is refused before any work (TypeError; a collated string column ValueError).
    Values are str, bytes, int, float, bool or None (numpy scalars and bytearrays are
    converted).  A null key, or a value of another type (an array, a map, a decimal, a date,
    ...), fails the job with the TypeError of the task that met it.

    The collection is range-partitioned into ``num_shards`` partitions (default: its number
    of partitions) and sorted within them: a DataFrame by ``repartitionByRange`` and
    ``sortWithinPartitions``, an RDD by ``sortByKey``.  Every task writes its partition as a shard with the streaming
    writer (:func:`sharedmap.write`, ``sorted=True``, ``memory_limit``, file ``mode``) into a
    staging directory of this call, ``path/.spark-<generation>``, so ``path`` must be a
    directory that the executors and the driver share (it is created if missing).  Once every
    task has succeeded, the driver moves the non-empty shards into ``path``, removes the
    staging directory and writes the manifest last, atomically: readers see the old set or
    the new one, never a mixture.  Empty partitions make no shard.  A set already at ``path``
    is a FileExistsError (before any work) unless ``force=True``, which replaces it (its
    readers ``refresh()``).

    If anything fails, the staging directory and the shards this call wrote are removed, no
    manifest is written (a set that was there stays as it was) and the exception propagates
    (for a failed task, the one PySpark raises for the job).  A task that Spark is still
    running then, or a speculative copy of one that finished, writes only into the staging
    directory, so it never touches a shard a manifest names, and once that directory is gone
    its write fails, leaving nothing.

    Spark orders strings by their UTF-8 bytes, as sharedmap does, so the shards come out in
    sharedmap's key order (the writer checks it: an ``OrderError`` otherwise).  Keys should be
    unique: a key that occurs more than once is in one partition and keeps one of its values,
    the last the writer sees, which Spark's sort does not specify.
    """
    path = os.fsdecode(path)
    if num_shards is not None and num_shards < 1:
        raise ValueError(f"num_shards must be at least 1, not {num_shards}")
    if not force and os.path.lexists(os.path.join(path, "MANIFEST")):
        raise FileExistsError(f"a map set is already at {path!r} (force=True replaces it)")
    rdd = _sorted_rdd(data, key, value, num_shards)

    os.makedirs(path, exist_ok=True)
    generation = new_generation()
    staging = _staging_dir(path, generation)
    os.mkdir(staging)
    try:
        done = rdd.mapPartitionsWithIndex(_shard_writer(staging, generation, memory_limit, mode)).collect()
        return commit_shards(path, generation, done, force=force, mode=mode, staging=staging)
    except BaseException:
        abandon(path, generation, staging=staging)
        raise
