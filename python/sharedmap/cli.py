"""cli.py: the `sharedmap` command (also `python -m sharedmap`): list, inspect, read, export, load, remove,
verify and clean up published maps and snapshot files.  Standard library only.

Every subcommand is a function `cmd_<name>(args) -> int`; failures raise `CliError`, which `main()` turns into
one line on stderr and the exit status.  Usage errors (bad arguments) exit 2 through argparse.
"""
from __future__ import annotations

import argparse
import base64
import binascii
import csv
import datetime
import gzip
import io
import itertools
import json
import math
import os
import re
import stat
import sys
import time
from typing import IO, Any, BinaryIO, Callable, Iterator, List, Optional, Tuple, Union

import sharedmap as sm

Key = Union[str, bytes]
Value = Union[str, bytes, int, float, bool, None]

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

FORMATS = ("tsv", "jsonl", "csv")
EXPORT_FORMATS = ("tsv", "jsonl")
_EXTENSIONS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}

EPILOG_EXIT = """\
exit status:
  0    success
  1    error: no such map or file, key not found, corrupt snapshot, bad input data, I/O error, ...
       (one line on stderr says which)
  2    usage error: unknown subcommand or option, missing or conflicting arguments
  130  interrupted (Ctrl-C)
"""

EPILOG_FORMATS = """\
file formats (UTF-8; a FILE ending in .gz is gzip-compressed, and gzip input is also recognised by content):
  tsv    one entry per line: KEY <TAB> VALUE <LF>.  In keys and values a backslash, tab, newline and carriage
         return are written \\\\ \\t \\n \\r, so any text round-trips exactly; a value that is exactly \\N is None.
         Values load as str (or None for \\N).  On export, int, float and bool values are written as text
         (42, 1.5, nan, true, false) and so load back as str; bytes keys and values are written as their
         UTF-8 text (an error if they are not UTF-8; use jsonl).  A CR LF line end is accepted on load.
  jsonl  one JSON object per line: {"key": KEY, "value": VALUE}.  Types are kept: strings, integers (64-bit),
         floats, true/false, null; bytes keys and values are {"$bytes": "<base64>"}; the non-finite floats are
         {"$float": "nan"}, {"$float": "inf"}, {"$float": "-inf"} (so every line is strict JSON).
  csv    two columns key,value (RFC 4180 quoting); load only; --header skips a first row of column names.
         Values load as str.
  Without --format the format is taken from the file name extension (.tsv .tab .jsonl .ndjson .csv,
  optionally followed by .gz).  A key that appears twice: the last one wins.
"""


class CliError(Exception):
    """A failure to report on one line of stderr, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ---------------------------------------------------------------------------- small helpers


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


def os_message(e: OSError) -> str:
    """'No such file or directory: x' without the '[Errno 2]' noise."""
    text = e.strerror or str(e)
    if e.filename is not None:
        return f"{text}: {os.fsdecode(e.filename)}"
    return text


def shown(name: str) -> str:
    """A name or path as messages show it: as is, but an empty one visible."""
    return name if name else "''"


def reason(e: Exception, target: str) -> str:
    """An exception's message without the ": 'TARGET'" the binding appends, as the CLI names the target first."""
    text = str(e)
    suffix = f": {target!r}"
    return text[: -len(suffix)] if text.endswith(suffix) and len(text) > len(suffix) else text


def write_out(data: bytes) -> None:
    """Write bytes to stdout (text goes out as UTF-8 whatever the locale says)."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


def out_line(text: str = "") -> None:
    write_out(text.encode("utf-8", "surrogateescape") + b"\n")


def parse_mode(text: str) -> int:
    """argparse type for --mode: octal permission bits, '0640' or '0o640' or '640'."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range 0..0777: {text!r}")
    return mode


def format_from_name(path: str) -> Optional[str]:
    base = path[:-3] if path.endswith(".gz") else path
    return _EXTENSIONS.get(os.path.splitext(base)[1].lower())


# ---------------------------------------------------------------------------- value codecs

_TSV_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}
_TSV_ESCAPE_RE = re.compile(r"\\(.?)", re.DOTALL)
TSV_NONE = "\\N"


