"""Map sets built with PySpark: each task writes one shard with the streaming writer.

    import sharedmap.spark
    df = spark.read.parquet("features/")                       # columns id, vector, ...
    sharedmap.spark.write_set(df, "/shared/features.set", key="id", value="vector", num_shards=64)
    m = sharedmap.open("/shared/features.set")                  # one Mapping over the shards

``pip install sharedmap[spark]`` installs PySpark (which needs Java 17 or later).
"""
import os
from typing import Any, Iterator, Optional

from . import write
from .sets import abandon, commit_shards, new_generation, shard_file

__all__ = ["write_set"]


def _shard_writer(path: str, generation: str, memory_limit: Optional[int], mode: int) -> Any:
    """The function of mapPartitionsWithIndex: the rows of partition i, in key order, written as
    shard i; yields (i, file name, entries, first key)."""

    def write_partition(i: int, rows: Iterator[Any]) -> Iterator[Any]:
        first: "list[Any]" = []

        def pairs() -> Iterator[Any]:
            for row in rows:
                if not first:
                    first.append(row[0])
                yield row[0], row[1]

        name = shard_file(generation, i)
        count = write(os.path.join(path, name), pairs(), sorted=True, memory_limit=memory_limit,
                      mode=mode)
        yield i, name, count, first[0] if first else None

    return write_partition


def write_set(data: Any, path: "str | os.PathLike[str]", *, key: Optional[str] = None,
              value: Optional[str] = None, num_shards: Optional[int] = None, force: bool = False,
              mode: int = 0o644, memory_limit: Optional[int] = None) -> int:
    """Write the map set directory ``path`` from a PySpark DataFrame or RDD; return its entries.

    ``data`` is a DataFrame with a key and a value column (``key=``, ``value=``; by default the
    first two columns) or an RDD of ``(key, value)`` pairs.  A DataFrame is range-partitioned
    into ``num_shards`` partitions (default: its number of partitions) by
    ``repartitionByRange`` and sorted within them by ``sortWithinPartitions``; an RDD by
    ``sortByKey``.  Every task writes its partition as a shard into ``path`` with the streaming
    writer, so ``path`` must be a directory that the executors and the driver share; the driver
    writes the manifest last, atomically, once every shard is written (``force=True`` replaces
    the set there; its readers ``refresh()``).  Empty partitions make no shard.  If the job
    fails, its shards are removed and no manifest is written.  Spark orders strings by their
    UTF-8 bytes, as sharedmap does, so the shards come out in sharedmap's key order (the writer
    checks it: an ``OrderError`` otherwise).  Keys should be unique: of rows with the same key,
    the writer keeps the one that comes last in its partition.
    """
    path = os.fsdecode(path)
    if hasattr(data, "rdd") and hasattr(data, "columns"):  # a DataFrame
        columns = list(data.columns)
        if (key is None or value is None) and len(columns) < 2:
            raise ValueError("the DataFrame needs a key and a value column")
        key = columns[0] if key is None else key
        value = columns[1] if value is None else value
        n = num_shards or data.rdd.getNumPartitions()
        ranged = data.select(key, value).repartitionByRange(n, key).sortWithinPartitions(key)
        rdd = ranged.rdd
    elif hasattr(data, "sortByKey"):  # an RDD of pairs
        rdd = data.sortByKey(numPartitions=num_shards or data.getNumPartitions())
    else:
        raise TypeError(f"a PySpark DataFrame or RDD is required, not {type(data).__name__}")

    os.makedirs(path, exist_ok=True)
    generation = new_generation()
    try:
        done = rdd.mapPartitionsWithIndex(_shard_writer(path, generation, memory_limit, mode)).collect()
        return commit_shards(path, generation, done, force=force, mode=mode)
    except BaseException:
        abandon(path, generation)
        raise
