"""Progress of a collection run: a rich bar on a terminal, plain lines otherwise (DexNDM Sec. 3.3:
collection runs unattended for hours, so the log must say how far it is)."""

from __future__ import annotations

import sys
import time
from typing import Any


class CollectProgress:
    """``update(done, **info)`` towards ``total`` episodes; ``mode``: "auto" (bar on a TTY,
    lines on stderr otherwise, at most one per ``every`` seconds), True (bar), False (silent)."""

    def __init__(self, label: str, total: int, start: int = 0, mode: Any = "auto", every: float = 10.0):
        self.label, self.total, self.every = label, int(total), float(every)
        self.quiet = mode is False or mode == "false"
        self.bar = (sys.stderr.isatty() if mode == "auto" else bool(mode)) and not self.quiet
        self._last = -float("inf")
        self._p = self._task = None
        if self.bar:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._p = Progress(TextColumn(f"[bold]collect {label}"), BarColumn(), MofNCompleteColumn(),
                               TimeElapsedColumn(), TextColumn("{task.fields[info]}"), console=Console(stderr=True))
            self._task = self._p.add_task(label, total=self.total, completed=start, info="")
            self._p.start()

    def update(self, done: int, **info: Any) -> None:
        text = " ".join(f"{k} {v}" for k, v in info.items())
        if self._p is not None:
            self._p.update(self._task, completed=done, info=text)
        elif not self.quiet and (time.monotonic() - self._last >= self.every or done >= self.total):
            self._last = time.monotonic()
            print(f"[collect {self.label}] {done}/{self.total} episodes {text}".rstrip(), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
