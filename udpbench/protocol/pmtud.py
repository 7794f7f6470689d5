"""Path-MTU search as sans-IO steppers: what both searches share, and the ICMP search (classic
PMTUD, RFC 1191 / RFC 8201). The echo search (RFC 8899) is in protocol/plpmtud.py. See docs/mtu.md.

A stepper owns no socket and reads no clock. The adapter (transport/prober.py) asks
``next_action(now)`` and does what it says: ``Send`` one probe, ``Wait`` until a time or until
something arrives, or stop at ``Done``. What arrives goes back in as ``on_ack(probe_id, now)``,
``on_error(error, now)`` (an ICMP error from the socket's error queue) and
``on_refused(probe_id, error, now)`` (the kernel refused the send). Events that arrive together
are fed together and then ``next_action`` is asked, so a batch is judged as one.

All sizes are IP packet sizes in bytes, IP header included, as MTUs are.
"""
from __future__ import annotations

import errno
import ipaddress
from dataclasses import dataclass, field

from udpbench.errors import errno_name
from udpbench.protocol import frag, wire

MAX_PROBES = 3  # RFC 8899 MAX_PROBES: tries per size before it counts as too big
INITIAL_TIMER_S = 1.0  # the probe timer until the first answer gives an RTT
MIN_TIMER_S = 0.2  # floor of the adaptive timer: covers scheduling noise on a busy host
PROBES_PER_ROUND = 12  # sizes probed at once by the echo search
MAX_ROUNDS = 60
SEARCH_LIMIT_S = 60.0  # a search that has not settled by then reports what it has
# Largest IP packets: IPv4's total length is 16 bits; IPv6's payload length excludes its header.
MAX_PACKET = {4: 65535, 6: 65535 + 40}
# Smallest probe the server acknowledges: the ack must not be larger than what it answers.
MIN_PROBE_PAYLOAD = wire.PROBE_ACK_SIZE
# Common MTUs in the order the echo search tries them: Ethernet and its tunnels first, then
# jumbo frames and the RFC 1191 plateaus (docs/mtu.md, "echo method").
COMMON_MTUS = (1500, 1280, 9000, 1492, 4470, 1480, 1476, 1472, 1460, 1450, 1440, 1420, 1400,
               1380, 1350, 2002, 4352, 8166, 17914, 32000, 1006, 576, 552, 508, 296)
# RFC 1191 plateaus: where to go next when a router reports no MTU (old routers send 0).
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 508, 296, 68)
ORIGIN_LOCAL = 1  # SO_EE_ORIGIN_LOCAL (linux/errqueue.h): the kernel itself refused


STOPPED = "stopped"  # a search's status when its caller ended it early


def floor_mtu(v6: bool) -> int:
    """The smallest MTU a path may have: 1280 for IPv6 (RFC 8200), 68 for IPv4 (RFC 791)."""
    return frag.MIN_MTU_IPV6 if v6 else frag.MIN_MTU_IPV4


def plateau_below(size: int) -> int:
    return next((p for p in PLATEAUS if p < size), PLATEAUS[-1])


def smallest_probe(v6: bool) -> int:
    return frag.header_overhead(v6) + MIN_PROBE_PAYLOAD


# --- what goes in and what comes out ---------------------------------------------------------

@dataclass
class IcmpError:
    """One entry of a socket's error queue (struct sock_extended_err and the offender)."""
    errno: int
    origin: int
    type: int
    code: int
    info: int  # for too big: the MTU the router reported
    offender: str | None
    probe_id: int | None  # from the quoted payload, when the ICMP quoted enough of it

    @property
    def too_big(self) -> bool:
        return self.errno == errno.EMSGSIZE

    @property
    def local(self) -> bool:
        return self.origin == ORIGIN_LOCAL

    @property
    def port_unreachable(self) -> bool:
        return self.errno == errno.ECONNREFUSED

    def describe(self) -> str:
        by = f" from {self.offender}" if self.offender else ""
        if self.too_big:
            return f"too big{by} (mtu {self.info})" if not self.local else f"too big for the interface (mtu {self.info})"
        return f"{errno_name(self.errno)}{by} (ICMP type {self.type} code {self.code})"


