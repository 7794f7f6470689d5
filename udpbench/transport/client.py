"""The sending end of a measurement: control conversation, the blast, and the row it yields."""
from __future__ import annotations

import contextlib
import errno
import math
import secrets
import socket
import threading
import time

from udpbench._version import __version__
from udpbench.engine import _fast
from udpbench.protocol import control
from udpbench.engine import choice as engines
from udpbench.linux import counters as kernel
from udpbench.linux import sockopts
from udpbench.protocol import report as report_rules
from udpbench.protocol import wire
from udpbench.protocol.row import Row
from udpbench.protocol.control import PeerClosed, PeerError, ProtocolError
from udpbench.errors import MeasurementError, ServerAbsent, TokenRequired, UserError, errno_name
from udpbench.transport import clock_samples
from udpbench.transport.blast_row import make_row, nothing_sent
from udpbench.transport.channel import Channel
from udpbench.transport.interval import IntervalReports
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.linux.sockopts import format_hostport
from udpbench.protocol.units import format_rate

CONNECT_TIMEOUT_S = 3.0
REPORT_TIMEOUT_S = 10.0  # the server drains for at most 2 s; the rest is slack for a loaded host
DEFAULT_LAN_RATE_BPS = 100e6  # a safety default for any host that is not this machine


def resolve(host: str, port: int, family: int | None = None) -> tuple[int, tuple]:
    """(family, sockaddr) for a host, preferring the requested family."""
    try:
        infos = socket.getaddrinfo(host, port, family or socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise UserError(f"cannot resolve host {host!r}: {exc.strerror}") from None
    if not infos:
        raise UserError(f"host {host!r} has no address of the requested family")
    fam, _, _, _, addr = infos[0]
    return fam, addr


class Client:
    """A control connection to one server, over which any number of measurements run."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, family: int | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S, token: str | None = None, on_notice=None):
        """``token``: the shared secret to prove if the server asks; None takes $UDPBENCH_TOKEN, "" none.
        ``on_notice(text)`` hears what is worth knowing but no error (a clamp, an unused token)."""
        self.host = host
        self.on_notice = on_notice
        self.token = control.resolve_token(token) if token is None else (token or None)
        self.authenticated = False
        self._noticed: set[str] = set()
        self.family, self.server_addr = resolve(host, port, family)
        self.port = self.server_addr[1]
        where = format_hostport(self.server_addr[0], self.port)
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout)
        try:
            sock.connect(self.server_addr)
        except ConnectionRefusedError:
            sock.close()
            raise ServerAbsent(f"no udpbench server at {where}", where, self.port, "refused") from None
        except (socket.timeout, TimeoutError):
            sock.close()
            raise ServerAbsent(f"no answer from {where} within {connect_timeout:g} s", where, self.port,
                               "timeout") from None
        except OSError as exc:
            sock.close()
            raise ServerAbsent(f"cannot reach {where}: {exc.strerror}", where, self.port) from None
        self.channel = Channel(sock, timeout=REPORT_TIMEOUT_S)
        self.local_addr = sock.getsockname()[0]
        self._local_scope = sock.getsockname()[2:]  # IPv6 flow info and zone: a link-local address needs its zone
        try:
            self.channel.send({"type": "HELLO", "version": control.PROTOCOL_VERSION,
                               "client": f"udpbench {__version__}"})
            self.hello = self.channel.expect("HELLO")
        except PeerError as exc:  # e.g. "server busy"
            self.channel.close()
            raise MeasurementError(f"server {where} refused: {exc}") from None
        except (ProtocolError, TimeoutError, OSError) as exc:
            self.channel.close()
            raise MeasurementError(f"{where} did not greet as a udpbench server: {exc}") from None
        try:
            self._authenticate()
        except BaseException:
            self.channel.close()
            raise
        self.v6 = self.family == socket.AF_INET6

    def sibling(self) -> "Client":
        """Another control connection to the same server (one per parallel stream)."""
        other = Client(self.server_addr[0], self.port, self.family, token=self.token or "",
                       on_notice=self.on_notice)
        other.host = self.host
        other._noticed = self._noticed
        return other

    def _authenticate(self) -> None:
        """Prove the token if the server asks for one, and check the server's proof in turn."""
        method = self.hello.get("auth")
        if method is None:
            if self.token:
                # Decision: go on. The token guards the server; a server that asks for none
                # lets anyone measure, so withholding ours would protect nothing. Say so.
                self.notice(f"server {self.where} does not require a token; the token given is unused")
            return
        if method != control.AUTH_METHOD:
            raise MeasurementError(f"server {self.where} asks for authentication {str(method)[:40]!r}, "
                                   f"which this udpbench does not speak: upgrade udpbench")
        if not self.token:
            with contextlib.suppress(OSError):
                self.channel.send({"type": "BYE"})
            raise TokenRequired(self.where)
        server_nonce = self.hello.get("nonce")
        if not control.valid_nonce(server_nonce):
            raise MeasurementError(f"server {self.where} sent no usable nonce to authenticate against")
        nonce = control.new_nonce()
        try:
            self.channel.send({"type": "AUTH", "nonce": nonce,
                               "mac": control.auth_mac(self.token, "client", server_nonce, nonce)})
            ok = self.channel.expect("AUTH_OK")
        except PeerError as exc:
            if str(exc) == control.AUTH_FAILED:
                raise UserError(f"{self.where}: {control.AUTH_FAILED}: the server holds another token "
                                f"(check the token given)") from None
            raise MeasurementError(f"server {self.where} refused: {exc}") from None
        except (ProtocolError, TimeoutError, OSError) as exc:
            raise MeasurementError(f"authenticating to {self.where} failed: {exc}") from None
        if not control.check_mac(self.token, "server", server_nonce, nonce, ok["mac"]):
            raise MeasurementError(f"{self.where}: {control.AUTH_FAILED}: the server could not prove "
                                   f"it holds the token")
        self.authenticated = True

    def notice(self, text: str) -> None:
        """Tell ``on_notice`` once per connection: a clamp or an unused token is worth knowing."""
        if text not in self._noticed:
            self._noticed.add(text)
            if self.on_notice is not None:
                self.on_notice(text)

    @property
    def where(self) -> str:
        return format_hostport(self.server_addr[0], self.port)

    def data_socket(self) -> socket.socket:
        """A UDP socket connected to the server's port, bound to the control connection's address."""
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.bind((self.local_addr, 0, *self._local_scope))
        sock.connect(self.server_addr)
        return sock

    def path_mtu(self) -> int:
        """The MTU the kernel holds for the route to the server (IP_MTU on a connected socket)."""
        with self.data_socket() as s:
            return sockopts.route_mtu(s) or 1500

    def _converse(self, msg: dict, answer: str) -> dict:
        try:
            self.channel.send(msg)
            return self.channel.expect(answer)
        except PeerError as exc:
            raise MeasurementError(f"server {self.where} refused: {exc}") from None
        except PeerClosed:
            raise MeasurementError(f"server {self.where} closed the control connection") from None
        except (ProtocolError, TimeoutError, OSError) as exc:
            raise MeasurementError(f"control channel to {self.where} failed: {exc}") from None

    def open_echo(self, session: int, duration_s: float = 0.0, client_port: int | None = None) -> dict:
        """Open an echo session: while it lasts, the server answers this client's PROBE and ECHO
        datagrams of ``session`` (and nobody else's). ``duration_s`` > 0 tells the server how long
        the control channel may stay silent meanwhile; ``client_port``, the port of the socket the
        datagrams come from, binds the session to it as well as to this address (docs/security.md).
        Returns the server's STARTED."""
        start = {"type": "START", "session": session, "mode": "echo"}
        if duration_s:
            start["duration_s"] = duration_s
        if client_port:
            start["client_port"] = client_port
        return self._converse(start, "STARTED")

    def close_echo(self, session: int) -> dict:
        """End an echo session; returns the server's REPORT (its echo counts)."""
        return self.checked(self._converse({"type": "STOP", "session": session}, "REPORT"), session)

    def status(self, session: int) -> dict:
        """The server's counts so far for a running blast session (an interim report)."""
        return self.checked(self._converse({"type": "STATUS", "session": session}, "STATUS"), session)

    def checked(self, counts: dict, session: int, sent: int | None = None) -> dict:
        """The server's REPORT or STATUS, checked as the server checks a START (protocol/report.py)."""
        return report_rules.checked(counts, session, sent, where=f"server {self.where}")

    def blast(self, size: int, duration: float, rate_bps: float | None, engine: str = "auto",
              rcvbuf: int | None = None, path_mtu: int | None = None, df: bool = False, *,
              interval: float | None = None, on_interval=None, stop: "_fast.StopFlag | None" = None) -> Row:
        """Send ``size``-byte datagrams for ``duration`` seconds and return the measured row.

        ``rate_bps`` counts UDP payload bits per second (like iperf3 ``-b``); None or 0 is as
        fast as the kernel takes them. ``engine`` is auto, send, mmsg or gso (engines.py). If a
        signal interrupts the blast, the row still comes back, marked ``interrupted``, after
        the server has reported.

        ``df`` sets Don't Fragment on every datagram (IP_PMTUDISC_DO): the kernel refuses a
        datagram larger than the path MTU it knows with EMSGSIZE instead of fragmenting it, and
        the row comes back ``sendable: False`` with that errno in ``send_error``.
        ``interval`` > 0 sends in slices of that many seconds and asks the server for its counts
        after each (``interval.py``); the row then holds ``intervals`` and ``on_interval(entry)``
        sees each as it completes. ``stop``: a ``_fast.StopFlag`` another thread may set to end
        the send loop early (from the main thread, Ctrl-C does that without one).
        """
        flow = self.start_blast(size, duration, rate_bps, engine, rcvbuf, path_mtu, df)
        try:
            flow.send(stop, interval=interval, on_interval=on_interval)
        finally:
            row = flow.finish()
        return row

    def start_blast(self, size: int, duration: float, rate_bps: float | None, engine: str = "auto",
                    rcvbuf: int | None = None, path_mtu: int | None = None, df: bool = False) -> "SenderSession":
        """Open a session on the server (START) and return its SenderSession, ready to send."""
        return SenderSession(self, size, duration, rate_bps, engine, rcvbuf, path_mtu, df)

    def _granted(self, started: dict, duration: float, rate_bps: float) -> tuple[float, float, list[str]]:
        """The duration and rate to use: the server's grant, never more than the user asked.

        A server without limits grants what was asked (or, being older, says nothing).
        """
        granted = started.get("granted")
        if not isinstance(granted, dict):
            return duration, rate_bps, []
        clamped = []
        g_duration, g_rate = granted.get("duration_s"), granted.get("rate_bps")
        if _positive(g_duration) and g_duration < duration:
            self.notice(f"server {self.where} clamped the duration to {g_duration:g} s (asked {duration:g} s)")
            duration = float(g_duration)
            clamped.append("duration_s")
        if _positive(g_rate) and (rate_bps == 0 or g_rate < rate_bps):
            asked = "max" if rate_bps == 0 else format_rate(rate_bps)
            rate_bps = float(g_rate)
            clamped.append("rate_bps")
            self.notice(f"server {self.where} clamped the rate to {format_rate(rate_bps)} (asked {asked})")
        return duration, rate_bps, clamped

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.channel.send({"type": "BYE"})
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SenderSession:
    """One session's datagrams: START on creation, ``send()`` (GIL released, any thread), then
    ``finish()`` (STOP, REPORT) for the row. Parallel streams are several Flows, one per
    control connection."""

    def __init__(self, client: Client, size: int, duration: float, rate_bps: float | None,
                 engine: str = "auto", rcvbuf: int | None = None, path_mtu: int | None = None,
                 df: bool = False):
        try:
            wire.check_size(size, client.v6)
        except wire.WireError as exc:
            raise UserError(f"{client.host}: {exc}") from None
        if rate_bps and rate_bps * duration < 8 * size:
            raise UserError(f"rate {format_rate(rate_bps)} for {duration:g} s is less than one {size}-byte "
                            "datagram: raise the rate or the duration")
        self.client, self.size, self.duration, self.rate_bps, self.df = client, size, duration, rate_bps, df
        self.session = secrets.randbits(64)
        self.sock = client.data_socket()
        try:
            sockopts.set_buffers(self.sock, sndbuf=4 << 20)
            if df:
                sockopts.set_pmtu_mode(self.sock, sockopts.PMTUDISC_DO)
            self.sender_mtu = sockopts.route_mtu(self.sock) or 1500  # where this kernel fragments
            self.mtu = path_mtu or self.sender_mtu
            # GSO segments must pass both this kernel and the path unfragmented.
            self.choice = engines.choose(engine, size, min(self.mtu, self.sender_mtu), client.v6,
                                         sockopts.gso_available(self.sock))
            start = {"type": "START", "session": self.session, "mode": "blast", "size": size,
                     "duration_s": duration, "rate_bps": rate_bps or 0, "engine": self.choice.engine,
                     "client_port": self.sock.getsockname()[1]}
            if rcvbuf:
                start["rcvbuf"] = rcvbuf
            self.clock_before = clock_samples.take(client)
            self.started = client._converse(start, "STARTED")
            # The server may grant less than asked (its limits); send what it granted.
            self.asked_duration, self.asked_rate = duration, rate_bps or 0.0
            self.duration, self.rate_bps, self.clamped = client._granted(self.started, duration,
                                                                         self.asked_rate)
        except BaseException:
            self.sock.close()
            raise
        self.tx: dict | None = None
        self.reports: IntervalReports | None = None
        self.sender_counters: dict = {}

    def send(self, stop: "_fast.StopFlag | None" = None, interval: float | None = None,
             on_interval=None) -> dict:
        """Run the send loop. From the main thread, Ctrl-C ends it early; from another thread,
        pass ``stop`` and set it instead (only the main thread sees signals)."""
        sock, size, session = self.sock, self.size, self.session
        rate_pps = (self.rate_bps / (8.0 * size)) if self.rate_bps else 0.0
        main = threading.current_thread() is threading.main_thread()  # only it sees signals
        before = kernel.snapshot(self.client.v6)
        # With DF, one datagram first: if the kernel refuses it (EMSGSIZE) the row is done,
        # rather than spinning through a whole duration of refused sends.
        first_error = _send_first(sock, session, size) if self.df else None
        if first_error == errno.EMSGSIZE:
            tx = nothing_sent(sock.fileno(), size, session, first_error)
        else:
            first = 1 if first_error == 0 else 0

            def send_slice(first_seq: int, seconds: float) -> dict:
                tx = _fast.send_datagrams(sock.fileno(), engines.ENGINES[self.choice.engine], size, session,
                                          first + first_seq, seconds, rate_pps, stop=stop, check_signals=main)
                if tx["gso_fallback_errno"] and self.choice.engine == "gso":
                    # Later slices go straight to mmsg; GSO sent everything before this point
                    # (not the DF datagram Python sent first).
                    self.choice = engines.fell_back(self.choice, tx["gso_fallback_errno"],
                                                    first_seq + tx["gso_sent"])
                tx["next_seq"] -= first  # sequence numbers as the slicer counts them
                if first_seq == 0:  # the DF datagram sent first belongs to the first slice
                    tx["sent"] += first
                    if first_error:
                        tx["errors"][first_error] = tx["errors"].get(first_error, 0) + 1
                return tx

            if interval:
                self.reports = IntervalReports(self.client, session, size, interval, on_interval)
                tx = self.reports.send(send_slice, self.duration)
            else:
                tx = send_slice(0, self.duration)
        learned = sockopts.route_mtu(sock)
        if learned and learned < self.sender_mtu:
            # An ICMP "fragmentation needed" arrived during the run: the kernel now fragments
            # (or refuses, with DF) at the smaller size.
            self.sender_mtu = learned
            self.mtu = min(self.mtu, learned)
        self.sender_counters = kernel.delta(before, kernel.snapshot(self.client.v6))
        self.tx = tx
        return tx

    def finish(self) -> Row:
        """STOP and REPORT; the row. Closes the data socket whatever happens."""
        try:
            tx = self.tx or nothing_sent(self.sock.fileno(), self.size, self.session)
            report = self.client._converse({"type": "STOP", "session": self.session, "sent": tx["sent"]},
                                           "REPORT")
            offset = clock_samples.over_run(self.clock_before, clock_samples.take(self.client),
                                            server_receives=True)
        finally:
            self.sock.close()
        self.client.checked(report, self.session, tx["sent"])
        row = make_row(self.client, self.size, self.choice, self.duration, self.rate_bps, tx, report,
                       self.sender_counters, self.mtu, self.sender_mtu, offset)
        row.rcvbuf = self.started.get("rcvbuf", 0)
        row.duration_requested_s = float(self.asked_duration)
        row.duration_granted_s = float(self.duration)
        row.rate_requested_bps = float(self.asked_rate)
        row.clamped = ",".join(self.clamped)
        row.authenticated = self.client.authenticated
        row.df = self.df
        row.sendable = tx["sent"] > 0 or not tx["errors"]
        row.send_error = "" if row.sendable else errno_name(max(tx["errors"], key=tx["errors"].get))
        row.session = self.session
        if tx["interrupt"] is not None:
            row.interrupted = True
            row.interrupt = tx["interrupt"]
        if self.reports is not None:
            row.intervals = self.reports.finish(report, tx["sent"])
        return row


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _send_first(sock: socket.socket, session: int, size: int) -> int:
    """Send sequence number 0 from Python: 0 if the kernel took it, else the errno."""
    try:
        sock.send(wire.datagram(wire.Kind.DATA, session, 0, size, time.time_ns()))
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0
