"""Clock offset between two hosts from NTP-style four-timestamp samples (RFC 5905, 8).

A sample is (t1, t2, t3, t4) in ns: the client sends at t1 (its clock), the server receives
at t2 and answers at t3 (its clock), the client receives at t4. Then

    offset = ((t2 - t1) + (t3 - t4)) / 2      server clock minus client clock
    delay  = (t4 - t1) - (t3 - t2)            the round trip, less the server's turnaround

If the two directions took different times, the true offset lies anywhere within
``offset ± delay / 2``: that half round trip is the uncertainty. The sample with the
smallest delay has the smallest uncertainty, so it is the one taken (RFC 5905's clock
filter does the same). Pure functions: no sockets, no clock reading.
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

# owd_basis values: how a row's one-way delays relate to the true ones.
SAME_HOST = "same-host"    # both ends read one clock: absolute and exact
ESTIMATED = "estimated"    # corrected by an estimated offset, within clock_error_us
RELATIVE = "relative"      # offset unknown or too uncertain: delays less the smallest one

# An absolute delay means nothing when the offset is less certain than the delay itself is
# small; above this uncertainty the percentiles are given relative to their minimum.
MAX_USEFUL_ERROR_NS = 1_000_000


class Sample(NamedTuple):
    t1: int
    t2: int
    t3: int
    t4: int

    @property
    def offset_ns(self) -> float:
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2

    @property
    def delay_ns(self) -> int:
        return (self.t4 - self.t1) - (self.t3 - self.t2)


class Estimate(NamedTuple):
    offset_ns: float   # server clock minus client clock
    error_ns: float    # the true offset is within offset_ns ± error_ns
    at_ns: int         # client time of the sample it came from, for drift


def estimate(samples: Sequence[Sample]) -> Estimate:
    """The offset from the sample with the smallest round trip, and its uncertainty."""
    usable = [s for s in samples if s.delay_ns >= 0]
    if not usable:
        raise ValueError("no clock sample with a non-negative round trip")
    best = min(usable, key=lambda s: s.delay_ns)
    return Estimate(best.offset_ns, best.delay_ns / 2, (best.t1 + best.t4) // 2)


def drift_ppm(before: Estimate, after: Estimate) -> float:
    """How fast the offset moved between two estimates, in parts per million."""
    span = after.at_ns - before.at_ns
    if span <= 0:
        raise ValueError("the second estimate must be later than the first")
    return (after.offset_ns - before.offset_ns) / span * 1e6


def combine(before: Estimate, after: Estimate | None = None) -> Estimate:
    """One offset for a run between two estimates: their mean, with an uncertainty that covers
    both estimates' own errors and the drift between them (half the change)."""
    if after is None:
        return before
    offset = (before.offset_ns + after.offset_ns) / 2
    error = max(before.error_ns, after.error_ns) + abs(after.offset_ns - before.offset_ns) / 2
    return Estimate(offset, error, (before.at_ns + after.at_ns) // 2)


def basis(same_clock: bool, estimate_: Estimate | None,
          max_error_ns: float = MAX_USEFUL_ERROR_NS) -> str:
    """Which owd_basis a row can claim."""
    if same_clock:
        return SAME_HOST
    if estimate_ is not None and estimate_.error_ns <= max_error_ns:
        return ESTIMATED
    return RELATIVE
