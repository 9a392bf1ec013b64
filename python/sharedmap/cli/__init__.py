"""sharedmap.cli: the `sharedmap` command (also `python -m sharedmap`): list, inspect, read, export, load, remove,
verify and clean up published maps and snapshot files.  Standard library only.

main() parses the command line and runs the command; the rest is one job per module:

    parser.py      the commands' arguments and help texts
    commands.py    one function per command, cmd_<name>(args) -> exit status
    errors.py      the exit statuses, and the one mapping from exceptions to messages and statuses
    formats.py     TSV, JSON Lines and CSV: readers, writers, escaping
    files.py       the input and output files (stdin/stdout, gzip, an output that appears whole)
    interrupts.py  Ctrl-C and kill around the step that cannot be undone
    progress.py    the progress line of `load`
    display.py     sizes, times and names as shown, and writing to stdout

A command that fails raises CliError, which main() turns into one line on stderr and the exit status.  Usage
errors (bad arguments) exit 2 through argparse.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, List, Optional

from . import interrupts
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, CliError, complain
from .parser import build_parser

__all__ = ["main"]


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line argv and return the exit status.

    Without argv, main() is the program (the console script, python -m sharedmap) and takes sys.argv[1:]:
    after a step that cannot be undone (a map published), SIGINT and SIGTERM stay blocked until the process
    exits, so that no late Ctrl-C turns the success into 'interrupted' (interrupts.py).  With argv, as when
    called from Python, it puts the signal mask back before it returns.
    """
    try:
        return _run(argv)
    finally:
        if argv is not None:
            interrupts.release()


def _run(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        func: Callable[[argparse.Namespace], int] = args.func
        status = func(args)
        sys.stdout.flush()
        return status
    except CliError as e:
        complain(e.message)
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
