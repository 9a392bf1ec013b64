"""Map sets: one map split by key ranges into snapshot files, the shards, named by a manifest.

A set is a directory holding ``MANIFEST`` and the shard files (docs/FORMAT.md §12).
``sharedmap.open(directory)`` opens it as one read-only map with the whole reader API (a key
is routed to its shard by binary search over the shards' lower bounds; iteration and ranges
walk the shards in order); :func:`load_set` publishes it into shared memory under one name,
packed into one file, so that ``sharedmap.sharedmap(name)`` attaches to the whole set and a
republish replaces the whole set atomically.

:func:`write_set` writes a set from shards of pairs in one process; ``sharedmap.dask`` and
``sharedmap.spark`` write one from a Dask or Spark collection, each worker its own shard.
"""
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _sharedmap

if TYPE_CHECKING:
    from _typeshed import StrOrBytesPath as PathLike


class Shard(NamedTuple):
    """A shard of a set: its lower bound (None for the first), entries, bytes, body checksum."""

    lower: Any
    entries: int
    size: int
    checksum: int

_SHARD_FILE = re.compile(r"shard-([0-9a-f]{16})-[0-9]{5}\.smap\Z")


def shards(m: Any) -> "list[Shard]":
    """The shards of the map set ``m`` (a sharedmap) in key order, as :class:`Shard` tuples;
    a single snapshot is one shard."""
    return [Shard(*t) for t in _sharedmap._shards(m)]


def new_generation() -> str:
    """A name part for the shard files of a new version of a set: the time, so sortable."""
    return f"{time.time_ns():016x}"


def shard_file(generation: str, i: int) -> str:
    """The file name of shard i of the set version `generation` (new_generation())."""
    return f"shard-{generation}-{i:05d}.smap"


def first_key(path: str) -> Any:
    """The smallest key of the snapshot file path, or None if it is empty."""
    m = _sharedmap.open(path)
    try:
        return m.peekitem(0)[0] if len(m) else None
    finally:
        m.close()


def finish_set(path: "PathLike", names: Sequence[str], bounds: Sequence[Any], *, force: bool = False,
               mode: int = 0o644) -> None:
    """Write the manifest of the shard files `names` (in key order, already in `path`) with
    lower bounds `bounds` (bounds[0] is None), atomically, and then remove the shard files of
    versions older than the one it replaces (which readers may still be opening)."""
    path = os.fsdecode(path)
    _sharedmap._write_manifest(path, list(names), list(bounds), force, mode)
    keep = {m.group(1) for m in map(_SHARD_FILE.match, names) if m}
    generations = sorted({m.group(1) for m in map(_SHARD_FILE.match, os.listdir(path)) if m} - keep)
    stale = set(generations[:-1])  # the newest other one is the version just replaced
    for f in os.listdir(path):
        m = _SHARD_FILE.match(f)
        if m and m.group(1) in stale:
            try:
                os.unlink(os.path.join(path, f))
            except FileNotFoundError:
                pass


def commit_shards(path: "PathLike", generation: str, shards: "Iterable[tuple[int, str, int, Any]]", *,
                  force: bool = False, mode: int = 0o644, staging: "PathLike | None" = None) -> int:
    """The last step of every writer of a set: shards is (index, file name, entries, first key)
    of each shard file written in path, in any order; the empty ones are removed, the others
    named by the manifest, in index order, each bounded below by its first key (an empty set is
    one empty shard).  Returns the set's entries.

    With ``staging``, the shard files are in that directory instead (one of this write's own,
    inside path): the non-empty ones are moved into path, and the directory is removed with
    whatever else is in it (the empty shards, files of task attempts that lost) before the
    manifest is written."""
    from . import write

    path = os.fsdecode(path)
    where = path if staging is None else os.fsdecode(staging)
    names: "list[str]" = []
    bounds: "list[Any]" = []
    total = 0
    for _, name, count, first in sorted(shards, key=lambda t: t[0]):
        if count == 0:
            if staging is None:
                os.unlink(os.path.join(path, name))
            continue  # else removed with the staging directory
        if staging is not None:
            os.rename(os.path.join(where, name), os.path.join(path, name))
        names.append(name)
        bounds.append(first if names[1:] else None)
        total += count
    if staging is not None:
        _remove_dir(where, strict=True)
    if not names:
        names.append(shard_file(generation, 0))
        write(os.path.join(path, names[0]), (), mode=mode)
        bounds.append(None)
    finish_set(path, names, bounds, force=force, mode=mode)
    return total


def _remove_dir(directory: str, *, strict: bool) -> None:
    """Remove directory and everything in it, if it is there.  A task that is still running may
    add a file while this removes them, so it tries again; if the directory is still there
    after that, strict raises the error that stopped it."""
    for _ in range(3):
        shutil.rmtree(directory, ignore_errors=True)
        if not os.path.lexists(directory):
            return
    if strict:
        shutil.rmtree(directory)


def abandon(path: "PathLike", generation: str, staging: "PathLike | None" = None) -> None:
    """Remove the shard files of the set version `generation` (a write that failed) from path,
    and the write's staging directory (commit_shards()) with everything in it, if there is one."""
    path = os.fsdecode(path)
    if staging is not None:
        _remove_dir(os.fsdecode(staging), strict=False)
    for name in os.listdir(path):
        m = _SHARD_FILE.match(name)
        if m and m.group(1) == generation:
            try:
                os.unlink(os.path.join(path, name))
            except FileNotFoundError:
                pass


def write_set(path: "PathLike", parts: "Iterable[Mapping[Any, Any] | Iterable[Any]]", *, sorted: bool = False,
              memory_limit: "int | None" = None, force: bool = False, mode: int = 0o644,
              temp_dir: "PathLike | None" = None) -> int:
    """Write the map set directory ``path`` from ``parts``, an iterable of iterables of
    ``(key, value)`` pairs (or mappings), one per shard, each holding a range of keys above
    the one before it; return the number of entries.

    Each shard is written by the streaming writer (:func:`sharedmap.write`, in bounded
    memory; ``sorted=True`` if each part comes in key order), its lower bound is its first
    key, and empty parts make no shard.  The manifest is written last, atomically; with
    ``force=True`` it replaces the set that is there (readers of it ``refresh()``).  A part
    whose keys are not above the previous part's is an error, and no manifest is written.
    """
    from . import write

    path = os.fsdecode(path)
    os.makedirs(path, exist_ok=True)
    generation = new_generation()
    try:
        shards = []
        for i, part in enumerate(parts):
            name = shard_file(generation, i)
            count = write(os.path.join(path, name), part, sorted=sorted, memory_limit=memory_limit,
                          mode=mode, temp_dir=temp_dir)
            shards.append((i, name, count, first_key(os.path.join(path, name))))
        return commit_shards(path, generation, shards, force=force, mode=mode)
    except BaseException:
        abandon(path, generation)
        raise


def load_set(path: "PathLike", name: str, *, force: bool = False, mode: int = 0o600) -> None:
    """Publish the map set at ``path`` (its directory, or a packed set file) into shared memory
    as ``name``: one packed file, published atomically as :meth:`rbtree.share` publishes a map
    (``force=True`` replaces the map or set there; its readers ``refresh()``).  Any process
    then attaches to the whole set with ``sharedmap.sharedmap(name)``."""
    m = _sharedmap.open(path)
    try:
        _sharedmap._publish_set(m, name, force, mode)
    finally:
        m.close()
