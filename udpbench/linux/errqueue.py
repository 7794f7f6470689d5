"""A socket's error queue (IP_RECVERR / IPV6_RECVERR): each ICMP error the kernel matched to the
socket, read with ``recvmsg(MSG_ERRQUEUE)``, as a ``struct sock_extended_err``, the address of
whoever sent it, and the datagram it quoted (see ip(7) and docs/mtu.md)."""
from __future__ import annotations

import contextlib
import socket
import struct

from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.protocol.pmtud import IcmpError

_ERROR_LEVELS = ((sockopts.SOL_IP, sockopts.IP_RECVERR), (sockopts.SOL_IPV6, sockopts.IPV6_RECVERR))


def enable(sock: socket.socket) -> None:
    """Queue every ICMP error for ``sock`` (POLLERR signals it)."""
    if sockopts.is_v6(sock):
        sock.setsockopt(sockopts.SOL_IPV6, sockopts.IPV6_RECVERR, 1)
    else:
        sock.setsockopt(sockopts.SOL_IP, sockopts.IP_RECVERR, 1)


def offender(data: bytes) -> str | None:
    """The sockaddr after sock_extended_err: who sent the ICMP."""
    if len(data) < 4:
        return None
    family = struct.unpack_from("=H", data)[0]
    if family == socket.AF_INET and len(data) >= 8:
        return socket.inet_ntop(socket.AF_INET, data[4:8])
    if family == socket.AF_INET6 and len(data) >= 24:
        return socket.inet_ntop(socket.AF_INET6, data[8:24])
    return None


def parse(quoted: bytes, ancillary: list, sessions: set[int]) -> list[IcmpError]:
    """The errors in one MSG_ERRQUEUE message. ``quoted`` is the datagram the ICMP quoted back;
    its udpbench header names the probe, when its session is one of ``sessions``."""
    out = []
    for level, kind, cdata in ancillary:
        if (level, kind) not in _ERROR_LEVELS or len(cdata) < sockopts.SOCK_EXTENDED_ERR.size:
            continue
        ee_errno, origin, etype, code, _pad, info, _data = sockopts.SOCK_EXTENDED_ERR.unpack_from(cdata)
        probe_id = None
        with contextlib.suppress(wire.WireError):
            header = wire.parse(quoted)
            if header.session in sessions:
                probe_id = header.seq
        out.append(IcmpError(ee_errno, origin, etype, code, info,
                             offender(cdata[sockopts.SOCK_EXTENDED_ERR.size:]), probe_id))
    return out


def read(sock: socket.socket, sessions: set[int], limit: int = 256) -> list[IcmpError]:
    """Drain the error queue of a non-blocking socket (this also clears its pending error)."""
    out = []
    for _ in range(limit):
        try:
            data, ancillary, _flags, _addr = sock.recvmsg(512, 512, sockopts.MSG_ERRQUEUE)
        except OSError:  # drained (BlockingIOError) or gone
            break
        out += parse(data, ancillary, sessions)
    return out
