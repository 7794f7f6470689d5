"""The sending end of a measurement: control conversation, the blast, and the row it yields."""
from __future__ import annotations

import contextlib
import errno
import ipaddress
import math
import secrets
import socket
import sys
import time

from . import __version__, _fast, control, frag, kernel, sockopts, stats, wire
from .control import PeerClosed, PeerError, ProtocolError
from .errors import MeasurementError, UserError
from .interval import IntervalReports
from .server import DEFAULT_PORT, Server
from .units import format_rate

ENGINES = {"send": _fast.ENGINE_SEND, "mmsg": _fast.ENGINE_MMSG, "gso": _fast.ENGINE_GSO}
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


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def format_hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


class Client:
    """A control connection to one server, over which any number of measurements run."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, family: int | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S, token: str | None = None):
        """``token``: the shared secret to prove if the server asks; None takes $UDPBENCH_TOKEN, "" none."""
        self.host = host
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
            raise ServerAbsent(f"no udpbench server at {where}: start one there with "
                               f"`python -m udpbench serve --port {self.port}`") from None
        except (socket.timeout, TimeoutError):
            sock.close()
            raise ServerAbsent(f"no answer from {where} within {connect_timeout:g} s: is "
                               f"`python -m udpbench serve --port {self.port}` running there?") from None
        except OSError as exc:
            sock.close()
            raise ServerAbsent(f"cannot reach {where}: {exc.strerror}") from None
        self.channel = control.Channel(sock, timeout=REPORT_TIMEOUT_S)
        self.local_addr = sock.getsockname()[0]
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

    def _authenticate(self) -> None:
        """Prove the token if the server asks for one, and check the server's proof in turn."""
        method = self.hello.get("auth")
        if method is None:
            if self.token:
                # Decision: go on. The token guards the server; a server that asks for none
                # lets anyone measure, so withholding ours would protect nothing. Say so.
                self.notice(f"server {self.where} does not require a token; --token/UDPBENCH_TOKEN unused")
            return
        if method != control.AUTH_METHOD:
            raise MeasurementError(f"server {self.where} asks for authentication {str(method)[:40]!r}, "
                                   f"which this udpbench does not speak: upgrade udpbench")
        if not self.token:
            with contextlib.suppress(OSError):
                self.channel.send({"type": "BYE"})
            raise UserError(f"{self.where}: {control.NEED_TOKEN}")
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
                                f"(check --token or UDPBENCH_TOKEN)") from None
            raise MeasurementError(f"server {self.where} refused: {exc}") from None
        except (ProtocolError, TimeoutError, OSError) as exc:
            raise MeasurementError(f"authenticating to {self.where} failed: {exc}") from None
        if not control.check_mac(self.token, "server", server_nonce, nonce, ok["mac"]):
            raise MeasurementError(f"{self.where}: {control.AUTH_FAILED}: the server could not prove "
                                   f"it holds the token")
        self.authenticated = True

    def notice(self, text: str) -> None:
        """One line on stderr, once per connection: a clamp or an unused token is worth knowing."""
        if text not in self._noticed:
            self._noticed.add(text)
            print(f"udpbench: {text}", file=sys.stderr, flush=True)

    @property
    def where(self) -> str:
        return format_hostport(self.server_addr[0], self.port)

    def data_socket(self) -> socket.socket:
        """A UDP socket connected to the server's port, bound to the control connection's address."""
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        sock.bind((self.local_addr, 0))
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

    def status(self, session: int) -> dict:
        """The server's counts so far for a running blast session (an interim report)."""
        return self._converse({"type": "STATUS", "session": session}, "STATUS")

    def blast(self, size: int, duration: float, rate_bps: float | None, engine: str = "send",
              rcvbuf: int | None = None, path_mtu: int | None = None, df: bool = False, *,
              interval: float | None = None, on_interval=None) -> dict:
        """Send ``size``-byte datagrams for ``duration`` seconds and return the measured row.

        ``rate_bps`` counts UDP payload bits per second (like iperf3 ``-b``); None or 0 is as
        fast as the kernel takes them. If a signal interrupts the blast, the row still comes
        back, marked ``interrupted``, after the server has reported.

        ``df`` sets Don't Fragment on every datagram (IP_PMTUDISC_DO): the kernel refuses a
        datagram larger than the path MTU it knows with EMSGSIZE instead of fragmenting it, and
        the row comes back ``sendable: False`` with that errno in ``send_error``.
        ``interval`` > 0 sends in slices of that many seconds and asks the server for its counts
        after each (``interval.py``); the row then holds ``intervals`` and ``on_interval(entry)``
        sees each as it completes.
        """
        try:
            wire.check_size(size, self.v6)
        except wire.WireError as exc:
            raise UserError(f"{self.host}: {exc}") from None
        if engine not in ENGINES:
            raise UserError(f"unknown engine {engine!r}: choose from {', '.join(ENGINES)}")
        session = secrets.randbits(64)
        with self.data_socket() as sock:
            sockopts.set_buffers(sock, sndbuf=4 << 20)
            if df:
                sockopts.set_pmtu_mode(sock, sockopts.PMTUDISC_DO)
            sender_mtu = sockopts.route_mtu(sock) or 1500  # where this kernel fragments
            mtu = path_mtu or sender_mtu
            start = {"type": "START", "session": session, "mode": "blast", "size": size,
                     "duration_s": duration, "rate_bps": rate_bps or 0, "engine": engine,
                     "client_port": sock.getsockname()[1]}
            if rcvbuf:
                start["rcvbuf"] = rcvbuf
            started = self._converse(start, "STARTED")
            asked_duration, asked_rate = duration, rate_bps or 0.0
            duration, rate_bps, clamped = self._granted(started, duration, asked_rate)
            before = kernel.snapshot(self.v6)
            rate_pps = (rate_bps / (8.0 * size)) if rate_bps else 0.0
            # With DF, one datagram first: if the kernel refuses it (EMSGSIZE) the row is done,
            # rather than spinning through a whole duration of refused sends.
            first_error = _send_first(sock, session, size) if df else None
            if first_error == errno.EMSGSIZE:
                tx = _nothing_sent(first_error)
                reports = None
            else:
                first = 1 if first_error == 0 else 0

                def send_slice(first_seq: int, seconds: float) -> dict:
                    tx = _fast.send_datagrams(sock.fileno(), ENGINES[engine], size, session,
                                              first + first_seq, seconds, rate_pps)
                    tx["next_seq"] -= first  # sequence numbers as the slicer counts them
                    return tx

                reports = IntervalReports(self, session, size, interval, on_interval) if interval else None
                tx = reports.send(send_slice, duration) if reports is not None else send_slice(0, duration)
                tx["sent"] += first
                if first_error:
                    tx["errors"][first_error] = tx["errors"].get(first_error, 0) + 1
            sender_counters = kernel.delta(before, kernel.snapshot(self.v6))
            report = self._converse({"type": "STOP", "session": session, "sent": tx["sent"]}, "REPORT")
        row = make_row(self, size, engine, duration, rate_bps, tx, report, sender_counters, mtu, sender_mtu)
        row["rcvbuf"] = started.get("rcvbuf", 0)
        row["duration_requested_s"] = float(asked_duration)
        row["duration_granted_s"] = float(duration)
        row["rate_requested_bps"] = float(asked_rate)
        row["clamped"] = ",".join(clamped)
        row["authenticated"] = self.authenticated
        row["df"] = df
        row["sendable"] = tx["sent"] > 0 or not tx["errors"]
        row["send_error"] = "" if row["sendable"] else errno_name(max(tx["errors"], key=tx["errors"].get))
        if tx["interrupt"] is not None:
            row["interrupted"] = True
            row["_interrupt"] = tx["interrupt"]
        if reports is not None:
            row["intervals"] = reports.finish(report, tx["sent"])
        return row

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


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _send_first(sock: socket.socket, session: int, size: int) -> int:
    """Send sequence number 0 from Python: 0 if the kernel took it, else the errno."""
    try:
        sock.send(wire.datagram(wire.Kind.DATA, session, 0, size, time.time_ns()))
    except OSError as exc:
        return exc.errno or errno.EIO
    return 0


