"""commands.py: the commands, one function `cmd_<name>(args) -> exit status` each, and how they find and open
the map they work on.  A failure raises CliError (errors.py), which main() reports.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import sharedmap as sm

from . import formats, interrupts
from .display import (
    entries_text,
    format_created,
    human_size,
    json_text,
    out_line,
    readable,
    shown,
    without_controls,
    write_out,
)
from .errors import EXIT_ERROR, EXIT_OK, CliError, Step, complain, explain, reporting
from .files import open_input, output_file
from .formats import Key, Put
from .progress import Progress

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
    if is_path:
        with reporting(Step.OPEN_FILE, target):
            return sm.open(target)
    with reporting(Step.OPEN_MAP, target):
        return sm.sharedmap(target)


def opened(args: argparse.Namespace) -> Tuple[Any, str]:
    is_path, target = resolve_target(args)
    return open_reader(is_path, target), target


# ---------------------------------------------------------------------------- ls, info, get, rm, gc, verify


def print_table(table: Sequence[Sequence[str]]) -> None:
    """Rows of cells: the first left-aligned, the middle ones right-aligned, the last as it is."""
    n = len(table[0])
    widths = [max(len(cells[i]) for cells in table) for i in range(n)]
    for cells in table:
        middle = "".join(f"  {cells[i]:>{widths[i]}}" for i in range(1, n - 1))
        out_line(f"{cells[0]:<{widths[0]}}{middle}  {cells[n - 1]}".rstrip())


def cmd_ls(args: argparse.Namespace) -> int:
    with reporting(Step.LIST):
        maps = sorted(sm.list_maps(), key=lambda m: str(m["name"]))
        bitmaps = sorted(sm.list_bitmaps(), key=lambda b: str(b["name"]))
    if args.json:
        rows: List[Dict[str, Any]] = [dict(m, kind="map") for m in maps]
        rows += [dict(b, kind="bitmap") for b in bitmaps]
        out_line(json_text(rows))
        return EXIT_OK
    if maps:
        table: List[Tuple[str, ...]] = [("NAME", "ENTRIES", "KEYS", "SIZE", "CREATED")]
        for m in maps:
            entries = m.get("entries")
            error = m.get("error")
            table.append(
                (
                    without_controls(str(m["name"])),
                    "-" if entries is None else str(entries),
                    m.get("key_kind") or "-",
                    human_size(m["size"]),
                    f"unreadable: {error}" if error else format_created(m.get("created")),
                )
            )
        print_table(table)
    if bitmaps:  # right after the maps: no empty line, every line of ls has a name first
        table = [("BITMAP", "BITS", "SIZE", "CREATED")]
        for b in bitmaps:
            error = b.get("error")
            table.append(
                (
                    without_controls(str(b["name"])),
                    "-" if b.get("bits") is None else str(b["bits"]),
                    human_size(b["file_size"]),
                    f"unreadable: {error}" if error else format_created(b.get("created")),
                )
            )
        print_table(table)
    return EXIT_OK


def cmd_info_bitmap(args: argparse.Namespace) -> int:
    with reporting(Step.OPEN_BITMAP, args.map):
        bitmap = sm.sharedbitmap(args.map, readonly=True)
    with bitmap:
        info: Dict[str, Any] = dict(bitmap.info())
        with reporting(Step.READ, args.map):
            info["set_bits"] = bitmap.count()
    if args.json:
        out_line(json_text(info))
        return EXIT_OK
    lines = [
        ("name", info["name"]),
        ("path", info["path"]),
        ("bits", info["size"]),
        ("set bits", info["set_bits"]),
        ("capacity", f"{info['capacity']} bits (at most {info['max_bits']})"),
        ("file size", f"{info['file_size']} bytes ({human_size(info['file_size'])})"),
        ("format version", info["format_version"]),
        ("created", format_created(info["created"])),
        ("resizes", info["resizes"]),
    ]
    for label, value in lines:
        out_line(f"{label + ':':<16}{value}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    if args.bitmap:
        if args.map is None or args.path is not None:
            args.parser.error("--bitmap takes a NAME (bitmaps live in shared memory, not in files)")
        return cmd_info_bitmap(args)
    reader, target = opened(args)
    with reader:
        info = dict(reader.info())
        shards = sm.shards(reader)
    is_set = len(shards) > 1 or os.path.isdir(target) or os.path.basename(target) == "MANIFEST"
    if is_set:
        info["shards"] = [s._asdict() for s in shards]
        if os.path.isdir(target) or os.path.basename(target) == "MANIFEST":
            info["size"] += sum(s.size for s in shards)  # the manifest, and the shard files beside it
    if args.json:
        out_line(json_text(info))
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
    if is_set:
        lines.append(("shards", len(shards)))
    layer = info.get("layer")
    if layer:
        lines.append(("base", f"{entries_text(layer['base_entries'])}, {human_size(layer['base_size'])} "
                              f"({shown(layer['base_file'])})"))
        lines.append(("delta", f"{layer['delta_records']} changes, {human_size(layer['delta_size'])}"))
    for label, value in lines:
        out_line(f"{label + ':':<16}{value}")
    for i, shard in enumerate(shards if is_set else []):
        lower = "-" if shard.lower is None else shown(shard.lower)
        out_line(f"  shard {i:<5} from {lower}: {entries_text(shard.entries)}, {human_size(shard.size)}")
    return EXIT_OK


def key_for(reader: Any, raw: bytes) -> Optional[Key]:
    """The key to look up, in the map's key kind; None when no key of that kind can match."""
    return key_of_kind(reader.info().get("key_kind"), raw)


