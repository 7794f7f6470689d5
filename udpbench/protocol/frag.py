"""Fragment arithmetic: how Linux cuts a UDP datagram into IP fragments, and what it costs on the wire.

IPv4 (``__ip_append_data``): every fragment but the last carries a multiple of 8 bytes of IP
payload, ``(M - 20) & ~7``; the last may carry up to ``M - 20``.
IPv6 (``__ip6_append_data``): every fragment, the last included, carries at most
``((M - 40) & ~7) - 8`` bytes after the 40-byte header and the 8-byte fragment header.
"""
from __future__ import annotations

import math

from udpbench.protocol import wire

IPV4_HEADER = 20
IPV6_HEADER = 40
IPV6_FRAG_HEADER = 8
UDP_HEADER = 8
# Ethernet per frame: 14 header + 4 FCS + 8 preamble/SFD + 12 inter-frame gap
ETHERNET_OVERHEAD = 38
ETHERNET_MIN_PAYLOAD = 46  # a 64-byte minimum frame less header and FCS
MIN_MTU_IPV4 = 68
MIN_MTU_IPV6 = 1280


def header_overhead(v6: bool) -> int:
    """IP + UDP header bytes of an unfragmented datagram: 28 (IPv4) or 48 (IPv6)."""
    return (IPV6_HEADER if v6 else IPV4_HEADER) + UDP_HEADER


def max_unfragmented_payload(mtu: int, v6: bool = False) -> int:
    """P = M - H: the largest UDP payload that fits in one packet."""
    return min(mtu - header_overhead(v6), wire.max_payload(v6))


def _check(payload: int, mtu: int, v6: bool) -> None:
    if payload < 0:
        raise ValueError(f"payload size {payload} is negative")
    if payload > wire.max_payload(v6):
        raise ValueError(f"payload size {payload} exceeds the largest UDP payload ({wire.max_payload(v6)})")
    floor = MIN_MTU_IPV6 if v6 else MIN_MTU_IPV4
    if mtu < floor:
        raise ValueError(f"MTU {mtu} is below the {'IPv6' if v6 else 'IPv4'} minimum of {floor}")


def fragment_sizes(payload: int, mtu: int, v6: bool = False) -> list[int]:
    """IP packet sizes (bytes, IP header included) Linux sends for one UDP payload at this MTU."""
    _check(payload, mtu, v6)
    l4 = payload + UDP_HEADER
    if v6:
        if l4 + IPV6_HEADER <= mtu:
            return [l4 + IPV6_HEADER]
        chunk = ((mtu - IPV6_HEADER) & ~7) - IPV6_FRAG_HEADER
        full, rest = divmod(l4, chunk)
        sizes = [IPV6_HEADER + IPV6_FRAG_HEADER + chunk] * full
        if rest:
            sizes.append(IPV6_HEADER + IPV6_FRAG_HEADER + rest)
        return sizes
    if l4 + IPV4_HEADER <= mtu:
        return [l4 + IPV4_HEADER]
    chunk = (mtu - IPV4_HEADER) & ~7
    sizes = []
    left = l4
    while left > mtu - IPV4_HEADER:
        sizes.append(IPV4_HEADER + chunk)
        left -= chunk
    sizes.append(IPV4_HEADER + left)
    return sizes


def fragments(payload: int, mtu: int, v6: bool = False) -> int:
    """Number of IP packets one UDP payload becomes at this MTU (1 = not fragmented)."""
    _check(payload, mtu, v6)
    l4 = payload + UDP_HEADER
    if v6:
        if l4 + IPV6_HEADER <= mtu:
            return 1
        return math.ceil(l4 / (((mtu - IPV6_HEADER) & ~7) - IPV6_FRAG_HEADER))
    if l4 + IPV4_HEADER <= mtu:
        return 1
    chunk = (mtu - IPV4_HEADER) & ~7
    return 1 + math.ceil((l4 - (mtu - IPV4_HEADER)) / chunk)