@dataclass(frozen=True)
class Send:
    """Send one probe: ``size`` IP bytes, tagged ``probe_id``; a companion is the small one."""
    probe_id: int
    size: int
    companion: bool = False


@dataclass(frozen=True)
class Wait:
    """Wait until ``until`` (the caller's clock) or until something arrives."""
    until: float


@dataclass(frozen=True)
class Done:
    result: object


@dataclass
class Probe:
    size: int
    sent_at: float
    companion: bool
    acked: bool = False
    refused: bool = False


class ProbeTimer:
    """How long to wait for a probe's answer: fixed if asked, else max(0.2 s, 3·SRTT), 1 s
    until the first sample. SRTT is smoothed as RFC 6298 has it; every probe id is sent once,
    so no sample is ambiguous."""

    def __init__(self, fixed: float | None = None):
        self.fixed = fixed
        self.srtt: float | None = None

    def sample(self, rtt: float) -> None:
        self.srtt = rtt if self.srtt is None else 0.875 * self.srtt + 0.125 * rtt

    @property
    def timeout(self) -> float:
        if self.fixed is not None:
            return self.fixed
        if self.srtt is None:
            return INITIAL_TIMER_S
        return max(MIN_TIMER_S, 3 * self.srtt)


class Stepper:
    """What both searches share: probe ids, the probes sent, the timer, the counts."""

    def __init__(self, now: float, v6: bool, timer: float | None, first_id: int = 1):
        self.v6 = v6
        self.timer = ProbeTimer(timer)
        self.probes: dict[int, Probe] = {}
        self.next_id = first_id
        self.started = now
        self.done: Done | None = None

    @property
    def sent(self) -> int:
        """Probes the kernel accepted, companions excluded."""
        return sum(1 for p in self.probes.values() if not p.companion and not p.refused)

    @property
    def companions(self) -> int:
        return sum(1 for p in self.probes.values() if p.companion and not p.refused)

    def _send(self, size: int, now: float, companion: bool = False) -> Send:
        probe_id = self.next_id
        self.next_id += 1
        self.probes[probe_id] = Probe(size, now, companion)
        return Send(probe_id, size, companion)

    def _answered(self, probe_id: int, now: float) -> Probe | None:
        """Mark a probe answered; the first answer to it is an RTT sample."""
        probe = self.probes.get(probe_id)
        if probe is not None and not probe.acked:
            probe.acked = True
            self.timer.sample(now - probe.sent_at)
        return probe

    def on_refused(self, probe_id: int, error: IcmpError, now: float) -> None:
        probe = self.probes.get(probe_id)
        if probe is not None:
            probe.refused = True
        error.probe_id = probe_id


# --- method A: ICMP ------------------------------------------------------------------------

@dataclass
class IcmpResult:
    mtu: int | None = None
    status: str = "inconclusive"  # confirmed | no-answer | silent | unreachable | below-floor | stopped
    detail: str = ""
    hops: list = field(default_factory=list)  # [{"from": address, "mtu": reported}]
    stalled_at: int | None = None
    probes: int = 0
    kernel_mtu: int | None = None  # IP_MTU after probing: what the kernel now holds
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"mtu": self.mtu, "status": self.status, "detail": self.detail, "hops": self.hops,
                "stalled_at": self.stalled_at, "probes": self.probes, "kernel_mtu": self.kernel_mtu,
                "elapsed_s": round(self.elapsed_s, 4)}


