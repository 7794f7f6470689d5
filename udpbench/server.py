"""The receiving end: a TCP control listener and UDP sockets on the same port number.

Each measurement gets its own UDP socket, bound to the server's port and connected to the
client's data socket (SO_REUSEPORT; the kernel prefers the connected socket), so concurrent
clients never mix their counts. The unconnected socket on the port answers path-MTU probes
and echo requests of live sessions only, and counts everything else as foreign.
"""
from __future__ import annotations

import ipaddress
import os
import secrets
import selectors
import socket
import sys
import threading
import time

from . import __version__, control, kernel, sockopts, wire
from ._fast import Receiver
from .control import PeerError, ProtocolError, ServerState
from .errors import UserError

DEFAULT_PORT = 1060
DEFAULT_RCVBUF = 8 << 20  # ask for 8 MiB so a fast sender is not cut short by the socket
SESSION_GRACE_S = 10.0  # a client silent this long past its duration is taken for dead
MAX_DURATION_S = 3600.0


def _is_root() -> bool:
    return os.geteuid() == 0


def set_receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for a receive buffer of ``size`` bytes; as root past rmem_max. Returns what the kernel gave."""
    SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        if _is_root():
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


def enable_receive_options(sock: socket.socket) -> None:
    """Kernel receive timestamps, the socket-drop count, and UDP_GRO where the kernel has it."""
    sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
    sock.setsockopt(socket.SOL_SOCKET, sockopts.SO_RXQ_OVFL, 1)
    try:
        sock.setsockopt(sockopts.SOL_UDP, sockopts.UDP_GRO, 1)
    except OSError:
        pass


def _listen_pair(family: int, address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A TCP listener and a UDP socket on the same address and port number."""
    tcp = socket.socket(family, socket.SOCK_STREAM)
    udp = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for s in (tcp, udp):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        tcp.bind((address, port))
        tcp.listen(64)
        udp.bind((address, tcp.getsockname()[1]))
    except OSError:
        tcp.close()
        udp.close()
        raise
    return tcp, udp


def _bind_targets(bind: str | None) -> list[tuple[int, str]]:
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


class Measurement:
    """One blast session on the server: its connected UDP socket and its receiver thread."""

    def __init__(self, server: "Server", channel: control.Channel, start: dict, family: int):
        self.session = start["session"]
        self.size = start["size"]
        self.duration_s = float(start["duration_s"])
        self.v6 = family == socket.AF_INET6
        wire.check_size(self.size, self.v6)
        if not 0 < self.duration_s <= server.max_duration:
            raise ProtocolError(f"duration {self.duration_s} s is outside (0, {server.max_duration}] s")
        local = channel.sock.getsockname()[0]
        peer = channel.peer[0]
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if self.v6:
                self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            requested = start.get("rcvbuf")
            want = requested if isinstance(requested, int) and 0 < requested <= 256 << 20 else DEFAULT_RCVBUF
            self.rcvbuf = set_receive_buffer(self.sock, want)
            enable_receive_options(self.sock)
            self.sock.bind((local, server.port))
            self.sock.connect((peer, start["client_port"]))
        except OSError:
            self.sock.close()
            raise
        self.receiver = Receiver(self.session)
        self.counters_before = kernel.snapshot(self.v6)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._receive, name=f"rx-{self.session:x}", daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        try:
            self.receiver.run(self.sock.fileno())
        except BaseException as exc:  # reported in REPORT, never lost in a thread
            self.failure = exc

    def drain(self, quiet_s: float = 0.1, limit_s: float = 2.0) -> float:
        """Wait until nothing has arrived for ``quiet_s`` (at most ``limit_s``): stragglers count."""
        start = last_change = time.monotonic()
        rx = self.receiver
        seen = rx.received + rx.duplicates + rx.foreign
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            count = rx.received + rx.duplicates + rx.foreign
            if count != seen:
                seen, last_change = count, now
            if now - last_change >= quiet_s or now - start >= limit_s:
                return now - start

    def finish(self) -> dict:
        drain_s = self.drain()
        return self.close(drain_s)

    def status(self) -> dict:
        """The receiver's counts so far, for an interim report; the session keeps running."""
        status = self.receiver.counts()
        status.update(type="STATUS", session=self.session, socket_drops=sockopts.socket_drops(self.sock))
        return status

    def close(self, drain_s: float = 0.0) -> dict:
        self.receiver.request_stop()
        self.thread.join(timeout=2.0)
        drops = sockopts.socket_drops(self.sock)
        self.sock.close()
        report = self.receiver.counts()
        report.update(
            type="REPORT",
            session=self.session,
            socket_drops=drops,
            kernel=kernel.delta(self.counters_before, kernel.snapshot(self.v6)),
            drain_s=round(drain_s, 4),
            rcvbuf=self.rcvbuf,
        )
        if self.failure is not None:
            report["receive_error"] = str(self.failure)
        return report


