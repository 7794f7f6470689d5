"""The receiving end: a TCP control listener and UDP sockets on the same port number.

Each measurement gets its own UDP socket, bound to the server's port and connected to the
client's data socket (SO_REUSEPORT; the kernel prefers the connected socket), so concurrent
clients never mix their counts. The unconnected socket on the port answers path-MTU probes
and echo requests of live sessions only, and counts everything else as foreign; it also
answers discovery (rate-limited, never larger than the request; see protocol/discovery.py).

Replies leave from the address the request was sent to (IP_PKTINFO / IPV6_PKTINFO), so a
client's connected socket accepts them even when the server listens on all interfaces of a
host with several addresses.
"""
from __future__ import annotations

import errno
import ipaddress
import math
import os
import random
import secrets
import selectors
import socket
import sys
import threading
import time

from udpbench._version import __version__
from udpbench.protocol import control
from udpbench.linux import interfaces
from udpbench.protocol import discovery
from udpbench.linux import counters as kernel
from udpbench.linux import host as this_host
from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.engine._fast import Receiver
from udpbench.protocol.control import PeerError, ProtocolError, ServerState
from udpbench.errors import UserError
from udpbench.protocol.units import format_rate, parse_rate, positive_seconds, whole_number_between

DEFAULT_PORT = 1060
DEFAULT_RCVBUF = 8 << 20  # ask for 8 MiB so a fast sender is not cut short by the socket
SESSION_GRACE_S = 10.0  # a client silent this long past its duration is taken for dead
MAX_DURATION_S = 3600.0
HANDSHAKE_TIMEOUT_S = 5.0  # HELLO and AUTH: an unauthenticated connection holds a session slot only this long
IDLE_TIMEOUT_S = 120.0  # between measurements: a sweep's other hosts wait while one host runs
AUTH_FAILURE_DELAY_S = 0.25  # slows a token-guessing peer to a few tries a second per connection


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


