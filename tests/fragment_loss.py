"""The lab's fragment-loss law, for the tests that drop IP packets on a link."""
from __future__ import annotations

import math

from udpbench.protocol import frag


def check_fragment_loss(row: dict, per_packet_loss: float, mtu: int) -> None:
    """A datagram of k fragments survives a link that drops each packet with probability p only if
    all k do: its loss is 1 - (1 - p)**k. The row's loss must lie within 4.5 standard deviations of
    a binomial around that (a wrong law, such as per-datagram loss, fails it), and all of it must be
    the link's (network, or reassembly of what the link left incomplete), never the socket's."""
    k = frag.fragments(row["size"], mtu)
    assert row["fragments"] == k
    expected = 1 - (1 - per_packet_loss) ** k
    n = row["sent"]
    assert n > 500
    bound = 4.5 * math.sqrt(expected * (1 - expected) / n) + 1 / n
    assert abs(row["loss_ratio"] - expected) <= bound, (row["size"], k, row["loss_ratio"], expected)
    assert row["loss_network"] + row["loss_reassembly"] == row["lost"]
    assert row["loss_socket"] == 0
