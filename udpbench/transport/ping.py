"""`udpbench ping`: request and reply over UDP, with the retransmission rules of a real protocol.

The classic UDP client (a request, a timeout that doubles, "the server seems to be down"),
made into a measurement:

* The echo session is opened on the control channel (START mode "echo"); the server answers
  ECHO datagrams of that session only, and only to the control peer's address.
* Each request carries a random 64-bit request id (header ``seq``) and the send time
  (``tx_ns``); the reply echoes both. The id matches a reply to its request, so a stale or
  duplicated reply is counted as such and never taken for the current one; the echoed send
  time tells which try of a retransmitted request was answered, so RTT samples of
  retransmissions are unambiguous (the problem Karn's rule works around in TCP).
* The socket is connected: the kernel drops datagrams from any other address before they
  reach us (they cannot be counted here; see docs/ping.md).
* The timeout adapts to the measured RTT as RFC 6298 has it, with a floor suited to LANs,
  doubles on each retransmission of the same request, and gives up at a ceiling.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import secrets
import socket
import struct
import sys
import time

from udpbench.protocol import control
from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.transport.client import Client, format_hostport
from udpbench.errors import MeasurementError, UserError, errno_name
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.protocol.grant import MAX_DURATION_S
from udpbench.protocol.units import port_number, seconds_between

DEFAULT_COUNT = 5
DEFAULT_SIZE = 64
DEFAULT_INTERVAL_S = 1.0
MAX_COUNT = 100_000  # every request is kept for the summary: ~40 MB at most
MIN_INTERVAL_S = 0.001  # one request in flight at a time, so this cannot flood anyway
RTO_INITIAL_S = 1.0  # RFC 6298 (2.1): before the first RTT sample
# RFC 6298 (2.4) asks for a 1 s floor, written for the Internet of 2000; Linux TCP uses
# 200 ms. LAN round trips are 0.05-1 ms, so the floor only guards against the sender's own
# scheduling stalls: 20 ms is above those on a loaded host, and 10x below Linux TCP's.
RTO_MIN_S = 0.020
# The ceiling of the backoff: a request whose try at this timeout goes unanswered is given
# up. 2 s is where the classic example decided "the server seems to be down".
RTO_MAX_S = 2.0
CLOCK_GRANULARITY_S = 0.001  # G in RFC 6298: epoll timeouts are whole milliseconds
DOWN_AFTER = 2  # this many requests in a row given up: the server looks down, stop asking
LINGER_MAX_S = 1.0  # after the last request, wait at most this for replies still on the way
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("=qq")


class RtoEstimator:
    """RFC 6298 retransmission timeout: SRTT and RTTVAR from RTT samples.

    RTO = SRTT + max(G, 4 * RTTVAR), clamped to [minimum, maximum]; 1 s (``initial``) until
    the first sample. Samples from retransmitted tries are valid here, because the reply
    names the try it answers (its echoed send time).
    """

    ALPHA = 1 / 8
    BETA = 1 / 4
    K = 4

    def __init__(self, initial: float = RTO_INITIAL_S, minimum: float = RTO_MIN_S,
                 maximum: float = RTO_MAX_S, granularity: float = CLOCK_GRANULARITY_S):
        if not 0 < minimum <= initial <= maximum:
            raise UserError(f"RTO limits must satisfy 0 < min ({minimum:g} s) <= initial "
                            f"({initial:g} s) <= max ({maximum:g} s)")
        self.minimum, self.maximum, self.granularity = minimum, maximum, granularity
        self.srtt: float | None = None
        self.rttvar: float | None = None
        self.rto = initial

    def sample(self, rtt: float) -> float:
        if self.srtt is None:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:  # RTTVAR first: it uses the SRTT from before this sample (RFC 6298 2.3)
            self.rttvar = (1 - self.BETA) * self.rttvar + self.BETA * abs(self.srtt - rtt)
            self.srtt = (1 - self.ALPHA) * self.srtt + self.ALPHA * rtt
        rto = self.srtt + max(self.granularity, self.K * self.rttvar)
        self.rto = min(max(rto, self.minimum), self.maximum)
        return self.rto


@dataclasses.dataclass
class Try:
    """One transmission of a request: its send time (also its tag in the reply) and timeout."""

    tx_ns: int  # CLOCK_REALTIME at send; the reply echoes it
    sent_ns: int  # CLOCK_MONOTONIC at send
    timeout_s: float
    sent: bool = True  # False: the kernel refused it (see send_errors)
    replied: bool = False
    errno: int = 0  # why the kernel refused it


@dataclasses.dataclass
class Request:
    number: int  # 1, 2, 3... like ping's icmp_seq
    request_id: int  # random 64-bit, in the header's seq field
    tries: list[Try] = dataclasses.field(default_factory=list)
    outcome: str = "pending"  # answered | lost
    reason: str = ""  # why a request was lost: ceiling | deadline | interrupted
    rtt_s: float | None = None
    answered_try: int | None = None  # 1-based

    def public(self) -> dict:
        return {"seq": self.number, "id": f"{self.request_id:016x}", "outcome": self.outcome,
                "reason": self.reason or None, "tries": len(self.tries),
                "answered_try": self.answered_try,
                "rtt_ms": None if self.rtt_s is None else self.rtt_s * 1e3,
                "timeouts_ms": [round(t.timeout_s * 1e3, 3) for t in self.tries],
                # when each try went out, in ms after the first: the backoff as it happened
                "try_offsets_ms": [round((t.sent_ns - self.tries[0].sent_ns) / 1e6, 3) for t in self.tries]}


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Pinger:
    """Stop-and-wait echo over a connected UDP socket: one request in flight at a time.

    ``on_event(kind, **fields)`` hears every reply, retransmission, loss, stale and
    duplicate reply as it happens (the per-line output); ``run`` returns the summary.
    """

    def __init__(self, sock: socket.socket, session: int, size: int, estimator: RtoEstimator | None = None,
                 on_event=None):
        self.sock = sock
        self.session = session
        self.size = size
        self.rto = estimator or RtoEstimator()
        self.on_event = on_event or (lambda kind, **fields: None)
        self.requests: list[Request] = []
        self.by_id: dict[int, Request] = {}
        self.current: Request | None = None
        self.transmissions = 0
        self.replies = 0  # distinct tries answered, whenever the answer came
        self.stale = 0  # replies to a request already answered or given up
        self.late = 0  # ... of those, replies to a request given up
        self.duplicates = 0  # a second reply to the same try
        self.foreign = 0  # arrived on the socket but not a reply of this session
        self.refused = 0  # ICMP port unreachable reported on the socket (ECONNREFUSED)
        self.icmp_errors: dict[str, int] = {}  # every error the socket reported, by errno name
        self.send_errors: dict[str, int] = {}
        self.interrupted = False
        self.deadline_reached = False
        self.down = False
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
        self._cmsg_space = socket.CMSG_SPACE(TIMESPEC.size)

    # --- the socket ----------------------------------------------------------------------------

    def _send(self, request: Request, timeout_s: float) -> Try:
        tx_ns = time.time_ns()
        attempt = Try(tx_ns, time.monotonic_ns(), timeout_s)
        data = wire.datagram(wire.Kind.ECHO, self.session, request.request_id, self.size, tx_ns)
        try:
            self.sock.send(data)
            self.transmissions += 1
        except InterruptedError:
            attempt.sent = False
        except OSError as exc:
            attempt.sent = False
            attempt.errno = exc.errno
            name = errno_name(exc.errno)
            self.send_errors[name] = self.send_errors.get(name, 0) + 1
        request.tries.append(attempt)
        return attempt

    def _receive_until(self, until_ns: int, stop_when_answered: Request | None = None) -> None:
        """Handle every datagram that arrives before ``until_ns`` (monotonic)."""
        while True:
            if stop_when_answered is not None and stop_when_answered.outcome == "answered":
                return
            left = (until_ns - time.monotonic_ns()) / 1e9
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65536, self._cmsg_space)
            except (socket.timeout, BlockingIOError):
                return
            except InterruptedError:
                continue
            except OSError as exc:
                # An ICMP error for an earlier datagram (port unreachable: ECONNREFUSED; with
                # --df, fragmentation needed: EMSGSIZE; host unreachable...): that try goes
                # unanswered, and the error is counted.
                name = errno_name(exc.errno)
                self.icmp_errors[name] = self.icmp_errors.get(name, 0) + 1
                if exc.errno == errno.ECONNREFUSED:
                    self.refused += 1
                continue
            rx_mono = time.monotonic_ns()
            rx_real = None
            for level, kind, value in ancdata:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= TIMESPEC.size:
                    sec, nsec = TIMESPEC.unpack_from(value)
                    rx_real = sec * 1_000_000_000 + nsec
            self._handle(data, rx_mono, rx_real)

    def _handle(self, data: bytes, rx_mono: int, rx_real: int | None) -> None:
        try:
            header = wire.parse(data)
        except wire.WireError:
            self.foreign += 1
            return
        if header.kind != wire.Kind.ECHO_REPLY or header.session != self.session or len(data) != self.size:
            self.foreign += 1
            return
        request = self.by_id.get(header.seq)
        attempt = None
        if request is not None:
            attempt = next((t for t in request.tries if t.tx_ns == header.tx_ns and t.sent), None)
        if attempt is None:  # an id or send time we never used: forged or corrupted
            self.foreign += 1
            return
        number = request.tries.index(attempt) + 1
        rtt = (rx_mono - attempt.sent_ns) / 1e9
        if rx_real is not None:
            # The kernel's receive timestamp leaves out our own wakeup latency; trust it
            # unless the wall clock stepped between send and receive.
            kernel_rtt = (rx_real - attempt.tx_ns) / 1e9
            if 0 < kernel_rtt <= rtt:
                rtt = kernel_rtt
        if attempt.replied:
            self.duplicates += 1
            self.on_event("duplicate", request=request, try_number=number, rtt_s=rtt)
            return
        attempt.replied = True
        self.replies += 1
        if request is self.current and request.outcome == "pending":
            request.outcome = "answered"
            request.rtt_s = rtt
            request.answered_try = number
            self.rto.sample(rtt)
            self.on_event("reply", request=request, try_number=number, rtt_s=rtt, size=len(data))
            return
        self.stale += 1
        if request.outcome == "lost":
            self.late += 1
        self.on_event("stale", request=request, try_number=number, rtt_s=rtt)

    # --- the exchange --------------------------------------------------------------------------

    @staticmethod
    def _waited(request: Request) -> float:
        return (time.monotonic_ns() - request.tries[0].sent_ns) / 1e9

    def exchange(self, request: Request, deadline_ns: int) -> None:
        """Send ``request`` and retransmit it with a doubling timeout until answered or given up."""
        self.current = request
        timeout = self.rto.rto
        while True:
            attempt = self._send(request, timeout)
            if attempt.errno == errno.EMSGSIZE:
                # Don't-fragment and larger than the path MTU the kernel knows: no retry can
                # make it fit (the classic big_sender.py lesson).
                request.outcome, request.reason = "lost", "too-big"
                self.on_event("lost", request=request, waited_s=self._waited(request))
                return
            expires = attempt.sent_ns + int(timeout * 1e9)
            self._receive_until(min(expires, deadline_ns), stop_when_answered=request)
            if request.outcome == "answered":
                return
            if time.monotonic_ns() >= deadline_ns:
                request.outcome, request.reason = "lost", "deadline"
                self.deadline_reached = True
                self.on_event("lost", request=request, waited_s=self._waited(request))
                return
            if timeout >= self.rto.maximum:
                request.outcome, request.reason = "lost", "ceiling"
                self.on_event("lost", request=request, waited_s=self._waited(request))
                return
            timeout = min(timeout * 2, self.rto.maximum)
            self.on_event("retransmit", request=request, try_number=len(request.tries) + 1,
                          timeout_s=timeout)

    def run(self, count: int, interval: float, deadline: float) -> dict:
        start = time.monotonic_ns()
        deadline_ns = start + int(deadline * 1e9)
        given_up_in_a_row = 0
        next_send = start
        try:
            for number in range(1, count + 1):
                self._receive_until(min(next_send, deadline_ns))  # stale replies still count
                if time.monotonic_ns() >= deadline_ns:
                    self.deadline_reached = True
                    break
                request = Request(number, secrets.randbits(64))
                while request.request_id in self.by_id:
                    request.request_id = secrets.randbits(64)
                self.requests.append(request)
                self.by_id[request.request_id] = request
                sent_at = time.monotonic_ns()
                self.exchange(request, deadline_ns)
                next_send = sent_at + int(interval * 1e9)
                if request.outcome == "lost" and request.reason == "ceiling":
                    given_up_in_a_row += 1
                    if given_up_in_a_row >= DOWN_AFTER:
                        self.down = True
                        break
                else:
                    given_up_in_a_row = 0
            # Replies to retransmitted or given-up tries may still be on their way.
            if any(not t.replied and t.sent for r in self.requests for t in r.tries):
                linger = min(self.rto.rto, LINGER_MAX_S)
                self._receive_until(min(time.monotonic_ns() + int(linger * 1e9), deadline_ns))
        except KeyboardInterrupt:
            self.interrupted = True
            if self.current is not None and self.current.outcome == "pending":
                self.current.outcome, self.current.reason = "lost", "interrupted"
        elapsed = (time.monotonic_ns() - start) / 1e9
        return self.summary(elapsed)

    # --- the numbers ---------------------------------------------------------------------------

    def summary(self, elapsed: float) -> dict:
        sent = len(self.requests)
        answered = [r for r in self.requests if r.outcome == "answered"]
        received = len(answered)
        lost = sent - received
        rtts = [r.rtt_s * 1e3 for r in answered]
        histogram: dict[str, int] = {}
        for tries in sorted(len(r.tries) for r in answered):
            histogram[str(tries)] = histogram.get(str(tries), 0) + 1
        if lost:
            histogram["lost"] = lost
        if rtts:
            mean = sum(rtts) / len(rtts)
            mdev = math.sqrt(max(sum(x * x for x in rtts) / len(rtts) - mean * mean, 0.0))
            stats = {"rtt_min_ms": min(rtts), "rtt_avg_ms": mean, "rtt_max_ms": max(rtts), "rtt_mdev_ms": mdev,
                     "rtt_p50_ms": percentile(rtts, 50), "rtt_p90_ms": percentile(rtts, 90),
                     "rtt_p99_ms": percentile(rtts, 99)}
        else:
            stats = dict.fromkeys(("rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms",
                                   "rtt_p50_ms", "rtt_p90_ms", "rtt_p99_ms"))
        reasons = {r.reason for r in self.requests if r.outcome == "lost"}
        if received:
            verdict = "alive"
        elif self.interrupted or not sent:
            verdict = "unknown"
        elif reasons == {"too-big"}:
            verdict = "too-big"  # the server may be fine: the requests never left this host
        else:
            verdict = "down"
        if self.down:
            verdict = "down"
        return {
            "size": self.size,
            "sent": sent,
            "received": received,
            "lost": lost,
            "loss_ratio": lost / sent if sent else 0.0,
            "transmissions": self.transmissions,
            "retransmissions": sum(t.sent for r in self.requests for t in r.tries[1:]),
            "replies": self.replies,
            "datagram_loss_ratio": 1 - self.replies / self.transmissions if self.transmissions else 0.0,
            "stale": self.stale,
            "late": self.late,
            "duplicates": self.duplicates,
            "foreign": self.foreign,
            "refused": self.refused,
            "icmp_errors": dict(self.icmp_errors),
            "path_mtu": sockopts.route_mtu(self.sock),
            "send_errors": dict(self.send_errors),
            **stats,
            "srtt_ms": None if self.rto.srtt is None else self.rto.srtt * 1e3,
            "rttvar_ms": None if self.rto.rttvar is None else self.rto.rttvar * 1e3,
            "rto_ms": self.rto.rto * 1e3,
            "rto_min_ms": self.rto.minimum * 1e3,
            "rto_max_ms": self.rto.maximum * 1e3,
            "attempts": [len(r.tries) for r in self.requests],
            "attempts_histogram": histogram,
            "verdict": verdict,
            "deadline_reached": self.deadline_reached,
            "interrupted": self.interrupted,
            "elapsed_s": elapsed,
            "requests": [r.public() for r in self.requests],
        }


# --- the command ---------------------------------------------------------------------------------

def ping(host: str, port: int = DEFAULT_PORT, family: int | None = None, count: int = DEFAULT_COUNT,
         size: int = DEFAULT_SIZE, interval: float = DEFAULT_INTERVAL_S, deadline: float | None = None,
         estimator: RtoEstimator | None = None, on_event=None, df: bool = False,
         token: str | None = None) -> dict:
    """Open an echo session with the server at ``host`` and ping it; return the summary.

    ``df``: set don't-fragment (IP_PMTUDISC_DO) so a request larger than the path MTU is
    refused by the kernel (EMSGSIZE) or by a router (ICMP fragmentation needed) instead of
    being fragmented.
    """
    check_count(count)
    try:
        wire.check_size(size, v6=True)  # before connecting: the IPv4 limit is checked once resolved
    except wire.WireError as exc:
        raise UserError(str(exc)) from None
    estimator = estimator or RtoEstimator()
    if deadline is None:
        deadline = default_deadline(count, interval, estimator.maximum)
    on_event = on_event or (lambda kind, **fields: None)
    with Client(host, port, family, token=token) as client:
        try:
            wire.check_size(size, client.v6)
        except wire.WireError as exc:
            raise UserError(str(exc)) from None
        session = secrets.randbits(64)
        started = client.open_echo(session, duration_s=deadline)
        data_port = started.get("data_port", client.port)
        on_event("start", address=client.server_addr[0], port=data_port, session=session)
        with client.data_socket() as sock:
            if data_port != client.port:
                sock.connect((client.server_addr[0], data_port, *client.server_addr[2:]))
            if df:
                sockopts.set_pmtu_mode(sock, sockopts.PMTUDISC_DO)
            pinger = Pinger(sock, session, size, estimator, on_event)
            summary = pinger.run(count, interval, deadline)
        try:
            report = client.close_echo(session)
        except MeasurementError as exc:  # what was measured stands; say what is missing
            report = {"error": str(exc)}
    head = {"host": host, "address": client.server_addr[0], "port": data_port,
            "family": 6 if client.v6 else 4, "count": count, "interval_s": interval, "deadline_s": deadline,
            "df": df}
    server = {k: v for k, v in report.items() if k.startswith("echo_") or k in ("drop", "error")}
    return {**head, **summary, "server": server}


def check_count(count: int) -> None:
    if not 1 <= count <= MAX_COUNT:
        raise UserError(f"--count {count} must be between 1 and {MAX_COUNT}")


def default_deadline(count: int, interval: float, rto_max: float = RTO_MAX_S) -> float:
    """Time for every request at its interval plus room for a few backoffs, at most an hour."""
    return min(count * interval + 5 * rto_max, MAX_DURATION_S)


def add_parser(commands) -> None:

    p = commands.add_parser(
        "ping", help="request/reply over UDP: RTT, loss and retransmissions, like ping",
        description="Send ECHO requests to a udpbench server one at a time and time the replies. "
                    "Each request has a random id; an unanswered one is retransmitted with a "
                    "doubling timeout (RFC 6298 RTO, 20 ms floor) until a ceiling, then given up.")
    p.add_argument("host", metavar="HOST")
    p.add_argument("-c", "--count", type=int, default=DEFAULT_COUNT, metavar="N",
                   help=f"requests to send (default {DEFAULT_COUNT})")
    p.add_argument("-s", "--size", type=int, default=DEFAULT_SIZE, metavar="N",
                   help=f"UDP payload bytes of each request and reply (default {DEFAULT_SIZE})")
    p.add_argument("-i", "--interval", type=seconds_between("--interval", MIN_INTERVAL_S, 3600.0),
                   default=DEFAULT_INTERVAL_S, metavar="S",
                   help=f"seconds from one request to the next (default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("-w", "--deadline", type=seconds_between("--deadline", 0.01, MAX_DURATION_S), default=None,
                   metavar="S", help="stop after this many seconds, whatever is left "
                                     "(default: count x interval + 5 x the RTO ceiling, at most 1 hour)")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET, help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only")
    p.add_argument("--rto-initial", type=seconds_between("--rto-initial", 0.001, 60.0), default=RTO_INITIAL_S,
                   metavar="S", help=f"timeout before the first RTT sample (default {RTO_INITIAL_S:g}, RFC 6298)")
    p.add_argument("--rto-min", type=seconds_between("--rto-min", 0.001, 60.0), default=RTO_MIN_S, metavar="S",
                   help=f"floor of the adaptive timeout (default {RTO_MIN_S:g}: a LAN floor)")
    p.add_argument("--rto-max", type=seconds_between("--rto-max", 0.001, 60.0), default=RTO_MAX_S, metavar="S",
                   help=f"ceiling of the backoff: a request unanswered at this timeout is given up "
                        f"(default {RTO_MAX_S:g})")
    p.add_argument("--df", action="store_true",
                   help="don't fragment: a request larger than the path MTU fails (EMSGSIZE) "
                        "instead of being fragmented, like ping -M do")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout, nothing else")
    control.add_token_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:

    check_count(args.count)
    estimator = RtoEstimator(args.rto_initial, args.rto_min, args.rto_max)
    printer = None if (args.quiet or args.json) else LinePrinter(args.host, args.size, args.count)
    result = ping(args.host, args.port, args.family, args.count, args.size, args.interval, args.deadline,
                  estimator, printer, df=args.df, token=control.token_of(args))
    if args.json:
        print(json.dumps(result))
    else:
        print(summary_text(result), flush=True)
    if result["interrupted"]:
        return 130
    return 0 if result["verdict"] == "alive" else 1


class LinePrinter:
    """A line per reply, retransmission and loss, as they happen, like ping."""

    def __init__(self, host: str, size: int, count: int, file=None):
        self.host, self.size, self.count = host, size, count
        self.file = file or sys.stdout

    def __call__(self, kind: str, request: Request | None = None, **f) -> None:
        if kind == "start":
            print(f"UDPBENCH PING {self.host} ({format_hostport(f['address'], f['port'])}): {self.size} bytes "
                  f"of UDP payload, {self.count} request(s), session {f['session']:016x}",
                  file=self.file, flush=True)
            return
        seq = f"seq={request.number}"
        if kind == "reply":
            line = (f"{f['size']} bytes from {self.host}: {seq} id={request.request_id:016x} "
                    f"try={f['try_number']} time={f['rtt_s'] * 1e3:.3f} ms")
        elif kind == "retransmit":
            last = request.tries[-1].timeout_s
            line = (f"{seq}: no reply within {last * 1e3:.0f} ms, try {f['try_number']} "
                    f"waits {f['timeout_s'] * 1e3:.0f} ms")
        elif kind == "lost":
            waited = f["waited_s"]
            tries = len(request.tries)
            why = {"ceiling": f"the {request.tries[-1].timeout_s * 1e3:.0f} ms ceiling was reached",
                   "deadline": "the deadline was reached",
                   "too-big": "EMSGSIZE: larger than the path MTU and not to be fragmented (--df)"
                   }.get(request.reason, request.reason)
            line = (f"{seq}: no reply after {tries} {'try' if tries == 1 else 'tries'} ({waited:.3f} s): "
                    f"{why}; request given up")
        elif kind == "stale":
            state = "given up" if request.outcome == "lost" else "already answered"
            line = (f"{seq}: stale reply to try {f['try_number']} ({state}), "
                    f"{f['rtt_s'] * 1e3:.3f} ms after it was sent: not taken")
        elif kind == "duplicate":
            line = f"{seq}: duplicate reply to try {f['try_number']}: not taken"
        else:
            return
        print(line, file=self.file, flush=True)


def _by_errno(counts: dict) -> str:
    return " ".join(f"{name} {n}" for name, n in counts.items()) if counts else "0"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_text(r: dict) -> str:
    hist = ", ".join(f"{v} answered in {k} {'try' if k == '1' else 'tries'}"
                     for k, v in r["attempts_histogram"].items() if k != "lost")
    if r["lost"]:
        hist += f"{'; ' if hist else ''}{r['lost']} given up"
    lines = [
        f"--- {r['host']} ({format_hostport(r['address'], r['port'])}) udpbench ping statistics ---",
        f"{r['sent']} requests sent, {r['received']} received, {100 * r['loss_ratio']:.3g}% request loss, "
        f"time {r['elapsed_s'] * 1e3:.0f} ms",
        f"{r['transmissions']} datagrams sent ({r['retransmissions']} retransmissions), {r['replies']} "
        f"answered: {100 * r['datagram_loss_ratio']:.3g}% datagram round-trip loss",
        f"requests: {hist or '-'}",
        f"stale {r['stale']} (late {r['late']}), duplicates {r['duplicates']}, foreign {r['foreign']}, "
        f"ICMP errors {_by_errno(r['icmp_errors'])}, send errors {_by_errno(r['send_errors'])}"
        + (f", path MTU {r['path_mtu']}" if r.get("path_mtu") else ""),
        f"rtt min/avg/max/mdev = {_ms(r['rtt_min_ms'])}/{_ms(r['rtt_avg_ms'])}/{_ms(r['rtt_max_ms'])}/"
        f"{_ms(r['rtt_mdev_ms'])} ms",
        f"rtt p50/p90/p99 = {_ms(r['rtt_p50_ms'])}/{_ms(r['rtt_p90_ms'])}/{_ms(r['rtt_p99_ms'])} ms",
        f"rto srtt/rttvar/rto = {_ms(r['srtt_ms'])}/{_ms(r['rttvar_ms'])}/{_ms(r['rto_ms'])} ms "
        f"(floor {r['rto_min_ms']:g}, ceiling {r['rto_max_ms']:g})",
    ]
    server = r.get("server") or {}
    if "echo_requests" in server:
        lines.append(f"server: {server['echo_requests']} echo requests received, {server['echo_answered']} "
                     f"answered, {server['echo_dropped']} dropped on purpose (--drop {server.get('drop', 0):g})")
    elif "error" in server:
        lines.append(f"server report missing: {server['error']}")
    if r["verdict"] == "down":
        why = ""
        if r["refused"]:
            why = f"; ICMP port unreachable came back {r['refused']} time(s): nothing listens on that UDP port?"
        lines.append(f"The server looks down: {r['received']} of {r['sent']} request(s) answered, the last "
                     f"ones unanswered up to the {r['rto_max_ms'] / 1e3:g} s ceiling (or UDP is filtered "
                     f"on the way){why}")
    if r["verdict"] == "too-big":
        lines.append(f"No request could be sent: {r['size']} bytes with don't-fragment exceed the path MTU "
                     f"{r.get('path_mtu')}")
    if r["deadline_reached"]:
        lines.append(f"(stopped at the {r['deadline_s']:g} s deadline)")
    if r["interrupted"]:
        lines.append("(interrupted: the numbers cover the part that ran)")
    return "\n".join(lines)