def enable_pktinfo(sock: socket.socket) -> None:
    """Ask for each datagram's destination address, so a reply can leave from it."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_RECVPKTINFO, 1)
    else:
        sock.setsockopt(sockopts.SOL_IP, sockopts.IP_PKTINFO, 1)


_PKTINFO_SPACE = socket.CMSG_SPACE(max(sockopts.IN_PKTINFO.size, sockopts.IN6_PKTINFO.size))


def receive_with_pktinfo(sock: socket.socket) -> tuple[bytes, tuple, tuple | None]:
    """(payload, source, pktinfo) where pktinfo is (level, type, ifindex, local address bytes).

    For IPv4 the local address is ipi_spec_dst: the request's destination for unicast, the
    receiving interface's address for a broadcast, i.e. the right source for the reply.
    """
    data, ancdata, _flags, addr = sock.recvmsg(65536, _PKTINFO_SPACE)
    info = None
    for level, kind, value in ancdata:
        if level == sockopts.SOL_IP and kind == sockopts.IP_PKTINFO and len(value) >= sockopts.IN_PKTINFO.size:
            ifindex, spec_dst, _dst = sockopts.IN_PKTINFO.unpack_from(value)
            info = (level, kind, ifindex, spec_dst)
        elif level == socket.IPPROTO_IPV6 and kind == sockopts.IPV6_PKTINFO \
                and len(value) >= sockopts.IN6_PKTINFO.size:
            dst, ifindex = sockopts.IN6_PKTINFO.unpack_from(value)
            info = (level, kind, ifindex, dst)
    return data, addr, info


def send_from(sock: socket.socket, data: bytes, addr, pktinfo: tuple | None) -> None:
    """Send ``data`` to ``addr``, from the local address the request arrived at when known."""
    if pktinfo is None:
        sock.sendto(data, addr)
        return
    level, kind, ifindex, local = pktinfo
    if kind == sockopts.IP_PKTINFO:
        # ifindex 0: let the route pick the interface; ipi_spec_dst sets the source address.
        value = sockopts.IN_PKTINFO.pack(0, local, bytes(4))
    else:
        # Keep the interface for link-local peers, whose address alone does not say which.
        value = sockopts.IN6_PKTINFO.pack(local, ifindex if local[:2] == b"\xfe\x80" else 0)
    sock.sendmsg([data], [(level, kind, value)], 0, addr)


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
        enable_pktinfo(udp)
        tcp.bind((address, port))
        tcp.listen(1024)  # a burst of connections waits in the queue, not in SYN retries
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
        """``start`` holds the granted duration (see ``Server.grant``), not necessarily the asked one."""
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
            clock_domain=this_host.clock_domain(),
        )
        if self.failure is not None:
            report["receive_error"] = str(self.failure)
        return report


def check_drop(drop: float) -> float:
    """A drop fraction for ``serve --drop``: 0 <= P < 1 (1 would answer nothing at all)."""
    try:
        value = float(drop)
    except (TypeError, ValueError):
        raise UserError(f"--drop {drop!r} is not a number: give a fraction like 0.5") from None
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise UserError(f"--drop {drop} must be a fraction with 0 <= P < 1 (0.5 drops half the "
                        "echo requests)")
    return value


class EchoCounts:
    """What the server did with one echo session's ECHO requests, for its REPORT.

    Each session draws its drops from its own generator seeded with ``--seed``, so the k-th
    echo request of every session meets the same fate whatever other clients do.
    """

    def __init__(self, drop: float, seed: int):
        self.drop = drop
        self.rng = random.Random(seed) if drop else None
        self.requests = self.answered = self.dropped = 0

    def should_drop(self) -> bool:
        return self.rng is not None and self.rng.random() < self.drop

    def report(self) -> dict:
        return {"echo_requests": self.requests, "echo_answered": self.answered,
                "echo_dropped": self.dropped, "drop": self.drop}


class Server:
    """``udpbench serve``: serves measurements until closed. Thread-safe ``close()``.

    ``drop`` (0 <= P < 1) makes the server ignore that fraction of the ECHO requests it
    receives, drawn from a generator seeded with ``seed``: to watch a client's backoff and
    loss accounting work. Path-MTU probes are never dropped: a lost probe reads as "too big".
    """

    def __init__(self, bind: str | None = None, port: int = DEFAULT_PORT, max_sessions: int = 16,
                 max_duration: float = MAX_DURATION_S, log=None, drop: float = 0.0, seed: int | None = None,
                 token: str | None = None, max_rate_bps: float = 0.0, session_grace: float | None = None):
        if not 0 <= port <= 65535:
            raise UserError(f"port {port} is outside 0-65535")
        if max_sessions < 1:
            raise UserError("--max-sessions must be at least 1")
        if not (math.isfinite(max_duration) and max_duration > 0):
            raise UserError("--max-duration must be a positive number of seconds")
        if not (math.isfinite(max_rate_bps) and max_rate_bps >= 0):
            raise UserError("--max-rate must be a positive rate, or 0 for no limit")
        if session_grace is None:
            session_grace = SESSION_GRACE_S  # read at call time: tests shorten it
        if not (math.isfinite(session_grace) and session_grace > 0):
            raise UserError("--session-grace must be a positive number of seconds")
        self.drop = check_drop(drop)
        self.seed = seed if seed is not None else secrets.randbits(32)
        self.echo_counts: dict[int, EchoCounts] = {}  # session id -> counts, while the session lives
        self.discovery_limit = discovery.ReplyBucket(time.monotonic())
        self.discovery_answered = 0
        self.discovery_limited = 0
        # Sockets that hear discovery broadcasts for a server bound to one address:
        # (socket, the listener to reply from, the interface index the broadcast must arrive on)
        self.discovery_sockets: list[tuple[socket.socket, socket.socket, int]] = []
        self.discovery_interface: interfaces.InterfaceAddress | None = None
        self.max_sessions = max_sessions
        self.max_duration = max_duration
        self.max_rate_bps = max_rate_bps  # 0: no limit
        self.session_grace = session_grace
        self.idle_timeout = IDLE_TIMEOUT_S
        self.token = token or None
        self.log = log
        self.refused = 0  # connections refused: busy, failed authentication, protocol errors
        self.internal_errors = 0  # conversations ended by a bug (tests assert there are none)
        self.listeners: list[tuple[socket.socket, socket.socket]] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conversations: dict[socket.socket, threading.Thread] = {}  # open control connections
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
                hint = ""
                if exc.errno == errno.EADDRNOTAVAIL:
                    hint = " (no interface here has that address; `ip addr` lists them)"
                raise UserError(f"cannot listen on {where} port {port}: {exc.strerror}{hint}") from None
        self.bind = bind
        # Interfaces whose IPv6 link-local discovery group the wildcard listener joined.
        self.discovery_group_interfaces: list[str] = []
        if bind not in (None, "", "*"):
            self._listen_for_discovery(self.listeners[0][1])
        else:
            for _, udp in self.listeners:
                if udp.family == socket.AF_INET6:
                    self.discovery_group_interfaces = interfaces.join_group_v6(udp, discovery.MULTICAST_GROUP_V6)

    def _listen_for_discovery(self, reply_sock: socket.socket) -> None:
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
                self._say(f"discovery: cannot listen on {target}:{self.port}: {exc.strerror}")
                continue
            self.discovery_sockets.append((sock, reply_sock, entry.ifindex))
        if self.discovery_sockets:
            self.discovery_interface = entry

    @property
    def discovery_addresses(self) -> list[str]:
        """Where discovery broadcasts are heard: the bound broadcast addresses, or all interfaces."""
        if self.discovery_sockets:
            return [s.getsockname()[0] for s, _, _ in self.discovery_sockets]
        return [tcp.getsockname()[0] for tcp, _ in self.listeners if tcp.family == socket.AF_INET
                and tcp.getsockname()[0] == "0.0.0.0"]

    def _close_listeners(self) -> None:
        for tcp, udp in self.listeners:
            tcp.close()
            udp.close()
        self.listeners = []
        for sock, _, _ in self.discovery_sockets:
            sock.close()
        self.discovery_sockets = []

    @property
    def addresses(self) -> list[str]:
        out = []
        for tcp, _ in self.listeners:
            host = tcp.getsockname()[0]
            out.append(sockopts.format_hostport(host, self.port))
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
                        self.refused += 1
                        try:  # a peer that already reset makes getpeername fail: never let it end this loop
                            ch = control.Channel(conn, timeout=1.0)
                            ch.error(f"server busy: {self.max_sessions} sessions in progress, try again later")
                        except OSError:
                            pass
                        conn.close()
                        continue
                    t = threading.Thread(target=self._converse, args=(conn,), daemon=True)
                    with self._lock:
                        self._conversations[conn] = t
                    t.start()

    def _converse(self, conn: socket.socket) -> None:
        """One control connection, through the state machine, until BYE, error or silence."""
        try:
            channel = control.Channel(conn, timeout=10.0)
        except OSError:
            conn.close()
            with self._lock:
                self.active_sessions -= 1
                self._conversations.pop(conn, None)
            return
        state = ServerState.AWAIT_HELLO
        measurement: Measurement | None = None
        echo_session: int | None = None
        nonce = control.new_nonce()
        echo_duration = 0.0  # how long the client said its echo session would last
        try:
            while state is not ServerState.CLOSED and not self._closed.is_set():
                if measurement is not None:
                    timeout = measurement.duration_s + self.session_grace
                elif echo_session is not None:
                    timeout = echo_duration + self.session_grace
                elif state in (ServerState.AWAIT_HELLO, ServerState.AWAIT_AUTH):
                    timeout = HANDSHAKE_TIMEOUT_S  # read at call time: tests shorten it
                else:
                    timeout = self.idle_timeout
                msg = channel.recv(timeout=timeout)
                new_state = control.next_server_state(state, msg, auth_required=self.token is not None)
                kind = msg["type"]
                if kind == "HELLO":
                    if msg["version"] != control.PROTOCOL_VERSION:
                        raise ProtocolError(f"client speaks protocol {msg['version']}, "
                                            f"this server speaks {control.PROTOCOL_VERSION}")
                    hello = {"type": "HELLO", "version": control.PROTOCOL_VERSION,
                             "server": f"udpbench {__version__}", "nonce": nonce, "port": self.port}
                    if self.token is not None:
                        hello["auth"] = control.AUTH_METHOD
                    channel.send(hello)
                elif kind == "AUTH":
                    if not (control.valid_nonce(msg["nonce"])
                            and control.check_mac(self.token, "client", nonce, msg["nonce"], msg["mac"])):
                        self._say(f"refused {channel.peer[0]}: {control.AUTH_FAILED}")
                        time.sleep(AUTH_FAILURE_DELAY_S)
                        raise ProtocolError(control.AUTH_FAILED)
                    channel.send({"type": "AUTH_OK",
                                  "mac": control.auth_mac(self.token, "server", nonce, msg["nonce"])})
                elif kind == "BYE" and state is ServerState.AWAIT_AUTH:
                    self.refused += 1
                    self._say(f"refused {channel.peer[0]}: the client has no token")
                elif kind == "START" and msg["mode"] == "blast":
                    granted, clamped = self.grant(msg)
                    try:
                        measurement = Measurement(self, channel, dict(msg, **granted), conn.family)
                    except wire.WireError as exc:
                        raise ProtocolError(str(exc)) from None
                    except OSError as exc:
                        raise ProtocolError(f"the server cannot open a socket for the session: "
                                            f"{exc.strerror or exc}") from None
                    note = f" (clamped: {', '.join(clamped)})" if clamped else ""
                    self._say(f"session {msg['session']:016x} from {channel.peer[0]}: "
                              f"{msg['size']} B for {granted['duration_s']:g} s{note}")
                    channel.send({"type": "STARTED", "session": msg["session"], "rcvbuf": measurement.rcvbuf,
                                  "data_port": self.port, "granted": granted, "clamped": clamped})
                elif kind == "START":  # echo: answer this session's probes and echo requests
                    duration = msg.get("duration_s", 0.0)
                    if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
                            or not 0 <= duration <= self.max_duration:
                        raise ProtocolError(f"echo duration_s must be 0-{self.max_duration:g} s")
                    with self._lock:
                        if msg["session"] in self.echo_sessions:
                            raise ProtocolError("START names a session id already in use")
                        echo_duration = float(duration)
                        echo_session = msg["session"]
                        self.echo_counts[echo_session] = EchoCounts(self.drop, self.seed)
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
                            counts = self.echo_counts.pop(echo_session, None)
                        report = {"type": "REPORT", "session": echo_session}
                        if counts is not None:
                            report.update(counts.report())
                            if counts.requests:
                                self._say(f"echo session {echo_session:016x} from {channel.peer[0]}: "
                                          f"{counts.requests} request(s), {counts.answered} answered, "
                                          f"{counts.dropped} dropped on purpose")
                        echo_session = None
                    channel.send(report)
                elif kind == "STATUS":
                    if measurement is None or msg["session"] != measurement.session:
                        raise ProtocolError("STATUS names a session that is not a running blast")
                    channel.send(measurement.status())
                state = new_state
        except ProtocolError as exc:
            if state in (ServerState.AWAIT_HELLO, ServerState.AWAIT_AUTH):
                self.refused += 1
            if state is ServerState.AWAIT_AUTH and str(exc) == control.NEED_TOKEN:
                self._say(f"refused {channel.peer[0]}: no token")
            channel.error(str(exc))
        except TimeoutError:
            channel.error("control channel silent for too long: session ended")
        except (PeerError, OSError):
            pass
        except Exception as exc:  # a bug must end one conversation, never the server
            self.internal_errors += 1
            self._say(f"internal error with {channel.peer[0]}: {type(exc).__name__}: {exc}")
            channel.error("internal server error: session ended")
        finally:
            if measurement is not None:
                measurement.close()
            if echo_session is not None:
                with self._lock:
                    self.echo_sessions.pop(echo_session, None)
                    self.echo_counts.pop(echo_session, None)
            channel.close()
            with self._lock:
                self.active_sessions -= 1
                self._conversations.pop(conn, None)

    def grant(self, start: dict) -> tuple[dict, list[str]]:
        """What this server grants of a blast START: ({duration_s, rate_bps}, names clamped).

        A duration or rate above the server's limit is clamped to it (and named), a value
        that makes no sense is refused. ``rate_bps`` 0 asks for "as fast as possible".
        """
        try:
            duration = float(start["duration_s"])
            rate = float(start["rate_bps"])
        except OverflowError:
            raise ProtocolError("START duration or rate is out of range") from None
        if not (math.isfinite(duration) and duration > 0):
            raise ProtocolError(f"duration {start['duration_s']!r} s is not a positive number")
        if not (math.isfinite(rate) and rate >= 0):
            raise ProtocolError(f"rate {start['rate_bps']!r} bit/s is not 0 (as fast as possible) or positive")
        clamped = []
        if duration > self.max_duration:
            duration = self.max_duration
            clamped.append("duration_s")
        if self.max_rate_bps and (rate == 0 or rate > self.max_rate_bps):
            rate = self.max_rate_bps
            clamped.append("rate_bps")
        return {"duration_s": duration, "rate_bps": rate}, clamped

    # --- the shared UDP socket: probes and echo for live sessions --------------------------

    def _service_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            for _, udp in self.listeners:
                udp.setblocking(False)
                sel.register(udp, selectors.EVENT_READ, None)
            for sock, reply_sock, ifindex in self.discovery_sockets:
                sock.setblocking(False)
                sel.register(sock, selectors.EVENT_READ, (reply_sock, ifindex))
            while not self._closed.is_set():
                for key, _ in sel.select(timeout=0.2):
                    for _ in range(256):  # take a burst, then look at the clock again
                        try:
                            data, addr, pktinfo = receive_with_pktinfo(key.fileobj)
                        except (BlockingIOError, InterruptedError):
                            break
                        except OSError:
                            break
                        if key.data is None:
                            self.answer(key.fileobj, data, addr, pktinfo)
                        else:
                            self._answer_broadcast(key.data, data, addr, pktinfo)

    def _answer_broadcast(self, where: tuple[socket.socket, int], data: bytes, addr, pktinfo) -> None:
        """A datagram on a discovery socket: DISCOVER from the bound interface, or foreign."""
        reply_sock, ifindex = where
        try:
            header = wire.parse(data)
        except wire.WireError:
            self.foreign += 1
            return
        if header.kind != wire.Kind.DISCOVER or pktinfo is None or pktinfo[2] != ifindex:
            self.foreign += 1
            return
        # From the listener bound to the unicast address: that is the reply's source.
        self._answer_discovery(reply_sock, header, len(data), addr, None)

    def _answer_discovery(self, sock: socket.socket, header: wire.Header, size: int, addr, pktinfo) -> None:
        """A small reply, at most REPLY_RATE a second in all, never larger than the request."""
        if pktinfo is not None and pktinfo[1] == sockopts.IPV6_PKTINFO and pktinfo[3][:1] == b"\xff":
            pktinfo = None  # to our multicast group: the kernel picks the source (never a group)
        data = discovery.reply(header, size, self.port)
        if data is None:
            self.foreign += 1
            return
        if not self.discovery_limit.take(time.monotonic()):
            self.discovery_limited += 1
            return
        try:
            send_from(sock, data, addr, pktinfo)
            self.discovery_answered += 1
        except OSError:
            pass

    def answer(self, sock: socket.socket, data: bytes, addr, pktinfo: tuple | None = None) -> None:
        """Reply to a probe or echo request of a live session; count anything else as foreign.

        A reply goes only to the address of the session's control peer and is never larger
        than the datagram it answers, so the server cannot be used to amplify or reflect.
        Discovery needs no session: its reply is small, rate-limited and no larger either.
        """
        try:
            header = wire.parse(data)
        except wire.WireError:
            self.foreign += 1
            return
        if header.kind == wire.Kind.DISCOVER:
            self._answer_discovery(sock, header, len(data), addr, pktinfo)
            return
        counts = None
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
            counts = self.echo_counts.get(header.session)  # None for a session not opened here
            if counts is not None:
                counts.requests += 1
                if counts.should_drop():  # serve --drop: pretend the request was lost
                    counts.dropped += 1
                    return
            reply = (wire.pack(wire.Kind.ECHO_REPLY, header.session, header.seq, header.tx_ns, header.flags)
                     + data[wire.HEADER_SIZE:])
        else:
            self.foreign += 1
            return
        # Counted before it leaves: the client may read the REPORT as soon as the reply lands.
        if counts is not None:
            counts.answered += 1
        try:
            send_from(sock, reply, addr, pktinfo)
            self.answered += 1
        except OSError:
            if counts is not None:
                counts.answered -= 1


def add_parser(commands) -> None:
    p = commands.add_parser("serve", help="serve measurements: TCP control and UDP data on one port",
                            description="Serve udpbench measurements. The TCP control channel and the UDP "
                                        "datagrams use the same port number.")
    p.add_argument("--bind", metavar="ADDR", default=None,
                   help="address to serve: 127.0.0.1 serves this machine only, an interface's address "
                        "serves that interface; default: all interfaces, IPv4 and IPv6")
    p.add_argument("--port", type=whole_number_between("--port", 0, 65535), default=DEFAULT_PORT,
                   help=f"port number (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--max-sessions", type=int, default=16, metavar="N",
                   help="control connections served at once (default 16)")
    p.add_argument("--token", default=None, metavar="SECRET",
                   help=f"require clients to prove this shared secret (HMAC-SHA256; it never crosses the "
                        f"network); default: ${control.TOKEN_ENV}. Other local users can read a command "
                        f"line: prefer the variable or --token-file")
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the token from FILE's first line")
    p.add_argument("--max-rate", type=parse_rate, default=0.0, metavar="R",
                   help="grant at most R payload bits/s per session (k/M/G suffix); faster requests "
                        "are clamped and told so (default: no limit)")
    p.add_argument("--max-duration", type=positive_seconds("--max-duration"), default=MAX_DURATION_S, metavar="S",
                   help=f"grant at most S seconds per measurement; longer requests are clamped "
                        f"(default {MAX_DURATION_S:g})")
    p.add_argument("--session-grace", type=positive_seconds("--session-grace"), default=SESSION_GRACE_S, metavar="S",
                   help=f"end a session whose client stays silent S seconds past its duration "
                        f"(default {SESSION_GRACE_S:g})")
    p.add_argument("--quiet", action="store_true", help="do not log sessions to stderr")
    p.add_argument("--drop", type=check_drop, default=0.0, metavar="P",
                   help="ignore this fraction of the ECHO requests received (0 <= P < 1), to watch "
                        "`udpbench ping` back off and count loss; path-MTU probes are never dropped")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for --drop, so a run can be repeated (default: random, printed)")
    p.set_defaults(func=run)


def describe_listening(server: Server) -> list[str]:
    """Lines that say where the server can be reached, in the terms of --bind."""
    lines = [f"udpbench {__version__} serving on {', '.join(server.addresses)} (TCP control + UDP data)"]
    wildcard = server.bind in (None, "", "*")
    if wildcard:
        try:
            reachable = [a.address for a in interfaces.interface_addresses()
                         if not a.address.startswith("fe80:")]
        except OSError:
            reachable = []
        if reachable:
            lines.append(f"  all interfaces: reachable at {', '.join(reachable)}")
    else:
        address = server.listeners[0][0].getsockname()[0]
        entry = interfaces.owner_of(address)
        if sockopts.is_loopback(address):
            lines.append(f"  bound to {address}: this machine only")
        elif entry is not None:
            lines.append(f"  bound to {address}: only datagrams and connections addressed to it "
                         f"(interface {entry.ifname})")
    if server.discovery_interface is not None:
        lines.append(f"  answers discovery broadcasts arriving on {server.discovery_interface.ifname} "
                     f"({', '.join(server.discovery_addresses)})")
    elif server.discovery_addresses:
        lines.append("  answers discovery broadcasts arriving on any interface")
    if server.discovery_group_interfaces:
        lines.append(f"  answers IPv6 discovery to {discovery.MULTICAST_GROUP_V6} on "
                     f"{', '.join(server.discovery_group_interfaces)}")
    if server.token:
        lines.append("  token required: clients prove it with HMAC-SHA256")
    else:
        lines.append("  no token: anyone who reaches the port may measure (see --token)")
    limits = f"  limits: {server.max_sessions} sessions, {server.max_duration:g} s a measurement"
    if server.max_rate_bps:
        limits += f", {format_rate(server.max_rate_bps)} a session"
    lines.append(limits)
    if server.drop:
        lines.append(f"  dropping {server.drop:.0%} of echo requests on purpose (--drop {server.drop:g} "
                     f"--seed {server.seed})")
    return lines


def run(args) -> int:
    token = control.resolve_token(args.token, args.token_file)
    server = Server(args.bind, args.port, max_sessions=args.max_sessions, max_duration=args.max_duration,
                    log=None if args.quiet else sys.stderr, drop=args.drop, seed=args.seed, token=token,
                    max_rate_bps=args.max_rate, session_grace=args.session_grace)
    print("\n".join(describe_listening(server)), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
