"""files.py: the input of `load` and the output of `export`: '-' for stdin or stdout, gzip by name (and, for
input, by content), the count of bytes read that the progress report shows, and an output FILE that appears
complete or not at all.  OSError goes up to the caller, which reports it (errors.py)."""
from __future__ import annotations

import contextlib
import gzip
import io
import os
import secrets
import stat
import sys
from typing import Any, BinaryIO, Callable, Iterator, Optional, Tuple

from . import interrupts
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


@contextlib.contextmanager
def output_file(path: Optional[str]) -> Iterator[BinaryIO]:
    """The stream to export to, for the block: stdout for None or '-'; else FILE, gzip-compressed if its name
    ends in .gz.  FILE is written under a temporary name beside it and renamed over it only once the block
    has ended without an error, so that a failed export leaves nothing behind and an existing FILE as it was.
    A FILE that is a symbolic link, a device or a FIFO (/dev/stdout, /dev/null) is written in place: there
    is no file of ours to replace."""
    if path is None or path == "-":
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        st: Optional[os.stat_result] = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        with _streams(open(path, "wb", buffering=1 << 16), path) as out:
            yield out
        return
    raw, temporary = _create_beside(path)
    try:
        if st is not None:
            os.fchmod(raw.fileno(), stat.S_IMODE(st.st_mode))  # FILE's mode, not the umask's
        with _streams(raw, path) as out:
            yield out
        with interrupts.final_step():
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            raw.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _create_beside(path: str) -> Tuple[BinaryIO, str]:
    """A new file in path's directory with a name of its own, .NAME.RANDOM.tmp, as a new file at path would
    be made (mode 0666 less the umask): (the file, its path).  An error names path, the file asked for."""
    directory, base = os.path.split(path)
    while True:
        temporary = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.tmp")
        try:
            return open(temporary, "xb", buffering=1 << 16), temporary
        except FileExistsError:
            continue
        except OSError as e:
            raise OSError(e.errno, e.strerror, path) from None


@contextlib.contextmanager
def _streams(raw: BinaryIO, path: str) -> Iterator[BinaryIO]:
    """raw, or a gzip stream onto it if path ends in .gz, for the block; closed at its end, where the error
    of a last write still counts; after a failure, closed without a word."""
    out: BinaryIO = raw
    if path.endswith(".gz"):
        out = gzip.GzipFile(filename=path, mode="wb", fileobj=raw)  # type: ignore[assignment]
    try:
        yield out
    except BaseException:
        for stream in (out, raw):
            with contextlib.suppress(OSError):
                stream.close()
        raise
    try:
        out.close()
    finally:
        raw.close()
