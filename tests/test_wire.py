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
