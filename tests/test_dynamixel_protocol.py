"""Protocol 2.0 codec against the spec's vectors, and the real dynamixel_sdk against the pty emulator."""

from __future__ import annotations

import time

import pytest

from dexndm.deploy import protocol as P
from dexndm.deploy.emulator import XC330_MODEL_NUMBER, DynamixelEmulator

sdk = pytest.importorskip("dynamixel_sdk")

PING_ID1 = bytes.fromhex("FF FF FD 00 01 03 00 01 19 4E")
PING_STATUS_ID1 = bytes.fromhex("FF FF FD 00 01 07 00 55 00 06 04 26 65 5D")
READ_ID1_132_4 = bytes.fromhex("FF FF FD 00 01 07 00 02 84 00 04 00 1D 15")
ADDR_GOAL, ADDR_PRESENT = P.CONTROL_TABLE["goal_position"][0], P.CONTROL_TABLE["present_position"][0]
ADDR_TORQUE = P.CONTROL_TABLE["torque_enable"][0]


# ---- codec ------------------------------------------------------------------
def test_spec_vectors() -> None:
    assert P.encode_instruction(1, P.PING) == PING_ID1
    assert P.encode_status(1, 0, bytes([0x06, 0x04, 0x26])) == PING_STATUS_ID1  # model 1030, fw 38
    assert P.encode_instruction(1, P.READ, P.le(132, 2) + P.le(4, 2)) == READ_ID1_132_4
    assert P.crc16(PING_ID1[:-2]) == 0x4E19


def test_decode_spec_vectors() -> None:
    pkt, n = P.decode(PING_STATUS_ID1)
    assert n == len(PING_STATUS_ID1)
    assert (pkt.id, pkt.instruction, pkt.error, pkt.params) == (1, P.STATUS, 0, bytes([6, 4, 38]))
    pkt, _ = P.decode(READ_ID1_132_4)
    assert (pkt.instruction, pkt.params, pkt.error) == (P.READ, bytes([0x84, 0, 4, 0]), None)


def test_stuffing_round_trip() -> None:
    params = bytes.fromhex("FF FF FD 10 FF FF FD FD 00")
    assert P.stuff(b"\xff\xff\xfd") == b"\xff\xff\xfd\xfd"
    assert P.unstuff(P.stuff(params)) == params
    raw = P.encode_instruction(3, P.WRITE, params)
    length = raw[5] | raw[6] << 8
    assert length == len(params) + 2 + 3  # two stuffed FD bytes counted in LEN
    pkt, n = P.decode(raw)
    assert n == len(raw) and pkt.params == params and pkt.id == 3


def test_decode_rejects_bad_crc() -> None:
    bad = bytearray(PING_ID1)
    bad[-1] ^= 0x01
    with pytest.raises(P.ProtocolError, match="CRC"):
        P.decode(bytes(bad))


def test_decode_skips_garbage_and_waits_for_more() -> None:
    pkt, n = P.decode(b"\x00\x13\xff\xfe" + PING_ID1 + b"\x01")
    assert pkt.id == 1 and pkt.instruction == P.PING and n == 4 + len(PING_ID1)
    pkt, n = P.decode(PING_ID1[:6])
    assert pkt is None and n == 0
    pkt, n = P.decode(b"\x01\x02\xff")
    assert pkt is None and n == 2  # trailing FF may start a header


# ---- the real sdk against the emulator -----------------------------------------
@pytest.fixture
def bus():
    emu = DynamixelEmulator(ids=range(16))
    port = sdk.PortHandler(emu.port)
    assert port.openPort() and port.setBaudRate(1_000_000)
    yield emu, port, sdk.PacketHandler(2.0)
    port.closePort()
    emu.close()


def test_ping_returns_model_number(bus) -> None:
    _, port, ph = bus
    model, comm, err = ph.ping(port, 5)
    assert (model, comm, err) == (XC330_MODEL_NUMBER, sdk.COMM_SUCCESS, 0)
    _, comm, _ = ph.ping(port, 40)  # no such motor
    assert comm == sdk.COMM_RX_TIMEOUT


def test_goal_then_present_position(bus) -> None:
    emu, port, ph = bus
    assert ph.write4ByteTxRx(port, 2, ADDR_GOAL, 3000) == (sdk.COMM_SUCCESS, 0)
    pos, comm, _ = ph.read4ByteTxRx(port, 2, ADDR_PRESENT)
    assert pos == 2048  # torque off: the motor does not move
    assert ph.write1ByteTxRx(port, 2, ADDR_TORQUE, 1) == (sdk.COMM_SUCCESS, 0)
    pos, comm, err = ph.read4ByteTxRx(port, 2, ADDR_PRESENT)
    assert (pos, comm, err) == (3000, sdk.COMM_SUCCESS, 0)
    assert emu.motors[2].get("present_position") == 3000


