"""`udpbench discover`: find udpbench servers on a segment with one broadcast datagram.

The client sends a small DISCOVER datagram (a random 64-bit nonce in the session field) to a
broadcast address, a few times spaced over the timeout, and lists the servers that answer.
A server answers with a DISCOVER_REPLY that echoes the nonce, carries a short JSON body
(version, control protocol, port) and is never larger than the request; replies are rate
limited by a token bucket and need no session. See docs/ping.md.

The default target is the loopback broadcast address (this machine only): a run in CI
must never spray a real LAN. Searching a LAN takes ``--broadcast 255.255.255.255`` or a
directed broadcast such as ``192.0.2.255``, typed by a person who means it.
"""
from __future__ import annotations

import ipaddress
import json
import secrets
import socket
import struct
import sys
import threading
import time
from typing import NamedTuple

from udpbench._version import __version__
from udpbench.protocol import control
from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.errors import MeasurementError, UserError
from udpbench.protocol.units import port_number, seconds_between

DEFAULT_PORT = control.DEFAULT_PORT  # the server's; one owner: protocol/control.py
DEFAULT_BROADCAST = "127.255.255.255"  # loopback's broadcast address: every server on this machine
LIMITED_BROADCAST = "255.255.255.255"
# The request is padded so the reply (header + a ~70-byte JSON body) always fits inside it:
# a server answering discovery never sends more bytes than it received.
DISCOVER_SIZE = 128
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_SENDS = 3  # a lost broadcast is not the end of the search; three is still a handful
REPLY_RATE = 10.0  # discovery replies a server sends per second, at most (token bucket)
REPLY_BURST = 10


# --- both ends: the datagrams ---------------------------------------------------------------

