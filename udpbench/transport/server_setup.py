"""What a server is built from: its listening sockets, and its options checked.

Errors name the value, never a command-line option (docs/architecture.md).
"""
from __future__ import annotations

import ipaddress
import math
import socket

from udpbench.errors import UserError
from udpbench.linux.receive_socket import enable_pktinfo


def check_drop(drop: float) -> float:
    """A drop fraction for echo requests: 0 <= P < 1 (1 would answer nothing at all)."""
    try:
        value = float(drop)
    except (TypeError, ValueError):
        raise UserError(f"drop {drop!r} is not a number: give a fraction like 0.5") from None
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise UserError(f"drop {drop} must be a fraction with 0 <= P < 1 (0.5 drops half the echo requests)")
    return value


def source_key(address: str) -> str:
    """Whom a connection is counted against: its IPv4 address, or its IPv6 /64 (one host's share)."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if ip.version == 6 and not ip.ipv4_mapped:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


def listen_pair(family: int, address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A TCP listener and a UDP socket on the same address and port number."""
    tcp = socket.socket(family, socket.SOCK_STREAM)
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for s in (tcp, udp):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        enable_pktinfo(udp)
        tcp.bind((address, port))
        tcp.listen(1024)  # a burst of connections waits in the queue, not in SYN retries
        udp.bind((address, tcp.getsockname()[1]))
    except OSError:
        tcp.close()
        udp.close()
        raise
    return tcp, udp


def bind_targets(bind: str | None) -> list[tuple[int, str]]:
    if bind in (None, "", "*"):
        targets = [(socket.AF_INET, "0.0.0.0")]
        if socket.has_ipv6:
            targets.append((socket.AF_INET6, "::"))
        return targets
    try:
        ip = ipaddress.ip_address(bind)
    except ValueError:
        try:
            info = socket.getaddrinfo(bind, None, type=socket.SOCK_DGRAM)[0]
        except socket.gaierror as exc:
            raise UserError(f"cannot resolve bind address {bind!r}: {exc.strerror}") from None
        return [(info[0], info[4][0])]
    return [(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, str(ip))]


def line_writer(stream):
    def write(text: str) -> None:
        stream.write(text + "\n")
        stream.flush()
    return write


def check_positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise UserError(f"{name} {value!r} must be a positive number of seconds")