def test_register_widths_and_access(bus) -> None:
    emu, port, ph = bus
    addr_p, _ = P.CONTROL_TABLE["position_p_gain"]
    addr_mode, _ = P.CONTROL_TABLE["operating_mode"]
    assert ph.write2ByteTxRx(port, 7, addr_p, 800) == (sdk.COMM_SUCCESS, 0)
    assert ph.read2ByteTxRx(port, 7, addr_p)[:2] == (800, sdk.COMM_SUCCESS)
    assert ph.write1ByteTxRx(port, 7, addr_mode, 5) == (sdk.COMM_SUCCESS, 0)
    assert ph.read1ByteTxRx(port, 7, addr_mode)[:2] == (5, sdk.COMM_SUCCESS)
    assert ph.read4ByteTxRx(port, 8, ADDR_GOAL)[:2] == (2048, sdk.COMM_SUCCESS)
    # EEPROM is locked while torque is on; present position is read-only.
    ph.write1ByteTxRx(port, 7, ADDR_TORQUE, 1)
    assert ph.write1ByteTxRx(port, 7, addr_mode, 3) == (sdk.COMM_SUCCESS, P.ERR_ACCESS)
    assert ph.write4ByteTxRx(port, 7, ADDR_PRESENT, 1) == (sdk.COMM_SUCCESS, P.ERR_ACCESS)
    assert emu.motors[7].get("operating_mode") == 5


def test_sync_write_then_sync_read_all_16(bus) -> None:
    _, port, ph = bus
    ids = list(range(16))
    goals = {i: 1000 + 37 * i for i in ids}
    torque = sdk.GroupSyncWrite(port, ph, ADDR_TORQUE, 1)
    gw = sdk.GroupSyncWrite(port, ph, ADDR_GOAL, 4)
    for i in ids:
        assert torque.addParam(i, [1])
        assert gw.addParam(i, list(P.le(goals[i], 4)))
    assert torque.txPacket() == sdk.COMM_SUCCESS
    assert gw.txPacket() == sdk.COMM_SUCCESS
    gr = sdk.GroupSyncRead(port, ph, ADDR_PRESENT, 4)
    for i in ids:
        assert gr.addParam(i)
    assert gr.txRxPacket() == sdk.COMM_SUCCESS
    got = {i: gr.getData(i, ADDR_PRESENT, 4) for i in ids}
    assert got == goals


def test_positions_provider_drives_present() -> None:
    seen = []
    with DynamixelEmulator(ids=[0, 1], on_goal=lambda i, v: seen.append((i, v)),
                           positions_provider=lambda: {0: 111, 1: 222}) as emu:
        port = sdk.PortHandler(emu.port)
        assert port.openPort() and port.setBaudRate(1_000_000)
        ph = sdk.PacketHandler(2.0)
        ph.write4ByteTxRx(port, 1, ADDR_GOAL, 4000)
        assert ph.read4ByteTxRx(port, 1, ADDR_PRESENT)[0] == 222
        assert seen == [(1, 4000)]
        port.closePort()


# ---- fault injection -----------------------------------------------------------
def test_corrupt_crc_reported(bus) -> None:
    emu, port, ph = bus
    emu.faults.corrupt_crc_ids = {4}
    _, comm, _ = ph.ping(port, 4)
    assert comm == sdk.COMM_RX_CORRUPT
    assert ph.ping(port, 5)[1] == sdk.COMM_SUCCESS


def test_dropped_and_late_replies_time_out(bus) -> None:
    emu, port, ph = bus
    emu.faults.drop_probability = 1.0
    assert ph.ping(port, 1)[1] == sdk.COMM_RX_TIMEOUT
    emu.faults.drop_probability = 0.0
    emu.faults.delay_s = 0.15  # well past the sdk's ~34 ms packet timeout at 1 Mbaud
    assert ph.ping(port, 1)[1] == sdk.COMM_RX_TIMEOUT
    emu.faults.delay_s = 0.0
    time.sleep(0.3)  # let the stale reply land; the sdk flushes it on the next tx
    assert ph.ping(port, 1)[:2] == (XC330_MODEL_NUMBER, sdk.COMM_SUCCESS)


def test_hardware_error_sets_alert_bit(bus) -> None:
    emu, port, ph = bus
    emu.set_hardware_error(6, 0x20)  # overload
    pos, comm, err = ph.read4ByteTxRx(port, 6, ADDR_PRESENT)
    assert comm == sdk.COMM_SUCCESS and err & P.ERR_ALERT
    addr_hw, _ = P.CONTROL_TABLE["hardware_error_status"]
    assert ph.read1ByteTxRx(port, 6, addr_hw)[0] == 0x20
    assert ph.read1ByteTxRx(port, 5, addr_hw)[2] == 0  # other motors are fine
    assert ph.reboot(port, 6) == (sdk.COMM_SUCCESS, P.ERR_ALERT)  # status sent before the reset
    assert ph.read1ByteTxRx(port, 6, addr_hw) == (0, sdk.COMM_SUCCESS, 0)


def test_silent_motor(bus) -> None:
    emu, port, ph = bus
    emu.faults.drop_ids = {9}
    assert ph.ping(port, 9)[1] == sdk.COMM_RX_TIMEOUT
    assert all(ph.ping(port, i)[1] == sdk.COMM_SUCCESS for i in (0, 8, 10, 15))
    gr = sdk.GroupSyncRead(port, ph, ADDR_PRESENT, 4)
    for i in (8, 9, 10):
        gr.addParam(i)
    assert gr.txRxPacket() != sdk.COMM_SUCCESS


def test_close_is_clean() -> None:
    emu = DynamixelEmulator(ids=[0])
    emu.close()
    emu.close()
    assert not emu._thread.is_alive()
