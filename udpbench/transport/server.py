"""The receiving end: a TCP control listener and UDP sockets on the same port number.

This module does the server's I/O: it accepts control connections and drives each through
``protocol/conversation.py`` (which decides what may follow what), opens the sessions
(``session.py``), and runs the unconnected UDP socket on the port. That socket answers the
path-MTU probes and echo requests of live echo sessions only, within each session's reply
budget, answers discovery (``discovery_responder.py``), and counts everything else as foreign.
"""
from __future__ import annotations

import errno
import math
import secrets
import selectors
import socket
import threading
import time

from udpbench.errors import UserError
from udpbench.linux import sockopts
from udpbench.linux.receive_socket import receive_with_pktinfo, send_from
from udpbench.protocol import conversation, grant, wire
from udpbench.protocol.control import DEFAULT_PORT, PeerError, ProtocolError
from udpbench.protocol.grant import MAX_DURATION_S, MAX_RCVBUF
from udpbench.transport.channel import Channel
from udpbench.transport.discovery_responder import DiscoveryResponder
from udpbench.transport.server_connection import ConnectionSessions
from udpbench.transport.server_setup import bind_targets, line_writer, listen_pair, check_positive, check_drop, source_key
from udpbench.transport.session import EchoCounts

__all__ = ["DEFAULT_PORT", "MAX_DURATION_S", "EchoCounts", "Server", "check_drop"]

SESSION_GRACE_S = grant.SESSION_GRACE_S  # read at call time: tests shorten it
HANDSHAKE_TIMEOUT_S = conversation.HANDSHAKE_TIMEOUT_S  # read at call time: tests shorten it
AUTH_FAILURE_DELAY_S = 0.25  # slows a token-guessing peer to a few tries a second per connection
ACCEPT_BACKOFF_S = 0.1  # out of descriptors: wait this long before accept() again, never spin
# Out-of-resource errors of accept(2): the pending connection stays queued, so retrying at once spins.
_ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}