def request(nonce: int, seq: int, tx_ns: int | None = None) -> bytes:
    return wire.datagram(wire.Kind.DISCOVER, nonce, seq, DISCOVER_SIZE,
                         time.time_ns() if tx_ns is None else tx_ns)


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


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up. Thread-safe."""

    def __init__(self, rate: float = REPLY_RATE, burst: int = REPLY_BURST, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, float(burst), clock
        self.tokens = float(burst)
        self.stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                return True
            return False


# --- the server side: where broadcasts arrive -------------------------------------------------

class InterfaceAddress(NamedTuple):
    ifindex: int
    ifname: str
    family: int  # 4 or 6
    address: str
    prefixlen: int
    broadcast: str | None  # IPv4 directed broadcast of the subnet, if it has one


_NLMSGHDR = struct.Struct("=IHHII")
_IFADDRMSG = struct.Struct("=BBBBI")
_RTATTR = struct.Struct("=HH")
_NETLINK_ROUTE = 0
_RTM_NEWADDR, _RTM_GETADDR = 20, 22
_NLM_F_REQUEST, _NLM_F_DUMP = 0x1, 0x300
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_IFA_ADDRESS, _IFA_LOCAL, _IFA_BROADCAST = 1, 2, 4


def _align(n: int) -> int:
    return (n + 3) & ~3


def interface_addresses() -> list[InterfaceAddress]:
    """Every address on this machine's (this namespace's) interfaces, from an rtnetlink dump.

    netlink rather than SIOCGIFCONF: it also lists secondary and IPv6 addresses.
    """
    out: list[InterfaceAddress] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_ROUTE) as nl:
        nl.settimeout(2.0)
        nl.bind((0, 0))
        nl.send(_NLMSGHDR.pack(_NLMSGHDR.size + _IFADDRMSG.size, _RTM_GETADDR,
                               _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
                + _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + _NLMSGHDR.size <= len(data):
                length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, off)
                if length < _NLMSGHDR.size or off + length > len(data):
                    break
                if kind == _NLMSG_DONE:
                    return out
                if kind == _NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, off + _NLMSGHDR.size)
                    raise OSError(-err, "rtnetlink address dump failed")
                if kind == _RTM_NEWADDR:
                    entry = _parse_ifaddr(data, off + _NLMSGHDR.size, off + length)
                    if entry is not None:
                        out.append(entry)
                off += _align(length)


def _parse_ifaddr(data: bytes, start: int, end: int) -> InterfaceAddress | None:
    family, prefixlen, _flags, _scope, ifindex = _IFADDRMSG.unpack_from(data, start)
    attrs: dict[int, bytes] = {}
    at = start + _IFADDRMSG.size
    while at + _RTATTR.size <= end:
        alen, atype = _RTATTR.unpack_from(data, at)
        if alen < _RTATTR.size:
            break
        attrs[atype] = data[at + _RTATTR.size:at + alen]
        at += _align(alen)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
    raw = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
    if family not in (socket.AF_INET, socket.AF_INET6) or raw is None:
        return None
    address = socket.inet_ntop(family, raw)
    broadcast = None
    if family == socket.AF_INET:
        if _IFA_BROADCAST in attrs:
            broadcast = socket.inet_ntop(family, attrs[_IFA_BROADCAST])
        elif prefixlen < 31:  # the kernel adds the subnet broadcast route even without "brd"
            broadcast = str(ipaddress.ip_network(f"{address}/{prefixlen}", strict=False).broadcast_address)
    try:
        ifname = socket.if_indextoname(ifindex)
    except OSError:
        ifname = str(ifindex)
    return InterfaceAddress(ifindex, ifname, 4 if family == socket.AF_INET else 6, address, prefixlen, broadcast)


def owner_of(address: str) -> InterfaceAddress | None:
    """The interface address entry for a local address, or None."""
    try:
        want = ipaddress.ip_address(address.split("%")[0])
        entries = interface_addresses()
    except (ValueError, OSError):
        return None
    for entry in entries:
        if ipaddress.ip_address(entry.address) == want:
            return entry
    return None


def broadcast_targets(bind: str) -> tuple[InterfaceAddress, list[str]] | None:
    """For a server bound to one IPv4 address: its interface and the broadcast addresses to hear.

    A socket bound to a unicast address never receives broadcasts on Linux; a socket bound to
    the subnet's broadcast address (or 255.255.255.255) does. None for addresses that are not
    a local IPv4 interface address.
    """
    entry = owner_of(bind)
    if entry is None or entry.family != 4:
        return None
    targets = [entry.broadcast] if entry.broadcast else []
    targets.append(LIMITED_BROADCAST)
    return entry, targets


# --- the client side --------------------------------------------------------------------------

def check_target(text: str) -> str:
    """The address to send DISCOVER to: an IPv4 broadcast (or unicast) address."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise UserError(f"--broadcast {text!r} is not an IPv4 address (e.g. 127.255.255.255, "
                        "198.18.1.255 or 255.255.255.255)") from None
    if ip.version != 4:
        raise UserError(f"--broadcast {text}: IPv6 has no broadcast; discovery is IPv4 only")
    if ip.is_multicast or ip.is_unspecified:
        raise UserError(f"--broadcast {text}: give a broadcast address (or one host's address), "
                        "not a multicast or unspecified one")
    return str(ip)