def tsv_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def tsv_unescape(field: str) -> str:
    """Undo tsv_escape; ValueError on an escape it does not know (only \\\\ \\t \\n \\r exist)."""
    if "\\" not in field:
        return field

    def replace(m: "re.Match[str]") -> str:
        try:
            return _TSV_UNESCAPE[m.group(1)]
        except KeyError:
            if m.group(1) == "":
                raise ValueError("backslash at the end of a field (write \\\\ for a backslash)") from None
            raise ValueError(
                f"unknown escape \\{m.group(1)} (only \\\\ \\t \\n \\r, and \\N for None, exist)"
            ) from None

    return _TSV_ESCAPE_RE.sub(replace, field)


def as_text(value: Value, what: str) -> str:
    """A value as TSV text (see EPILOG_FORMATS); CliError for bytes that are not UTF-8."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise CliError(f"{what} is bytes that are not UTF-8 and cannot be written as TSV; use --format jsonl")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def to_json(value: Value) -> Any:
    """A key or value as a JSON-able object that keeps its type (see EPILOG_FORMATS)."""
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}  # 'nan', 'inf', '-inf'
    return value


def from_json(obj: Any, what: str) -> Value:
    """Inverse of to_json; ValueError for anything that is not a storable value."""
    if isinstance(obj, dict):
        if len(obj) == 1 and "$bytes" in obj and isinstance(obj["$bytes"], str):
            try:
                return base64.b64decode(obj["$bytes"], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{what}: $bytes is not valid base64") from None
        if len(obj) == 1 and "$float" in obj and isinstance(obj["$float"], str):
            try:
                return float(obj["$float"])
            except ValueError:
                raise ValueError(f"{what}: $float is not a float: {obj['$float']!r}") from None
        raise ValueError(f'{what}: an object must be {{"$bytes": base64}} or {{"$float": "nan"|"inf"|"-inf"}}')
    if isinstance(obj, (str, int, float)) or obj is None:  # bool is an int
        return obj
    raise ValueError(f"{what}: a {type(obj).__name__} cannot be stored (str, bytes, int, float, bool, null only)")


_JSON_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def plain_value(value: Value) -> bytes:
    """`get` output: str as its text, bytes as they are, the rest as JSON spells them."""
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if value is None:
        return b"null"
    if isinstance(value, bool):
        return b"true" if value else b"false"
    if isinstance(value, float):
        return repr(value).encode("ascii")
    return str(value).encode("ascii")


# ---------------------------------------------------------------------------- opening maps


def resolve_target(args: argparse.Namespace) -> Tuple[bool, str]:
    """(is_path, NAME or PATH) from the optional MAP positional and --path; a usage error unless exactly one."""
    parser: argparse.ArgumentParser = args.parser
    name: Optional[str] = args.map
    path: Optional[str] = args.path
    if name is not None and path is not None:
        parser.error("give either a map NAME or --path PATH, not both")
    if path is not None:
        return True, path
    if name is None:
        parser.error("give a map NAME or --path PATH")
    if "/" in name:  # map names never contain '/': this is a file
        return True, name
    return False, name


def open_reader(is_path: bool, target: str) -> Any:
    """Attach to a published map or open a snapshot file; CliError with a clear message otherwise."""
    try:
        if is_path:
            return sm.open(target)
        return sm.sharedmap(target)
    except FileNotFoundError:
        raise CliError(f"no such file: {target}" if is_path else f"no such map: {target}") from None
    except PermissionError:
        raise CliError(f"permission denied: {target}") from None
    except OSError as e:
        raise CliError(f"{target}: {os_message(e)}") from None
    except ValueError as e:
        raise CliError(f"{shown(target)}: {reason(e, target)}") from None


def opened(args: argparse.Namespace) -> Tuple[Any, str]:
    is_path, target = resolve_target(args)
    return open_reader(is_path, target), target


# ---------------------------------------------------------------------------- ls, info, get, rm, gc, verify


def cmd_ls(args: argparse.Namespace) -> int:
    try:
        maps = sorted(sm.list_maps(), key=lambda m: str(m["name"]))
    except OSError as e:
        raise CliError(os_message(e)) from None
    if args.json:
        out_line(json.dumps(maps, ensure_ascii=False))
        return EXIT_OK
    if not maps:
        return EXIT_OK
    table = [("NAME", "ENTRIES", "SIZE", "CREATED")]
    for m in maps:
        entries = m.get("entries")
        error = m.get("error")
        table.append(
            (
                str(m["name"]),
                "-" if entries is None else str(entries),
                human_size(m["size"]),
                f"unreadable: {error}" if error else format_created(m.get("created")),
            )
        )
    widths = [max(len(cells[i]) for cells in table) for i in range(4)]
    for cells in table:
        out_line(
            f"{cells[0]:<{widths[0]}}  {cells[1]:>{widths[1]}}  {cells[2]:>{widths[2]}}  {cells[3]}".rstrip()
        )
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    reader, _ = opened(args)
    with reader:
        info = dict(reader.info())
    if args.json:
        out_line(json.dumps(info, ensure_ascii=False))
        return EXIT_OK
    size = info.get("size")
    checksum = info.get("checksum")
    lines = [
        ("name", info.get("name") or "-"),
        ("path", info.get("path") or "-"),
        ("entries", info.get("entries")),
        ("size", f"{size} bytes ({human_size(size)})" if isinstance(size, int) else size),
        ("format version", info.get("format_version")),
        ("created", format_created(info.get("created"))),
        ("key kind", info.get("key_kind") or "-"),
        ("checksum", f"{checksum:#018x}" if isinstance(checksum, int) else checksum),
    ]
    for label, value in lines:
        out_line(f"{label + ':':<16}{value}")
    return EXIT_OK


def key_for(reader: Any, raw: bytes) -> Optional[Key]:
    """The key to look up, in the map's key kind; None when no key of that kind can match."""
    kind = reader.info().get("key_kind")
    if kind == "bytes":
        return raw
    if kind == "str":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None  # a str map holds only valid UTF-8 keys
    return None  # an empty map has no key kind and no keys


