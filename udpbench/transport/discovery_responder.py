"""The server's answers to discovery requests: small, rate-limited, never larger than the request.

Discovery needs no session, so anyone who reaches the port gets an answer; the reply says that
a udpbench server listens there and on which port, nothing else (docs/security.md, "Discovery").
The request and reply formats and the client side are in ``discover.py``.
"""
from __future__ import annotations

import socket

from udpbench.linux.receive_socket import enable_pktinfo, send_from
from udpbench.protocol import wire
from udpbench.transport import discover


class DiscoveryResponder:
    """Answers DISCOVER for one server: at most ``discover.REPLY_RATE`` replies a second in all.

    Methods return True for a datagram that was not a discovery request the server answers
    (the caller counts it as foreign); a request refused by the rate limit is not foreign.
    """

    def __init__(self, port: int, log=None):
        self.port = port
        self.log = log  # a callable taking one line, or None
        self.limit = discover.TokenBucket()
        self.answered = 0
        self.limited = 0
        # Sockets that hear broadcasts for a server bound to one address:
        # (socket, the listener to reply from, the interface index the broadcast must arrive on)
        self.sockets: list[tuple[socket.socket, socket.socket, int]] = []
        self.interface: discover.InterfaceAddress | None = None

    def listen(self, reply_sock: socket.socket) -> None:
        """Bound to one IPv4 address, the listener hears no broadcasts: add sockets that do.

        They are bound to the subnet's broadcast address and to 255.255.255.255 (never to the
        wildcard, which would also take unicast datagrams meant for other addresses) and answer
        DISCOVER only, and only when it arrived on the bound address's interface: a server
        bound to 127.0.0.1 answers loopback broadcasts, never one from the LAN.
        """
        found = discover.broadcast_targets(reply_sock.getsockname()[0])
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
        if sock.family != socket.AF_INET:
            return True  # discovery is IPv4 broadcast only
        data = discover.reply(header, size, self.port)
        if data is None:
            return True
        if not self.limit.take():
            self.limited += 1
            return False
        try:
            send_from(sock, data, addr, pktinfo)
            self.answered += 1
        except OSError:
            pass
        return False
