"""One probe: run a module against one address and turn what it measured into metrics.

Every probe answers ``udpbench_probe_success``, ``udpbench_probe_duration_seconds`` and
``udpbench_probe_failed{reason}`` (one series per reason of the fixed set, 1 for the reason that
ended it), then the module's own metrics: base units in the names (seconds, bytes, ratios), and
per-probe counts as gauges, since ``_total`` belongs to counters that only grow
(docs/exporter.md).
"""
from __future__ import annotations

import logging
import threading
import time

from prometheus_client import CollectorRegistry, Gauge, Histogram

from udpbench.exporter import measurements
from udpbench.exporter.config import SWEEP_LITE_POINTS, Module
from udpbench.exporter.measurements import REASONS, ProbeFailed
from udpbench.protocol import clock, frag, wire
from udpbench.protocol.row import Row

log = logging.getLogger("udpbench.exporter")

RTT_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TRIES_BUCKETS = (1, 2, 3, 4, 6, 8)
ROW_OVERHEAD_S = 0.5  # per blast row: control round trips and the server's drain (>= 100 ms)
PING_OVERHEAD_S = 0.5  # opening and closing the echo session
CAUSES = ("sender", "socket", "reassembly", "network")
SEND_TIMES = (("actual", "owd"), ("scheduled", "sched_owd"))  # label -> the row's field prefix
OWD_PERCENTILES = (("p50", "50"), ("p90", "90"), ("p99", "99"), ("p999", "99.9"))
DELAY_BASES = (clock.SAME_HOST, clock.ESTIMATED, clock.RELATIVE)  # a fixed set: every series always present


def probe(module: Module, address: str | None, port: int, budget_s: float, token: str | None) -> CollectorRegistry:
    """Measure ``address`` with ``module`` within ``budget_s`` seconds and return the metrics.

    Each ``probe_*`` below fills a registry and returns None, or the reason the target failed
    although something was measured (nothing answered, no path MTU found).

    Never raises: a failure is ``udpbench_probe_success 0`` and its reason. The measurement runs
    in a thread of its own, so a probe that overruns its budget is answered on time (reason
    ``timeout``); that thread finishes in the background, bounded by the module's caps."""
    started = time.monotonic()
    outcome: dict = {}

    def measure() -> None:
        registry = CollectorRegistry(auto_describe=True)
        try:
            outcome["reason"] = MEASURE[module.prober](registry, module, address, port, budget_s, token)
            outcome["registry"] = registry
        except Exception as exc:  # every failure becomes a reason; the exporter serves on
            outcome["reason"] = measurements.reason_of(exc)
            level = logging.WARNING if outcome["reason"] == "internal" else logging.INFO
            log.log(level, "probe %s of %s:%s failed (%s): %s", module.name, address, port, outcome["reason"], exc)
            log.debug("probe failure", exc_info=True)

    if address is None:  # an allowed name that resolves to nothing now
        outcome["reason"] = "resolve"
    else:
        worker = threading.Thread(target=measure, name=f"probe-{module.name}-{address}", daemon=True)
        worker.start()
        worker.join(budget_s)
        if worker.is_alive():
            outcome = {"reason": "timeout"}
    registry = outcome.get("registry") or CollectorRegistry(auto_describe=True)
    reason = outcome.get("reason")
    _gauge(registry, "udpbench_probe_success", "1 if the probe measured the target, else 0").set(
        0 if reason else 1)
    _gauge(registry, "udpbench_probe_duration_seconds", "seconds the probe took").set(
        time.monotonic() - started)
    failed = Gauge("udpbench_probe_failed", "1 for the reason the probe failed, from a fixed set",
                   ["reason"], registry=registry)
    for r in REASONS:
        failed.labels(r).set(1 if r == reason else 0)
    return registry


def _gauge(registry, name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, doc, labels, registry=registry)


