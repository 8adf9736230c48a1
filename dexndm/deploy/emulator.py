"""A Dynamixel bus on a pseudo-terminal that answers real Protocol 2.0 packets.

Hardware without hardware (STYLE.md, Tests): the real ``dynamixel_sdk`` opens
``emulator.port`` with ``PortHandler`` and talks to N emulated XC330/XL330-class
motors unchanged. A background thread serves the pty master; each motor keeps a
control table (``bytearray``) laid out as in :data:`protocol.CONTROL_TABLE`.

Physics hooks: ``on_goal(id, ticks)`` is called when a goal position is written,
``on_sync_goal({id: ticks})`` once per sync write of goal positions (one control
tick: :mod:`dexndm.deploy.emulated_hand` advances a ``SimHand`` by 1/20 s there),
``positions_provider() -> {id: ticks}`` or ``state_provider() -> {id: {register:
value}}`` supply present position (velocity, current) on every read. Without them
present_position follows goal_position instantly while torque is on.

Wire time: with ``baudrate`` set, every packet costs its bytes at 10 bits per byte
(start + 8 data + stop) in each direction, plus each motor's return delay time, so
bus I/O measured against the emulator is what the baud rate allows.

Fault injection (``emulator.faults``): corrupted CRC, dropped or late replies,
silent motors and the hardware-error alert bit, to test the driver's error paths.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dexndm.deploy import protocol as P

TABLE_SIZE = 256
XC330_MODEL_NUMBER = 1200
# Registers a WRITE may not touch: model/firmware info, hardware error status,
# and the realtime/present block (realtime tick 120 .. present temperature 146).
_READ_ONLY = [(0, 7), (70, 71), (120, 147)]
_EEPROM_END = 64  # EEPROM area (< 64) is locked while torque is enabled.


@dataclass
class Faults:
    """Fault injection switches; mutate them between calls in a test."""

    corrupt_crc_ids: set[int] = field(default_factory=set)  # flip the CRC of these replies
    drop_ids: set[int] = field(default_factory=set)  # never reply (motor is silent)
    drop_probability: float = 0.0  # drop any reply with this probability
    delay_s: float = 0.0  # sleep before each reply (late replies)
    delay_ids: set[int] | None = None  # None: delay every id


class Motor:
    """One motor's control table and state."""

    def __init__(self, dxl_id: int, model_number: int, initial_position: int) -> None:
        self.id = dxl_id
        self.table = bytearray(TABLE_SIZE)
        self.set("model_number", model_number)
        self.set("firmware_version", 52)
        self.set("id", dxl_id)
        self.table[8] = 3  # baud rate register: 1 Mbps
        self.set("return_delay_time", 250)
        self.set("operating_mode", 3)  # position control
        self.set("position_p_gain", 400)
        self.set("goal_current", 1750)
        self.set("goal_position", initial_position)
        self.set("present_position", initial_position)

    def get(self, name: str, signed: bool = False) -> int:
        addr, n = P.CONTROL_TABLE[name]
        return P.from_le(self.table[addr : addr + n], signed=signed)

    def set(self, name: str, value: int) -> None:
        addr, n = P.CONTROL_TABLE[name]
        self.table[addr : addr + n] = P.le(value, n)

    @property
    def hardware_error(self) -> int:
        return self.get("hardware_error_status")

    @property
    def torque_on(self) -> bool:
        return bool(self.get("torque_enable"))


def _overlaps(addr: int, n: int, lo: int, hi: int) -> bool:
    return addr < hi and lo < addr + n


