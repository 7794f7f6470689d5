"""The blocking adapter of ping: stop-and-wait echo over a connected UDP socket, one request in
flight at a time, its tries timed by protocol/rto.py. See docs/ping.md.

* Each request carries a random 64-bit request id (header ``seq``) and the send time
  (``tx_ns``); the reply echoes both. The id matches a reply to its request, so a stale or
  duplicated reply is counted as such and never taken for the current one; the echoed send
  time tells which try of a retransmitted request was answered, so RTT samples of
  retransmissions are unambiguous (the problem Karn's rule works around in TCP).
* The socket is connected: the kernel drops datagrams from any other address before they
  reach us (they cannot be counted here; see docs/ping.md).
"""
from __future__ import annotations

import dataclasses
import errno
import math
import secrets
import socket
import struct
import time

from udpbench.errors import errno_name
from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.protocol.rto import Answered, Backoff, GiveUp, RtoEstimator, Transmit

STOP_POLL_S = 0.05  # with a stop event, waits are cut into slices this long to notice it
DOWN_AFTER = 2  # this many requests in a row given up: the server looks down, stop asking
LINGER_MAX_S = 1.0  # after the last request, wait at most this for replies still on the way
SCM_TIMESTAMPNS = getattr(socket, "SCM_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("=qq")


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


class _Stopped(Exception):
    """The caller's stop event was set: unwinds a run as Ctrl-C would."""


class Pinger:
    """Stop-and-wait echo over a connected UDP socket: one request in flight at a time.

    ``on_event(kind, **fields)`` hears every reply, retransmission, loss, stale and
    duplicate reply as it happens (the per-line output); ``run`` returns the summary.
    """

    def __init__(self, sock: socket.socket, session: int, size: int, estimator: RtoEstimator | None = None,
                 on_event=None, stop=None):
        """``stop`` (a threading.Event), once set, ends the run within STOP_POLL_S as Ctrl-C does."""
        self.sock = sock
        self.stop = stop
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
            if self.stop is not None and self.stop.is_set():
                raise _Stopped
            left = (until_ns - time.monotonic_ns()) / 1e9
            if left <= 0:
                return
            self.sock.settimeout(left if self.stop is None else min(left, STOP_POLL_S))
            try:
                data, ancdata, _flags, _addr = self.sock.recvmsg(65536, self._cmsg_space)
            except (socket.timeout, BlockingIOError):
                if self.stop is not None and time.monotonic_ns() < until_ns:
                    continue  # a slice ended, not the wait
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
        backoff = Backoff(self.rto.rto, self.rto.maximum, deadline_ns / 1e9)
        while True:
            action = backoff.next_action(time.monotonic_ns() / 1e9)
            if isinstance(action, Transmit):
                if action.retry:
                    self.on_event("retransmit", request=request, try_number=len(request.tries) + 1,
                                  timeout_s=action.timeout)
                attempt = self._send(request, action.timeout)
                if attempt.errno == errno.EMSGSIZE:
                    # Don't-fragment and larger than the path MTU the kernel knows: no retry can
                    # make it fit (the classic big_sender.py lesson).
                    backoff.on_too_big()
                else:
                    backoff.on_sent(attempt.sent_ns / 1e9)
            elif isinstance(action, Answered):
                return
            elif isinstance(action, GiveUp):
                request.outcome, request.reason = "lost", action.reason
                if action.reason == "deadline":
                    self.deadline_reached = True
                self.on_event("lost", request=request, waited_s=self._waited(request))
                return
            else:
                self._receive_until(int(action.until * 1e9), stop_when_answered=request)
                if request.outcome == "answered":
                    backoff.on_answered()

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
        except (KeyboardInterrupt, _Stopped):
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
