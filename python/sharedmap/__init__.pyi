# __init__.pyi: the public interface of the sharedmap package, for type checkers.  The classes and functions of
# the C extension are typed in _sharedmap.pyi; list_maps(), list_bitmaps(), write() and publish() are written in Python (__init__.py).
from collections.abc import Iterable, Mapping
from typing import Any, Literal, NamedTuple, TypedDict

from _typeshed import StrOrBytesPath

from . import _sharedmap as _sharedmap
from .editing import Editor as Editor, compact as compact, edit as edit
from ._sharedmap import (
    FORMAT_VERSION as FORMAT_VERSION,
    NAME_MAX as NAME_MAX,
    BitIndexError as BitIndexError,
    ConflictError as ConflictError,
    CorruptSnapshotError as CorruptSnapshotError,
    Error as Error,
    InvalidNameError as InvalidNameError,
    KeyKindError as KeyKindError,
    NotASnapshotError as NotASnapshotError,
    OrderError as OrderError,
    SymlinkError as SymlinkError,
    TooLargeError as TooLargeError,
    UnsupportedVersionError as UnsupportedVersionError,
    Writer as Writer,
    __version__ as __version__,
    gc as gc,
    loads as loads,
    open as open,
    rbtree as rbtree,
    sharedbitmap as sharedbitmap,
    sharedmap as sharedmap,
)

__all__ = [
    "BitIndexError",
    "ConflictError",
    "CorruptSnapshotError",
    "Editor",
    "Error",
    "FORMAT_VERSION",
    "InvalidNameError",
    "KeyKindError",
    "NAME_MAX",
    "NotASnapshotError",
    "OrderError",
    "Shard",
    "SymlinkError",
    "TooLargeError",
    "UnsupportedVersionError",
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
    "shards",
    "sharedbitmap",
    "sharedmap",
    "write",
    "write_set",
]

class _MapListing(TypedDict):
    """One element of list_maps().  entries, created and key_kind are None (and error says why) for a map
    whose header could not be read."""

    name: str
    size: int  # bytes
    entries: int | None
    created: float | None  # seconds since the Unix epoch
    key_kind: Literal["str", "bytes"] | None
    error: str | None

def list_maps() -> list[_MapListing]: ...

class _BitmapListing(TypedDict):
    """One element of list_bitmaps().  bits and created are None (and error says why) for a bitmap
    whose header could not be read."""

    name: str
    file_size: int  # bytes
    bits: int | None
    created: float | None  # seconds since the Unix epoch
    error: str | None

def list_bitmaps() -> list[_BitmapListing]: ...

def write(
    path: StrOrBytesPath,
    pairs: Mapping[object, object] | Iterable[tuple[object, object]],
    *,
    sorted: bool = False,
    memory_limit: int | None = None,
    force: bool = False,
    mode: int = 0o600,
    temp_dir: StrOrBytesPath | None = None,
) -> int: ...
class Shard(NamedTuple):
    lower: Any
    entries: int
    size: int
    checksum: int

def shards(m: sharedmap[Any, Any]) -> list[Shard]: ...
def write_set(
    path: StrOrBytesPath,
    parts: Iterable[Mapping[object, object] | Iterable[tuple[object, object]]],
    *,
    sorted: bool = False,
    memory_limit: int | None = None,
    force: bool = False,
    mode: int = 0o644,
    temp_dir: StrOrBytesPath | None = None,
) -> int: ...
def load_set(path: StrOrBytesPath, name: str, *, force: bool = False, mode: int = 0o600) -> None: ...
def publish(
    name: str,
    pairs: Mapping[object, object] | Iterable[tuple[object, object]],
    *,
    sorted: bool = False,
    memory_limit: int | None = None,
    force: bool = False,
    mode: int = 0o600,
    temp_dir: StrOrBytesPath | None = None,
) -> int: ...
