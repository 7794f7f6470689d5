"""Ping's retransmission timer, sans-IO: the RFC 6298 estimator, and one request's tries as a
stepper that takes ``now`` and says what to do next (transmit, wait, or give up). See
docs/ping.md. The adapter is transport/pinger.py; the tests drive this with a fake clock.
"""
from __future__ import annotations

from dataclasses import dataclass

from udpbench.errors import UserError

RTO_INITIAL_S = 1.0  # RFC 6298 (2.1): before the first RTT sample
# RFC 6298 (2.4) asks for a 1 s floor, written for the Internet of 2000; Linux TCP uses
# 200 ms. LAN round trips are 0.05-1 ms, so the floor only guards against the sender's own
# scheduling stalls: 20 ms is above those on a loaded host, and 10x below Linux TCP's.
RTO_MIN_S = 0.020
# The ceiling of the backoff: a request whose try at this timeout goes unanswered is given
# up. 2 s is where the classic example decided "the server seems to be down".
RTO_MAX_S = 2.0
CLOCK_GRANULARITY_S = 0.001  # G in RFC 6298: epoll timeouts are whole milliseconds


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


@dataclass(frozen=True)
class Transmit:
    """Send a try now and wait ``timeout`` for its reply; ``retry`` for every try after the first."""
    timeout: float
    retry: bool


@dataclass(frozen=True)
class Wait:
    until: float


@dataclass(frozen=True)
class Answered:
    pass


@dataclass(frozen=True)
class GiveUp:
    reason: str  # ceiling | deadline | too-big


class Backoff:
    """One request's tries: the first waits the current RTO, each retransmission twice the one
    before, up to ``maximum``; a try unanswered at the ceiling, or the deadline, gives it up.
    The RTO is not backed off across requests: each starts from the estimator's value."""

    def __init__(self, initial: float, maximum: float, deadline: float):
        self.timeout, self.maximum, self.deadline = initial, maximum, deadline
        self.expires: float | None = None  # the try in flight times out then
        self.tries = 0
        self.outcome: Answered | GiveUp | None = None

    def on_sent(self, now: float) -> None:
        self.tries += 1
        self.expires = now + self.timeout

    def on_too_big(self) -> None:
        """Don't-fragment and larger than the path MTU the kernel knows: no retry can make it fit."""
        self.outcome = GiveUp("too-big")

    def on_answered(self) -> None:
        if self.outcome is None:
            self.outcome = Answered()

    def next_action(self, now: float) -> Transmit | Wait | Answered | GiveUp:
        if self.outcome is not None:
            return self.outcome
        if self.expires is None:
            return Transmit(self.timeout, retry=self.tries > 0)
        if now < min(self.expires, self.deadline):
            return Wait(min(self.expires, self.deadline))
        if now >= self.deadline:
            self.outcome = GiveUp("deadline")
        elif self.timeout >= self.maximum:
            self.outcome = GiveUp("ceiling")
        else:
            self.timeout = min(self.timeout * 2, self.maximum)
            self.expires = None
            return Transmit(self.timeout, retry=True)
        return self.outcome
