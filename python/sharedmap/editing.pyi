# editing.pyi: sharedmap.edit(), sharedmap.compact() and the Editor they make (editing.py).
from _typeshed import StrOrBytesPath
from typing import Any

from ._sharedmap import _Edit

class Editor(_Edit[Any, Any]): ...

def edit(
    name: str | None = None,
    *,
    path: StrOrBytesPath | None = None,
    compact_at: float | None = 0.1,
    wait: bool = True,
    memory_limit: int | None = None,
    temp_dir: StrOrBytesPath | None = None,
) -> Editor: ...
def compact(
    name: str | None = None,
    *,
    path: StrOrBytesPath | None = None,
    wait: bool = True,
    memory_limit: int | None = None,
    temp_dir: StrOrBytesPath | None = None,
) -> int: ...