def probe_ping(registry, m: Module, address: str, port: int, budget_s: float,
               token: str | None) -> str | None:
    deadline = budget_s - PING_OVERHEAD_S
    if deadline <= m.interval:
        raise ProbeFailed("timeout", f"{budget_s:g} s leaves no time for a request")
    r = measurements.ping(address, port, m.count, m.size, m.interval, deadline, token)
    requests = _gauge(registry, "udpbench_ping_requests", "requests of this probe by outcome", ("outcome",))
    requests.labels("answered").set(r["received"])
    requests.labels("lost").set(r["lost"])
    _gauge(registry, "udpbench_ping_loss_ratio", "requests given up over requests sent (after retries)").set(
        r["loss_ratio"])
    _gauge(registry, "udpbench_ping_datagram_loss_ratio",
           "1 - replies / datagrams sent: round-trip loss before retries").set(r["datagram_loss_ratio"])
    _gauge(registry, "udpbench_ping_retransmissions", "tries after the first, over all requests").set(
        r["retransmissions"])
    _gauge(registry, "udpbench_ping_payload_bytes", "UDP payload of each request").set(m.size)
    rtt = Histogram("udpbench_ping_rtt_seconds", "round-trip time of each answered request",
                    buckets=RTT_BUCKETS_S, registry=registry)
    tries = Histogram("udpbench_ping_tries", "tries each request took, lost ones included",
                      buckets=TRIES_BUCKETS, registry=registry)
    for request in r.get("requests", []):
        tries.observe(request["tries"])
        if request.get("rtt_ms") is not None:
            rtt.observe(request["rtt_ms"] / 1e3)
    # "quantile" is a summary's label (promtool refuses it elsewhere): these are percentiles.
    percentiles = _gauge(registry, "udpbench_ping_rtt_percentile_seconds", "RTT percentiles of this probe",
                         ("percentile",))
    for p in ("50", "90", "99"):
        if r.get(f"rtt_p{p}_ms") is not None:
            percentiles.labels(p).set(r[f"rtt_p{p}_ms"] / 1e3)
    return None if r["received"] else "no_reply"  # measured, yet nothing answered


def probe_mtu(registry, m: Module, address: str, port: int, budget_s: float,
               token: str | None) -> str | None:
    r = measurements.path_mtu(address, port, m.method, None, token)
    if r["path_mtu"] is not None:
        _gauge(registry, "udpbench_path_mtu_bytes", "the path MTU: largest IP packet that crosses").set(
            r["path_mtu"])
        _gauge(registry, "udpbench_mtu_max_payload_bytes", "largest UDP payload in one packet").set(
            r["max_payload"])
    found = _gauge(registry, "udpbench_mtu_found_bytes", "the path MTU each method found", ("method",))
    for method in ("icmp", "echo"):
        if r.get(f"{method}_mtu") is not None:
            found.labels(method).set(r[f"{method}_mtu"])
    _gauge(registry, "udpbench_mtu_black_hole", "1 if DF packets above the path MTU vanish without ICMP").set(
        1 if r["black_hole"] else 0)
    _gauge(registry, "udpbench_mtu_probes", "probe datagrams the search sent").set(r["probes"])
    _gauge(registry, "udpbench_mtu_search_seconds", "seconds the search took").set(r["elapsed_s"])
    return None if r["path_mtu"] is not None else "no_reply"


def probe_blast(registry, m: Module, address: str, port: int, budget_s: float,
               token: str | None) -> str | None:
    duration = min(m.duration, budget_s - ROW_OVERHEAD_S)
    if duration < 0.05:
        raise ProbeFailed("timeout", f"{budget_s:g} s leaves no time to send")
    rows, _ = measurements.blast(address, port, [m.size], duration, m.rate, token)
    _row_metrics(registry, "udpbench_blast", rows)
    return None


def sweep_lite_sizes(mtu: int, v6: bool) -> list[int]:
    """P-1, P, P+1 around the largest unfragmented payload P, and the two-fragment boundary."""
    p = frag.max_unfragmented_payload(mtu, v6)
    two = frag.max_payload_in(2, mtu, v6)
    return sorted({s for s in (p - 1, p, p + 1, two, two + 1) if wire.HEADER_SIZE <= s <= wire.max_payload(v6)})


def probe_sweep_lite(registry, m: Module, address: str, port: int, budget_s: float,
               token: str | None) -> str | None:
    points = len(m.sizes) or SWEEP_LITE_POINTS
    duration = min(m.duration, budget_s / points - ROW_OVERHEAD_S)
    if duration < 0.05:
        raise ProbeFailed("timeout", f"{budget_s:g} s leaves no time to send {points} sizes")
    rows, mtu = measurements.blast(address, port, list(m.sizes) or sweep_lite_sizes, duration, m.rate, token)
    if mtu is not None:
        _gauge(registry, "udpbench_sweep_path_mtu_bytes", "the path MTU the sizes were planned around").set(mtu)
    _row_metrics(registry, "udpbench_sweep", rows)
    return None