def key_of_kind(kind: Optional[str], raw: bytes) -> Optional[Key]:
    """KEY (argv bytes) as a key of kind; None when no key of that kind can be it."""
    if kind == "bytes":
        return raw
    if kind == "str":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return None  # a str map holds only valid UTF-8 keys
    if kind == "int":
        try:
            return formats.parse_int_key(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            return None  # not a decimal int64: no key of an int map matches
    return None  # an empty map has no key kind and no keys


def cmd_get(args: argparse.Namespace) -> int:
    raw = key_argument(args)
    reader, target = opened(args)
    with reader:
        key = key_for(reader, raw)
        if key is None:
            raise CliError(f"key not found: {args.key}")
        try:
            with reporting(Step.READ, target):
                value = reader[key]
        except KeyError:
            raise CliError(f"key not found: {args.key}") from None
    if args.json:
        data = json.dumps(formats.to_json(value), ensure_ascii=False, allow_nan=False).encode("utf-8")
    else:
        data = formats.plain_value(value)
    write_out(data if args.no_newline else data + b"\n")
    return EXIT_OK


def key_argument(args: argparse.Namespace) -> bytes:
    """KEY of get, set and del as bytes: its hexadecimal with --hex, else as argv gave it."""
    if args.hex:
        try:
            return bytes.fromhex(args.key)
        except ValueError:
            args.parser.error(f"--hex: not a hexadecimal string: {args.key!r}")
    return os.fsencode(args.key)  # undoes the surrogateescape of argv bytes that are not UTF-8


# ---------------------------------------------------------------------------- set, del, load --delta, compact


def open_editor(args: argparse.Namespace, name: str, is_path: bool = False) -> Any:
    """An edit of the map NAME (or file): it waits for another editor of it."""
    with reporting(Step.EDIT, name):
        if is_path:
            return sm.edit(path=name, compact_at=args.compact_at)
        return sm.edit(name, compact_at=args.compact_at)


def commit(editor: Any, target: str) -> bool:
    """Publish the edit (a Ctrl-C meanwhile waits for it, as load's publish): whether it compacted."""
    with reporting(Step.EDIT, target), interrupts.final_step():
        return bool(editor.commit())


def edited_key(editor: Any, args: argparse.Namespace) -> Key:
    """KEY in the kind of the edited map (str for an empty one, bytes with --hex)."""
    kind = editor.key_kind or ("bytes" if args.hex else "str")
    key = key_of_kind(kind, key_argument(args))
    if key is None:
        raise CliError(f"{args.key}: not a key of this map (its keys are {kind})")
    return key


def cmd_set(args: argparse.Namespace) -> int:
    value: Any = args.value
    if args.json:
        try:
            value = formats.from_json(json.loads(args.value), "VALUE")
        except ValueError as e:  # json.JSONDecodeError is one
            args.parser.error(f"--json: {e}")
    is_path, target = resolve_target(args)
    editor = open_editor(args, target, is_path)
    try:
        with reporting(Step.EDIT, target):
            editor[edited_key(editor, args)] = value
        commit(editor, target)
    finally:
        editor.discard()
    return EXIT_OK


def cmd_del(args: argparse.Namespace) -> int:
    is_path, target = resolve_target(args)
    editor = open_editor(args, target, is_path)
    try:
        key = edited_key(editor, args)
        with reporting(Step.EDIT, target):
            found = key in editor
            if found:
                del editor[key]
        if not found:
            if not args.force:
                raise CliError(f"key not found: {args.key}")
            return EXIT_OK
        commit(editor, target)
    finally:
        editor.discard()
    return EXIT_OK


def cmd_compact(args: argparse.Namespace) -> int:
    is_path, target = resolve_target(args)
    with reporting(Step.EDIT, target), interrupts.final_step():
        if is_path:
            sm.compact(path=target)
        else:
            sm.compact(target)
    return EXIT_OK


def load_delta(args: argparse.Namespace, fmt: str, keys: Optional[str]) -> int:
    """load --delta: the file's entries as one edit of the published map (sets, or with --delete deletions of
    their keys), published as a delta layer (or compacted past --compact-at)."""
    if args.force:
        args.parser.error("--force replaces a map; --delta edits the one published (give one of them)")
    editor = open_editor(args, args.name)
    try:
        if keys is None and editor.key_kind is not None and fmt != "jsonl":
            keys = editor.key_kind
        missing = 0

        def delete(key: Key, value: Any) -> None:
            nonlocal missing
            try:
                del editor[key]
            except KeyError:
                missing += 1

        progress = read_input(args, fmt, keys, delete if args.delete else editor.__setitem__)
        start = time.monotonic()
        changes = editor.changes
        compacted = commit(editor, args.name)
    finally:
        editor.discard()
    if progress is not None:
        elapsed = time.monotonic() - start
        what = "compacted" if compacted else "published a delta of"
        print(f"{what} {readable(args.name)}: {entries_text(changes)} changed in {elapsed:.1f} s", file=sys.stderr)
    if missing:
        print(f"sharedmap: {missing} keys to delete were not in {readable(args.name)}", file=sys.stderr)
    return EXIT_OK


def cmd_rm(args: argparse.Namespace) -> int:
    """Every NAME is tried: each failure is reported on its own line, and the status is 1 if any failed."""
    status = EXIT_OK
    what, remove = ("bitmap", sm.sharedbitmap.remove) if args.bitmap else ("map", sm.rbtree.remove)
    for name in args.names:
        try:
            removed = remove(name)
        except Exception as e:
            error = explain(e, Step.REMOVE, name)
            if error is None:
                raise
            complain(error.message)
            status = EXIT_ERROR
            continue
        if not removed and not args.force:
            complain(f"no such {what}: {name}")
            status = EXIT_ERROR
    return status


def cmd_gc(args: argparse.Namespace) -> int:
    with reporting(Step.GC):
        removed = sm.gc()
    out_line(str(removed))
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    reader, target = opened(args)
    with reader, reporting(Step.VERIFY, target):
        reader.verify()
    out_line("OK")
    return EXIT_OK


# ---------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    fmt = args.format
    if fmt is None:
        guessed = formats.format_from_name(args.output) if args.output not in (None, "-") else None
        fmt = guessed if guessed in formats.EXPORT_FORMATS else "tsv"
    encode = formats.jsonl_chunk if fmt == "jsonl" else formats.tsv_chunk
    reader, target = opened(args)
    with reader, reporting(Step.WRITE_OUTPUT), output_file(args.output) as out:
        with reporting(Step.READ, target):
            items = iter(reader.items())
        while True:
            with reporting(Step.READ, target):
                chunk = list(itertools.islice(items, 4096))
            if not chunk:
                break
            out.write(encode(chunk))
    return EXIT_OK


# ---------------------------------------------------------------------------- load


def check_map_name(name: str) -> None:
    """CliError unless name can name a map (the library's own rule): said before the input is read, not
    after."""
    with reporting(Step.PUBLISH, name):
        sm._sharedmap._check_name(name)


def map_exists(name: str) -> bool:
    """Whether name is published, readable or not (name is a valid map name)."""
    try:
        reader = sm.sharedmap(name)
    except FileNotFoundError:
        return False
    except UnicodeEncodeError:  # a name this binding cannot pass on: a failure, not a map that is there
        with reporting(Step.OPEN_MAP, name):
            raise
    except (OSError, ValueError):
        return True  # there, but unreadable or damaged
    reader.close()
    return True


def input_format(args: argparse.Namespace) -> Tuple[str, Optional[str]]:
    """The input format and key kind of load and build-set (usage errors for what cannot be)."""
    parser: argparse.ArgumentParser = args.parser
    fmt = args.format
    if fmt is None:
        if args.file == "-":
            parser.error("cannot tell the format of stdin: give --format tsv|jsonl|csv")
        fmt = formats.format_from_name(args.file)
        if fmt is None:
            parser.error(f"cannot tell the format of {args.file!r} from its extension: give --format tsv|jsonl|csv")
    if args.header and fmt != "csv":
        parser.error("--header applies to --format csv only")
    keys = args.keys
    if args.bytes_keys:
        if keys not in (None, "bytes"):
            parser.error(f"--bytes-keys conflicts with --keys {keys}")
        keys = "bytes"
    if keys in ("str", "bytes") and fmt == "jsonl":
        parser.error(f"--keys {keys} applies to tsv and csv (JSON Lines gives each key's type; --keys int reads "
                     "string keys of decimal integers as int keys)")
    return fmt, keys


def read_input(args: argparse.Namespace, fmt: str, keys: Optional[str], put: Put) -> Optional[Progress]:
    """Every entry of the input file through put(); the progress line, if one is shown."""
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    label = "stdin" if args.file == "-" else os.path.basename(args.file)
    progress = Progress(f"loading {label}", None, sys.stderr) if show else None
    with reporting(Step.OPEN_INPUT, args.file):
        stream = open_input(args.file, progress)
    with reporting(Step.READ_INPUT, label):
        try:
            if fmt == "tsv":
                counts = formats.load_tsv(stream, put, keys or "str")
            elif fmt == "jsonl":
                counts = formats.load_jsonl(stream, put, keys)
            else:
                counts = formats.load_csv(stream, put, keys or "str", args.header)
            for count in counts:
                if progress is not None:
                    progress.entries = count
        finally:
            stream.close()
            if progress is not None:
                progress.finish()
    return progress


def cmd_load(args: argparse.Namespace) -> int:
    fmt, keys = input_format(args)
    check_map_name(args.name)
    if args.delete and not args.delta:
        args.parser.error("--delete applies to --delta only")
    if args.delta:
        return load_delta(args, fmt, keys)
    if not args.force and map_exists(args.name):
        raise CliError(f"map exists: {args.name} (use --force to replace it)")
    builder: Any = sm.rbtree()
    progress = read_input(args, fmt, keys, builder.__setitem__)
    start = time.monotonic()
    with reporting(Step.PUBLISH, args.name), interrupts.final_step():
        builder.share(args.name, force=args.force, mode=args.mode)
    if progress is not None:
        elapsed = time.monotonic() - start
        print(f"published {readable(args.name)}: {entries_text(len(builder))} in {elapsed:.1f} s", file=sys.stderr)
    return EXIT_OK


# ---------------------------------------------------------------------------- map sets


def cmd_build_set(args: argparse.Namespace) -> int:
    """The input, sorted by the streaming writer into one snapshot beside the set (bounded memory), then cut
    into --shards ranges of equal counts, each a shard; the manifest last."""
    fmt, keys = input_format(args)
    if args.shards < 1 or args.shards > 65536:
        args.parser.error("--shards must be 1 to 65536")
    directory = args.dir
    if not args.force and os.path.exists(os.path.join(directory, "MANIFEST")):
        raise CliError(f"map set exists: {directory} (use --force to replace it)")
    with reporting(Step.WRITE_SET, directory):
        os.makedirs(directory, exist_ok=True)
    sorted_path = os.path.join(directory, f".build-{os.getpid()}.smap")
    limit = args.memory_limit << 20 if args.memory_limit else None
    try:
        writer = sm.Writer(sorted_path, memory_limit=limit, force=True)
        with writer:
            read_input(args, fmt, keys, writer.add)
        with reporting(Step.WRITE_SET, directory):
            whole = sm.open(sorted_path)
            with whole, interrupts.final_step():
                per = -(-len(whole) // args.shards) or 1
                items = iter(whole.items())
                parts = (itertools.islice(items, per) for _ in range(args.shards))
                total = sm.write_set(directory, parts, sorted=True, force=args.force, mode=args.mode)
    finally:
        try:
            os.unlink(sorted_path)
        except FileNotFoundError:
            pass
    if args.progress or (args.progress is None and sys.stderr.isatty()):
        print(f"wrote {readable(directory)}: {entries_text(total)}", file=sys.stderr)
    return EXIT_OK


def cmd_load_set(args: argparse.Namespace) -> int:
    check_map_name(args.name)
    if not args.force and map_exists(args.name):
        raise CliError(f"map exists: {args.name} (use --force to replace it)")
    with reporting(Step.OPEN_FILE, args.dir):
        reader = sm.open(args.dir)
    with reader, reporting(Step.PUBLISH, args.name), interrupts.final_step():
        sm._sharedmap._publish_set(reader, args.name, args.force, args.mode)
    return EXIT_OK
