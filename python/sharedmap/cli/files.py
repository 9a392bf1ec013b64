"""files.py: the input of `load` and the output of `export`: '-' for stdin or stdout, gzip by name (and, for
input, by content), and the count of bytes read that the progress report shows.  OSError goes up to the
caller, which reports it (errors.py)."""
from __future__ import annotations

import gzip
import io
import os
import stat
import sys
from typing import Any, BinaryIO, Callable, Optional, Tuple

from .errors import CliError
from .progress import Progress


class _CountingReader(io.RawIOBase):
    """Counts the bytes read from a raw binary stream and reports them to a callback."""

    def __init__(self, raw: BinaryIO, callback: Optional[Callable[[int], None]]) -> None:
        super().__init__()
        self._raw = raw
        self._callback = callback
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self.count += n
            if self._callback is not None:
                self._callback(self.count)
        return n or 0

    def close(self) -> None:
        try:
            self._raw.close()
        finally:
            super().close()


def open_input(path: str, progress: Optional[Progress]) -> BinaryIO:
    """The decompressed byte stream of FILE ('-' is stdin), counting the bytes read from disk for progress."""
    if path == "-":
        raw: BinaryIO = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
    else:
        raw = open(path, "rb", buffering=0)
    st = os.fstat(raw.fileno())
    if stat.S_ISDIR(st.st_mode):
        raw.close()
        raise CliError(f"is a directory: {path}")
    callback = None
    if progress is not None:
        progress.total = st.st_size if stat.S_ISREG(st.st_mode) else None
        callback = progress.update
    buffered = io.BufferedReader(_CountingReader(raw, callback), buffer_size=1 << 20)
    if path.endswith(".gz") or buffered.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[return-value]
    return buffered


def open_output(path: Optional[str]) -> Tuple[BinaryIO, bool]:
    """The stream to export to, and whether it is ours to close (stdout is not)."""
    if path is None or path == "-":
        sys.stdout.flush()
        return sys.stdout.buffer, False
    if path.endswith(".gz"):
        return gzip.open(path, "wb"), True  # type: ignore[return-value]
    return open(path, "wb", buffering=1 << 16), True
