"""Clock samples over the control channel: NTP-style four-timestamp exchanges (CLOCK).

``protocol/clock.py`` turns the samples into an offset and its uncertainty; this module only
times the exchanges. A flow takes samples before its START and after its REPORT, so the
estimate covers the run and the change between the two is the clocks' drift.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from udpbench.protocol import clock
from udpbench.protocol.control import FEATURE_CLOCK, ProtocolError

SAMPLES = 8  # the smallest round trip of 8 is within a few us of the path's on a quiet LAN


def offers_clock(client) -> bool:
    """Whether the server's HELLO listed clock samples (an older server does not know CLOCK)."""
    features = client.hello.get("features")
    return isinstance(features, list) and FEATURE_CLOCK in features


def take(client, count: int = SAMPLES) -> clock.Estimate | None:
    """The server's clock minus ours from ``count`` exchanges, or None if the server has no CLOCK."""
    if not offers_clock(client):
        return None
    samples = []
    for _ in range(count):
        t1 = time.time_ns()
        reply = client._converse({"type": "CLOCK", "t1": t1}, "CLOCK_REPLY")
        t4 = time.time_ns()
        if reply["t1"] != t1:
            raise ProtocolError("CLOCK_REPLY answers another sample")
        samples.append(clock.Sample(t1, reply["t2"], reply["t3"], t4))
    try:
        return clock.estimate(samples)
    except ValueError:  # every sample's round trip came out negative: our clock stepped
        return None


class Offset(NamedTuple):
    """What the row needs: the receiver's clock minus the sender's, and the drift."""

    estimate: clock.Estimate | None
    drift_ppm: float | None


def over_run(before: clock.Estimate | None, after: clock.Estimate | None, *, server_receives: bool) -> Offset:
    """The offset for a run between two estimates (server minus client), turned to the
    receiver's clock minus the sender's: as is when the server received, negated when it sent."""
    if before is None:
        return Offset(None, None)
    drift = None
    if after is not None and after.at_ns > before.at_ns:
        drift = clock.drift_ppm(before, after)
    combined = clock.combine(before, after)
    if not server_receives:
        combined = combined._replace(offset_ns=-combined.offset_ns)
    return Offset(combined, drift)
