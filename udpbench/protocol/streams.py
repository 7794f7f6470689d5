"""The row of parallel streams: each stream's row summed, spanned or taken at its worst.

Sans-IO, like ``protocol/row.py``, whose arithmetic it reuses.
"""
from __future__ import annotations

import dataclasses
import statistics

from udpbench.protocol import delay
from udpbench.protocol import loss
from udpbench.protocol.row import Row, _attribute, _derive, _wire_bytes_per_datagram

__all__ = ["combine"]

# Parallel streams. Counts that add up over streams; the rest is recomputed by _derive or
# taken as the worst stream's. The loss causes are not summed: the kernel counters behind them
# cover the namespace, so every stream sees all streams' drops; they are attributed once, over
# the summed loss.
SUMMED = ("sent", "send_errors", "received", "duplicates", "reordered", "late",
          "loss_bursts", "syscalls", "foreign", "socket_drops", "gro_buffers", "rate_target_bps",
          "rate_requested_bps")
WORST = ("longest_loss_burst", "max_reorder_distance", "delay_spread_ms", "gap_std_us", "gap_p99_us",
         "gap_p999_us", "gap_max_us", "late_p50_us", "late_p99_us", "late_max_us", "schedule_resets",
         "drain_s")
# What each stream reports in the row's per_stream list.
PER_STREAM = ("engine", "sent", "received", "lost", *loss.CAUSES, "duplicates",
              "reordered", "duration_s", "tx_pps", "rx_pps", "goodput_bps", "jitter_ms", "gap_p50_us",
              "gap_p99_us", "send_errors")


def combine(rows: list[Row], sender_counters: dict | None = None) -> Row:
    """The summed row of parallel streams; each stream's own numbers in ``per_stream``."""
    first = rows[0]
    row = dataclasses.replace(first, session=None, interrupt=None, interrupted=False, extra=dict(first.extra),
                              trace_length=0, trace_cut=0)
    for key in SUMMED:
        setattr(row, key, sum(getattr(r, key) or 0 for r in rows))
    for key in WORST:
        setattr(row, key, max(getattr(r, key) or 0 for r in rows))
    errors: dict[str, int] = {}
    for r in rows:
        for name, n in r.send_errors_by_errno.items():
            errors[name] = errors.get(name, 0) + n
    row.streams = len(rows)
    row.duration_s = max(r.duration_s for r in rows)
    row.send_errors_by_errno = errors
    row.jitter_ms = statistics.fmean(r.jitter_ms for r in rows)
    row.gap_mean_us = statistics.fmean(r.gap_mean_us for r in rows)
    row.gap_p1_us = min(r.gap_p1_us for r in rows)
    row.gap_p50_us = statistics.median(r.gap_p50_us for r in rows)
    row.engine_note = "; ".join(sorted({r.engine_note for r in rows if r.engine_note}))
    row.receiver_counters = {k: max(r.receiver_counters.get(k, 0) for r in rows)
                             for k in first.receiver_counters}
    row.per_stream = [{"session": f"{r.session:016x}" if r.session is not None else None,
                       **{k: getattr(r, k) for k in PER_STREAM}} for r in rows]
    if sender_counters is not None:
        row.sender_counters = sender_counters
    _derive(row)
    _receiver_interval(row, rows)
    _combine_delays(row, rows)
    # exact: each stream's own socket
    _attribute(row, sum(r.loss_socket for r in rows), sender_counters or {})
    engines_used = sorted({r.engine for r in rows})
    row.engine = engines_used[0] if len(engines_used) == 1 else "+".join(engines_used)
    row.interrupted = any(r.interrupted for r in rows)
    return row


def _receiver_interval(row: Row, rows: list[Row]) -> None:
    """The received rates over all streams' receiver interval: the earliest first arrival to
    the latest last one. One server's kernel stamps every stream, so the times compare. The
    datagrams stamped at the earliest first arrival open the interval, as for one stream
    (docs/engines.md, "Received rates")."""
    timed = [r for r in rows if r.received and r.last_rx_ns]
    if not timed:
        row.rx_interval_s = 0.0  # _derive's rates, over the sending interval, stand
        return
    first = min(r.first_rx_ns for r in timed)
    span = {"received": row.received, "first_rx_ns": first, "last_rx_ns": max(r.last_rx_ns for r in timed),
            "first_rx_count": sum(r.first_rx_count for r in timed if r.first_rx_ns == first)}
    _, wire_per_datagram = _wire_bytes_per_datagram(row.size, row.sender_mtu, row.path_mtu, row.family == 6)
    rates = delay.received_rates(span, row.size, wire_per_datagram, row.duration_s)
    row.rx_pps, row.goodput_bps, row.wire_bps = rates["rx_pps"], rates["goodput_bps"], rates["wire_bps"]
    row.rx_interval_s = rates["rx_interval_s"]


OWD_PARTS = ("p50", "p90", "p99", "p999")


def _combine_delays(row: Row, rows: list[Row]) -> None:
    """One-way delays over all streams: the least minimum, the greatest maximum, the mean
    weighted by each stream's samples, and each percentile the worst stream's (the REPORT
    carries percentiles, not histograms to merge; docs/decisions.md)."""
    measured = [r for r in rows if r.owd_min_us is not None and r.owd_samples]
    if not measured:
        return
    for prefix in ("owd", "sched_owd"):
        setattr(row, f"{prefix}_min_us", min(getattr(r, f"{prefix}_min_us") for r in measured))
        setattr(row, f"{prefix}_max_us", max(getattr(r, f"{prefix}_max_us") for r in measured))
        for part in OWD_PARTS:
            setattr(row, f"{prefix}_{part}_us", max(getattr(r, f"{prefix}_{part}_us") for r in measured))
    samples = sum(r.owd_samples for r in measured)
    row.owd_mean_us = sum((r.owd_mean_us or 0.0) * r.owd_samples for r in measured) / samples
    row.owd_samples = samples
