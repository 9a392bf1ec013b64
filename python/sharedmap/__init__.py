"""sharedmap: publish a key->value dictionary into shared memory once, read it from any process.

One process builds a map and publishes an immutable, read-optimised snapshot of it; every
other process attaches by name and reads it lock-free, straight out of shared memory::

    import sharedmap

    w = sharedmap.rbtree({"red": "#f00"})
    w["green"] = "#0f0"
    w.share("colours")                    # FileExistsError if taken, unless force=True

    m = sharedmap.sharedmap("colours")    # in any process
    m["red"], m.get("blue"), len(m)       # a read-only Mapping, keys in sorted order
    list(m.irange("a", "h"))              # ordered queries, as sortedcontainers.SortedDict

The same snapshot can be saved to a file (``w.save(path)`` / ``sharedmap.open(path)``) or
carried as bytes (``w.dump()`` / ``sharedmap.loads(data)``).  Maps larger than memory are
written from a stream of pairs, in bounded memory: ``sharedmap.write(path, pairs)`` and
``sharedmap.publish(name, pairs)``.  A published map is updated in time proportional to the
change, as a delta layer over it: ``with sharedmap.edit(name) as e: e[k] = v; del e[old]``.
"""
from collections import abc as _abc

from . import _sharedmap
from ._sharedmap import (
    FORMAT_VERSION,
    NAME_MAX,
    BitIndexError,
    ConflictError,
    CorruptSnapshotError,
    Error,
    InvalidNameError,
    KeyKindError,
    NotASnapshotError,
    OrderError,
    SymlinkError,
    TooLargeError,
    UnsupportedVersionError,
    Writer,
    __version__,
    gc,
    loads,
    open,
    rbtree,
    sharedbitmap,
    sharedmap,
)

__all__ = [
    "FORMAT_VERSION",
    "NAME_MAX",
    "BitIndexError",
    "ConflictError",
    "CorruptSnapshotError",
    "Editor",
    "Error",
    "InvalidNameError",
    "KeyKindError",
    "NotASnapshotError",
    "OrderError",
    "SymlinkError",
    "TooLargeError",
    "UnsupportedVersionError",
    "Shard",
    "Writer",
    "__version__",
    "compact",
    "edit",
    "gc",
    "list_bitmaps",
    "list_maps",
    "load_set",
    "loads",
    "publish",
    "rbtree",
    "sharedbitmap",
    "shards",
    "sharedmap",
    "write",
    "write_set",
]
# open() is exported as sharedmap.open but kept out of __all__, so that
# "from sharedmap import *" does not shadow the builtin open().

from .sets import Shard, load_set, shards, write_set  # noqa: E402  (they need write())
from .editing import Editor, compact, edit  # noqa: E402

_abc.Mapping.register(sharedmap)
_abc.MutableMapping.register(rbtree)
_abc.KeysView.register(_sharedmap.sharedmap_keys)
_abc.ValuesView.register(_sharedmap.sharedmap_values)
_abc.ItemsView.register(_sharedmap.sharedmap_items)
_abc.Iterator.register(_sharedmap.sharedmap_iterator)
_abc.Iterator.register(_sharedmap.rbtree_iterator)
_abc.Iterator.register(_sharedmap.sharedbitmap_iterator)


def list_maps():
    """The maps published in shared memory, sorted by name.

    Each is a dict with ``name``, ``size`` (bytes), ``entries``, ``created`` (seconds since
    the epoch, a float), ``key_kind`` (``'str'``, ``'bytes'`` or ``None`` for an empty map)
    and ``error``: ``None``, or why the map's header could not be read (``entries``,
    ``created`` and ``key_kind`` are then ``None``).
    """
    maps = []
    for name, size, entries, created_ns, key_kind, error in _sharedmap._list():
        maps.append(
            {
                "name": name,
                "size": size,
                "entries": entries,
                "created": None if created_ns is None else created_ns / 1e9,
                "key_kind": key_kind,
                "error": error,
            }
        )
    maps.sort(key=lambda m: m["name"])
    return maps


def list_bitmaps():
    """The shared bitmaps (sharedbitmap), sorted by name.

    Each is a dict with ``name``, ``file_size`` (bytes), ``bits`` (the size), ``created``
    (seconds since the epoch) and ``error``: ``None``, or why the header could not be read
    (``bits`` and ``created`` are then ``None``).
    """
    bitmaps = [
        {
            "name": name,
            "file_size": file_size,
            "bits": bits,
            "created": None if created_ns is None else created_ns / 1e9,
            "error": error,
        }
        for name, file_size, bits, created_ns, error in _sharedmap._list_bitmaps()
    ]
    bitmaps.sort(key=lambda b: b["name"])
    return bitmaps


def write(path, pairs, *, sorted=False, memory_limit=None, force=False, mode=0o600, temp_dir=None):
    """Write the snapshot of ``pairs`` to the file ``path`` in bounded memory; return its entries.

    ``pairs`` is a mapping or an iterable of ``(key, value)`` pairs, consumed once and never
    held: the entries are sorted in runs of at most ``memory_limit`` bytes (default 256 MiB)
    that spill to anonymous files in ``temp_dir`` and are merged, so the peak memory is that
    budget whatever the number of pairs.  ``sorted=True`` promises ascending keys (checked,
    one pass, no spill; :class:`OrderError` otherwise).  A key given twice keeps its last
    value.  The file appears atomically, as :meth:`rbtree.save` writes it (``force=True`` to
    replace one), and is the same snapshot byte for byte; if anything fails, or ``pairs``
    raises, nothing is left behind.
    """
    with Writer(path, sorted=sorted, memory_limit=memory_limit, force=force, mode=mode,
                temp_dir=temp_dir) as w:
        w.update(pairs)
    return w.count


def publish(name, pairs, *, sorted=False, memory_limit=None, force=False, mode=0o600, temp_dir=None):
    """Publish the snapshot of ``pairs`` into shared memory as ``name``, in bounded memory.

    As :func:`write`, for a shared map: the map appears atomically as :meth:`rbtree.share`
    publishes it (``force=True`` to replace one: readers see the old map or the new one, and
    ``refresh()`` moves them), and ``sharedmap.sharedmap(name)`` attaches to it.  Returns the
    number of entries.
    """
    with Writer(name=name, sorted=sorted, memory_limit=memory_limit, force=force, mode=mode,
                temp_dir=temp_dir) as w:
        w.update(pairs)
    return w.count
