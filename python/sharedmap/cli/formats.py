"""formats.py: the file formats of export and load (TSV, JSON Lines, CSV): readers, writers, their escaping,
and the value conversions they share.  HELP is what --help says of them; the code below does what it says.
"""
from __future__ import annotations

import base64
import binascii
import csv
import io
import json
import math
import os
import re
import sys
from typing import Any, BinaryIO, Callable, Iterator, List, Optional, Tuple, Union

from .errors import CliError, DataError

Key = Union[str, bytes, int]
Value = Union[str, bytes, int, float, bool, None]

FORMATS = ("tsv", "jsonl", "csv")
KEY_KINDS = ("str", "bytes", "int")
EXPORT_FORMATS = ("tsv", "jsonl")
_EXTENSIONS = {
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
}

HELP = """\
file formats (UTF-8; a FILE ending in .gz is gzip-compressed, and gzip input is also recognised by content):
  tsv    one entry per line: KEY <TAB> VALUE <LF>.  In keys and values a backslash, tab, newline and carriage
         return are written \\\\ \\t \\n \\r, so any text round-trips exactly; a value that is exactly \\N is None.
         Values load as str (or None for \\N).  On export, int, float and bool values are written as text
         (42, 1.5, nan, true, false) and so load back as str; bytes keys and values are written as their
         UTF-8 text (an error if they are not UTF-8; use jsonl).  On load a CR LF line end is accepted,
         and a byte order mark at the start of the file skipped (as for jsonl and csv).
  jsonl  one JSON object per line: {"key": KEY, "value": VALUE}.  Types are kept: strings, integers (64-bit),
         floats, true/false, null; bytes keys and values are {"$bytes": "<base64>"}; the non-finite floats are
         {"$float": "nan"}, {"$float": "inf"}, {"$float": "-inf"} (so every line is strict JSON).
  csv    two columns key,value (RFC 4180 quoting); load only; --header skips a first row of column names.
         Values load as str.
  Without --format the format is taken from the file name extension (.tsv .tab .jsonl .ndjson .csv,
  optionally followed by .gz).  A key that appears twice: the last one wins.
key kinds (one per map: str, bytes or int keys):
  tsv, csv  keys load as str, or with --keys bytes as their UTF-8 bytes, or with --keys int as signed
         64-bit integers written in decimal (-9223372036854775808 .. 9223372036854775807, an optional sign
         and digits only; anything else is an error that names its line).  Export writes int keys in
         decimal, so `load --keys int` reads them back.
  jsonl  each key's JSON type gives its kind: a string is a str key, {"$bytes": ...} a bytes key, and a
         JSON integer an int key (a map of integer keys is an int map; mixing kinds is an error).  Export
         writes int keys as JSON integers, so load(export(m)) == m.  With --keys int, keys that are strings
         of decimal integers ("42") load as int keys too.
"""


def format_from_name(path: str) -> Optional[str]:
    base = path[:-3] if path.endswith(".gz") else path
    return _EXTENSIONS.get(os.path.splitext(base)[1].lower())


# ---------------------------------------------------------------------------- values

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


# ---------------------------------------------------------------------------- writers (export)

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


# ---------------------------------------------------------------------------- readers (load)

INT_KEY_MIN, INT_KEY_MAX = -(1 << 63), (1 << 63) - 1
_INT_KEY_RE = re.compile(r"[+-]?[0-9]+\Z")


def parse_int_key(text: str) -> int:
    """A key written in decimal as a signed 64-bit integer; ValueError that says why not."""
    shown = text if len(text) <= 40 else text[:40] + "..."
    if not _INT_KEY_RE.match(text):
        raise ValueError(f"key {shown!r} is not an integer (--keys int: decimal digits with an optional sign)")
    if len(text.lstrip("+-").lstrip("0")) > 19:  # past int64 (and before int() refuses 4300 digits)
        raise ValueError(f"key {shown} is out of range for an int key ({INT_KEY_MIN} .. {INT_KEY_MAX})")
    return check_int_key(int(text))


def check_int_key(key: int) -> int:
    if not INT_KEY_MIN <= key <= INT_KEY_MAX:
        raise ValueError(f"key {key} is out of range for an int key ({INT_KEY_MIN} .. {INT_KEY_MAX})")
    return key


def key_converter(keys: str) -> Callable[[str], Key]:
    """How a tsv or csv key (text) becomes a key of the kind --keys names."""
    if keys == "bytes":
        return lambda text: text.encode("utf-8")
    if keys == "int":
        return parse_int_key
    return lambda text: text


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


def load_tsv(stream: BinaryIO, put: Put, keys: str = "str") -> Iterator[int]:
    """Insert every TSV line of stream with put(), keys of the kind `keys` names; yield the running count after
    each block."""
    count = 0
    convert = key_converter(keys)
    plain = keys == "str"
    for first, lines in line_blocks(stream):
        if first == 1 and lines and lines[0].startswith("\ufeff"):
            lines[0] = lines[0][1:]  # a byte order mark
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
                put(key if plain else convert(key), value)
            except LOAD_ERRORS as e:
                raise DataError(f"line {lineno}: {e}") from None
            count += 1
        yield count


def load_jsonl(stream: BinaryIO, put: Put, keys: Optional[str] = None) -> Iterator[int]:
    """Insert every JSON Lines record of stream with put(); yield the running count after each block.  Keys
    take their kind from their JSON type (an integer is an int key); with keys="int", strings of decimal
    integers are int keys too."""
    count = 0
    str_as_int = keys == "int"
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
                if type(key) is int:
                    check_int_key(key)
                elif type(key) is str:
                    if str_as_int:
                        key = parse_int_key(key)
                else:
                    key = from_json(key, "key")
                    if not isinstance(key, (str, bytes)):
                        raise ValueError('key must be a string, an integer or {"$bytes": base64}')
                if type(value) is dict or type(value) is list:
                    value = from_json(value, "value")
                put(key, value)
            except LOAD_ERRORS as e:
                raise DataError(f"line {lineno}: {e}") from None
            count += 1
        yield count


def load_csv(stream: BinaryIO, put: Put, keys: str = "str", header: bool = False) -> Iterator[int]:
    """Insert every key,value row of stream with put(), keys of the kind `keys` names; yield the running count
    every few thousand rows."""
    _raise_csv_field_limit()
    convert = key_converter(keys)
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
                put(convert(key), value)
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