def _nothing_sent(err: int) -> dict:
    """What send_datagrams would report for a blast whose every datagram the kernel refused."""
    return {"sent": 0, "next_seq": 0, "errors": {err: 1}, "elapsed_ns": 0, "syscalls": 1, "batch": 1,
            "gap_min_ns": 0, "gap_max_ns": 0, "gap_mean_ns": 0.0, "gap_std_ns": 0.0,
            "target_gap_ns": 0.0, "schedule_resets": 0, "interrupt": None}


class ServerAbsent(UserError):
    """Nothing is listening where the user pointed udpbench."""


@contextlib.contextmanager
def connect(host: str, port: int = DEFAULT_PORT, family: int | None = None, embedded: bool = True,
            token: str | None = None):
    """A Client for ``host``; for a loopback host with no server listening, an embedded one.

    The embedded server listens on a free port of the same loopback address, holds the same
    token as the client (so the handshake is the one a real server runs) and is closed when
    the block ends. ``token`` as for ``Client``.
    """
    token = control.resolve_token() if token is None else token
    try:
        client = Client(host, port, family, token=token or "")
        server = None
    except ServerAbsent:
        fam, addr = resolve(host, port, family)
        if not (embedded and is_loopback(addr[0])):
            raise
        server = Server(addr[0], 0, token=token or None).start()
        try:
            client = Client(addr[0], server.port, fam, token=token or "")
        except BaseException:
            server.close()
            raise
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.close()


