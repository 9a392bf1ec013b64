"""interrupts.py: Ctrl-C (SIGINT) and kill (SIGTERM) around the step of a command that cannot be undone
(publishing the map; renaming the export into place), so that the exit status tells the truth: 0 means the
step happened, 130 'interrupted' means it did not.

Python raises KeyboardInterrupt between two bytecodes: a Ctrl-C that came while share() ran was raised just
after share() had published the map, and the command said 'interrupted' of a map that was there.
final_step() blocks both signals for the step (pthread_sigmask), so that one that comes meanwhile waits.  If
the step fails, the mask is put back and the waiting signal delivered then (Ctrl-C: exit 130; SIGTERM: the
process dies), and nothing has happened.  If the step succeeds, the command has done its work: the signals
stay blocked until the process exits with 0, and one still pending goes with the process.  main(argv) called
from Python, in a process that goes on, calls release() before it returns: the pending signal is dropped
(the command finished regardless) and the mask restored.
"""
from __future__ import annotations

import contextlib
import signal
from typing import AbstractSet, Iterator, Optional

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})

# The signal mask from before the first final step that succeeded, while the stop signals stay blocked.
_held: Optional[AbstractSet[int]] = None


@contextlib.contextmanager
def final_step() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM blocked; if it succeeds, they stay blocked (see above)."""
    global _held
    # The mask as it is.  pthread_sigmask() runs the Python signal handlers when it returns, so a Ctrl-C
    # that came before is raised here, with nothing changed yet, or by the call that blocks, with the mask
    # put back by the except clause: either way before the block starts.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, ())
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        yield
    except BaseException:
        if _held is None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)  # a signal that came meanwhile arrives now
        raise
    if _held is None:
        _held = before


def release() -> None:
    """After a final step that succeeded: drop the stop signals that are pending (not those that the caller
    had blocked itself, which are its own) and restore the mask.  Nothing to do otherwise."""
    global _held
    if _held is None:
        return
    before, _held = _held, None
    ours = STOP_SIGNALS - before
    if ours:
        while signal.sigtimedwait(ours, 0) is not None:
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, before)
