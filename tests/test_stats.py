"""Loss attribution: causes in order, capped, never negative, always summing to the loss."""
import pytest

from udpbench.transport.client import Client
from udpbench.protocol.loss import CAUSES, attribute_loss


@pytest.mark.parametrize("kw, expected", [
    (dict(lost=0), (0, 0, 0, 0)),
    (dict(lost=100), (0, 0, 0, 100)),
    (dict(lost=100, socket_drops=30), (0, 30, 0, 70)),
    (dict(lost=100, sndbuf_errors=10, socket_drops=30, reasm_fails=5), (10, 30, 5, 55)),
    (dict(lost=20, sndbuf_errors=10, socket_drops=30), (10, 10, 0, 0)),  # capped by what is left
    (dict(lost=50, socket_drops=None, rcvbuf_errors=50), (0, 50, 0, 0)),  # namespace counter fallback
    (dict(lost=-3, socket_drops=5), (0, 0, 0, 0)),  # never negative
])
def test_attribution(kw, expected):
    parts = attribute_loss(**kw)
    assert tuple(parts[c] for c in CAUSES) == expected
    assert sum(parts.values()) == max(kw["lost"], 0)


def test_a_tiny_receive_buffer_shows_as_receiving_socket_loss(loopback_server):
    """A receiver that cannot keep up loses datagrams at its socket, not in the network."""
    with Client("127.0.0.1", loopback_server.port) as client:
        row = client.blast(8000, 0.5, None, rcvbuf=4096)
    assert row["lost"] > 0
    assert row["loss_socket"] == row["lost"]
    assert row["loss_network"] == 0
    assert sum(row[c] for c in CAUSES) == row["lost"]
