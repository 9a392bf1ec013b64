"""parser.py: the command line: the commands, their arguments and help texts, and the exit statuses --help
documents."""
from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import sharedmap as sm

from . import commands
from .formats import EXPORT_FORMATS, FORMATS, KEY_KINDS
from .formats import HELP as EPILOG_FORMATS

EPILOG_EXIT = """\
exit status:
  0    success
  1    error: no such map or file, key not found, corrupt snapshot, bad input data, I/O error, ...
       (one line on stderr says which)
  2    usage error: unknown subcommand or option, missing or conflicting arguments
  130  interrupted (Ctrl-C)
"""


def parse_mode(text: str) -> int:
    """argparse type for --mode: octal permission bits, '0640' or '0o640' or '640'."""
    try:
        mode = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal mode: {text!r}") from None
    if not 0 <= mode <= 0o777:
        raise argparse.ArgumentTypeError(f"mode out of range 0..0777: {text!r}")
    return mode


class CommandParser(argparse.ArgumentParser):
    """The parser of one command: its options may come before, between or after its positionals
    (`get NAME --hex KEY`), and every argument after a '--' is a positional (`get NAME -- -KEY`).

    Plain argparse fills positionals one run at a time between options, so that in `get NAME --hex KEY` the
    optional NAME was skipped, NAME taken for the KEY and KEY left over; parse_known_intermixed_args()
    takes the options first and then all positionals.  What it does with '--' differs between Python
    versions (it was rewritten in 3.12.8 and 3.13.1, and before that it dropped a leading '--'), so '--' never
    reaches it: the arguments after '--' go in as stand-ins that cannot look like options (argv strings hold
    no NUL) and are put back in the result.
    """

    _parsing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Optional[Sequence[str]] = None, namespace: Optional[argparse.Namespace] = None
    ) -> Tuple[argparse.Namespace, List[str]]:
        if self._parsing:  # parse_known_intermixed_args() calls back here (before Python 3.12.8)
            return super().parse_known_args(args, namespace)
        given = list(sys.argv[1:] if args is None else args)
        after: List[str] = []
        if "--" in given:
            cut = given.index("--")
            given, after = given[:cut], given[cut + 1 :]
        stand_ins: Dict[str, str] = {f"\0{i}\0": arg for i, arg in enumerate(after)}
        self._parsing = True
        try:
            ns, extras = self.parse_known_intermixed_args(given + list(stand_ins), namespace)
        finally:
            self._parsing = False

        def back(value: Any) -> Any:
            if isinstance(value, str):
                return stand_ins.get(value, value)
            if isinstance(value, list):
                return [back(v) for v in value]
            return value

        for dest, value in vars(ns).items():
            setattr(ns, dest, back(value))
        return ns, back(extras)


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
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands", parser_class=CommandParser)
    sub.required = True

    def command(name: str, help_text: str, func: Callable[[argparse.Namespace], int], epilog: str = "") -> Any:
        p = sub.add_parser(
            name, help=help_text, description=help_text, epilog=epilog + EPILOG_EXIT, formatter_class=fmt
        )
        p.set_defaults(func=func, parser=p)
        return p

    def target_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("map", nargs="?", metavar="NAME", help="a published map (a NAME with a '/' is a file path)")
        p.add_argument("--path", metavar="PATH", help="a snapshot file (written by rbtree.save), or a map set "
                       "directory, instead of a NAME")

    def input_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--header", action="store_true", help="csv: the first row is a header, skip it")
        p.add_argument(
            "--keys",
            choices=KEY_KINDS,
            default=None,
            help="the key kind: tsv, csv: str (default), bytes (their UTF-8) or int (decimal, signed 64-bit); "
            "jsonl: int also reads string keys of decimal integers as int keys (JSON integers always are)",
        )
        p.add_argument("--bytes-keys", action="store_true", help="the same as --keys bytes (tsv, csv)")
        prog = p.add_mutually_exclusive_group()
        prog.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show progress")
        prog.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")

    def edit_args(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--compact-at",
            type=float,
            default=0.1,
            metavar="F",
            help="compact (one plain snapshot) rather than publish a delta when the delta would hold more than F "
            "times the base's entries (default 0.1)",
        )

    p = command(
        "ls",
        "List the published maps (name, entries, size, creation time), then the shared bitmaps.",
        commands.cmd_ls,
        epilog="A name that is not UTF-8 is printed as its own bytes, so that it can be passed to the other\n"
        "commands; --json writes each such byte as \\udcXX (surrogateescape, as os.fsdecode() gives it).\n\n",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print a JSON array of objects: for a map (kind 'map') name, size, entries, created (seconds "
        "since the epoch), key_kind, error; for a bitmap (kind 'bitmap') name, file_size, bits, created, error",
    )

    p = command(
        "info",
        "Show a map's entries, size, format version, creation time, key kind and checksum.",
        commands.cmd_info,
    )
    target_args(p)
    p.add_argument("--json", action="store_true", help="print a JSON object")
    p.add_argument("--bitmap", action="store_true", help="NAME is a shared bitmap (sharedbitmap), not a map")

    p = command(
        "get",
        "Print the value of KEY.",
        commands.cmd_get,
        epilog="The key is looked up in the map's key kind: for a map with bytes keys KEY is taken as its UTF-8\n"
        "bytes, or as hexadecimal with --hex; for an int map KEY is a decimal integer (a negative one goes\n"
        "after '--').  A str value prints as its text, bytes as they are, others as JSON\n"
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
        "Write every entry, in key order, as TSV or JSON Lines (int keys in decimal, as JSON integers in jsonl).",
        commands.cmd_export,
        epilog="With -o, FILE is written under a temporary name in its directory and renamed into place once\n"
        "complete: if the export fails, FILE is as it was (or still absent) and nothing else is left.  A FILE\n"
        "that is a symbolic link, a device or a FIFO (/dev/stdout) is written in place.\n\n" + EPILOG_FORMATS + "\n",
    )
    target_args(p)
    p.add_argument("--format", choices=EXPORT_FORMATS, help="output format (default: from -o's extension, else tsv)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (.gz: compressed) instead of stdout")

    p = command(
        "load",
        "Build a map from a TSV, JSON Lines or CSV file and publish it as NAME.",
        commands.cmd_load,
        epilog="The map is published only once the whole file has been read, in one atomic step: on any error\n"
        "nothing is published.  A Ctrl-C (or SIGTERM) that comes while it publishes waits until the publish\n"
        "is over, so that exit status 0 means published and 130 (interrupted) means not.  A progress line is\n"
        "shown on stderr when stderr is a terminal (or with --progress).\n\n" + EPILOG_FORMATS + "\n",
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
    p.add_argument(
        "--delta",
        action="store_true",
        help="apply the file's entries to the map published as NAME as one edit (sets and overwrites), "
        "published as a delta layer over it, instead of building a new map",
    )
    p.add_argument("--delete", action="store_true", help="with --delta: delete the file's keys instead (values ignored)")
    edit_args(p)
    input_args(p)

    EPILOG_EDIT = (
        "The change is published as a delta layer over the map, in time proportional to the change, and\n"
        "atomically: readers see the map before or after it.  Editors of one map wait for each other; a map\n"
        "replaced meanwhile by a publisher that does not edit (load --force, rbtree.share) is an error, and\n"
        "nothing is published.  KEY is taken in the map's key kind, as get takes it.\n\n"
    )

    p = command("set", "Set KEY to VALUE in a published map (or snapshot file).", commands.cmd_set,
                epilog="VALUE is a str, or with --json any value as JSON Lines export writes it (42, 1.5, true,\n"
                "null, \"text\", {\"$bytes\": \"base64\"}).  " + EPILOG_EDIT)
    target_args(p)
    p.add_argument("key", metavar="KEY", help="the key")
    p.add_argument("value", metavar="VALUE", help="the value")
    p.add_argument("--hex", action="store_true", help="KEY is hexadecimal, for a map with bytes keys")
    p.add_argument("--json", action="store_true", help="VALUE is JSON (types kept)")
    edit_args(p)

    p = command("del", "Delete KEY from a published map (or snapshot file).", commands.cmd_del,
                epilog="A missing key exits 1 with 'key not found' (-f: 0, and nothing is published).  " + EPILOG_EDIT)
    target_args(p)
    p.add_argument("key", metavar="KEY", help="the key")
    p.add_argument("--hex", action="store_true", help="KEY is hexadecimal, for a map with bytes keys")
    p.add_argument("-f", "--force", action="store_true", help="no error for a key that is not there")
    edit_args(p)

    p = command(
        "compact",
        "Merge a map's delta layer into one plain snapshot, published atomically under the same name.",
        commands.cmd_compact,
        epilog="Edits (set, del, load --delta) compact on their own past --compact-at; this does it now.  The old\n"
        "base is removed; readers attached to it keep it until they refresh().\n\n",
    )
    target_args(p)

    p = command("rm", "Unpublish maps (or bitmaps).  Processes attached to them keep them.", commands.cmd_rm)
    p.add_argument("names", nargs="+", metavar="NAME", help="map to remove")
    p.add_argument("-f", "--force", action="store_true", help="no error for a map that does not exist")
    p.add_argument("--bitmap", action="store_true", help="remove shared bitmaps (sharedbitmap) of these names")

    p = command(
        "verify",
        "Check a map completely (checksum, every record, order, index): print OK, or the reason and exit 1.",
        commands.cmd_verify,
    )
    target_args(p)

    p = command(
        "build-set",
        "Build a map set directory DIR of --shards shards from a TSV, JSON Lines or CSV file.",
        commands.cmd_build_set,
        epilog="The input is sorted by the streaming writer in bounded memory (--memory-limit), then cut into\n"
        "shards of equal counts written beside it; the manifest is written last, atomically: on any error\n"
        "the set that was there (if any) is as it was.  sharedmap.open(DIR) opens the set as one map;\n"
        "load-set publishes it.\n\n" + EPILOG_FORMATS + "\n",
    )
    p.add_argument("dir", metavar="DIR", help="the map set directory to write")
    p.add_argument("file", metavar="FILE", help="the input file, '-' for stdin")
    p.add_argument("--shards", type=int, default=16, help="number of shards (default 16)")
    p.add_argument("--memory-limit", type=int, metavar="MIB", help="the writer's memory budget in MiB (default 256)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from FILE's extension)")
    p.add_argument("--force", action="store_true", help="replace the set in DIR (atomically)")
    p.add_argument("--mode", type=parse_mode, default=0o644, metavar="MODE",
                   help="permission bits of the files, octal (default 0644)")
    input_args(p)

    p = command(
        "load-set",
        "Publish the map set DIR (or a packed set file) into shared memory as NAME, packed into one map.",
        commands.cmd_load_set,
        epilog="The whole set appears at once under NAME (sharedmap.sharedmap(NAME) attaches to it); with\n"
        "--force it replaces the map there atomically, and readers of that one can refresh().\n\n",
    )
    p.add_argument("dir", metavar="DIR", help="the map set directory")
    p.add_argument("name", metavar="NAME", help="the name to publish the set under")
    p.add_argument("--force", action="store_true", help="replace an existing map of that name (atomically)")
    p.add_argument("--mode", type=parse_mode, default=0o600, metavar="MODE",
                   help="permission bits of the map, octal (default 0600)")

    command(
        "gc",
        "Remove the debris of publishes whose writer died; print how many objects were removed.",
        commands.cmd_gc,
    )
    return parser
