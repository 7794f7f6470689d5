"""Where datagrams were lost: the sender, the receiving socket, reassembly, or the network.

Attribution takes the lost datagrams (sent - received) and hands them out in order, each cause
capped by what is left, so the parts always add up to ``lost`` and none is negative:

1. sender: datagrams the sending kernel accepted but then dropped (``Udp.SndbufErrors``
   delta on the sender: with IP_RECVERR off, a full device queue drops silently);
2. receiving socket: drops at the server's socket (SO_MEMINFO ``sk_drops``, exact for the
   session's own socket; else the namespace's ``Udp.RcvbufErrors`` delta);
3. reassembly: ``Ip.ReasmFails`` delta at the receiver (fragment-queue evictions and
   overlaps; a reassembly *timeout* fires only after ``ipfrag_time`` = 30 s, after the report);
4. network: the rest.
"""
from __future__ import annotations

CAUSES = ("loss_sender", "loss_socket", "loss_reassembly", "loss_network")


def attribute_loss(lost: int, sndbuf_errors: int = 0, socket_drops: int | None = None,
                   rcvbuf_errors: int = 0, reasm_fails: int = 0) -> dict[str, int]:
    """Split ``lost`` datagrams by cause; the values sum to max(lost, 0)."""
    left = max(int(lost), 0)
    parts = {}
    socket_side = socket_drops if socket_drops is not None else rcvbuf_errors
    for name, evidence in (("loss_sender", sndbuf_errors), ("loss_socket", socket_side),
                           ("loss_reassembly", reasm_fails)):
        take = min(left, max(int(evidence or 0), 0))
        parts[name] = take
        left -= take
    parts["loss_network"] = left
    return parts
