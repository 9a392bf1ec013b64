"""display.py: how the command shows things: sizes, counts, times and names, and writing them to stdout
(as UTF-8, whatever the locale says)."""
from __future__ import annotations

import datetime
import sys
from typing import Optional


def human_size(n: float) -> str:
    """1023 -> '1023 B', 1536 -> '1.5 KiB' (binary units)."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024.0
        if n < 1024 or unit == "PiB":
            break
    return f"{n:.1f} {unit}"


def entries_text(n: int) -> str:
    return "1 entry" if n == 1 else f"{n:,} entries"


def created_datetime(created: Optional[float]) -> Optional[datetime.datetime]:
    """A creation time in seconds since the epoch (as info() and list_maps() give it) as a local datetime."""
    if not created or created <= 0:
        return None
    try:
        return datetime.datetime.fromtimestamp(created).astimezone()
    except (OverflowError, OSError, ValueError):
        return None


def format_created(created: Optional[float]) -> str:
    dt = created_datetime(created)
    return "-" if dt is None else dt.strftime("%Y-%m-%d %H:%M:%S")


def shown(name: str) -> str:
    """A name or path as messages show it: as is, but an empty one visible."""
    return name if name else "''"


def write_out(data: bytes) -> None:
    """Write bytes to stdout, after any text already written to sys.stdout."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def out_line(text: str = "") -> None:
    """Write a line of text to stdout (UTF-8; a surrogate-escaped byte as that byte)."""
    write_out(text.encode("utf-8", "surrogateescape") + b"\n")