class DynamixelEmulator:
    """Serve emulated motors on a pty; ``.port`` is the device path for the sdk.

    Use as a context manager or call :meth:`close`. Motor state is in
    ``emulator.motors[id]``; faults in ``emulator.faults``.
    """

    def __init__(
        self,
        ids: Iterable[int] = range(16),
        model_number: int = XC330_MODEL_NUMBER,
        initial_position: int = 2048,
        on_goal: Callable[[int, int], None] | None = None,
        positions_provider: Callable[[], Mapping[int, int]] | None = None,
        seed: int = 0,
        on_sync_goal: Callable[[dict[int, int]], None] | None = None,
        state_provider: Callable[[], Mapping[int, Mapping[str, int]]] | None = None,
        baudrate: int | None = None,
    ) -> None:
        self.motors: dict[int, Motor] = {i: Motor(i, model_number, initial_position) for i in ids}
        self.on_goal = on_goal
        self.positions_provider = positions_provider
        self.on_sync_goal = on_sync_goal
        self.state_provider = state_provider
        self.baudrate = baudrate
        self.hook_error: BaseException | None = None   # an exception raised by a physics hook
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.packets_received = 0
        self.master_fd, self.slave_fd = os.openpty()
        tty.setraw(self.slave_fd)  # no echo or line discipline before the client opens it
        self.port: str = os.ttyname(self.slave_fd)
        self._stop = threading.Event()
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._serve, name="dxl-emulator", daemon=True)
        self._thread.start()

    # ---- public fault helpers -------------------------------------------------
    def set_hardware_error(self, dxl_id: int, bits: int = 0x01) -> None:
        """Raise a hardware error (e.g. 0x01 input voltage, 0x20 overload): torque off, alert bit."""
        with self.lock:
            m = self.motors[dxl_id]
            m.set("hardware_error_status", bits)
            m.set("torque_enable", 0)

    # ---- lifecycle ------------------------------------------------------------
    def close(self) -> None:
        """Stop the server thread and close both pty ends (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=2.0)
        for fd in (self.master_fd, self.slave_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> DynamixelEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- server ---------------------------------------------------------------
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.master_fd], [], [], 0.02)
                if not ready:
                    continue
                data = os.read(self.master_fd, 4096)
            except OSError:  # fds closed or client hung up; keep polling until stopped
                time.sleep(0.01)
                continue
            self._buf.extend(data)
            self._drain()

    def _drain(self) -> None:
        while self._buf:
            try:
                pkt, consumed = P.decode(self._buf)
            except P.ProtocolError:
                # Drop the bad header and resynchronise; a real motor stays silent.
                idx = self._buf.find(P.HEADER[:3])
                del self._buf[: max(idx, 0) + 1]
                continue
            if pkt is None:
                del self._buf[:consumed]
                return
            nbytes = consumed - max(self._buf.find(P.HEADER[:3]), 0)
            del self._buf[:consumed]
            self.packets_received += 1
            if not pkt.is_status:
                self._handle(pkt, nbytes)

    def _wire_s(self, nbytes: int) -> float:
        return 0.0 if not self.baudrate else nbytes * 10.0 / self.baudrate

    def _handle(self, pkt: P.Packet, nbytes: int = 0) -> None:
        deadline = time.perf_counter() + self._wire_s(nbytes)   # the request was still arriving
        with self.lock:
            try:
                replies = self._dispatch(pkt)
            except Exception as e:  # a physics hook failed: keep serving, report it to the test/user
                self.hook_error = e
                replies = []
        if self.baudrate and not replies:
            _sleep_until(deadline)      # the bus is busy until the request has gone by
        for dxl_id, data in replies:
            if self.baudrate:
                m = self.motors.get(dxl_id)
                delay = 2e-6 * m.get("return_delay_time") if m is not None else 0.0
                deadline = max(deadline, time.perf_counter()) + delay + self._wire_s(len(data))
                _sleep_until(deadline)
            self._send(dxl_id, data)

    def _send(self, dxl_id: int, data: bytes) -> None:
        f = self.faults
        if dxl_id in f.drop_ids:
            return
        if f.drop_probability and self.rng.random() < f.drop_probability:
            return
        if f.delay_s and (f.delay_ids is None or dxl_id in f.delay_ids):
            time.sleep(f.delay_s)
        if dxl_id in f.corrupt_crc_ids:
            data = data[:-2] + bytes([data[-2] ^ 0xFF, data[-1]])
        try:
            os.write(self.master_fd, data)
        except OSError:
            pass

    def _status(self, m: Motor, error: int = 0, params: bytes = b"") -> tuple[int, bytes]:
        if m.hardware_error:
            error |= P.ERR_ALERT
        return m.id, P.encode_status(m.id, error, params)

    def _targets(self, dxl_id: int) -> list[Motor]:
        if dxl_id == P.BROADCAST_ID:
            return list(self.motors.values())
        m = self.motors.get(dxl_id)
        return [m] if m is not None else []

    def _dispatch(self, pkt: P.Packet) -> list[tuple[int, bytes]]:
        inst, prm = pkt.instruction, pkt.params
        if inst == P.SYNC_READ:
            if len(prm) < 4:
                return []
            addr, n = P.from_le(prm[0:2]), P.from_le(prm[2:4])
            self._refresh_present()
            out = []
            for i in prm[4:]:
                m = self.motors.get(i)
                if m is not None:
                    out.append(self._read(m, addr, n))
            return out
        if inst == P.SYNC_WRITE:
            if len(prm) < 4:
                return []
            addr, n = P.from_le(prm[0:2]), P.from_le(prm[2:4])
            body = prm[4:]
            for k in range(0, len(body) - n, n + 1):
                m = self.motors.get(body[k])
                if m is not None:
                    self._write(m, addr, body[k + 1 : k + 1 + n])
            gaddr, gn = P.CONTROL_TABLE["goal_position"]
            if self.on_sync_goal is not None and _overlaps(addr, n, gaddr, gaddr + gn):
                ids = [body[k] for k in range(0, len(body) - n, n + 1) if body[k] in self.motors]
                self.on_sync_goal({i: self.motors[i].get("goal_position", signed=True) for i in ids})
            return []  # broadcast: no status
        out = []
        for m in self._targets(pkt.id):
            if inst == P.PING:
                params = m.table[0:2] + m.table[6:7]  # model number LE16, firmware
                out.append(self._status(m, 0, bytes(params)))
            elif inst == P.READ:
                if len(prm) != 4:
                    out.append(self._status(m, P.ERR_DATA_LENGTH))
                    continue
                self._refresh_present()
                out.append(self._read(m, P.from_le(prm[0:2]), P.from_le(prm[2:4])))
            elif inst == P.WRITE:
                if len(prm) < 3:
                    out.append(self._status(m, P.ERR_DATA_LENGTH))
                    continue
                err = self._write(m, P.from_le(prm[0:2]), prm[2:])
                out.append(self._status(m, err))
            elif inst == P.REBOOT:
                out.append(self._status(m))  # the status goes out before the reset
                m.set("hardware_error_status", 0)
                m.set("torque_enable", 0)
            else:
                out.append(self._status(m, P.ERR_INSTRUCTION))
        # A broadcast gets replies only for PING (spec); drop the rest.
        if pkt.id == P.BROADCAST_ID and inst != P.PING:
            return []
        return out

    def _read(self, m: Motor, addr: int, n: int) -> tuple[int, bytes]:
        if n == 0 or addr + n > TABLE_SIZE:
            return self._status(m, P.ERR_DATA_RANGE)
        return self._status(m, 0, bytes(m.table[addr : addr + n]))

    def _write(self, m: Motor, addr: int, data: bytes) -> int:
        n = len(data)
        if addr + n > TABLE_SIZE:
            return P.ERR_DATA_RANGE
        if any(_overlaps(addr, n, lo, hi) for lo, hi in _READ_ONLY):
            return P.ERR_ACCESS
        if m.torque_on and addr < _EEPROM_END:
            return P.ERR_ACCESS
        m.table[addr : addr + n] = data
        if m.hardware_error:
            m.set("torque_enable", 0)  # torque stays off until REBOOT
        gaddr, gn = P.CONTROL_TABLE["goal_position"]
        taddr, _ = P.CONTROL_TABLE["torque_enable"]
        touched_goal = _overlaps(addr, n, gaddr, gaddr + gn)
        if touched_goal and self.on_goal is not None:
            self.on_goal(m.id, m.get("goal_position", signed=True))
        driven = self.positions_provider is not None or self.state_provider is not None
        if (touched_goal or _overlaps(addr, n, taddr, taddr + 1)) and not driven:
            if m.torque_on:
                m.set("present_position", m.get("goal_position", signed=True))
        return 0

    def _refresh_present(self) -> None:
        if self.state_provider is not None:
            for i, regs in self.state_provider().items():
                if i in self.motors:
                    for name, value in regs.items():
                        self.motors[i].set(name, int(value))
        if self.positions_provider is None:
            return
        for i, ticks in self.positions_provider().items():
            if i in self.motors:
                self.motors[i].set("present_position", int(ticks))


def _sleep_until(deadline: float) -> None:
    """Sleep, then spin the last ~0.2 ms: wire times are tens of microseconds."""
    remaining = deadline - time.perf_counter()
    if remaining > 3e-4:
        time.sleep(remaining - 2e-4)
    while time.perf_counter() < deadline:
        pass
