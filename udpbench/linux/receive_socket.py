"""Options of a receiving UDP socket, and replies that leave from the address a request came to.

Replies leave from the request's destination address (IP_PKTINFO / IPV6_PKTINFO, see ip(7) and
RFC 3542 section 6), so a client's connected socket accepts them even when the server listens
on all interfaces of a host with several addresses.
"""
from __future__ import annotations

import os
import socket

from udpbench.linux.sockopts import (
    IN6_PKTINFO, IN_PKTINFO, IP_PKTINFO, IPV6_PKTINFO, IPV6_RECVPKTINFO, SO_RXQ_OVFL, SOL_IP, SOL_UDP, UDP_GRO,
)


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes; as root past rmem_max. Returns what the kernel gave."""
    so_rcvbufforce = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        if os.geteuid() == 0:
            sock.setsockopt(socket.SOL_SOCKET, so_rcvbufforce, size)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def enable_receive_options(sock: socket.socket) -> None:
    """Kernel receive timestamps, the socket-drop count, and UDP_GRO where the kernel has it."""
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
    sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        pass


def enable_pktinfo(sock: socket.socket) -> None:
    """Ask for each datagram's destination address, so a reply can leave from it."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(SOL_IP, IP_PKTINFO, 1)


_PKTINFO_SPACE = socket.CMSG_SPACE(max(IN_PKTINFO.size, IN6_PKTINFO.size))


def receive_with_pktinfo(sock: socket.socket) -> tuple[bytes, tuple, tuple | None]:
    """(payload, source, pktinfo) where pktinfo is (level, type, ifindex, local address bytes).

    For IPv4 the local address is ipi_spec_dst: the request's destination for unicast, the
    receiving interface's address for a broadcast, i.e. the right source for the reply.
    """
    data, ancdata, _flags, addr = sock.recvmsg(65536, _PKTINFO_SPACE)
    info = None
    for level, kind, value in ancdata:
        if level == SOL_IP and kind == IP_PKTINFO and len(value) >= IN_PKTINFO.size:
            ifindex, spec_dst, _dst = IN_PKTINFO.unpack_from(value)
            info = (level, kind, ifindex, spec_dst)
        elif level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(value) >= IN6_PKTINFO.size:
            dst, ifindex = IN6_PKTINFO.unpack_from(value)
            info = (level, kind, ifindex, dst)
    return data, addr, info


def send_from(sock: socket.socket, data: bytes, addr, pktinfo: tuple | None) -> None:
    """Send ``data`` to ``addr``, from the local address the request arrived at when known."""
    if pktinfo is None:
        sock.sendto(data, addr)
        return
    level, kind, ifindex, local = pktinfo
    if kind == IP_PKTINFO:
        # ifindex 0: let the route pick the interface; ipi_spec_dst sets the source address.
        value = IN_PKTINFO.pack(0, local, bytes(4))
    else:
        # Keep the interface for link-local peers, whose address alone does not say which.
        value = IN6_PKTINFO.pack(local, ifindex if local[:2] == b"\xfe\x80" else 0)
    sock.sendmsg([data], [(level, kind, value)], 0, addr)
