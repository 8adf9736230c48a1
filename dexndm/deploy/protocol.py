"""Dynamixel Protocol 2.0 packets: CRC, byte stuffing, encoding and decoding.

Implements the ROBOTIS e-manual "Protocol 2.0" specification (packet layout,
CRC-16 with polynomial 0x8005 computed by the table-driven ``update_crc``, and
byte stuffing of ``FF FF FD`` in the instruction/parameter region).  Used by the
pty emulator in :mod:`dexndm.deploy.emulator` and by bus-level tests; the real
``dynamixel_sdk`` is the client on hardware.

Packet layout (before stuffing)::

    FF FF FD 00 | ID | LEN_L LEN_H | INST | [ERR] PARAMS... | CRC_L CRC_H

``LEN`` counts INST, (ERR), PARAMS and the two CRC bytes, after stuffing.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = b"\xff\xff\xfd\x00"
BROADCAST_ID = 0xFE

# Instructions.
PING = 0x01
READ = 0x02
WRITE = 0x03
REBOOT = 0x08
STATUS = 0x55
SYNC_READ = 0x82
SYNC_WRITE = 0x83

# Status error byte: bit 7 is the hardware-error alert; bits 0-6 an error number.
ERR_ALERT = 0x80
ERR_RESULT_FAIL = 0x01
ERR_INSTRUCTION = 0x02
ERR_CRC = 0x03
ERR_DATA_RANGE = 0x04
ERR_DATA_LENGTH = 0x05
ERR_DATA_LIMIT = 0x06
ERR_ACCESS = 0x07

# Control table (XC330/XL330 class, see LEAP_FACTS.md): name -> (address, nbytes).
CONTROL_TABLE: dict[str, tuple[int, int]] = {
    "model_number": (0, 2),
    "firmware_version": (6, 1),
    "id": (7, 1),
    "return_delay_time": (9, 1),
    "operating_mode": (11, 1),
    "torque_enable": (64, 1),
    "hardware_error_status": (70, 1),
    "position_d_gain": (80, 2),
    "position_i_gain": (82, 2),
    "position_p_gain": (84, 2),
    "goal_current": (102, 2),
    "goal_position": (116, 4),
    "present_current": (126, 2),
    "present_velocity": (128, 4),
    "present_position": (132, 4),
}

MAX_PACKET_LEN = 1024  # generous upper bound on LEN; the sdk's RXPACKET_MAX_LEN


class ProtocolError(ValueError):
    """A byte stream that is not a valid Protocol 2.0 packet (header, length or CRC)."""


def _make_crc_table(poly: int = 0x8005) -> list[int]:
    table = []
    for i in range(256):
        crc = i << 8
        for _ in range(8):
            crc = ((crc << 1) ^ poly) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _make_crc_table()


def crc16(data: bytes, crc_accum: int = 0) -> int:
    """CRC-16 (poly 0x8005, init 0, unreflected) as the spec's ``update_crc``."""
    for b in data:
        i = ((crc_accum >> 8) ^ b) & 0xFF
        crc_accum = ((crc_accum << 8) ^ _CRC_TABLE[i]) & 0xFFFF
    return crc_accum


def stuff(body: bytes) -> bytes:
    """Insert ``FD`` after every ``FF FF FD`` in the instruction/parameter region."""
    out = bytearray()
    for b in body:
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            out.append(0xFD)
    return bytes(out)


def unstuff(body: bytes) -> bytes:
    """Remove the ``FD`` following every ``FF FF FD`` (inverse of :func:`stuff`)."""
    out = bytearray()
    i = 0
    n = len(body)
    while i < n:
        b = body[i]
        out.append(b)
        if b == 0xFD and len(out) >= 3 and out[-3] == 0xFF and out[-2] == 0xFF:
            if i + 1 < n and body[i + 1] == 0xFD:
                i += 1  # skip the stuffed byte
        i += 1
    return bytes(out)


def _encode(dxl_id: int, body: bytes) -> bytes:
    if not 0 <= dxl_id <= 0xFE:
        raise ValueError(f"Dynamixel id must be 0..254, got {dxl_id}")
    body = stuff(body)
    length = len(body) + 2
    pkt = HEADER + bytes([dxl_id, length & 0xFF, length >> 8]) + body
    crc = crc16(pkt)
    return pkt + bytes([crc & 0xFF, crc >> 8])


def encode_instruction(dxl_id: int, instruction: int, params: bytes = b"") -> bytes:
    """Instruction packet for ``dxl_id`` (LEN = stuffed params + 3)."""
    return _encode(dxl_id, bytes([instruction]) + bytes(params))


def encode_status(dxl_id: int, error: int = 0, params: bytes = b"") -> bytes:
    """Status packet (instruction 0x55) carrying ``error`` and ``params``."""
    return _encode(dxl_id, bytes([STATUS, error & 0xFF]) + bytes(params))


@dataclass(frozen=True)
class Packet:
    """A decoded packet; ``error`` is None for instruction packets."""

    id: int
    instruction: int
    params: bytes
    error: int | None = None

    @property
    def is_status(self) -> bool:
        return self.instruction == STATUS


def decode(buffer: bytes) -> tuple[Packet | None, int]:
    """Decode the first packet in ``buffer``.

    Returns ``(packet, consumed)``: bytes before the header are skipped and counted
    in ``consumed``; ``(None, consumed)`` means more bytes are needed (``consumed``
    is the garbage that can be dropped). Raises :class:`ProtocolError` on a bad
    length or CRC; ``consumed`` is then unknown, so callers drop one header byte.
    """
    buf = bytes(buffer)
    start = buf.find(HEADER[:3])
    while start >= 0 and start + 3 < len(buf) and buf[start + 3] != 0x00:
        start = buf.find(HEADER[:3], start + 1)
    if start < 0:
        # Keep a possible partial header at the end.
        keep = 0
        for k in (2, 1):
            if buf.endswith(HEADER[:k]):
                keep = k
                break
        return None, len(buf) - keep
    if len(buf) < start + 7:
        return None, start
    length = buf[start + 5] | (buf[start + 6] << 8)
    if length < 3 or length > MAX_PACKET_LEN:
        raise ProtocolError(f"bad packet length {length} at offset {start}")
    end = start + 7 + length
    if len(buf) < end:
        return None, start
    pkt = buf[start:end]
    crc = pkt[-2] | (pkt[-1] << 8)
    if crc16(pkt[:-2]) != crc:
        raise ProtocolError(f"CRC mismatch: got 0x{crc:04X}, expected 0x{crc16(pkt[:-2]):04X}")
    body = unstuff(pkt[7:-2])
    inst = body[0]
    if inst == STATUS:
        if len(body) < 2:
            raise ProtocolError("status packet without error byte")
        return Packet(pkt[4], inst, body[2:], body[1]), end
    return Packet(pkt[4], inst, body[1:]), end


def le(value: int, nbytes: int) -> bytes:
    """Little-endian bytes of ``value`` (two's complement for negatives)."""
    return (value & ((1 << (8 * nbytes)) - 1)).to_bytes(nbytes, "little")


def from_le(data: bytes, signed: bool = False) -> int:
    return int.from_bytes(data, "little", signed=signed)