def max_payload_in(k: int, mtu: int, v6: bool = False) -> int:
    """The largest UDP payload that Linux sends in at most k fragments at this MTU."""
    if k < 1:
        raise ValueError("a datagram takes at least one packet")
    if k == 1:
        return max_unfragmented_payload(mtu, v6)
    if v6:
        most = k * (((mtu - IPV6_HEADER) & ~7) - IPV6_FRAG_HEADER) - UDP_HEADER
    else:
        most = (k - 1) * ((mtu - IPV4_HEADER) & ~7) + (mtu - IPV4_HEADER) - UDP_HEADER
    return min(most, wire.max_payload(v6))


def wire_bytes(payload: int, mtu: int, v6: bool = False) -> int:
    """Bytes one UDP payload occupies on Ethernet: every fragment framed, padded to 64 bytes."""
    return wire_bytes_of(fragment_sizes(payload, mtu, v6))


def wire_bytes_of(packet_sizes: list[int]) -> int:
    """Ethernet bytes of these IP packets: 38 bytes of framing each, padded to a 64-byte frame."""
    return sum(max(size, ETHERNET_MIN_PAYLOAD) + ETHERNET_OVERHEAD for size in packet_sizes)


def plan_sizes(mtu: int, v6: bool = False, small: tuple[int, ...] = (64, 512),
               budget: int | None = None) -> list[int]:
    """Payload sizes "around the MTU": a few small sizes, P-1, P, P+1, and for k = 2, 3, ...
    the largest payload that fits in k fragments and one byte more, up to the largest UDP payload.

    ``budget`` thins the fragment boundaries (keeping the first ones and the largest payload)
    so the plan has at most that many points.
    """
    limit = wire.max_payload(v6)
    p = max_unfragmented_payload(mtu, v6)
    sizes = {s for s in small if wire.HEADER_SIZE <= s <= limit}
    sizes.update(s for s in (p - 1, p, p + 1) if wire.HEADER_SIZE <= s <= limit)
    boundaries = []
    k = 2
    while True:
        top = max_payload_in(k, mtu, v6)
        if top >= limit:
            break
        boundaries.append((top, top + 1))
        k += 1
    head = sorted(sizes)
    if budget is not None:
        room = max(0, budget - len(head) - 1)
        pairs = room // 2
        if len(boundaries) > pairs:
            # keep the first boundaries (where fragment count matters most) and spread the rest
            if pairs <= 0:
                boundaries = []
            else:
                step = len(boundaries) / pairs
                boundaries = [boundaries[int(i * step)] for i in range(pairs)]
    for pair in boundaries:
        sizes.update(pair)
    if p < limit:
        sizes.add(limit)
    return sorted(sizes)


def fragment_sizes_on_path(payload: int, sender_mtu: int, path_mtu: int, v6: bool = False) -> list[int]:
    """IP packet sizes one datagram becomes at the bottleneck, when the sender fragments at its
    own route MTU and an IPv4 router cuts each too-large packet again at the path MTU.

    A sender that never learned the path MTU (ICMP filtered, or no DF datagram ever exceeded it)
    fragments at its interface MTU, so a 2000-byte payload crosses a 1400-MTU link as 3 packets,
    not 2. IPv6 routers never fragment: packets above the path MTU are dropped, and the sizes
    are the sender's.
    """
    first_hop = fragment_sizes(payload, sender_mtu, v6)
    if v6 or sender_mtu <= path_mtu:
        return first_hop
    chunk = (path_mtu - IPV4_HEADER) & ~7
    sizes = []
    for size in first_hop:
        left = size - IPV4_HEADER
        while left > path_mtu - IPV4_HEADER:  # the router's ip_fragment(): 8-byte aligned pieces
            sizes.append(IPV4_HEADER + chunk)
            left -= chunk
        sizes.append(IPV4_HEADER + left)
    return sizes
