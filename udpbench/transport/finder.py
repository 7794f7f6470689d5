"""The finder: the sockets that send DISCOVER datagrams and hear the servers' answers.

It drives ``protocol.discovery.ServerSearch`` over one IPv4 socket (SO_BROADCAST) and, when
there are IPv6 targets, one IPv6 socket that sends to the link-local group on each named
interface. Each datagram leaves by its target's interface: IP_PKTINFO for IPv4 (no privilege
needed; 255.255.255.255 would otherwise follow the default route), the zone for IPv6.
"""
from __future__ import annotations

import secrets
import selectors
import socket
import threading
import time
from typing import Callable

from udpbench.errors import MeasurementError
from udpbench.linux import sockopts
from udpbench.protocol.discovery import FoundServer, SearchResult, ServerSearch, Target


def search(targets: list[Target], port: int, timeout: float, sends: int,
           on_found: Callable[[FoundServer], None] | None = None,
           stop: threading.Event | None = None) -> SearchResult:
    """Send ``sends`` rounds of DISCOVER to every target within ``timeout`` s; list who answers.

    A target the kernel refuses (no route, interface down) is noted in ``send_errors`` and the
    search goes on with the others; MeasurementError if every datagram of the first round failed.
    """
    now = time.monotonic()
    state = ServerSearch(secrets.randbits(64), targets, port, timeout, now, sends)
    sockets: dict[int, socket.socket] = {}
    try:
        for family in sorted({t.family for t in targets}):
            sockets[family] = _open(family)
        with selectors.DefaultSelector() as sel:
            for sock in sockets.values():
                sel.register(sock, selectors.EVENT_READ)
            first_round = True
            while not state.done(now) and not (stop is not None and stop.is_set()):
                due = state.datagrams_to_send(now)
                for target, data, seq in due:
                    try:
                        _send(sockets[target.family], target, port, data)
                        state.sent(seq, time.monotonic())
                    except OSError as exc:
                        state.send_failed(target, exc.strerror or str(exc))
                if due and first_round:
                    first_round = False
                    if state.result.sent == 0:
                        where, why = next(iter(state.result.send_errors.items()))
                        raise MeasurementError(f"cannot send discovery to {where} port {port}: {why}")
                wait = min(state.get_timer(), now + 0.1) - time.monotonic()  # 0.1: look at `stop`
                for key, _ in sel.select(max(wait, 0.0)):
                    _drain(key.fileobj, state, on_found)
                now = time.monotonic()
        return state.finish(time.monotonic())
    finally:
        for sock in sockets.values():
            sock.close()


def _open(family: int) -> socket.socket:
    if family == 4:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind(("0.0.0.0", 0))
    else:
        sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        # Link-local scope keeps it on the link anyway; one hop says so to every router too.
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.bind(("::", 0))
    sock.setblocking(False)
    return sock


def _send(sock: socket.socket, target: Target, port: int, data: bytes) -> None:
    if target.family == 6:
        sock.sendto(data, (target.address, port, 0, target.ifindex))
    elif target.ifindex:
        pktinfo = sockopts.IN_PKTINFO.pack(target.ifindex, bytes(4), bytes(4))
        sock.sendmsg([data], [(sockopts.SOL_IP, sockopts.IP_PKTINFO, pktinfo)], 0, (target.address, port))
    else:
        sock.sendto(data, (target.address, port))


def _drain(sock: socket.socket, state: ServerSearch, on_found) -> None:
    for _ in range(256):  # a burst of answers, then back to the schedule
        try:
            data, addr = sock.recvfrom(2048)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # an ICMP error from some host queued on the socket: not a server
            state.result.foreign += 1
            continue
        found = state.receive_datagram(data, _address(addr), addr[1], time.monotonic())
        if found is not None and on_found is not None:
            on_found(found)


def _address(addr: tuple) -> str:
    """The reply's source; an IPv6 link-local one with its zone, so that it can be reached again."""
    host = addr[0]
    if len(addr) == 4 and addr[3] and "%" not in host:
        try:
            host = f"{host}%{socket.if_indextoname(addr[3])}"
        except OSError:
            host = f"{host}%{addr[3]}"
    return host
