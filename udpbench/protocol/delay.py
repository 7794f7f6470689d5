"""What a receiver's report says about rates, one-way delay and loss episodes, as row fields.

Sans-IO: these take the REPORT's numbers (the receiver's counts) and return the row's fields.

Received rates are over the receiver's own interval, first to last arrival (docs/engines.md,
"Received rates"): dividing by the sending interval overstates them behind a queue, whose
backlog still arrives after the sender stops.
"""
from __future__ import annotations

from udpbench.protocol import clock

PERCENTILES = ("p50", "p90", "p99", "p999")


def receiver_interval_ns(report: dict) -> int:
    """First to last arrival, by the receiver's kernel timestamps; 0 if fewer than two times."""
    if not report.get("received"):
        return 0
    span = int(report.get("last_rx_ns", 0)) - int(report.get("first_rx_ns", 0))
    return max(span, 0)


def received_rates(report: dict, size: int, wire_bytes_per_datagram: int, sending_s: float) -> dict:
    """``rx_pps``, ``goodput_bps``, ``wire_bps`` and the interval they use, ``rx_interval_s``.

    The datagrams that share the first arrival time (one, or one GRO buffer's worth) open the
    interval; the rest arrived within it. With no interval to speak of (one datagram, or one
    buffer) the rates fall back to all datagrams over the sending interval, and
    ``rx_interval_s`` is 0 to say so.
    """
    received = int(report.get("received", 0))
    span_ns = receiver_interval_ns(report)
    within = received - int(report.get("first_rx_count", 1) or 1)
    if span_ns > 0 and within > 0:
        seconds, count = span_ns / 1e9, within
    else:
        seconds, count, span_ns = sending_s, received, 0
    if seconds <= 0:
        return {"rx_pps": 0.0, "goodput_bps": 0.0, "wire_bps": 0.0, "rx_interval_s": 0.0}
    return {
        "rx_pps": count / seconds,
        "goodput_bps": count * size * 8 / seconds,
        "wire_bps": count * wire_bytes_per_datagram * 8 / seconds,
        "rx_interval_s": span_ns / 1e9,
    }


def delay_fields(report: dict, same_clock: bool, estimate: clock.Estimate | None = None,
                 drift_ppm: float | None = None) -> dict:
    """``owd_*_us`` and ``sched_owd_*_us`` (min, p50, p90, p99, p999, max), ``owd_mean_us``, ``owd_basis``,
    ``clock_offset_us``, ``clock_error_us``, ``clock_drift_ppm`` and ``owd_note``.

    Raw delays are receiver clock minus sender clock; ``estimate`` is that same difference
    (receiver minus sender) as the clock samples found it. ``same-host``: the raw delays are
    the delays. ``estimated``: less the offset. ``relative``: less the smallest actual-send
    delay, so ``owd_min_us`` is 0 and the scheduled ones are shifted by the same amount;
    ``owd_note`` says why, so that no one reads them as absolute.
    """
    basis = clock.basis(same_clock, estimate)
    note = ""
    if basis == clock.SAME_HOST:
        shift, offset_us, error_us = 0.0, 0.0, 0.0
    elif basis == clock.ESTIMATED:
        shift, offset_us, error_us = estimate.offset_ns, estimate.offset_ns / 1e3, estimate.error_ns / 1e3
    else:
        shift = float(report.get("owd_min_ns", 0))
        offset_us = estimate.offset_ns / 1e3 if estimate else 0.0
        error_us = estimate.error_ns / 1e3 if estimate else -1.0  # -1: not estimated
        if estimate is None:
            note = "clock offset not measured: delays are relative to the smallest"
        else:
            note = (f"clock offset uncertain by {error_us:,.0f} us (over "
                    f"{clock.MAX_USEFUL_ERROR_NS / 1e3:,.0f} us): delays are relative to the smallest")
    fields = {"owd_basis": basis, "clock_offset_us": offset_us, "clock_error_us": error_us,
              "clock_drift_ppm": float(drift_ppm) if drift_ppm is not None and basis != clock.SAME_HOST else 0.0,
              "owd_note": note}
    measured = bool(report.get("owd_samples"))
    for prefix, name in (("owd", "owd"), ("sched_owd", "sched_owd")):
        for part in ("min",) + PERCENTILES + ("max",):
            raw = report.get(f"{prefix}_{part}_ns", 0)
            fields[f"{name}_{part}_us"] = (raw - shift) / 1e3 if measured else 0.0
    # The mean, as iperf2 --trip-times reports it, over the datagrams with a kernel receive
    # timestamp (those the jitter counts); exact, not from the histogram.
    timed = measured and report.get("transit_samples")
    fields["owd_mean_us"] = (float(report.get("mean_transit_ns", 0.0)) - shift) / 1e3 if timed else 0.0
    return fields


def episode_fields(report: dict) -> dict:
    """Loss episodes (RFC 3357) as the receiver counted them."""
    return {
        "loss_burst_count": int(report.get("loss_burst_count", 0)),
        "loss_burst_mean": float(report.get("loss_burst_mean", 0.0)),
        "loss_burst_max": int(report.get("loss_burst_max", 0)),
        "loss_gap_mean": float(report.get("loss_gap_mean", 0.0)),
        "loss_conditional": float(report.get("loss_conditional", 0.0)),
        "loss_burst_histogram": {str(k): int(v) for k, v in (report.get("loss_burst_histogram") or {}).items()},
        "loss_gap_histogram": {str(k): int(v) for k, v in (report.get("loss_gap_histogram") or {}).items()},
    }
