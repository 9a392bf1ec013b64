"""errors.py: the exit statuses, and the one mapping from exceptions to the line on stderr and the status.

A command runs each step that can fail inside `reporting(Step.X, target)`.  An exception raised there is looked
up in RULES by the step and the exception's class (for an OSError, its subclass, which is to say its errno),
never by the exception's text; the first rule that matches gives the message, and the exception becomes a
CliError that main() prints.  An exception no rule knows is a bug, and goes up as a traceback.  When the
binding's own classes (sharedmap.Error and its subclasses) have their rules here too.
"""
from __future__ import annotations

import contextlib
import enum
import os
import sys
from typing import Callable, FrozenSet, Iterator, NamedTuple, Optional, Tuple, Type, Union

import sharedmap

from .display import readable, shown

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A failure to report on one line of stderr, with an exit status."""

    def __init__(self, message: str, status: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class DataError(Exception):
    """Bad input data: the message names the line."""


class Step(enum.Enum):
    """What a command was doing; the target it names is given beside it."""

    OPEN_MAP = "attach to the published map NAME"
    OPEN_BITMAP = "attach to the shared bitmap NAME"
    OPEN_FILE = "open the snapshot file PATH"
    READ = "look up or iterate the open map NAME or PATH"
    VERIFY = "verify the open map NAME or PATH"
    PUBLISH = "publish a map as NAME"
    REMOVE = "unpublish the map NAME"
    LIST = "list the published maps"
    GC = "collect the debris of dead publishes"
    OPEN_INPUT = "open the input FILE"
    READ_INPUT = "read and parse the input FILE (target: its name)"
    WRITE_OUTPUT = "create and write the output FILE or stdout"
    WRITE_SET = "write the map set directory DIR"
    EDIT = "edit the published map NAME or the file PATH, and publish the edit"


def complain(message: str) -> None:
    """One line on stderr."""
    print(f"sharedmap: {readable(message)}", file=sys.stderr)


def os_message(e: OSError) -> str:
    """'No such file or directory: x' without the '[Errno 2]' noise."""
    text = e.strerror or str(e)
    if e.filename is not None:
        return f"{text}: {os.fsdecode(e.filename)}"
    return text


def reason(e: BaseException, target: str) -> str:
    """An exception's message without the ": 'TARGET'" the binding appends, as the CLI names the target first.
    (Presentation only: what the message says is never used to decide anything.)"""
    text = str(e)
    suffix = f": {target!r}"
    return text[: -len(suffix)] if text.endswith(suffix) and len(text) > len(suffix) else text


Message = Callable[[BaseException, str], str]


class Rule(NamedTuple):
    steps: FrozenSet[Step]
    exceptions: Union[Type[BaseException], Tuple[Type[BaseException], ...]]
    message: Optional[Message]  # None: not a failure to report here (main() deals with it)
    status: int = EXIT_ERROR


def _os(e: BaseException) -> str:
    assert isinstance(e, OSError)
    return os_message(e)


_ALL = frozenset(Step)
_BY_NAME_OR_PATH = frozenset(
    {Step.OPEN_MAP, Step.OPEN_BITMAP, Step.OPEN_FILE, Step.PUBLISH, Step.REMOVE, Step.EDIT}
)

RULES: Tuple[Rule, ...] = (
    # The reader of our stdout went away (`sharedmap export x | head`): main() stops quietly.
    Rule(_ALL, BrokenPipeError, None),
    Rule(frozenset({Step.OPEN_MAP}), FileNotFoundError, lambda e, t: f"no such map: {t}"),
    Rule(frozenset({Step.OPEN_BITMAP}), FileNotFoundError, lambda e, t: f"no such bitmap: {t}"),
    Rule(frozenset({Step.OPEN_FILE}), FileNotFoundError, lambda e, t: f"no such file: {t}"),
    Rule(frozenset({Step.EDIT}), FileNotFoundError,
         lambda e, t: f"no such map or file: {t} (edit what is published; load it first)"),
    Rule(frozenset({Step.EDIT}), sharedmap.ConflictError,
         lambda e, t: f"{t}: replaced by another publisher during the edit; nothing was published (run it again)"),
    Rule(frozenset({Step.EDIT}), sharedmap.CorruptSnapshotError, lambda e, t: f"{t}: corrupt: {reason(e, t)}"),
    Rule(frozenset({Step.EDIT}), (TypeError, OverflowError), lambda e, t: f"{t}: {reason(e, t)}"),
    Rule(frozenset({Step.PUBLISH}), FileExistsError, lambda e, t: f"map exists: {t} (use --force to replace it)"),
    Rule(_BY_NAME_OR_PATH, PermissionError, lambda e, t: f"permission denied: {t}"),
    Rule(_BY_NAME_OR_PATH, sharedmap.SymlinkError, lambda e, t: f"{shown(t)}: is a symbolic link (refused: sharedmap never follows one)"),
    Rule(_BY_NAME_OR_PATH, OSError, lambda e, t: f"{t}: {_os(e)}"),
    Rule(frozenset({Step.LIST, Step.GC, Step.OPEN_INPUT, Step.WRITE_OUTPUT}), OSError, lambda e, t: _os(e)),
    Rule(frozenset({Step.READ_INPUT}), DataError, lambda e, t: f"{t}: {e}"),
    Rule(frozenset({Step.READ_INPUT}), OSError, lambda e, t: f"{t}: {_os(e)}"),  # a read error, bad gzip
    Rule(frozenset({Step.READ_INPUT}), EOFError, lambda e, t: f"{t}: {e}"),  # truncated gzip
    # The binding's classes: bad bytes (a corrupt snapshot), a newer format, bad names.
    Rule(frozenset({Step.VERIFY}), sharedmap.CorruptSnapshotError, lambda e, t: f"{t}: corrupt: {reason(e, t)}"),
    Rule(_BY_NAME_OR_PATH | {Step.READ, Step.VERIFY}, sharedmap.UnsupportedVersionError,
         lambda e, t: f"{shown(t)}: {reason(e, t)} (written by a newer sharedmap?)"),
    Rule(_BY_NAME_OR_PATH, sharedmap.InvalidNameError, lambda e, t: f"{shown(t)}: {reason(e, t)}"),
    Rule(frozenset({Step.READ}), UnicodeDecodeError, lambda e, t: f"{t}: corrupt: a str key or value is not UTF-8"),
    Rule(_BY_NAME_OR_PATH | {Step.READ}, ValueError, lambda e, t: f"{shown(t)}: {reason(e, t)}"),
    Rule(frozenset({Step.READ}), TypeError, lambda e, t: f"{t}: {reason(e, t)}"),
    Rule(frozenset({Step.WRITE_SET}), FileExistsError, lambda e, t: f"map set exists: {t} (use --force to replace it)"),
    Rule(frozenset({Step.WRITE_SET}), OSError, lambda e, t: f"{t}: {_os(e)}"),
    Rule(frozenset({Step.WRITE_SET}), (ValueError, TypeError), lambda e, t: f"{t}: {reason(e, t)}"),
)


def explain(e: BaseException, step: Step, target: str = "") -> Optional[CliError]:
    """The CliError that reports e, raised by step on target; None if no rule reports it."""
    for rule in RULES:
        if step in rule.steps and isinstance(e, rule.exceptions):
            if rule.message is None:
                return None
            return CliError(rule.message(e, target), rule.status)
    return None


@contextlib.contextmanager
def reporting(step: Step, target: str = "") -> Iterator[None]:
    """Run step on target: an exception that RULES know for it goes up as the CliError that reports it."""
    try:
        yield
    except Exception as e:
        error = explain(e, step, target)
        if error is None:
            raise
        raise error from None
