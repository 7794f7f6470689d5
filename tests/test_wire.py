"""The datagram header: golden bytes, and the Cython core writing exactly what wire.py defines."""
import pytest

from udpbench.engine import _fast
from udpbench.protocol import wire

# magic "UDPB" | version 1 | kind DATA | flags 0x0102 | session | seq | tx_ns
GOLDEN = bytes.fromhex(
    "55445042" "01" "01" "0102"
    "0123456789abcdef"
    "0000000000000007"
    "00000000075bcd15"
)


def test_header_is_32_bytes():
    assert wire.HEADER_SIZE == 32 == _fast.HEADER_BYTES


def test_golden_bytes_from_wire():
    assert wire.pack(wire.Kind.DATA, 0x0123456789ABCDEF, 7, 123456789, flags=0x0102) == GOLDEN


def test_golden_bytes_from_the_cython_core():
    assert _fast.pack_header(wire.Kind.DATA, 0x0102, 0x0123456789ABCDEF, 7, 123456789) == GOLDEN


@pytest.mark.parametrize("kind", list(wire.Kind))
def test_cython_and_python_agree_for_every_kind(kind):
    session, seq, tx = 2**64 - 1, 2**63 + 5, 2**62
    assert _fast.pack_header(kind, 0, session, seq, tx) == wire.pack(kind, session, seq, tx)


def test_parse_round_trip():
    header = wire.parse(GOLDEN + b"\0" * 100)
    assert header == wire.Header(wire.Kind.DATA, 0x0102, 0x0123456789ABCDEF, 7, 123456789)


@pytest.mark.parametrize("data, reason", [
    (GOLDEN[:31], "shorter"),
    (b"XXXX" + GOLDEN[4:], "magic"),
    (GOLDEN[:4] + b"\x02" + GOLDEN[5:], "version"),
    (GOLDEN[:5] + b"\x63" + GOLDEN[6:], "kind"),
])
def test_parse_refuses_foreign_datagrams(data, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.parse(data)


def test_datagram_is_exactly_the_requested_size():
    d = wire.datagram(wire.Kind.DATA, 1, 2, 1472)
    assert len(d) == 1472 and d[:32] == wire.pack(wire.Kind.DATA, 1, 2)


@pytest.mark.parametrize("size, v6, ok", [
    (31, False, False), (32, False, True), (65507, False, True), (65508, False, False),
    (65527, True, True), (65528, True, False),
])
def test_payload_size_limits(size, v6, ok):
    if ok:
        wire.check_size(size, v6)
    else:
        with pytest.raises(wire.WireError):
            wire.check_size(size, v6)


def test_scheduled_send_time_follows_the_header():
    d = wire.data_datagram(0x0123456789ABCDEF, 7, 48, tx_ns=123456789, scheduled_ns=123450000)
    assert d[:32] == wire.pack(wire.Kind.DATA, 0x0123456789ABCDEF, 7, 123456789, flags=wire.Flag.SCHEDULED)
    assert d[32:40] == bytes.fromhex("00000000075bb290") and d[40:] == bytes(8)
    assert wire.scheduled_ns(d) == 123450000


def test_payloads_below_40_bytes_carry_no_scheduled_time():
    d = wire.data_datagram(1, 2, 39, tx_ns=5, scheduled_ns=4)
    assert wire.parse(d).flags == 0 and wire.scheduled_ns(d) is None


def test_the_send_loop_writes_what_wire_defines():
    """Datagrams from the Cython send loop parse with wire.py, scheduled time included."""
    import socket
    import time
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx.connect(rx.getsockname())
    rx.settimeout(2)
    try:
        before = time.time_ns()
        # 3 datagrams at 1000/s, one syscall each: slots 1 ms apart
        _fast.send_datagrams(tx.fileno(), _fast.ENGINE_SEND, 64, 99, 0, 1.0, 1000.0, max_count=3)
        got = [rx.recv(100) for _ in range(3)]
    finally:
        rx.close()
        tx.close()
    heads = [wire.parse(d) for d in got]
    scheds = [wire.scheduled_ns(d) for d in got]
    assert [h.seq for h in heads] == [0, 1, 2] and all(h.flags == wire.Flag.SCHEDULED for h in heads)
    assert all(before <= s <= h.tx_ns for s, h in zip(scheds, heads))
    assert [b - a for a, b in zip(scheds, scheds[1:])] == [pytest.approx(1_000_000, abs=2)] * 2