def make_row(client: Client, size: int, engine: str, duration: float, rate_bps: float | None,
             tx: dict, report: dict, sender_counters: dict, mtu: int, sender_mtu: int | None = None) -> dict:
    """One row: what was sent, what arrived, and what each number means per DESIGN.md."""
    elapsed = tx["elapsed_ns"] / 1e9 or duration
    sent = tx["sent"]
    received = report.get("received", 0)
    lost = sent - received
    try:
        packets = frag.fragment_sizes_on_path(size, sender_mtu or mtu, mtu, client.v6)
        fragments = len(packets)
        wire_per_datagram = frag.wire_bytes_of(packets)
    except ValueError:
        fragments, wire_per_datagram = 0, 0
    span_ns = report.get("max_transit_ns", 0) - report.get("min_transit_ns", 0)
    receiver_counters = report.get("kernel", {})
    causes = stats.attribute_loss(lost, sndbuf_errors=sender_counters.get("Udp.SndbufErrors", 0),
                                  socket_drops=report.get("socket_drops"),
                                  rcvbuf_errors=receiver_counters.get("Udp.RcvbufErrors", 0),
                                  reasm_fails=receiver_counters.get("Ip.ReasmFails", 0))
    return {
        "host": client.host,
        "address": client.server_addr[0],
        "port": client.port,
        "family": 6 if client.v6 else 4,
        "size": size,
        "engine": engine,
        "rate_target_bps": float(rate_bps or 0),
        "duration_s": elapsed,
        "sent": sent,
        "send_errors": int(sum(tx["errors"].values())),
        "send_errors_by_errno": {errno_name(e): n for e, n in tx["errors"].items()},
        "received": received,
        "duplicates": report.get("duplicates", 0),
        "reordered": report.get("reordered", 0),
        "late": report.get("late", 0),
        "lost": lost,
        "loss_ratio": lost / sent if sent else 0.0,
        **causes,
        "loss_bursts": report.get("gap_events", 0),
        "longest_loss_burst": report.get("max_gap", 0),
        "max_reorder_distance": report.get("max_reorder", 0),
        "tx_pps": sent / elapsed,
        "rx_pps": received / elapsed,
        "tx_bps": sent * size * 8 / elapsed,
        "goodput_bps": received * size * 8 / elapsed,
        "wire_bps": received * wire_per_datagram * 8 / elapsed,
        "jitter_ms": report.get("jitter_ms", 0.0),
        "delay_spread_ms": span_ns / 1e6 if received else 0.0,
        "path_mtu": mtu,
        "sender_mtu": sender_mtu or mtu,
        "fragments": fragments,
        "syscalls": tx["syscalls"],
        "batch": tx["batch"],
        "gap_mean_us": tx["gap_mean_ns"] / 1e3,
        "gap_std_us": tx["gap_std_ns"] / 1e3,
        "gap_max_us": tx["gap_max_ns"] / 1e3,
        "gap_target_us": tx["target_gap_ns"] / 1e3,
        "foreign": report.get("foreign", 0),
        "socket_drops": report.get("socket_drops") or 0,
        "sender_counters": sender_counters,
        "receiver_counters": receiver_counters,
        "drain_s": report.get("drain_s", 0.0),
    }


def errno_name(code: int) -> str:
    import errno as _errno

    return _errno.errorcode.get(code, str(code))
