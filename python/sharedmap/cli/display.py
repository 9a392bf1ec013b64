"""display.py: how the command shows things: sizes, counts, times and names, and writing them to stdout
(as UTF-8, whatever the locale says).

A map name need not be UTF-8 (a file in /dev/shm can be called anything).  Such a name comes from the command
line and from list_maps() as os.fsdecode() gives it, each byte that is not UTF-8 a lone surrogate ('\\udcff'
for 0xff), and is passed on to the binding as it is.  Shown, it is:
  - on stdout, in text: its own bytes (surrogateescape), as ls(1) writes file names into a pipe, so that what
    `sharedmap ls` prints can be handed back to the other commands;
  - in JSON (ls --json, info --json): the escape \\udcff, so that the output stays valid UTF-8 and
    json.loads() gives back the very str that os.fsdecode() gives;
  - in a message on stderr: \\xff, a byte that can be read.
"""
from __future__ import annotations

import datetime
import json
import re
import sys
from typing import Any, Optional


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


_CONTROL = re.compile("[\x00-\x1f\x7f]")


def without_controls(text: str) -> str:
    """text with each control character as \\xNN, so that a name made by hand (the library refuses such
    names, but a file can be put in /dev/shm under any name) cannot break or forge lines of output."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def readable(text: str) -> str:
    """text for a message on stderr: a byte that is not UTF-8 (a lone surrogate of os.fsdecode) as \\xff, a
    control character as \\xNN."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no decoding of bytes made
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return without_controls(text)


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(obj: Any) -> str:
    """obj as one line of JSON: non-ASCII text as it is, but a lone surrogate (a byte of a name that is not
    UTF-8) as its \\uXXXX escape, so that the line is valid UTF-8 and json.loads() gives the same str back."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False))
