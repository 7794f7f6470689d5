"""Linux socket constants the ``socket`` module lacks, and small helpers around them.

Values from glibc ``bits/in.h`` and the kernel uapi headers (``errqueue.h``, ``udp.h``,
``asm-generic/socket.h``), as ip(7), ipv6(7) and udp(7) name them. x86/arm generic values only.
"""
from __future__ import annotations

import ipaddress
import socket
import struct

SOL_IP = 0
SOL_IPV6 = 41
SOL_UDP = 17

IP_PKTINFO = 8  # the socket module lacks it; struct in_pktinfo below
IP_MTU_DISCOVER = 10
IP_RECVERR = 11
IP_MTU = 14
IP_RECVFRAGSIZE = 25
IPV6_MTU_DISCOVER = 23
IPV6_MTU = 24
IPV6_RECVERR = 25
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50
IPV6_RECVPATHMTU = 60
IPV6_PATHMTU = 61
IPV6_DONTFRAG = 62
IPV6_RECVFRAGSIZE = 77

# IP_MTU_DISCOVER / IPV6_MTU_DISCOVER modes
PMTUDISC_DONT = 0  # never set DF; fragment locally
PMTUDISC_WANT = 1  # the default: DF when the datagram fits the route MTU
PMTUDISC_DO = 2  # always DF; EMSGSIZE above the cached path MTU
PMTUDISC_PROBE = 3  # always DF; EMSGSIZE only above the device MTU (tracepath's mode)
PMTUDISC_INTERFACE = 4
PMTUDISC_OMIT = 5

UDP_SEGMENT = 103
UDP_GRO = 104
UDP_MAX_SEGMENTS = 64  # 1 << 6; newer kernels allow 128, 64 is safe everywhere

SO_RXQ_OVFL = 40
SO_MEMINFO = 55
SK_MEMINFO_VARS = 9
SK_MEMINFO_DROPS = 8

MSG_ERRQUEUE = 0x2000

SO_EE_ORIGIN_NONE = 0
SO_EE_ORIGIN_LOCAL = 1
SO_EE_ORIGIN_ICMP = 2
SO_EE_ORIGIN_ICMP6 = 3

# struct in_pktinfo {int ipi_ifindex; in_addr ipi_spec_dst, ipi_addr}; struct in6_pktinfo {in6_addr, int}
IN_PKTINFO = struct.Struct("=i4s4s")
IN6_PKTINFO = struct.Struct("=16si")

# struct sock_extended_err {u32 ee_errno; u8 ee_origin, ee_type, ee_code, ee_pad; u32 ee_info, ee_data}
SOCK_EXTENDED_ERR = struct.Struct("=IBBBBII")


def is_loopback(address: str) -> bool:
    """Whether an address (IPv4 or IPv6, scope id allowed) is on the loopback interface."""
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def format_hostport(address: str, port: int) -> str:
    """``1.2.3.4:1060`` or ``[::1]:1060``."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def is_v6(sock: socket.socket) -> bool:
    return sock.family == socket.AF_INET6


def set_pmtu_mode(sock: socket.socket, mode: int) -> None:
    """Set the DF policy (IP_MTU_DISCOVER, or IPV6_MTU_DISCOVER plus IPV6_DONTFRAG)."""
    if is_v6(sock):
        sock.setsockopt(SOL_IPV6, IPV6_MTU_DISCOVER, mode)
        sock.setsockopt(SOL_IPV6, IPV6_DONTFRAG, 1 if mode in (PMTUDISC_DO, PMTUDISC_PROBE) else 0)
    else:
        sock.setsockopt(SOL_IP, IP_MTU_DISCOVER, mode)


def route_mtu(sock: socket.socket) -> int | None:
    """The path MTU the kernel holds for a connected socket's destination (IP_MTU), or None."""
    try:
        if is_v6(sock):
            return sock.getsockopt(SOL_IPV6, IPV6_MTU)
        return sock.getsockopt(SOL_IP, IP_MTU)
    except OSError:
        return None


def socket_drops(sock_or_fd) -> int | None:
    """Datagrams the kernel dropped at this socket (sk_drops: receive buffer full and the like)."""
    fd = sock_or_fd if isinstance(sock_or_fd, int) else sock_or_fd.fileno()
    try:
        s = socket.socket(fileno=fd)
    except OSError:
        return None
    try:
        raw = s.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, 4 * SK_MEMINFO_VARS)
        return struct.unpack(f"={SK_MEMINFO_VARS}I", raw)[SK_MEMINFO_DROPS]
    except OSError:
        return None
    finally:
        s.detach()


def set_buffers(sock: socket.socket, rcvbuf: int | None = None, sndbuf: int | None = None) -> None:
    """Ask for socket buffers; the kernel caps them at net.core.{r,w}mem_max."""
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)


def gso_available(sock: socket.socket) -> bool:
    """Whether the kernel knows UDP_SEGMENT (Linux 4.18+): reading the option fails otherwise."""
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
        return True
    except OSError:
        return False


def session_socket(family: int) -> socket.socket:
    """A UDP socket that may bind the server's own port beside its listening socket, for one
    session: connected to that session's peer, the kernel gives it the peer's datagrams and the
    listener keeps the rest (docs/decisions.md, "Each session gets its own socket")."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    except BaseException:
        sock.close()
        raise
    return sock