class Server:
    """Serves measurements until closed. Thread-safe ``close()``.

    ``drop`` (0 <= P < 1) makes the server ignore that fraction of the ECHO requests it
    receives, drawn from a generator seeded with ``seed``: to watch a client's backoff and
    loss accounting work. Path-MTU probes are never dropped: a lost probe reads as "too big".
    ``log`` takes one line of text (a callable, or a file to write it to); None logs nothing.
    ``allow_reverse`` False refuses reverse runs: the server then never sends a blast's datagrams.
    ``max_unauthenticated_per_source`` bounds the connections one source address (IPv6: one
    /64) may hold before they complete HELLO and AUTH; default half of ``max_sessions``.
    """

    def __init__(self, bind: str | None = None, port: int = DEFAULT_PORT, max_sessions: int = 16,
                 max_duration: float = MAX_DURATION_S, log=None, drop: float = 0.0, seed: int | None = None,
                 token: str | None = None, max_rate_bps: float = 0.0, session_grace: float | None = None,
                 max_rcvbuf: int = MAX_RCVBUF, max_unauthenticated_per_source: int | None = None,
                 allow_reverse: bool = True):
        if not 0 <= port <= 65535:
            raise UserError(f"port {port} is outside 0-65535")
        if max_sessions < 1:
            raise UserError(f"max_sessions {max_sessions} must be at least 1")
        check_positive("max_duration", max_duration)
        if not (math.isfinite(max_rate_bps) and max_rate_bps >= 0):
            raise UserError(f"max_rate {max_rate_bps!r} bit/s must be a positive rate, or 0 for no limit")
        if session_grace is None:
            session_grace = SESSION_GRACE_S
        check_positive("session_grace", session_grace)
        if not (isinstance(max_rcvbuf, int) and max_rcvbuf > 0):
            raise UserError(f"max_rcvbuf {max_rcvbuf!r} must be a positive number of bytes")
        if token == "":
            raise UserError(conversation.auth.EMPTY_TOKEN)
        self.drop = check_drop(drop)
        self.seed = seed if seed is not None else secrets.randbits(32)
        self.max_sessions = max_sessions
        self.limits = grant.Limits(max_duration=max_duration, max_rate_bps=max_rate_bps,
                                   max_rcvbuf=max_rcvbuf, session_grace=session_grace,
                                   allow_reverse=allow_reverse)
        per_source = max_unauthenticated_per_source
        self.max_unauthenticated_per_source = max(1, max_sessions // 2) if per_source is None else per_source
        self.idle_timeout = conversation.IDLE_TIMEOUT_S
        self.token = token
        self.log = line_writer(log) if hasattr(log, "write") else log
        # Changed under self._lock only (a conversation thread, the accept thread and close()):
        self.refused = 0  # connections refused: busy, failed authentication, protocol errors
        self.internal_errors = 0  # conversations ended by a bug (tests assert there are none)
        self.active_sessions = 0  # control connections being served
        self.unauthenticated: dict[str, int] = {}  # source -> connections still in HELLO/AUTH
        self.echo_sessions: dict = {}  # session id -> EchoSession, while the session lives
        # Changed by the service thread only:
        self.foreign = 0
        self.answered = 0
        self.listeners: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conversations: dict[socket.socket, threading.Thread] = {}  # open control connections
        targets = bind_targets(bind)
        for attempt in range(20):
            try:
                self.port = port
                for family, address in targets:
                    tcp, udp = listen_pair(family, address, self.port)
                    self.listeners.append((tcp, udp))
                    self.port = tcp.getsockname()[1]
                break
            except OSError as exc:
                self._close_listeners()
                if port == 0 and attempt < 19:
                    continue  # the port TCP got was taken for UDP in another family: pick again
                where = bind or "all interfaces"
                hint = ""
                if exc.errno == errno.EADDRNOTAVAIL:
                    hint = " (no interface here has that address; `ip addr` lists them)"
                raise UserError(f"cannot listen on {where} port {port}: {exc.strerror}{hint}") from None
        self.bind = bind
        self.discovery = DiscoveryResponder(self.port, self._say)
        if bind not in (None, "", "*"):
            self.discovery.listen(self.listeners[0][1])
        else:
            self.discovery.join_group(self.listeners)

    # The limits by their option names, as callers and the CLI read them.
    max_duration = property(lambda self: self.limits.max_duration)
    max_rate_bps = property(lambda self: self.limits.max_rate_bps)
    max_rcvbuf = property(lambda self: self.limits.max_rcvbuf)
    session_grace = property(lambda self: self.limits.session_grace)
    discovery_answered = property(lambda self: self.discovery.answered)
    discovery_limited = property(lambda self: self.discovery.limited)
    discovery_interface = property(lambda self: self.discovery.interface)
    discovery_group_interfaces = property(lambda self: self.discovery.group_interfaces)

    @property
    def discovery_addresses(self) -> list[str]:
        return self.discovery.addresses(self.listeners)

    @property
    def addresses(self) -> list[str]:
        return [sockopts.format_hostport(tcp.getsockname()[0], self.port) for tcp, _ in self.listeners]

    def _close_listeners(self) -> None:
        for tcp, udp in self.listeners:
            tcp.close()
            udp.close()
        self.listeners = []
        if hasattr(self, "discovery"):
            self.discovery.close()

    def _say(self, text: str) -> None:
        if self.log:
            self.log(text)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> "Server":
        for target, name in ((self._accept_loop, "accept"), (self._service_loop, "service")):
            t = threading.Thread(target=target, name=f"udpbench-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def serve_forever(self) -> None:
        self.start()
        try:
            while not self._closed.wait(0.5):
                pass
        finally:
            self.close()

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for t in self._threads:
            t.join(timeout=2.0)
        with self._lock:
            conversations = list(self._conversations.items())
        for conn, _ in conversations:  # wake each conversation from its recv: it ends its session
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, t in conversations:
            t.join(timeout=5.0)
        self._close_listeners()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- control connections ----------------------------------------------------------------

    def _accept(self, listener: socket.socket) -> tuple[socket.socket, tuple]:
        return listener.accept()

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for tcp, _ in self.listeners:
                sel.register(tcp, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    try:
                        conn, addr = self._accept(key.fileobj)
                    except OSError as exc:
                        if exc.errno in _ACCEPT_EXHAUSTED:
                            # The connection stays queued and the listener readable: back off.
                            self._closed.wait(ACCEPT_BACKOFF_S)
                        continue
                    self._admit(conn, addr)

    def _admit(self, conn: socket.socket, addr: tuple) -> None:
        source = source_key(addr[0])
        with self._lock:
            if self.active_sessions >= self.max_sessions:
                refusal = f"server busy: {self.max_sessions} sessions in progress, try again later"
            elif self.unauthenticated.get(source, 0) >= self.max_unauthenticated_per_source:
                refusal = (f"server busy: {self.max_unauthenticated_per_source} connections from "
                           f"{addr[0]} have not authenticated yet, try again later")
            else:
                refusal = None
                self.active_sessions += 1
                self.unauthenticated[source] = self.unauthenticated.get(source, 0) + 1
            if refusal is not None:
                self.refused += 1
        if refusal is not None:
            try:  # a peer that already reset makes getpeername fail: never let it end this loop
                Channel(conn, timeout=1.0).error(refusal)
            except OSError:
                pass
            conn.close()
            return
        t = threading.Thread(target=self._converse, args=(conn, source), daemon=True)
        with self._lock:
            self._conversations[conn] = t
        t.start()

    def _authenticated(self, source: str) -> None:
        with self._lock:
            left = self.unauthenticated[source] - 1
            if left:
                self.unauthenticated[source] = left
            else:
                del self.unauthenticated[source]

    def _converse(self, conn: socket.socket, source: str) -> None:
        """One control connection, through the conversation's state machine, until it ends."""
        pending = True  # still counted against its source as not authenticated
        sessions = None
        try:
            channel = Channel(conn, timeout=10.0)
            sessions = ConnectionSessions(self, channel, conn.family)
            talk = conversation.ServerConversation(
                sessions, self.limits, time.monotonic(), token=self.token, port=self.port,
                peer=channel.peer[0], handshake_timeout=HANDSHAKE_TIMEOUT_S, idle_timeout=self.idle_timeout)
        except OSError:
            talk = None
        try:
            while talk is not None and talk.state is not conversation.ServerState.CLOSED \
                    and not self._closed.is_set():
                timeout = talk.timeout(time.monotonic())
                if timeout <= 0:
                    channel.error(talk.expiry_reason())
                    break
                try:
                    msg = channel.recv(timeout=timeout)
                except TimeoutError:
                    continue  # the next turn finds the deadline passed and says why
                try:
                    replies = talk.receive(msg, time.monotonic())
                finally:
                    self._log_notes(talk)
                for reply in replies:
                    channel.send(reply)
                if pending and talk.state not in conversation.HANDSHAKE_STATES:
                    pending = False
                    self._authenticated(source)
            if talk is not None and talk.refused:
                with self._lock:
                    self.refused += 1
        except ProtocolError as exc:
            if talk.refused:
                with self._lock:
                    self.refused += 1
            if isinstance(exc, conversation.AuthFailed):
                time.sleep(AUTH_FAILURE_DELAY_S)
            channel.error(str(exc))
        except (PeerError, OSError):
            pass
        except Exception as exc:  # a bug must end one conversation, never the server
            with self._lock:
                self.internal_errors += 1
            self._say(f"internal error with {channel.peer[0]}: {type(exc).__name__}: {exc}")
            channel.error("internal server error: session ended")
        finally:
            if sessions is not None:
                sessions.close()
                channel.close()
            else:
                conn.close()
            if pending:
                self._authenticated(source)
            with self._lock:
                self.active_sessions -= 1
                self._conversations.pop(conn, None)

    def _log_notes(self, talk: conversation.ServerConversation) -> None:
        for note in talk.notes:
            self._say(note)
        talk.notes.clear()

    # --- the shared UDP socket: probes and echo for live sessions --------------------------

    def _service_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for _, udp in self.listeners:
                udp.setblocking(False)
                sel.register(udp, selectors.EVENT_READ, None)
            for sock, reply_sock, ifindex in self.discovery.sockets:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, (reply_sock, ifindex))
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    for _ in range(256):  # take a burst, then look at the clock again
                        try:
                            data, addr, pktinfo = receive_with_pktinfo(key.fileobj)
                        except OSError:  # BlockingIOError and InterruptedError included
                            break
                        if key.data is None:
                            self.answer(key.fileobj, data, addr, pktinfo)
                        elif self.discovery.answer_broadcast(key.data, data, addr, pktinfo):
                            self.foreign += 1

    def answer(self, sock: socket.socket, data: bytes, addr, pktinfo: tuple | None = None) -> None:
        """Reply to a probe or echo request of a live session; count anything else as foreign.

        A reply goes only to the address and port that own the session, is never larger than
        the datagram it answers, and is sent within the session's reply budget, so the server
        cannot be used to amplify or reflect, nor to exceed its rate limit.
        """
        try:
            header = wire.parse(data)
        except wire.WireError:
            self.foreign += 1
            return
        if header.kind == wire.Kind.DISCOVER:
            if self.discovery.answer(sock, header, len(data), addr, pktinfo):
                self.foreign += 1
            return
        echo = self.echo_sessions.get(header.session)
        if echo is None or not echo.owns(addr):
            self.foreign += 1
            return
        counts = echo.counts
        rx_ns = time.time_ns()
        if header.kind == wire.Kind.PROBE:
            if len(data) < wire.PROBE_ACK_SIZE:
                self.foreign += 1
                return
            reply = (wire.pack(wire.Kind.PROBE_ACK, header.session, header.seq, header.tx_ns, header.flags)
                     + wire.PROBE_ACK_BODY.pack(len(data), rx_ns))
            echoed = False
        elif header.kind == wire.Kind.ECHO:
            counts.requests += 1
            if counts.should_drop():  # serve --drop: pretend the request was lost
                counts.dropped += 1
                return
            reply = (wire.pack(wire.Kind.ECHO_REPLY, header.session, header.seq, header.tx_ns, header.flags)
                     + data[wire.HEADER_SIZE:])
            echoed = True
        else:
            self.foreign += 1
            return
        if not echo.budget.take(len(reply), time.monotonic()):
            counts.limited += 1  # over the session's reply budget: not answered, and counted
            return
        # Counted before it leaves: the client may read the REPORT as soon as the reply lands.
        if echoed:
            counts.answered += 1
        try:
            send_from(sock, reply, addr, pktinfo)
            self.answered += 1
        except OSError:
            if echoed:
                counts.answered -= 1
