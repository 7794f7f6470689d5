"""``BlastOptions.path_mtu``: a row counts fragments at the path MTU it is told, not at the
sending route's."""
from __future__ import annotations

import pytest

from udpbench.errors import UserError
from udpbench.measure.blast import blast


def test_fragments_are_counted_at_the_path_mtu_given(loopback_server):
    # 2000 payload + 8 UDP = 2008 bytes behind the IPv4 header; a 1500-byte path carries 1480 a
    # fragment (a multiple of 8): two packets. Loopback's own 65536 carries it whole.
    told = blast("127.0.0.1", port=loopback_server.port, size=2000, duration=0.2, rate=10e6, path_mtu=1500)
    own = blast("127.0.0.1", port=loopback_server.port, size=2000, duration=0.2, rate=10e6)
    assert (told.fragments, told.path_mtu) == (2, 1500)
    assert own.fragments == 1 and own.path_mtu == own.sender_mtu > 2028
    assert told.received > 0 and own.received > 0
    # Two headers of 20 + the 8-byte UDP header + 2000, each packet with 38 bytes of Ethernet framing.
    per_datagram = 2 * (20 + 38) + 8 + 2000
    assert told.wire_bps == pytest.approx(told.goodput_bps / (8 * 2000) * 8 * per_datagram, rel=1e-9)


@pytest.mark.parametrize("bad", [0, 67, 1500.0, "1500"])
def test_a_path_mtu_that_no_link_has_is_named(bad):
    with pytest.raises(UserError, match="path MTU"):
        blast("127.0.0.1", size=100, duration=0.1, path_mtu=bad)
