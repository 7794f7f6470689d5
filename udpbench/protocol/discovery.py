"""Server discovery, sans-IO: the DISCOVER request, its reply, the search and the reply limit.

A client looking for udpbench servers sends a small DISCOVER datagram (a random 64-bit nonce
in the session field) to where servers may listen: an IPv4 broadcast address, or the IPv6
link-local group :data:`MULTICAST_GROUP_V6` that servers join. It sends a few rounds spaced
over the timeout and lists the servers that answer. A server answers with a DISCOVER_REPLY
that echoes the nonce and carries a short JSON body (version, control protocol, port). The
reply is never larger than the request, and replies are rate limited by a token bucket, so
discovery can neither amplify nor flood. See docs/ping.md.

This module knows no sockets and no clock: :class:`ServerSearch` and :class:`ReplyBucket` take
``now`` (seconds, any monotonic origin), so their tests need no sleeps. Not to be confused with
path-MTU discovery (``protocol/`` search steppers, docs/mtu.md).
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import threading
from typing import NamedTuple

from udpbench._version import __version__
from udpbench.protocol import control, wire

LOOPBACK_BROADCAST = "127.255.255.255"  # loopback's broadcast address: every server on this machine
LIMITED_BROADCAST = "255.255.255.255"
# A transient (T=1) link-local (scope 2) group, RFC 4291 section 2.7: only hosts whose server
# joined it take the datagram off the wire, unlike all-nodes ff02::1, which every host must read.
MULTICAST_GROUP_V6 = "ff12::1060"
# The request is padded so the reply (header + a ~70-byte JSON body) always fits inside it:
# a server answering discovery never sends more bytes than it received.
DISCOVER_SIZE = 128
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_SENDS = 3  # a lost broadcast is not the end of the search; three rounds is still a handful
MAX_SENDS = 10
MAX_TARGETS = 64  # interfaces x families: a search is at most MAX_SENDS x MAX_TARGETS small datagrams
REPLY_RATE = 10.0  # discovery replies a server sends per second, at most (token bucket)
REPLY_BURST = 10


# --- the datagrams ----------------------------------------------------------------------------

def request(nonce: int, seq: int, tx_ns: int = 0) -> bytes:
    """A DISCOVER of :data:`DISCOVER_SIZE` bytes for search ``nonce``; ``seq`` names the datagram."""
    return wire.datagram(wire.Kind.DISCOVER, nonce, seq, DISCOVER_SIZE, tx_ns)


def reply(header: wire.Header, request_size: int, port: int) -> bytes | None:
    """The answer to a DISCOVER, or None if it would be larger than the request."""
    body = json.dumps({"server": f"udpbench {__version__}", "version": __version__,
                       "protocol": control.PROTOCOL_VERSION, "port": port},
                      separators=(",", ":")).encode()
    data = wire.pack(wire.Kind.DISCOVER_REPLY, header.session, header.seq, header.tx_ns) + body
    return data if len(data) <= request_size else None


def parse_reply(data: bytes, nonce: int) -> tuple[wire.Header, dict]:
    """Header and body of a DISCOVER_REPLY to our nonce; WireError for anything else."""
    header = wire.parse(data)
    if header.kind != wire.Kind.DISCOVER_REPLY or header.session != nonce:
        raise wire.WireError("not a reply to this search")
    try:
        body = json.loads(bytes(data[wire.HEADER_SIZE:]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise wire.WireError("discovery reply body is not JSON") from None
    if not isinstance(body, dict):
        raise wire.WireError("discovery reply body is not an object")
    return header, body


class ReplyBucket:
    """The server's reply limit: ``rate`` replies a second, at most ``burst`` saved up.

    Thread-safe, so any of the server's threads may answer discovery.
    """

    def __init__(self, now: float, rate: float = REPLY_RATE, burst: int = REPLY_BURST):
        self.rate, self.burst = rate, float(burst)
        self.tokens = float(burst)
        self.stamp = now
        self._lock = threading.Lock()

    def take(self, now: float) -> bool:
        """Whether a reply may go out at ``now``; if so, it is counted."""
        with self._lock:
            self.tokens = min(self.burst, self.tokens + max(now - self.stamp, 0.0) * self.rate)
            self.stamp = max(now, self.stamp)
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


# --- where to look ------------------------------------------------------------------------------

def subnet_broadcast(address: str, prefixlen: int, announced: str | None = None) -> str | None:
    """The IPv4 directed broadcast address of ``address/prefixlen``, or None if it has none.

    ``announced`` is the one the interface was configured with (``ip addr ... brd``); without it
    the kernel still routes the subnet's all-ones address as broadcast. /31 and /32 have no
    broadcast address (RFC 3021).
    """
    if announced:
        return announced
    if prefixlen >= 31:
        return None
    return str(ipaddress.ip_network(f"{address}/{prefixlen}", strict=False).broadcast_address)


class Target(NamedTuple):
    """One place a DISCOVER goes: an address, and the interface it leaves by (0, None: the route's)."""
    address: str
    ifindex: int = 0
    interface: str | None = None

    @property
    def family(self) -> int:
        return 6 if ":" in self.address else 4

    def __str__(self) -> str:
        return f"{self.address}%{self.interface}" if self.interface else self.address


def check_broadcast(text: str) -> str:
    """An IPv4 broadcast (or one host's unicast) address to search; ValueError says why not."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4 address (e.g. 127.255.255.255, 198.18.1.255 "
                         "or 255.255.255.255)") from None
    if ip.version != 4:
        raise ValueError(f"{text}: IPv6 has no broadcast; broadcast addresses are IPv4 only "
                         f"(IPv6 is searched by multicast to {MULTICAST_GROUP_V6})")
    if ip.is_multicast or ip.is_unspecified:
        raise ValueError(f"{text}: give a broadcast address (or one host's address), "
                         "not a multicast or unspecified one")
    return str(ip)


# --- what a search finds ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FoundServer:
    """A udpbench server that answered a search."""
    address: str  #: where the reply came from; an IPv6 link-local one carries its zone: ``fe80::2%eth0``
    port: int  #: the UDP port it answered from
    server: str  #: its name and version, as it said (at most 80 characters)
    version: str  #: its udpbench version
    protocol: int | None  #: its control-protocol version
    control_port: int | None  #: the TCP control port it serves
    rtt_ms: float  #: from our request to its reply
    interface: str | None = None  #: the interface our request left by, when we chose one

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class SearchResult:
    """One search: where it looked, what answered, and what else arrived."""
    targets: list[Target]
    port: int
    timeout_s: float
    sent: int = 0  #: DISCOVER datagrams sent, over every target
    servers: list[FoundServer] = dataclasses.field(default_factory=list)  #: in the order they answered
    duplicates: int = 0  #: further answers from a server already found
    foreign: int = 0  #: datagrams that were not an answer to this search
    send_errors: dict[str, str] = dataclasses.field(default_factory=dict)  #: target -> why it failed
    elapsed_s: float = 0.0


class ServerSearch:
    """The client's search, sans-IO: which DISCOVER to send when, and what the answers mean.

    Round ``r`` (of ``sends``) goes out at ``start + r * timeout / sends``, one datagram to each
    target; answers count until ``start + timeout``. Sequence numbers are ``r * len(targets) + i``,
    so an answer says which datagram it answers and the round-trip time is that datagram's.
    """

    def __init__(self, nonce: int, targets: list[Target], port: int, timeout: float, start: float,
                 sends: int = DEFAULT_SENDS):
        if not targets:
            raise ValueError("no address to search")
        if len(targets) > MAX_TARGETS:
            raise ValueError(f"{len(targets)} addresses to search; at most {MAX_TARGETS}")
        if not 1 <= sends <= MAX_SENDS:
            raise ValueError(f"sends {sends} is outside 1-{MAX_SENDS}")
        if not 0 < port <= 65535:
            raise ValueError(f"port {port} is outside 1-65535")
        self.nonce, self.targets, self.sends = nonce, list(targets), sends
        self.start, self.end = start, start + timeout
        self.result = SearchResult(self.targets, port, timeout)
        self._sent_at: dict[int, float] = {}  # seq -> when it went out
        self._found: set[str] = set()
        self._round = 0

    def datagrams_to_send(self, now: float) -> list[tuple[Target, bytes, int]]:
        """The (target, datagram, seq) due at ``now``: one round, or nothing."""
        if self._round >= self.sends or now < self._round_time(self._round) or now >= self.end:
            return []
        base = self._round * len(self.targets)
        self._round += 1
        return [(t, request(self.nonce, base + i), base + i) for i, t in enumerate(self.targets)]

    def sent(self, seq: int, now: float) -> None:
        """The datagram ``seq`` left at ``now``."""
        self._sent_at[seq] = now
        self.result.sent += 1

    def send_failed(self, target: Target, reason: str) -> None:
        self.result.send_errors.setdefault(str(target), reason)

    def get_timer(self) -> float:
        """When something is next due: the next round, or the end of the search."""
        return min(self._round_time(self._round), self.end) if self._round < self.sends else self.end

    def done(self, now: float) -> bool:
        return now >= self.end

    def receive_datagram(self, data: bytes, address: str, port: int, now: float) -> FoundServer | None:
        """A datagram at the search's socket: a newly found server, or None (counted)."""
        try:
            header, body = parse_reply(data, self.nonce)
        except wire.WireError:
            self.result.foreign += 1
            return None
        sent_at = self._sent_at.get(header.seq)
        if sent_at is None:  # our nonce, but a datagram we never sent
            self.result.foreign += 1
            return None
        key = f"{address} {port}"
        if key in self._found:
            self.result.duplicates += 1
            return None
        self._found.add(key)
        target = self.targets[header.seq % len(self.targets)]
        found = FoundServer(
            address=address, port=port,
            server=str(body.get("server", "?"))[:80], version=str(body.get("version", "?"))[:40],
            protocol=_whole(body.get("protocol")), control_port=_whole(body.get("port")),
            rtt_ms=round((now - sent_at) * 1e3, 3), interface=target.interface)
        self.result.servers.append(found)
        return found

    def finish(self, now: float) -> SearchResult:
        self.result.elapsed_s = round(now - self.start, 3)
        return self.result

    def _round_time(self, r: int) -> float:
        return self.start + r * (self.end - self.start) / self.sends


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
