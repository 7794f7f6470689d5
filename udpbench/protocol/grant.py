"""What a server grants a session, and how many replies an echo session may draw: pure rules.

Clamp what is merely too much (duration, rate, receive buffer), refuse what makes no sense
(negative, NaN, infinite). STARTED carries ``granted`` and ``clamped`` so a client can tell
its user; docs/security.md, "Limits", is the user's view of every rule here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from udpbench.protocol.control import ProtocolError

MAX_DURATION_S = 3600.0
SESSION_GRACE_S = 10.0  # past its granted duration a session ends, whatever the client sends
DEFAULT_RCVBUF = 8 << 20  # asked for when the client names none: a fast sender is not cut short
MAX_RCVBUF = 32 << 20  # a client cannot make the server pin more kernel memory than this a session
MAX_TRACE_DATAGRAMS = 1_000_000  # a traced session holds at most this many entries (33 bytes each)
MAX_CLIENT_RCVBUF = 256 << 20  # larger requests are nonsense, not merely too much
ECHO_DEFAULT_S = 60.0  # an echo session that names no duration (a path-MTU search) gets this
# Echo and probe replies of one session, when the server has no --max-rate: the project's
# default rate toward a LAN host (docs/decisions.md) and a packet rate no pinger needs more of.
ECHO_BUDGET_BPS = 100e6
ECHO_BUDGET_PPS = 10_000.0
BUDGET_BURST_S = 0.1  # a budget saves up this long: enough for a probe burst, not a flood


REVERSE_FORBIDDEN = "this server does not send datagrams to clients: reverse runs are forbidden there"


@dataclass(frozen=True)
class Limits:
    """What a server grants at most; every field is a server option of the same name."""

    max_duration: float = MAX_DURATION_S
    """Seconds a session may run; longer requests are clamped."""
    max_rate_bps: float = 0.0
    """Payload bits/s a blast session may send, and reply bits/s an echo session may draw; 0: none."""
    max_rcvbuf: int = MAX_RCVBUF
    """Bytes of receive buffer a session's socket may ask the kernel for."""
    session_grace: float = SESSION_GRACE_S
    """Seconds past the granted duration before a session is ended."""
    allow_reverse: bool = True
    """Whether the server sends a blast's datagrams to a client that asks (a reverse run)."""


def _number(start: dict, key: str, what: str) -> float:
    value = start.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ProtocolError(f"START {what} {value!r} is not a number")
    try:
        return float(value)
    except OverflowError:
        raise ProtocolError(f"START {what} is out of range") from None


def grant_blast(start: dict, limits: Limits) -> tuple[dict, list[str]]:
    """({duration_s, rate_bps}, names clamped) for a blast START; ``rate_bps`` 0 asks for "max"."""
    duration = _number(start, "duration_s", "duration")
    rate = _number(start, "rate_bps", "rate")
    if not (math.isfinite(duration) and duration > 0):
        raise ProtocolError(f"duration {start['duration_s']!r} s is not a positive number")
    if not (math.isfinite(rate) and rate >= 0):
        raise ProtocolError(f"rate {start['rate_bps']!r} bit/s is not 0 (as fast as possible) or positive")
    clamped = []
    if duration > limits.max_duration:
        duration = limits.max_duration
        clamped.append("duration_s")
    if limits.max_rate_bps and (rate == 0 or rate > limits.max_rate_bps):
        rate = limits.max_rate_bps
        clamped.append("rate_bps")
    return {"duration_s": duration, "rate_bps": rate}, clamped


def grant_echo(start: dict, limits: Limits) -> tuple[dict, list[str]]:
    """({duration_s}, names clamped) for an echo START: a duration above the limit is clamped."""
    if start.get("duration_s") in (None, 0):
        duration, clamped = ECHO_DEFAULT_S, []
    else:
        duration = _number(start, "duration_s", "echo duration")
        if not (math.isfinite(duration) and duration > 0):
            raise ProtocolError(f"echo duration {start['duration_s']!r} s is not a positive number")
        clamped = []
    if duration > limits.max_duration:
        duration = limits.max_duration
        if start.get("duration_s") not in (None, 0):
            clamped.append("duration_s")
    return {"duration_s": duration}, clamped


def receive_buffer(requested, limits: Limits) -> int:
    """The receive buffer to ask the kernel for: the client's wish, within the server's cap."""
    valid = isinstance(requested, int) and not isinstance(requested, bool) \
        and 0 < requested <= MAX_CLIENT_RCVBUF
    return min(requested if valid else DEFAULT_RCVBUF, limits.max_rcvbuf)


class ReplyBudget:
    """Token buckets for one session's replies: bits and datagrams a second, ``now`` passed in.

    ``rate_bps`` 0 takes the fixed budget. A reply is sent only if both buckets hold enough;
    what is refused is the caller's to count.
    """

    def __init__(self, rate_bps: float, now: float, pps: float = ECHO_BUDGET_PPS):
        self.rate_bps = rate_bps or ECHO_BUDGET_BPS
        self.pps = pps
        # The bit bucket always holds one largest datagram, so a slow budget still answers.
        self.bit_burst = max(self.rate_bps * BUDGET_BURST_S, 65535 * 8.0)
        self.packet_burst = max(self.pps * BUDGET_BURST_S, 1.0)
        self.bits, self.packets, self.stamp = self.bit_burst, self.packet_burst, now

    def take(self, size: int, now: float) -> bool:
        elapsed = max(0.0, now - self.stamp)
        self.stamp = now
        self.bits = min(self.bit_burst, self.bits + elapsed * self.rate_bps)
        self.packets = min(self.packet_burst, self.packets + elapsed * self.pps)
        need = size * 8.0
        if self.bits < need or self.packets < 1.0:
            return False
        self.bits -= need
        self.packets -= 1.0
        return True