def cmd_get(args: argparse.Namespace) -> int:
    if args.hex:
        try:
            raw = bytes.fromhex(args.key)
        except ValueError:
            args.parser.error(f"--hex: not a hexadecimal string: {args.key!r}")
    else:
        raw = os.fsencode(args.key)  # undoes the surrogateescape of argv bytes that are not UTF-8
    reader, target = opened(args)
    with reader:
        key = key_for(reader, raw)
        if key is None:
            raise CliError(f"key not found: {args.key}")
        try:
            value = reader[key]
        except KeyError:
            raise CliError(f"key not found: {args.key}") from None
        except (TypeError, ValueError) as e:
            raise CliError(f"{target}: {reason(e, target)}") from None
    if args.json:
        data = json.dumps(to_json(value), ensure_ascii=False, allow_nan=False).encode("utf-8")
    else:
        data = plain_value(value)
    write_out(data if args.no_newline else data + b"\n")
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    status = EXIT_OK
    for name in args.names:
        try:
            removed = sm.rbtree.remove(name)
        except PermissionError:
            print(f"sharedmap: permission denied: {name}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        except OSError as e:
            print(f"sharedmap: {name}: {os_message(e)}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        except ValueError as e:
            print(f"sharedmap: {shown(name)}: {reason(e, name)}", file=sys.stderr)
            status = EXIT_ERROR
            continue
        if not removed and not args.force:
            print(f"sharedmap: no such map: {name}", file=sys.stderr)
            status = EXIT_ERROR
    return status


def cmd_gc(args: argparse.Namespace) -> int:
    try:
        removed = sm.gc()
    except OSError as e:
        raise CliError(os_message(e)) from None
    out_line(str(removed))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    reader, target = opened(args)
    with reader:
        try:
            reader.verify()
        except ValueError as e:
            raise CliError(f"{target}: corrupt: {reason(e, target)}") from None
    out_line("OK")
    return EXIT_OK


# ---------------------------------------------------------------------------- export


def open_output(path: Optional[str]) -> Tuple[BinaryIO, bool]:
    """The stream to export to, and whether it is ours to close (stdout is not)."""
    if path is None or path == "-":
        sys.stdout.flush()
        return sys.stdout.buffer, False
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "wb"), True  # type: ignore[return-value]
        return open(path, "wb", buffering=1 << 16), True
    except OSError as e:
        raise CliError(os_message(e)) from None


def tsv_escape_fast(text: str) -> str:
    """tsv_escape, with the common case (nothing to escape) found by four memchr-speed scans."""
    if "\\" in text or "\t" in text or "\n" in text or "\r" in text:
        return tsv_escape(text)
    return text


def tsv_chunk(pairs: List[Tuple[Key, Value]]) -> bytes:
    """TSV lines for a run of entries.  The common case, where no key or value holds a character that needs
    escaping, is joined unescaped and checked as a whole (counting separators), which is several times faster
    than escaping entry by entry; any other chunk is escaped entry by entry."""
    parts: List[str] = []
    append = parts.append
    nones = 0
    for key, value in pairs:
        append(key if type(key) is str else as_text(key, f"key {key!r}"))
        append("\t")
        if type(value) is str:
            append(value)
        elif value is None:
            append(TSV_NONE)
            nones += 1
        else:
            append(as_text(value, f"the value of key {key!r}"))
        append("\n")
    text = "".join(parts)
    n = len(pairs)
    if text.count("\t") != n or text.count("\n") != n or text.count("\\") != nones or "\r" in text:
        text = "".join(tsv_line(key, value) for key, value in pairs)
    return text.encode("utf-8")


def tsv_line(key: Key, value: Value) -> str:
    k = tsv_escape_fast(key if type(key) is str else as_text(key, f"key {key!r}"))
    if value is None:
        return f"{k}\t{TSV_NONE}\n"
    v = tsv_escape_fast(value if type(value) is str else as_text(value, f"the value of key {key!r}"))
    return f"{k}\t{v}\n"


def jsonl_chunk(pairs: List[Tuple[Key, Value]]) -> bytes:
    """JSON Lines for a run of entries (str keys and values take a fast path)."""
    encode = _JSON_ENCODE
    lines: List[str] = []
    append = lines.append
    for key, value in pairs:
        if type(key) is str and type(value) is str:
            append(f'{{"key": {encode(key)}, "value": {encode(value)}}}\n')
        else:
            append(encode({"key": to_json(key), "value": to_json(value)}) + "\n")
    return "".join(lines).encode("utf-8")


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt is None:
        guessed = format_from_name(args.output) if args.output not in (None, "-") else None
        fmt = guessed if guessed in EXPORT_FORMATS else "tsv"
    encode = jsonl_chunk if fmt == "jsonl" else tsv_chunk
    reader, _ = opened(args)
    with reader:
        out, ours = open_output(args.output)
        try:
            items = iter(reader.items())
            while True:
                chunk = list(itertools.islice(items, 4096))
                if not chunk:
                    break
                out.write(encode(chunk))
            out.flush()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise CliError(os_message(e)) from None
        finally:
            if ours:
                try:
                    out.close()
                except OSError:
                    pass
    return EXIT_OK


# ---------------------------------------------------------------------------- load


class Progress:
    """A one-line progress report on stderr: bytes read / total, percent, rate, entries; redrawn at most
    every `interval` seconds with a carriage return, finished with a newline."""

    def __init__(self, label: str, total: Optional[int], stream: IO[str], interval: float = 0.1) -> None:
        self.label = label
        self.total = total
        self.stream = stream
        self.interval = interval
        self.start = time.monotonic()
        self.last_draw = 0.0
        self.done = 0
        self.entries = 0
        self._width = 0

    def update(self, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self.last_draw >= self.interval:
            self.last_draw = now
            self.draw(now)

    def draw(self, now: float, end: str = "") -> None:
        elapsed = max(now - self.start, 1e-9)
        parts = [f"{self.label}: {human_size(self.done)}"]
        if self.total:
            parts[0] += f" / {human_size(self.total)} ({min(100.0, 100.0 * self.done / self.total):5.1f}%)"
        parts.append(f"{human_size(self.done / elapsed)}/s")
        parts.append(entries_text(self.entries))
        if end:
            parts.append(f"{elapsed:.1f} s")
        line = "  ".join(parts)
        pad = " " * max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write(f"\r{line}{pad}{end}")
        self.stream.flush()

    def finish(self) -> None:
        self.draw(time.monotonic(), end="\n")


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
    try:
        if path == "-":
            raw: BinaryIO = open(sys.stdin.fileno(), "rb", buffering=0, closefd=False)
        else:
            raw = open(path, "rb", buffering=0)
    except OSError as e:
        raise CliError(os_message(e)) from None
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


class DataError(Exception):
    """Bad input data: the message names the line."""


Put = Callable[[Key, Value], None]
LOAD_ERRORS = (TypeError, ValueError, OverflowError)  # what rbtree[key] = value raises for a bad key or value


def line_blocks(stream: BinaryIO, size: int = 1 << 20) -> Iterator[Tuple[int, List[str]]]:
    """The lines of a UTF-8 byte stream, a block of about `size` bytes at a time (decoding and splitting a
    block at once is much faster than line by line): (number of its first line, its lines without the LF).
    A last line without an LF counts too."""
    first = 1
    while True:
        block = stream.read(size)
        if not block:
            return
        if not block.endswith(b"\n"):
            block += stream.readline()
        try:
            text = block.decode("utf-8")
        except UnicodeDecodeError as e:
            lineno = first + block.count(b"\n", 0, e.start)
            raise DataError(f"line {lineno}: not valid UTF-8") from None
        lines = text.split("\n")
        if lines[-1] == "":
            lines.pop()
        yield first, lines
        first += len(lines)


def load_tsv(stream: BinaryIO, put: Put, bytes_keys: bool) -> Iterator[int]:
    """Insert every TSV line of stream with put(); yield the running count after each block."""
    count = 0
    for first, lines in line_blocks(stream):
        for lineno, line in enumerate(lines, first):
            if "\r" in line and line.endswith("\r"):  # CR LF; a CR that is data is always escaped
                line = line[:-1]
            fields = line.split("\t")
            if len(fields) != 2:
                if not line:
                    continue
                raise DataError(
                    f"line {lineno}: expected KEY<TAB>VALUE, found {len(fields)} field(s) "
                    "(tabs in keys and values must be written \\t)"
                )
            key, text = fields
            value: Value = text
            try:
                if "\\" in line:
                    key = tsv_unescape(key)
                    value = None if text == TSV_NONE else tsv_unescape(text)
                put(key.encode("utf-8") if bytes_keys else key, value)
            except LOAD_ERRORS as e:
                raise DataError(f"line {lineno}: {e}") from None
            count += 1
        yield count


def load_jsonl(stream: BinaryIO, put: Put) -> Iterator[int]:
    """Insert every JSON Lines record of stream with put(); yield the running count after each block."""
    count = 0
    decode = json.JSONDecoder().decode
    for first, lines in line_blocks(stream):
        if first == 1 and lines and lines[0].startswith("\ufeff"):
            lines[0] = lines[0][1:]  # a byte order mark
        for lineno, line in enumerate(lines, first):
            if not line or line.isspace():
                continue
            try:
                record = decode(line)
            except ValueError as e:
                raise DataError(f"line {lineno}: not valid JSON: {e}") from None
            if type(record) is not dict or len(record) != 2 or "key" not in record or "value" not in record:
                raise DataError(f'line {lineno}: expected an object {{"key": ..., "value": ...}}')
            key, value = record["key"], record["value"]
            try:
                if type(key) is not str:
                    key = from_json(key, "key")
                    if not isinstance(key, (str, bytes)):
                        raise ValueError('key must be a string or {"$bytes": base64}')
                if type(value) is dict or type(value) is list:
                    value = from_json(value, "value")
                put(key, value)
            except LOAD_ERRORS as e:
                raise DataError(f"line {lineno}: {e}") from None
            count += 1
        yield count


def load_csv(stream: BinaryIO, put: Put, bytes_keys: bool, header: bool) -> Iterator[int]:
    """Insert every key,value row of stream with put(); yield the running count every few thousand rows."""
    _raise_csv_field_limit()
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text, strict=True)
    count = 0
    try:
        if header:
            next(reader, None)
        for row in reader:
            if len(row) != 2:
                if not row:
                    continue
                raise DataError(f"line {reader.line_num}: expected 2 fields key,value, found {len(row)}")
            key, value = row
            try:
                put(key.encode("utf-8") if bytes_keys else key, value)
            except LOAD_ERRORS as e:
                raise DataError(f"line {reader.line_num}: {e}") from None
            count += 1
            if not count & 0x1FFF:
                yield count
        yield count
    except csv.Error as e:
        raise DataError(f"line {reader.line_num}: {e}") from None
    except UnicodeDecodeError:
        raise DataError(f"line {reader.line_num + 1}: not valid UTF-8") from None
    finally:
        text.detach()


def _raise_csv_field_limit() -> None:
    """Let a CSV field be as long as a value can be (the default limit is 128 KiB)."""
    limit = sys.maxsize
    while True:
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 2


def map_exists(name: str) -> bool:
    try:
        reader = sm.sharedmap(name)
    except FileNotFoundError:
        return False
    except ValueError as e:
        if "name" in str(e).lower():  # an invalid name: say so now, not after reading the whole input
            raise CliError(f"{shown(name)}: {reason(e, name)}") from None
        return True  # a damaged map is still there
    except OSError:
        return True
    reader.close()
    return True


def cmd_load(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.parser
    fmt = args.format
    if fmt is None:
        if args.file == "-":
            parser.error("cannot tell the format of stdin: give --format tsv|jsonl|csv")
        fmt = format_from_name(args.file)
        if fmt is None:
            parser.error(f"cannot tell the format of {args.file!r} from its extension: give --format tsv|jsonl|csv")
    if args.header and fmt != "csv":
        parser.error("--header applies to --format csv only")
    if args.bytes_keys and fmt == "jsonl":
        parser.error("--bytes-keys applies to tsv and csv (JSON Lines gives each key's type)")
    if not args.force and map_exists(args.name):
        raise CliError(f"map exists: {args.name} (use --force to replace it)")

    show = args.progress if args.progress is not None else sys.stderr.isatty()
    label = "stdin" if args.file == "-" else os.path.basename(args.file)
    progress = Progress(f"loading {label}", None, sys.stderr) if show else None
    stream = open_input(args.file, progress)

    builder: Any = sm.rbtree()
    put: Put = builder.__setitem__
    try:
        if fmt == "tsv":
            counts = load_tsv(stream, put, args.bytes_keys)
        elif fmt == "jsonl":
            counts = load_jsonl(stream, put)
        else:
            counts = load_csv(stream, put, args.bytes_keys, args.header)
        for count in counts:
            if progress is not None:
                progress.entries = count
    except DataError as e:
        raise CliError(f"{label}: {e}") from None
    except (OSError, EOFError) as e:  # read errors, truncated gzip
        raise CliError(f"{label}: {os_message(e) if isinstance(e, OSError) else e}") from None
    finally:
        stream.close()
        if progress is not None:
            progress.finish()

    start = time.monotonic()
    try:
        builder.share(args.name, force=args.force, mode=args.mode)
    except FileExistsError:
        raise CliError(f"map exists: {args.name} (use --force to replace it)") from None
    except PermissionError:
        raise CliError(f"permission denied: {args.name}") from None
    except OSError as e:
        raise CliError(f"{args.name}: {os_message(e)}") from None
    except ValueError as e:
        raise CliError(f"{shown(args.name)}: {reason(e, args.name)}") from None
    if progress is not None:
        elapsed = time.monotonic() - start
        print(f"published {args.name}: {entries_text(len(builder))} in {elapsed:.1f} s", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------- the parser


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="sharedmap",
        description="Inspect and manage sharedmap maps: published in shared memory (by NAME) or saved as "
        "snapshot files (by PATH).",
        epilog=EPILOG_EXIT + "\n" + EPILOG_FORMATS,
        formatter_class=fmt,
    )
    parser.add_argument("--version", action="version", version=f"sharedmap {getattr(sm, '__version__', '?')}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int], epilog: str = "") -> Any:
        p = sub.add_parser(
            name, help=help_text, description=help_text, epilog=epilog + EPILOG_EXIT, formatter_class=fmt
        )
        p.set_defaults(func=func, parser=p)
        return p

    def target_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("map", nargs="?", metavar="NAME", help="a published map (a NAME with a '/' is a file path)")
        p.add_argument("--path", metavar="PATH", help="a snapshot file (written by rbtree.save) instead of a NAME")

    p = command("ls", "List the published maps: name, entries, size, creation time.", cmd_ls)
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of objects: name, size, entries, created (seconds since the epoch), "
        "key_kind, error",
    )

    p = command(
        "info",
        "Show a map's entries, size, format version, creation time, key kind and checksum.",
        cmd_info,
    )
    target_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")

    p = command(
        "get",
        "Print the value of KEY.",
        cmd_get,
        epilog="The key is looked up in the map's key kind: for a map with bytes keys KEY is taken as its UTF-8\n"
        "bytes, or as hexadecimal with --hex.  A str value prints as its text, bytes as they are, others as JSON\n"
        "spells them (42, 1.5, true, null); --json prints the value as in JSON Lines export.  A KEY that starts\n"
        "with '-' goes after '--'.  A missing key exits 1 with 'key not found'.\n\n",
    )
    target_args(p)
    p.add_argument("key", metavar="KEY", help="the key")
    p.add_argument("--hex", action="store_true", help="KEY is hexadecimal (e.g. 00ff10) for any bytes")
    p.add_argument("--json", action="store_true", help="print the value as JSON (types kept)")
    p.add_argument("-n", "--no-newline", action="store_true", help="do not print a newline after the value")

    p = command(
        "export",
        "Write every entry, in key order, as TSV or JSON Lines.",
        cmd_export,
        epilog=EPILOG_FORMATS + "\n",
    )
    target_args(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, help="output format (default: from -o's extension, else tsv)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.gz: compressed) instead of stdout")

    p = command(
        "load",
        "Build a map from a TSV, JSON Lines or CSV file and publish it as NAME.",
        cmd_load,
        epilog="The map is published only once the whole file has been read, in one atomic step: on any error\n"
        "nothing is published.  A progress line is shown on stderr when stderr is a terminal (or with\n"
        "--progress).\n\n" + EPILOG_FORMATS + "\n",
    )
    p.add_argument("name", metavar="NAME", help="the name to publish the map under")
    p.add_argument("file", metavar="FILE", help="the input file, '-' for stdin")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from FILE's extension)")
    p.add_argument("--force", action="store_true", help="replace an existing map of that name (atomically)")
    p.add_argument(
        "--mode",
        type=parse_mode,
        default=0o600,
        metavar="MODE",
        help="permission bits of the map, octal (default 0600; e.g. 0640 to let the group read it)",
    )
    p.add_argument("--header", action="store_true", help="csv: the first row is a header, skip it")
    p.add_argument(
        "--bytes-keys", action="store_true", help="tsv, csv: store keys as bytes (their UTF-8) instead of str"
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
    prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")

    p = command("rm", "Unpublish maps.  Processes attached to them keep reading them.", cmd_rm)
    p.add_argument("names", nargs="+", metavar="NAME", help="map to remove")
    p.add_argument("-f", "--force", action="store_true", help="no error for a map that does not exist")

    p = command(
        "verify",
        "Check a map completely (checksum, every record, order, index): print OK, or the reason and exit 1.",
        cmd_verify,
    )
    target_args(p)

    command(
        "gc",
        "Remove the debris of publishes whose writer died; print how many objects were removed.",
        cmd_gc,
    )
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        status = func(args)
        sys.stdout.flush()
        return status
    except CliError as e:
        print(f"sharedmap: {e.message}", file=sys.stderr)
        return e.status
    except BrokenPipeError:
        # The reader of our stdout went away (`sharedmap export x | head`): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\nsharedmap: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
