"""progress.py: the one-line progress report of `load` on stderr (bytes read, percent, rate, entries)."""
from __future__ import annotations

import time
from typing import IO, Optional

from .display import entries_text, human_size


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
