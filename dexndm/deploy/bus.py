"""A Dynamixel Protocol 2.0 bus on the real ``dynamixel_sdk``.

The control table is data (:data:`dexndm.deploy.protocol.CONTROL_TABLE`,
``{name: (address, nbytes)}``); this class only moves named registers between
Python ints and motors. Robots (:mod:`dexndm.deploy.leap_hand`) build on top of it.
Every sdk failure becomes a :class:`BusError` naming the motor id and carrying the
sdk's own message (``getTxRxResult`` / ``getRxPacketError``); a status with the
hardware-error alert bit becomes the subclass :class:`HardwareError`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import dynamixel_sdk as sdk

from dexndm.deploy.protocol import CONTROL_TABLE, ERR_ALERT, from_le, le

ALERT_BIT = ERR_ALERT

#: Registers holding two's-complement values (XC330 e-manual); the rest are unsigned.
SIGNED_REGISTERS: frozenset[str] = frozenset(
    {"goal_current", "goal_position", "present_current", "present_velocity", "present_position"}
)


class BusError(RuntimeError):
    """A failed bus transaction; ``dxl_id`` is the failing motor (None: the port itself)."""

    def __init__(self, message: str, dxl_id: int | None = None) -> None:
        super().__init__(message)
        self.dxl_id = dxl_id


class HardwareError(BusError):
    """A motor answered with the hardware-error alert bit (bit 7 of the status error byte):
    overload, overheating, input voltage, encoder or electrical shock (XC330 e-manual,
    register 70). The motor has switched its torque off; it needs a REBOOT."""


#: Hardware error status bits (register 70), XC330 e-manual.
HARDWARE_ERROR_BITS: dict[int, str] = {
    0x01: "input voltage error", 0x04: "overheating", 0x08: "motor encoder error",
    0x10: "electrical shock", 0x20: "overload",
}


def describe_hardware_error(bits: int) -> str:
    """Names of the set bits of a hardware error status value, e.g. 0x24 -> 'overheating, overload'."""
    names = [name for bit, name in HARDWARE_ERROR_BITS.items() if bits & bit]
    return ", ".join(names) if names else f"unknown bits 0x{bits:02X}"


def read_hardware_error(hand: Any, dxl_id: int) -> str:
    """What motor ``dxl_id`` reports in its hardware error status (``hand.hardware_error_status``), read now, e.g.
    'overload (register 70 = 0x20)'; 'cause unreadable' when that read fails too."""
    try:
        bits = hand.hardware_error_status(dxl_id)
    except BusError:
        return "cause unreadable"
    return f"{describe_hardware_error(bits)} (register 70 = 0x{bits:02X})"


class _PortHandler(sdk.PortHandler):
    """The SDK's port whose reply timeout is at least ``min_reply_timeout_ms``.

    The SDK waits (bytes x byte time) + 2 x latency timer + 2 ms for a reply (~34 ms on a
    U2D2), right for motors; a software hand on a loaded machine can answer later.
    """

    def __init__(self, port: str, min_reply_timeout_ms: float) -> None:
        super().__init__(port)
        self.min_reply_timeout_ms = float(min_reply_timeout_ms)

    def setPacketTimeout(self, packet_length: int) -> None:  # noqa: N802 (the SDK's name)
        super().setPacketTimeout(packet_length)
        self.packet_timeout = max(self.packet_timeout, self.min_reply_timeout_ms)


class DynamixelBus:
    """Named-register access to motors ``ids`` on ``port`` (Protocol 2.0 by default).

    ``min_reply_timeout_ms`` raises the SDK's reply timeout (0: the SDK's own, for real motors).
    """

    def __init__(
        self,
        port: str,
        baudrate: int = 4_000_000,
        ids: Iterable[int] = range(16),
        protocol: float = 2.0,
        min_reply_timeout_ms: float = 0.0,
    ) -> None:
        if not (math.isfinite(min_reply_timeout_ms) and min_reply_timeout_ms >= 0):
            raise ValueError(f"min_reply_timeout_ms must be a finite number >= 0, got {min_reply_timeout_ms!r}")
        self.port = port
        self.baudrate = int(baudrate)
        self.ids = [int(i) for i in ids]
        self.protocol = protocol
        self.min_reply_timeout_ms = float(min_reply_timeout_ms)
        self.port_handler: sdk.PortHandler | None = None
        self.packet_handler = sdk.PacketHandler(protocol)

    # ---- lifecycle --------------------------------------------------------------
    def connect(self) -> None:
        """Open the port at ``baudrate``; raise :class:`BusError` with hints if it cannot."""
        ph = _PortHandler(self.port, self.min_reply_timeout_ms)
        hint = (
            "check that the U2D2 is plugged in, the device path is right (ls /dev/ttyUSB* /dev/serial/by-id), "
            "you have permission (dialout group) and no other process holds the port"
        )
        try:
            opened = ph.openPort()
        except Exception as e:  # serial.SerialException, OSError
            raise BusError(f"cannot open Dynamixel port {self.port!r}: {e}; {hint}") from e
        if not opened:
            raise BusError(f"cannot open Dynamixel port {self.port!r}; {hint}")
        if not ph.setBaudRate(self.baudrate):
            ph.closePort()
            raise BusError(f"port {self.port!r} does not support baud rate {self.baudrate}")
        self.port_handler = ph

    def close(self) -> None:
        if self.port_handler is not None:
            self.port_handler.closePort()
            self.port_handler = None

    def __enter__(self) -> DynamixelBus:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ----------------------------------------------------------------
    def _handler(self) -> sdk.PortHandler:
        if self.port_handler is None:
            raise BusError(f"bus on {self.port!r} is not connected; call connect() first")
        return self.port_handler

    @staticmethod
    def _register(name: str) -> tuple[int, int]:
        try:
            return CONTROL_TABLE[name]
        except KeyError:
            raise KeyError(f"unknown register {name!r}; known: {sorted(CONTROL_TABLE)}") from None

    def _check(self, what: str, dxl_id: int | None, comm: int, error: int = 0) -> None:
        pk = self.packet_handler
        if comm != sdk.COMM_SUCCESS:
            who = f"motor {dxl_id}" if dxl_id is not None else "the bus"
            raise BusError(f"{what}: {who} on {self.port!r}: {pk.getTxRxResult(comm)}", dxl_id)
        if error & ALERT_BIT:
            raise HardwareError(f"{what}: motor {dxl_id} reports a hardware error (alert bit set; torque is off "
                                "until the motor is rebooted): read its hardware_error_status for the cause", dxl_id)
        if error:
            raise BusError(f"{what}: motor {dxl_id} reported: {pk.getRxPacketError(error)}", dxl_id)

    @staticmethod
    def _decode(name: str, data: bytes) -> int:
        return from_le(bytes(data), signed=name in SIGNED_REGISTERS)

    # ---- single motor -----------------------------------------------------------
    def write(self, name: str, dxl_id: int, value: int) -> None:
        """Write ``value`` to register ``name`` of one motor, waiting for its status."""
        addr, n = self._register(name)
        comm, err = self.packet_handler.writeTxRx(self._handler(), dxl_id, addr, n, list(le(int(value), n)))
        self._check(f"write {name}={value}", dxl_id, comm, err)

    def read(self, name: str, dxl_id: int, allow_alert: bool = False) -> int:
        """Read register ``name`` of one motor (signed where the register is). ``allow_alert``: accept
        a reply carrying the hardware-error alert bit (to read what the error is)."""
        addr, n = self._register(name)
        data, comm, err = self.packet_handler.readTxRx(self._handler(), dxl_id, addr, n)
        self._check(f"read {name}", dxl_id, comm, err & ~ALERT_BIT if allow_alert else err)
        return self._decode(name, data)

    # ---- all motors ---------------------------------------------------------------
    def sync_write(self, name: str, values: Mapping[int, int]) -> None:
        """One sync-write packet setting ``name`` on every id in ``values`` (no replies)."""
        addr, n = self._register(name)
        group = sdk.GroupSyncWrite(self._handler(), self.packet_handler, addr, n)
        for dxl_id, value in values.items():
            if not group.addParam(int(dxl_id), list(le(int(value), n))):
                raise BusError(f"sync write {name}: cannot add motor {dxl_id}", int(dxl_id))
        self._check(f"sync write {name}", None, group.txPacket())

    def sync_read_block(self, start_name: str, end_name: str) -> dict[int, dict[str, int]]:
        """One sync read of the contiguous block from ``start_name`` through ``end_name``.

        Returns ``{id: {name: raw int}}`` for every register lying wholly in the block
        (e.g. present current/velocity/position: 10 bytes from address 126).
        """
        start, _ = self._register(start_name)
        end_addr, end_n = self._register(end_name)
        length = end_addr + end_n - start
        if length <= 0:
            raise ValueError(f"{end_name!r} does not come after {start_name!r} in the control table")
        names = {k: (a, n) for k, (a, n) in CONTROL_TABLE.items() if start <= a and a + n <= start + length}
        port = self._handler()
        group = sdk.GroupSyncRead(port, self.packet_handler, start, length)
        for dxl_id in self.ids:
            group.addParam(dxl_id)
        self._check(f"sync read {start_name}..{end_name}", None, group.txPacket())
        out: dict[int, dict[str, int]] = {}
        # Receive per id ourselves (not group.rxPacket) so a failure names its motor.
        for dxl_id in self.ids:
            data, comm, err = self.packet_handler.readRx(port, dxl_id, length)
            self._check(f"sync read {start_name}..{end_name}", dxl_id, comm, err)
            if len(data) != length:
                raise BusError(f"sync read: motor {dxl_id} returned {len(data)} of {length} bytes", dxl_id)
            out[dxl_id] = {k: self._decode(k, data[a - start : a - start + n]) for k, (a, n) in names.items()}
        return out