def discover(broadcast: str = DEFAULT_BROADCAST, port: int = DEFAULT_PORT,
             timeout: float = DEFAULT_TIMEOUT_S, sends: int = DEFAULT_SENDS, interface: str | None = None,
             on_found=None) -> dict:
    """Search once; return {broadcast, port, sent, servers: [...], duplicates, foreign, elapsed_s}.

    Exactly ``sends`` datagrams go out, at 0, T/sends, 2T/sends... of the timeout T, and
    replies are collected until T. Servers are listed in the order they answered.
    ``interface`` names the interface the datagrams leave by (IP_PKTINFO, no privilege
    needed): 255.255.255.255 otherwise follows the default route, and fails without one.
    """
    broadcast = check_target(broadcast)
    if not 0 < port <= 65535:
        raise UserError(f"port {port} is outside 1-65535")
    if not 1 <= sends <= 10:
        raise UserError("sends must be 1-10")
    ancillary = []
    if interface is not None:
        try:
            ifindex = socket.if_nametoindex(interface)
        except OSError:
            raise UserError(f"--interface {interface!r}: no such interface here") from None
        ancillary = [(sockopts.SOL_IP, sockopts.IP_PKTINFO, sockopts.IN_PKTINFO.pack(ifindex, bytes(4), bytes(4)))]
    nonce = secrets.randbits(64)
    servers: dict[tuple[str, int], dict] = {}
    sent_at: dict[int, int] = {}  # seq -> monotonic ns
    duplicates = foreign = sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
        start = time.monotonic()
        end = start + timeout
        send_times = [start + i * timeout / sends for i in range(sends)]
        while True:
            now = time.monotonic()
            if sent < sends and now >= send_times[sent]:
                sent_at[sent] = time.monotonic_ns()
                try:
                    sock.sendmsg([request(nonce, sent)], ancillary, 0, (broadcast, port))
                except OSError as exc:
                    hint = ""
                    if broadcast == LIMITED_BROADCAST and interface is None:
                        hint = " (255.255.255.255 leaves by the default route's interface: name one " \
                               "with --interface, or give the segment's directed broadcast address)"
                    raise MeasurementError(f"cannot send discovery to {broadcast} port {port}: "
                                           f"{exc.strerror}{hint}") from None
                sent += 1
                continue
            if now >= end:
                break
            wake = min(end, send_times[sent]) if sent < sends else end
            sock.settimeout(max(wake - now, 0.0005))
            try:
                data, addr = sock.recvfrom(2048)
            except (socket.timeout, BlockingIOError, InterruptedError):
                continue
            except OSError:  # an ICMP error from some host queued on the socket: not a server
                foreign += 1
                continue
            rx_ns = time.monotonic_ns()
            try:
                header, body = parse_reply(data, nonce)
            except wire.WireError:
                foreign += 1
                continue
            key = (addr[0], addr[1])
            if key in servers or header.seq not in sent_at:
                duplicates += key in servers
                foreign += key not in servers
                continue
            found = {
                "address": addr[0], "port": addr[1],
                "server": str(body.get("server", "?"))[:80],
                "version": str(body.get("version", "?"))[:40],
                "protocol": body.get("protocol") if isinstance(body.get("protocol"), int) else None,
                "control_port": body.get("port") if isinstance(body.get("port"), int) else None,
                "rtt_ms": round((rx_ns - sent_at[header.seq]) / 1e6, 3),
            }
            servers[key] = found
            if on_found:
                on_found(found)
    return {"broadcast": broadcast, "port": port, "interface": interface, "sent": sent, "timeout_s": timeout,
            "servers": list(servers.values()), "duplicates": duplicates, "foreign": foreign,
            "elapsed_s": round(time.monotonic() - start, 3)}


def add_parser(commands) -> None:
    p = commands.add_parser(
        "discover", help="find udpbench servers by broadcast (default: this machine only)",
        description="Broadcast a small DISCOVER datagram and list the udpbench servers that answer. "
                    f"The default target, {DEFAULT_BROADCAST}, reaches every server on this machine "
                    "and nothing else; to search a LAN, say so: --broadcast 255.255.255.255, or the "
                    "segment's directed broadcast address.")
    p.add_argument("--broadcast", metavar="ADDR", default=DEFAULT_BROADCAST,
                   help=f"IPv4 address to send to (default {DEFAULT_BROADCAST}: this machine only)")
    p.add_argument("--interface", metavar="IFACE", default=None,
                   help="send out of this interface (needed for 255.255.255.255 without a default route)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    p.add_argument("--timeout", type=seconds_between("--timeout", 0.01, 60), default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"seconds to listen for answers (default {DEFAULT_TIMEOUT_S:g}; "
                        f"{DEFAULT_SENDS} datagrams are sent within it)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    result = discover(args.broadcast, args.port, args.timeout, interface=args.interface)
    if args.json:
        print(json.dumps(result))
    else:
        servers = result["servers"]
        if servers:
            print(f"{'address':<16} {'port':>5}  {'server':<20} {'protocol':>8} {'rtt ms':>8}")
            for s in servers:
                print(f"{s['address']:<16} {s['port']:>5}  {s['server']:<20} {s['protocol']!s:>8} "
                      f"{s['rtt_ms']:>8.3f}")
        where = f"{result['broadcast']} port {result['port']}"
        if result["interface"]:
            where += f" via {result['interface']}"
        scope = " (this machine only; --broadcast 255.255.255.255 searches the LAN)" \
            if result["broadcast"] == DEFAULT_BROADCAST else ""
        print(f"{len(servers)} server(s) answered {result['sent']} discovery datagram(s) to {where} "
              f"within {result['timeout_s']:g} s{scope}", file=sys.stderr)
    return 0 if result["servers"] else 1
