"""The server's answers to discovery requests: small, rate-limited, never larger than the request.

Discovery needs no session, so anyone who reaches the port gets an answer; the reply says that
a udpbench server listens there and on which port, nothing else (docs/security.md, "Discovery").
The request and reply formats are in ``protocol/discovery.py``, the searching side in ``finder.py``.
A wildcard server joins the IPv6 link-local group ``discovery.MULTICAST_GROUP_V6`` on every
up multicast interface and answers there by the same rules.
"""
from __future__ import annotations

import socket
import time

from udpbench.linux import interfaces, sockopts
from udpbench.linux.receive_socket import enable_pktinfo, send_from
from udpbench.protocol import discovery, wire


class DiscoveryResponder:
    """Answers DISCOVER for one server: at most ``discovery.REPLY_RATE`` replies a second in all.

    Methods return True for a datagram that was not a discovery request the server answers
    (the caller counts it as foreign); a request refused by the rate limit is not foreign.
    """

    def __init__(self, port: int, log=None):
        self.port = port
        self.log = log  # a callable taking one line, or None
        self.limit = discovery.ReplyBucket(time.monotonic())
        self.answered = 0
        self.limited = 0
        # Sockets that hear broadcasts for a server bound to one address:
        # (socket, the listener to reply from, the interface index the broadcast must arrive on)
        self.sockets: list[tuple[socket.socket, socket.socket, int]] = []
        self.interface: interfaces.InterfaceAddress | None = None
        self.group_interfaces: list[str] = []  # where the IPv6 discovery group was joined

    def listen(self, reply_sock: socket.socket) -> None:
        """Bound to one IPv4 address, the listener hears no broadcasts: add sockets that do.

        They are bound to the subnet's broadcast address and to 255.255.255.255 (never to the
        wildcard, which would also take unicast datagrams meant for other addresses) and answer
        DISCOVER only, and only when it arrived on the bound address's interface: a server
        bound to 127.0.0.1 answers loopback broadcasts, never one from the LAN.
        """
        found = interfaces.broadcast_targets(reply_sock.getsockname()[0])
        if found is None:
            return
        entry, targets = found
        for target in targets:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                enable_pktinfo(sock)
                sock.bind((target, self.port))
            except OSError as exc:
                sock.close()
                if self.log:
                    self.log(f"discovery: cannot listen on {target}:{self.port}: {exc.strerror}")
                continue
            self.sockets.append((sock, reply_sock, entry.ifindex))
        if self.sockets:
            self.interface = entry

    def join_group(self, listeners: list[tuple[socket.socket, socket.socket]]) -> None:
        """A wildcard server: join the IPv6 discovery group on the IPv6 listener's interfaces."""
        for _, udp in listeners:
            if udp.family == socket.AF_INET6:
                self.group_interfaces = interfaces.join_group_v6(udp, discovery.MULTICAST_GROUP_V6)

    def addresses(self, listeners: list[tuple[socket.socket, socket.socket]]) -> list[str]:
        """Where discovery broadcasts are heard: the bound broadcast addresses, or all interfaces."""
        if self.sockets:
            return [s.getsockname()[0] for s, _, _ in self.sockets]
        return [tcp.getsockname()[0] for tcp, _ in listeners if tcp.family == socket.AF_INET
                and tcp.getsockname()[0] == "0.0.0.0"]

    def close(self) -> None:
        for sock, _, _ in self.sockets:
            sock.close()
        self.sockets = []

    def answer_broadcast(self, where: tuple[socket.socket, int], data: bytes, addr, pktinfo) -> bool:
        """A datagram on a discovery socket: DISCOVER from the bound interface, or foreign."""
        reply_sock, ifindex = where
        try:
            header = wire.parse(data)
        except wire.WireError:
            return True
        if header.kind != wire.Kind.DISCOVER or pktinfo is None or pktinfo[2] != ifindex:
            return True
        # From the listener bound to the unicast address: that is the reply's source.
        return self.answer(reply_sock, header, len(data), addr, None)

    def answer(self, sock: socket.socket, header: wire.Header, size: int, addr, pktinfo) -> bool:
        """A small reply, at most REPLY_RATE a second in all, never larger than the request."""
        if pktinfo is not None and pktinfo[1] == sockopts.IPV6_PKTINFO and pktinfo[3][:1] == b"\xff":
            pktinfo = None  # to our multicast group: the kernel picks the source (never a group)
        data = discovery.reply(header, size, self.port)
        if data is None:
            return True
        if not self.limit.take(time.monotonic()):
            self.limited += 1
            return False
        try:
            send_from(sock, data, addr, pktinfo)
            self.answered += 1
        except OSError:
            pass
        return False