class IcmpSearch(Stepper):
    """Classic PMTUD: DF probes from the top down, following what routers report in ICMP
    "fragmentation needed" / "packet too big", until the target answers one (a PROBE_ACK from a
    udpbench server, or ICMP port unreachable from the target itself).

    First a small probe shows that answers come back at all, and gives the RTT.
    """

    def __init__(self, now: float, limit: int, floor: int, target: str, v6: bool,
                 max_probes: int = MAX_PROBES, timer: float | None = None, first_id: int = 1):
        super().__init__(now, v6, timer, first_id)
        self.limit, self.floor, self.max_probes = limit, floor, max_probes
        self.target = ipaddress.ip_address(target.split("%")[0])
        self.result = IcmpResult()
        self.phase = "small"  # then "search"
        self.size = smallest_probe(v6)
        self.tries = 0  # timeouts at this size
        self.attempts = 0  # search-phase probes, bounded
        self.current: int | None = None  # the probe waited on
        self.deadline = 0.0
        self.outcome: tuple[str, IcmpError | None] | None = None

    def _from_target(self, e: IcmpError) -> bool:
        try:
            return ipaddress.ip_address(e.offender) == self.target
        except (ValueError, TypeError):
            return False

    def on_ack(self, probe_id: int, now: float) -> None:
        self._answered(probe_id, now)
        if self.outcome is None and probe_id == self.current:
            self.outcome = ("answered", None)

    def on_error(self, e: IcmpError, now: float) -> None:
        if e.port_unreachable:  # a port unreachable answers a probe as an ack does
            self._answered(e.probe_id, now)
        if self.outcome is not None or self.current is None:
            return
        earlier = self.probes.get(e.probe_id)
        size = self.probes[self.current].size
        if e.too_big and not e.local and (earlier is None or earlier.size >= size):
            self.outcome = ("too-big", e)  # a late too-big for an earlier try of this size counts too
        elif e.probe_id not in (None, self.current):
            return  # about an earlier probe: already decided
        elif e.port_unreachable and self._from_target(e):
            self.outcome = ("answered", None)
        elif not e.too_big:
            self.outcome = ("fatal", e)  # unreachable, or a firewall on the way rejected it

    def on_refused(self, probe_id: int, error: IcmpError, now: float) -> None:
        super().on_refused(probe_id, error, now)
        if probe_id == self.current and self.outcome is None:
            self.outcome = ("too-big", error) if error.too_big else ("fatal", error)

    def next_action(self, now: float) -> Send | Wait | Done:
        while self.done is None:
            if self.current is None:
                action = self._send(self.size, now)
                self.current, self.outcome = action.probe_id, None
                self.deadline = now + self.timer.timeout
                return action
            if self.outcome is None and now < self.deadline:
                return Wait(self.deadline)
            outcome, self.outcome = self.outcome or ("timeout", None), None
            self.current = None
            self._decide(*outcome, now)
        return self.done

    def stop(self, now: float) -> None:
        """End the search here, without an answer (a caller's stop): ``next_action`` is Done."""
        self.result.mtu = None
        self._finish(now, STOPPED, "stopped before the search ended")

    def _finish(self, now: float, status: str, detail: str = "") -> None:
        self.result.status, self.result.detail = status, detail
        self.result.probes = self.sent
        self.result.elapsed_s = now - self.started
        self.done = Done(self.result)

    def _decide(self, outcome: str, err: IcmpError | None, now: float) -> None:
        if self.phase == "small":
            self.tries += 1
            if outcome == "timeout" and self.tries < self.max_probes:
                return
            if outcome == "fatal":
                return self._finish(now, "unreachable", err.describe())
            if outcome != "answered":
                return self._finish(now, "silent", f"no answer to {self.max_probes} small probes: ICMP port "
                                                   "unreachable is filtered, or something listens on that UDP port")
            self.phase, self.size, self.tries = "search", self.limit, 0
            return
        self.attempts += 1
        if outcome == "answered":
            self.result.mtu = self.size
            return self._finish(now, "confirmed")
        if outcome == "too-big":
            reported = err.info
            nxt = reported if 0 < reported < self.size else plateau_below(self.size)
            if not err.local:
                self.result.hops.append({"from": err.offender, "mtu": reported})
            if nxt < self.floor:
                self.result.stalled_at = self.size
                return self._finish(now, "below-floor",
                                    f"{err.describe()}: below the smallest MTU searched ({self.floor})")
            self.size, self.tries = nxt, 0
        elif outcome == "fatal":
            return self._finish(now, "unreachable", err.describe())
        else:
            self.tries += 1
            if self.tries >= self.max_probes:
                self.result.stalled_at = self.size
                return self._finish(now, "no-answer",
                                    f"{self.size}-byte probes vanished {self.tries} times with no ICMP too-big "
                                    f"while small probes are answered: possible black hole at or below {self.size}")
        if self.attempts >= 4 * MAX_ROUNDS:  # a bound on a path that keeps reporting new sizes
            self._finish(now, self.result.status)