def _row_metrics(registry, prefix: str, rows: list[Row]) -> None:
    """One series per payload size (label ``size``) for each of a row's numbers."""
    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Gauge:
        return _gauge(registry, f"{prefix}_{name}", doc, ("size", *extra))

    sent = gauge("sent_datagrams", "datagrams the kernel accepted")
    received = gauge("received_datagrams", "distinct datagrams the server counted")
    lost = gauge("lost_datagrams", "sent - received, by where they were lost", ("cause",))
    loss = gauge("loss_ratio", "lost / sent")
    duplicates = gauge("duplicate_datagrams", "extra copies of datagrams already counted")
    reordered = gauge("reordered_datagrams", "datagrams that arrived after a higher sequence number")
    errors = gauge("send_errors", "sends the kernel refused")
    goodput = gauge("goodput_bytes_per_second", "received payload bytes per second, over the receiver's interval")
    jitter = gauge("jitter_seconds", "RFC 3550 interarrival jitter")
    spread = gauge("delay_spread_seconds", "largest one-way delay less the smallest")
    fragments = gauge("fragments", "IP packets per datagram at the path MTU")
    seconds = gauge("send_seconds", "seconds the datagrams were sent for")
    for row in rows:
        size = str(row.size)
        sent.labels(size).set(row.sent)
        received.labels(size).set(row.received)
        for cause in CAUSES:
            lost.labels(size, cause).set(getattr(row, f"loss_{cause}"))
        loss.labels(size).set(row.loss_ratio)
        duplicates.labels(size).set(row.duplicates)
        reordered.labels(size).set(row.reordered)
        errors.labels(size).set(row.send_errors)
        goodput.labels(size).set(row.goodput_bps / 8)
        jitter.labels(size).set(row.jitter_ms / 1e3)
        spread.labels(size).set(row.delay_spread_ms / 1e3)
        fragments.labels(size).set(row.fragments or 1)
        seconds.labels(size).set(row.duration_s)
    _delay_metrics(gauge, [r for r in rows if r.received and "owd_basis" in r])
    _episode_metrics(gauge, [r for r in rows if "loss_burst_count" in r])


def _delay_metrics(gauge, rows: list[Row]) -> None:
    """One-way delay percentiles, from the actual and from the scheduled send time (the latter
    includes the sender's own lateness), and the basis they stand on (docs/exporter.md)."""
    if not rows:
        return
    percentile = gauge("one_way_delay_percentile_seconds", "one-way delay percentiles of this probe's datagrams",
                       ("send_time", "percentile"))
    lowest = gauge("one_way_delay_min_seconds", "smallest one-way delay", ("send_time",))
    highest = gauge("one_way_delay_max_seconds", "largest one-way delay", ("send_time",))
    basis = gauge("one_way_delay_basis", "1 for the basis of the delays: same-host (one clock), estimated "
                  "(offset corrected) or relative (less the smallest delay)", ("basis",))
    for row in rows:
        size = str(row.size)
        for send_time, prefix in SEND_TIMES:
            for part, label in OWD_PERCENTILES:
                percentile.labels(size, send_time, label).set(row[f"{prefix}_{part}_us"] / 1e6)
            lowest.labels(size, send_time).set(row[f"{prefix}_min_us"] / 1e6)
            highest.labels(size, send_time).set(row[f"{prefix}_max_us"] / 1e6)
        for name in DELAY_BASES:
            basis.labels(size, name).set(1 if row["owd_basis"] == name else 0)


def _episode_metrics(gauge, rows: list[Row]) -> None:
    """Loss episodes (RFC 3357): runs of lost datagrams and the runs received between them."""
    if not rows:
        return
    bursts = gauge("loss_bursts", "runs of consecutive lost datagrams (loss episodes)")
    burst_mean = gauge("loss_burst_mean_datagrams", "mean datagrams in a run of losses")
    burst_max = gauge("loss_burst_max_datagrams", "datagrams in the longest run of losses")
    gap_mean = gauge("loss_gap_mean_datagrams", "mean datagrams received between runs of losses")
    conditional = gauge("conditional_loss_ratio", "chance a datagram is lost when the one before it was "
                        "(RFC 3357)")
    for row in rows:
        size = str(row.size)
        bursts.labels(size).set(row["loss_burst_count"])
        burst_mean.labels(size).set(row["loss_burst_mean"])
        burst_max.labels(size).set(row["loss_burst_max"])
        gap_mean.labels(size).set(row["loss_gap_mean"])
        conditional.labels(size).set(row["loss_conditional"])


MEASURE = {"ping": probe_ping, "mtu": probe_mtu, "blast": probe_blast, "sweep_lite": probe_sweep_lite}