class Server:
    """``udpbench serve``: serves measurements until closed. Thread-safe ``close()``."""

    def __init__(self, bind: str | None = None, port: int = DEFAULT_PORT, max_sessions: int = 16,
                 max_duration: float = MAX_DURATION_S, log=None):
        if not 0 <= port <= 65535:
            raise UserError(f"port {port} is outside 0-65535")
        self.max_sessions = max_sessions
        self.max_duration = max_duration
        self.log = log
        self.listeners: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.active_sessions = 0
        self.echo_sessions: dict[int, str] = {}  # session id -> the control peer's address
        self.foreign = 0
        self.answered = 0
        targets = _bind_targets(bind)
        for attempt in range(20):
            try:
                self.port = port
                for family, address in targets:
                    tcp, udp = _listen_pair(family, address, self.port)
                    self.listeners.append((tcp, udp))
                    self.port = tcp.getsockname()[1]
                break
            except OSError as exc:
                self._close_listeners()
                if port == 0 and attempt < 19:
                    continue  # the port TCP got was taken for UDP in another family: pick again
                where = bind or "all interfaces"
                raise UserError(f"cannot listen on {where} port {port}: {exc.strerror}") from None

    def _close_listeners(self) -> None:
        for tcp, udp in self.listeners:
            tcp.close()
            udp.close()
        self.listeners = []

    @property
    def addresses(self) -> list[str]:
        out = []
        for tcp, _ in self.listeners:
            host = tcp.getsockname()[0]
            out.append(f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}")
        return out

    def _say(self, text: str) -> None:
        if self.log:
            print(text, file=self.log, flush=True)

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
        self._close_listeners()

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- control connections ----------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for tcp, _ in self.listeners:
                sel.register(tcp, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    try:
                        conn, _addr = key.fileobj.accept()
                    except OSError:
                        continue
                    with self._lock:
                        busy = self.active_sessions >= self.max_sessions
                        if not busy:
                            self.active_sessions += 1
                    if busy:
                        ch = control.Channel(conn, timeout=1.0)
                        ch.error(f"server busy: {self.max_sessions} sessions in progress, try again later")
                        ch.close()
                        continue
                    threading.Thread(target=self._converse, args=(conn,), daemon=True).start()

    def _converse(self, conn: socket.socket) -> None:
        """One control connection, through the state machine, until BYE, error or silence."""
        try:
            channel = control.Channel(conn, timeout=10.0)
        except OSError:
            conn.close()
            with self._lock:
                self.active_sessions -= 1
            return
        state = ServerState.AWAIT_HELLO
        measurement: Measurement | None = None
        echo_session: int | None = None
        try:
            while state is not ServerState.CLOSED and not self._closed.is_set():
                timeout = 10.0
                if measurement is not None:
                    timeout = measurement.duration_s + SESSION_GRACE_S
                msg = channel.recv(timeout=timeout)
                new_state = control.next_server_state(state, msg)
                kind = msg["type"]
                if kind == "HELLO":
                    if msg["version"] != control.PROTOCOL_VERSION:
                        raise ProtocolError(f"client speaks protocol {msg['version']}, "
                                            f"this server speaks {control.PROTOCOL_VERSION}")
                    channel.send({"type": "HELLO", "version": control.PROTOCOL_VERSION,
                                  "server": f"udpbench {__version__}", "nonce": secrets.token_hex(16),
                                  "port": self.port})
                elif kind == "START" and msg["mode"] == "blast":
                    try:
                        measurement = Measurement(self, channel, msg, conn.family)
                    except wire.WireError as exc:
                        raise ProtocolError(str(exc)) from None
                    self._say(f"session {msg['session']:016x} from {channel.peer[0]}: "
                              f"{msg['size']} B for {msg['duration_s']} s")
                    channel.send({"type": "STARTED", "session": msg["session"], "rcvbuf": measurement.rcvbuf,
                                  "data_port": self.port})
                elif kind == "START":  # echo: answer this session's probes and echo requests
                    echo_session = msg["session"]
                    with self._lock:
                        self.echo_sessions[echo_session] = channel.peer[0]
                    channel.send({"type": "STARTED", "session": echo_session, "data_port": self.port})
                elif kind == "STOP":
                    if msg["session"] not in (getattr(measurement, "session", None), echo_session):
                        raise ProtocolError("STOP names a session that is not running")
                    if measurement is not None:
                        report = measurement.finish()
                        measurement = None
                    else:
                        with self._lock:
                            self.echo_sessions.pop(echo_session, None)
                        report = {"type": "REPORT", "session": echo_session}
                        echo_session = None
                    channel.send(report)
                elif kind == "STATUS":
                    if measurement is None or msg["session"] != measurement.session:
                        raise ProtocolError("STATUS names a session that is not a running blast")
                    channel.send(measurement.status())
                state = new_state
        except ProtocolError as exc:
            channel.error(str(exc))
        except TimeoutError:
            channel.error("control channel silent for too long: session ended")
        except (PeerError, OSError):
            pass
        finally:
            if measurement is not None:
                measurement.close()
            if echo_session is not None:
                with self._lock:
                    self.echo_sessions.pop(echo_session, None)
            channel.close()
            with self._lock:
                self.active_sessions -= 1

    # --- the shared UDP socket: probes and echo for live sessions --------------------------

    def _service_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for _, udp in self.listeners:
                udp.setblocking(False)
                sel.register(udp, selectors.EVENT_READ)
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    for _ in range(256):  # take a burst, then look at the clock again
                        try:
                            data, addr = key.fileobj.recvfrom(65536)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        self.answer(key.fileobj, data, addr)

    def answer(self, sock: socket.socket, data: bytes, addr) -> None:
        """Reply to a probe or echo request of a live session; count anything else as foreign.

        A reply goes only to the address of the session's control peer and is never larger
        than the datagram it answers, so the server cannot be used to amplify or reflect.
        """
        try:
            header = wire.parse(data)
        except wire.WireError:
            self.foreign += 1
            return
        owner = self.echo_sessions.get(header.session)
        if owner is None or owner != addr[0]:
            self.foreign += 1
            return
        rx_ns = time.time_ns()
        if header.kind == wire.Kind.PROBE:
            if len(data) < wire.PROBE_ACK_SIZE:
                self.foreign += 1
                return
            reply = (wire.pack(wire.Kind.PROBE_ACK, header.session, header.seq, header.tx_ns, header.flags)
                     + wire.PROBE_ACK_BODY.pack(len(data), rx_ns))
        elif header.kind == wire.Kind.ECHO:
            reply = (wire.pack(wire.Kind.ECHO_REPLY, header.session, header.seq, header.tx_ns, header.flags)
                     + data[wire.HEADER_SIZE:])
        else:
            self.foreign += 1
            return
        try:
            sock.sendto(reply, addr)
            self.answered += 1
        except OSError:
            pass


def add_parser(commands) -> None:
    p = commands.add_parser("serve", help="serve measurements: TCP control and UDP data on one port",
                            description="Serve udpbench measurements. The TCP control channel and the UDP "
                                        "datagrams use the same port number.")
    p.add_argument("--bind", metavar="ADDR", default=None,
                   help="address to serve: 127.0.0.1 serves this machine only, an interface's address "
                        "serves that interface; default: all interfaces, IPv4 and IPv6")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port number (default {DEFAULT_PORT})")
    p.add_argument("--max-sessions", type=int, default=16, metavar="N",
                   help="control connections served at once (default 16)")
    p.add_argument("--quiet", action="store_true", help="do not log sessions to stderr")
    p.set_defaults(func=run)


def run(args) -> int:
    server = Server(args.bind, args.port, max_sessions=args.max_sessions,
                    log=None if args.quiet else sys.stderr)
    print(f"udpbench {__version__} serving on {', '.join(server.addresses)} (TCP control + UDP data)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
