"""Stop a training run cleanly on SIGTERM or Ctrl-C: finish the iteration, checkpoint, exit.

A cluster's pre-emption notice, a session's end or a Ctrl-C would otherwise lose every iteration since
the last ``checkpoint_every`` boundary.  While a ``GracefulStop`` is entered, the first SIGTERM or
SIGINT only sets ``requested``; the training loop checks it after each iteration, writes its
checkpoint there and returns.  The previous handlers are back in place from that first signal on, so a
second one stops the process as it would have without this.
"""

from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class GracefulStop:
    """Context manager: ``requested`` is the name of the first stop signal received, else ``None``."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():   # signal handlers live on the main thread
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame) -> None:
        self.requested = signal.Signals(signum).name
        self._restore()
        print(f"[train_oracle] {self.requested}: checkpointing after this iteration, then stopping "
              "(send it again to stop at once)", flush=True)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __exit__(self, *exc) -> None:
        self._restore()
