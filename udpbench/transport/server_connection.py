"""The sessions of one control connection, over real sockets: what ``ServerConversation`` asks for.

``protocol/conversation.py`` decides; this class opens a blast's receiving socket, registers
an echo session with the server's shared UDP socket, and ends them.
"""
from __future__ import annotations

import time

from udpbench.protocol import grant, wire
from udpbench.protocol.control import ProtocolError
from udpbench.transport.channel import Channel
from udpbench.transport import trace_fetch
from udpbench.transport.reverse_sender import ReverseSender
from udpbench.transport.session import EchoCounts, EchoSession, ReceiverSession


class ConnectionSessions:
    """The ``conversation.Sessions`` of one control connection of ``server``."""

    def __init__(self, server, channel: Channel, family: int):
        self.server = server
        self.channel = channel
        self.family = family
        self.measurement: ReceiverSession | ReverseSender | None = None
        self.echo: EchoSession | None = None
        self.trace: tuple | None = None  # (session, arrays, length): the last traced blast's, until the next START

    def open_blast(self, start: dict, granted: dict) -> dict:
        self.trace = None
        rcvbuf = grant.receive_buffer(start.get("rcvbuf"), self.server.limits)
        local = (self.channel.sock.getsockname()[0], self.server.port)
        trace_limit = trace_fetch.granted_limit(start)
        try:
            self.measurement = ReceiverSession(start["session"], start["size"], granted["duration_s"], self.family,
                                               local, (self.channel.peer[0], start["client_port"]), rcvbuf,
                                               trace_limit)
        except wire.WireError as exc:
            raise ProtocolError(str(exc)) from None
        except OSError as exc:
            raise ProtocolError(f"the server cannot open a socket for the session: {exc.strerror or exc}") from None
        return {"rcvbuf": self.measurement.rcvbuf, **({"trace_limit": trace_limit} if trace_limit else {})}

    def open_reverse(self, start: dict, granted: dict) -> dict:
        self.trace = None
        # The peer is the control connection's own address: a START cannot name another host.
        local = (self.channel.sock.getsockname()[0], self.server.port)
        try:
            self.measurement = ReverseSender(start["session"], start["size"], granted, str(start.get("engine", "auto")),
                                             self.family, local, (self.channel.peer[0], start["client_port"]))
        except wire.WireError as exc:
            raise ProtocolError(str(exc)) from None
        except OSError as exc:
            raise ProtocolError(f"the server cannot open a socket for the session: {exc.strerror or exc}") from None
        return {"nonce": self.measurement.nonce.hex(), "path_mtu": self.measurement.path_mtu}

    def open_echo(self, start: dict, granted: dict) -> None:
        self.trace = None
        port = start.get("client_port")
        if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535):
            raise ProtocolError("START client_port is outside 1-65535")
        server = self.server
        echo = EchoSession(start["session"], self.channel.peer[0], port, EchoCounts(server.drop, server.seed),
                           grant.ReplyBudget(server.limits.max_rate_bps, time.monotonic()))
        with server._lock:
            if echo.session in server.echo_sessions:
                raise ProtocolError("START names a session id already in use")
            server.echo_sessions[echo.session] = echo
        self.echo = echo

    def report(self, session: int) -> dict:
        if self.measurement is not None:
            report = self.measurement.finish()
            arrays = getattr(self.measurement, "trace_arrays", None)
            if arrays is not None:
                self.trace = (session, arrays, report["trace_length"])
            self.measurement = None
            return report
        echo, self.echo = self.echo, None
        with self.server._lock:
            self.server.echo_sessions.pop(echo.session, None)
        counts = echo.counts
        if counts.requests or counts.limited:
            self.server._say(f"echo session {echo.session:016x} from {echo.address}: {counts.requests} "
                             f"request(s), {counts.answered} answered, {counts.dropped} dropped on purpose, "
                             f"{counts.limited} over the reply budget")
        return {"type": "REPORT", "session": echo.session, **counts.report()}

    def status(self, session: int) -> dict:
        return self.measurement.status()

    def trace_chunk(self, session: int, offset: int) -> dict:
        if self.trace is None or self.trace[0] != session:
            raise ProtocolError("TRACE names no session whose trace this server keeps: ask right after "
                                "its REPORT, before the next START")
        return trace_fetch.chunk(session, self.trace[1], self.trace[2], offset)

    def clock_ns(self) -> int:
        return time.time_ns()

    def close(self) -> None:
        """End whatever is still live: the connection ended without STOP."""
        self.trace = None
        if self.measurement is not None:
            self.measurement.close()
            self.measurement = None
        if self.echo is not None:
            with self.server._lock:
                self.server.echo_sessions.pop(self.echo.session, None)
            self.echo = None
