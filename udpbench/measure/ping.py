"""`ping` as a library call: request and reply over UDP with the retransmission rules of a real
protocol (RFC 6298 timer, doubling backoff, a ceiling), against a udpbench server's echo
session. See docs/ping.md."""
from __future__ import annotations

import dataclasses
import secrets
import threading
from dataclasses import dataclass, field

from udpbench.errors import MeasurementError, UserError
from udpbench.linux import sockopts
from udpbench.measure.embedded import connect
from udpbench.protocol import wire
from udpbench.protocol.rto import RTO_INITIAL_S, RTO_MAX_S, RTO_MIN_S, RtoEstimator
from udpbench.transport.pinger import Pinger
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.protocol.grant import MAX_DURATION_S

DEFAULT_COUNT = 5
DEFAULT_SIZE = 64
DEFAULT_INTERVAL_S = 1.0
MAX_COUNT = 100_000  # every request is kept for the summary: ~40 MB at most
MIN_INTERVAL_S = 0.001  # one request in flight at a time, so this cannot flood anyway


@dataclass
class PingOptions:
    """What to send and how long to wait."""

    port: int = DEFAULT_PORT
    """The udpbench server's port."""
    family: int | None = None
    """``socket.AF_INET`` or ``AF_INET6`` to use only that family; None: whichever resolves first."""
    count: int = DEFAULT_COUNT
    """Requests to send, 1 to 100000."""
    size: int = DEFAULT_SIZE
    """UDP payload bytes of each request and reply."""
    interval: float = DEFAULT_INTERVAL_S
    """Seconds from one request to the next."""
    deadline: float | None = None
    """Stop after this many seconds; None: count x interval + 5 x the RTO ceiling, at most an hour."""
    rto_initial: float = RTO_INITIAL_S
    """The timeout before the first RTT sample (RFC 6298)."""
    rto_min: float = RTO_MIN_S
    """The floor of the adaptive timeout."""
    rto_max: float = RTO_MAX_S
    """The ceiling of the backoff: a request unanswered at this timeout is given up."""
    df: bool = False
    """Don't fragment: a request larger than the path MTU fails (EMSGSIZE) instead."""
    token: str | None = None
    """For a server that requires one; None: $UDPBENCH_TOKEN."""


@dataclass
class PingResult:
    """The summary of a ping run; ``as_dict()`` gives the JSON fields of docs/ping.md."""

    host: str
    address: str
    port: int
    family: int
    count: int
    interval_s: float
    deadline_s: float  # the deadline in force: the server's grant when it clamped what was asked
    df: bool
    size: int
    sent: int
    received: int
    lost: int
    loss_ratio: float
    transmissions: int
    retransmissions: int
    replies: int
    datagram_loss_ratio: float
    stale: int
    late: int
    duplicates: int
    foreign: int
    refused: int
    icmp_errors: dict
    path_mtu: int | None
    send_errors: dict
    rtt_min_ms: float | None
    rtt_avg_ms: float | None
    rtt_max_ms: float | None
    rtt_mdev_ms: float | None
    rtt_p50_ms: float | None
    rtt_p90_ms: float | None
    rtt_p99_ms: float | None
    srtt_ms: float | None
    rttvar_ms: float | None
    rto_ms: float
    rto_min_ms: float
    rto_max_ms: float
    attempts: list
    attempts_histogram: dict
    verdict: str  # alive | down | too-big | unknown
    deadline_reached: bool
    interrupted: bool
    elapsed_s: float
    requests: list
    server: dict = field(default_factory=dict)  # the server's echo counts, or {"error": why missing}
    deadline_asked_s: float | None = None  # set only when the server granted less than this

    def as_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if self.deadline_asked_s is None:
            del out["deadline_asked_s"]
        return out


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise UserError(f"count {count} must be between 1 and {MAX_COUNT}")


def default_deadline(count: int, interval: float, rto_max: float = RTO_MAX_S) -> float:
    """Time for every request at its interval plus room for a few backoffs, at most an hour."""
    return min(count * interval + 5 * rto_max, MAX_DURATION_S)


def ping(host: str, options: PingOptions | None = None, *, on_reply=None, on_event=None, on_notice=None,
         stop: threading.Event | None = None, **fields) -> PingResult:
    """Open an echo session with the server at ``host`` (an embedded one for a loopback host where
    none listens) and ping it. Options as a PingOptions or as its fields by keyword.

    ``on_reply(request, try_number, rtt_s)`` hears each answer as it comes; ``on_event(kind,
    **fields)`` hears every event (start, reply, retransmit, lost, stale, duplicate);
    ``on_notice(text)`` hears what the server changed (a clamped duration). ``stop``, set from
    another thread, ends the pings within a twentieth of a second, as Ctrl-C would: the result
    has ``interrupted`` true and counts what was answered.
    """
    opts = dataclasses.replace(options or PingOptions(), **fields)
    check_count(opts.count)
    try:
        wire.check_size(opts.size, v6=True)  # before connecting: the IPv4 limit is checked once resolved
    except wire.WireError as exc:
        raise UserError(str(exc)) from None
    estimator = RtoEstimator(opts.rto_initial, opts.rto_min, opts.rto_max)
    deadline = opts.deadline
    if deadline is None:
        deadline = default_deadline(opts.count, opts.interval, estimator.maximum)
    asked = None

    def events(kind, **f):
        if on_reply is not None and kind == "reply":
            on_reply(f["request"], f["try_number"], f["rtt_s"])
        if on_event is not None:
            on_event(kind, **f)

    with connect(host, opts.port, opts.family, token=opts.token) as client:
        try:
            wire.check_size(opts.size, client.v6)
        except wire.WireError as exc:
            raise UserError(str(exc)) from None
        session = secrets.randbits(64)
        sock = client.data_socket()  # first: the session is bound to its port (docs/security.md)
        try:
            started = client.open_echo(session, duration_s=deadline, client_port=sock.getsockname()[1])
        except BaseException:
            sock.close()
            raise
        granted = (started.get("granted") or {}).get("duration_s") if isinstance(started.get("granted"), dict) \
            else None
        if isinstance(granted, (int, float)) and 0 < granted < deadline:
            # the server clamps an echo session to its own limit: ping within it, and say so
            asked, deadline = deadline, float(granted)
            if on_notice is not None:
                on_notice(f"server {client.where} clamped the echo session to {deadline:g} s (asked {asked:g} s)")
        data_port = started.get("data_port", client.port)
        events("start", address=client.server_addr[0], port=data_port, session=session)
        with sock:
            if data_port != client.port:
                sock.connect((client.server_addr[0], data_port, *client.server_addr[2:]))
            if opts.df:
                sockopts.set_pmtu_mode(sock, sockopts.PMTUDISC_DO)
            summary = Pinger(sock, session, opts.size, estimator, events, stop).run(opts.count, opts.interval, deadline)
        try:
            report = client.close_echo(session)
        except MeasurementError as exc:  # what was measured stands; say what is missing
            report = {"error": str(exc)}
        address, family = client.server_addr[0], 6 if client.v6 else 4
    server = {k: v for k, v in report.items() if k.startswith("echo_") or k in ("drop", "error")}
    return PingResult(host=host, address=address, port=data_port, family=family, count=opts.count,
                      interval_s=opts.interval, deadline_s=deadline, df=opts.df, **summary, server=server,
                      deadline_asked_s=asked)
