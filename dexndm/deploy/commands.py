"""Live commands for the control loop: rotation axis, stop and e-stop (DexNDM Sec. 4.4,
teleoperation: the operator steers the rotation axis while the hand runs).

Sources are polled once per tick and never block:

* :class:`UdpCommands` - text datagrams on a local UDP socket (127.0.0.1 only)::

      axis +z        axis -x        axis 0.3 0.5 0.8     (a named or explicit axis)
      stop           (end the run: the configured stop action, then close)
      estop          (emergency stop: the configured e-stop action at once)

  e.g. ``echo "axis -z" | nc -u -w0 127.0.0.1 5555``.
* :class:`KeyboardCommands` - single keys on a terminal: ``x y z`` pick +x/+y/+z,
  ``X Y Z`` the negative axes, ``q`` stop, space or ``e`` e-stop.
"""

from __future__ import annotations

import os
import select
import socket
import sys
from dataclasses import dataclass

import numpy as np

from dexndm.sim import orientations as ori


@dataclass(frozen=True)
class Command:
    """One operator command: ``kind`` in {"axis", "stop", "estop"}; ``axis`` [3] for "axis"."""

    kind: str
    axis: tuple[float, float, float] | None = None


def parse_axis(spec: str | list | tuple) -> np.ndarray:
    """A unit axis [3] from a principal name (``+z``) or three numbers."""
    if isinstance(spec, str):
        parts = spec.split()
        if len(parts) == 1:
            return ori.axes_for(parts[0])[0]
        spec = parts
    return ori.axes_for([float(x) for x in spec])[0]


def parse_command(text: str) -> Command:
    """A :class:`Command` from one line of text; ValueError says what is accepted."""
    words = text.strip().split()
    if not words:
        raise ValueError("empty command")
    head = words[0].lower()
    if head in ("stop", "estop") and len(words) == 1:
        return Command(head)
    if head == "axis" and len(words) in (2, 4):
        return Command("axis", tuple(float(x) for x in parse_axis(" ".join(words[1:]))))
    raise ValueError(f"unknown command {text.strip()!r}; send 'axis +z', 'axis 0 0.6 0.8', 'stop' or 'estop'")


class CommandSource:
    """Polled once per tick: returns the commands that arrived since the last poll."""

    def poll(self) -> list[Command]:
        return []

    def close(self) -> None:
        pass


class UdpCommands(CommandSource):
    """Commands as text datagrams on ``127.0.0.1:port`` (0: pick a free port; see ``.port``)."""

    def __init__(self, port: int = 5555, host: str = "127.0.0.1") -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"the command socket listens on the local machine only, got host {host!r}")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind((host, int(port)))
        except OSError as e:
            self.sock.close()
            raise OSError(f"cannot listen for commands on udp {host}:{port} ({e}); pick another commands.port") from e
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.rejected: list[str] = []

    def poll(self) -> list[Command]:
        out = []
        while True:
            try:
                data = self.sock.recv(512)
            except (BlockingIOError, InterruptedError):
                return out
            try:
                out.append(parse_command(data.decode("utf-8", "replace")))
            except ValueError as e:
                self.rejected.append(str(e))
                print(f"[deploy] ignored command: {e}")

    def close(self) -> None:
        self.sock.close()


_KEYS = {"x": "+x", "y": "+y", "z": "+z", "X": "-x", "Y": "-y", "Z": "-z"}


class KeyboardCommands(CommandSource):
    """Single-key commands on the controlling terminal (cbreak mode, restored on close)."""

    def __init__(self) -> None:
        import termios
        import tty

        if not sys.stdin.isatty():
            raise RuntimeError("commands.source=keyboard needs a terminal on stdin; use commands.source=udp instead")
        self.fd = sys.stdin.fileno()
        self._saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd)
        print("[deploy] keys: x/y/z (+axis), X/Y/Z (-axis), q stop, space/e e-stop")

    def poll(self) -> list[Command]:
        out = []
        while select.select([self.fd], [], [], 0)[0]:
            key = os.read(self.fd, 1).decode("utf-8", "replace")
            if key in _KEYS:
                out.append(Command("axis", tuple(float(x) for x in parse_axis(_KEYS[key]))))
            elif key == "q":
                out.append(Command("stop"))
            elif key in (" ", "e"):
                out.append(Command("estop"))
        return out

    def close(self) -> None:
        import termios

        termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)


def make_command_source(source: str | None, port: int = 5555) -> CommandSource:
    """``none`` (axis from config only), ``udp`` or ``keyboard``."""
    if source in (None, "none", ""):
        return CommandSource()
    if source == "udp":
        return UdpCommands(port)
    if source == "keyboard":
        return KeyboardCommands()
    raise ValueError(f"unknown commands.source {source!r}; use none, udp or keyboard")
