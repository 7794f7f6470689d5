"""One measurement's row: what was sent, what arrived, and what each number means.

Sans-IO: the sender's counts (``_fast.send_datagrams``'s dict), the server's REPORT and the
sizes go in; a ``Row`` comes out. The arithmetic that turns counts into rates and loss lives
here once: ``build`` uses it for one session, ``protocol/streams.py``'s ``combine`` for
parallel streams.

The field names are the JSON and ``.npz`` names (the README's field table). Fields that only
some rows carry (``interrupted``, ``intervals``, ``per_stream``) are left out of ``as_dict()``
when unset, as they were left out of the dicts rows used to be; so are the receiver's-interval,
one-way delay, clock and loss-episode fields while they are None: a row measured by an older
udpbench, or one where nothing was measured (a size the kernel refused), does not have them.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from udpbench.errors import errno_name
from udpbench.protocol import delay
from udpbench.protocol import frag
from udpbench.protocol import loss


@dataclass
class Row:
    """One (host, payload size, engine, direction) measurement. The sender's rates are over
    ``duration_s``, its own interval; the received ones (``rx_pps``, ``goodput_bps``,
    ``wire_bps``) over ``rx_interval_s``, the receiver's first to last arrival. Loss is
    ``sent - received`` after the server drained stragglers."""

    host: str = ""
    address: str = ""
    port: int = 0
    family: int = 4
    size: int = 0
    engine: str = ""
    engine_requested: str = ""
    engine_note: str = ""
    streams: int = 1
    rate_target_bps: float = 0.0
    rate_ratio: float | None = None
    duration_s: float = 0.0
    sent: int = 0
    send_errors: int = 0
    send_errors_by_errno: dict = field(default_factory=dict)
    received: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0
    lost: int = 0
    loss_ratio: float = 0.0
    loss_sender: int = 0
    loss_socket: int = 0
    loss_reassembly: int = 0
    loss_network: int = 0
    loss_bursts: int = 0
    longest_loss_burst: int = 0
    max_reorder_distance: int = 0
    tx_pps: float = 0.0
    rx_pps: float = 0.0
    tx_bps: float = 0.0
    goodput_bps: float = 0.0
    wire_bps: float = 0.0
    jitter_ms: float = 0.0
    delay_spread_ms: float = 0.0
    path_mtu: int = 0
    sender_mtu: int = 0
    fragments: int = 0
    syscalls: int = 0
    batch: int = 0
    gap_target_us: float = 0.0
    gap_mean_us: float = 0.0
    gap_std_us: float = 0.0
    gap_p1_us: float = 0.0
    gap_p50_us: float = 0.0
    gap_p99_us: float = 0.0
    gap_p999_us: float = 0.0
    gap_max_us: float = 0.0
    late_p50_us: float = 0.0
    late_p99_us: float = 0.0
    late_max_us: float = 0.0
    schedule_resets: int = 0
    foreign: int = 0
    socket_drops: int = 0
    gro_buffers: int = 0
    sender_counters: dict = field(default_factory=dict)
    receiver_counters: dict = field(default_factory=dict)
    drain_s: float = 0.0
    rcvbuf: int = 0
    duration_requested_s: float = 0.0
    duration_granted_s: float = 0.0
    rate_requested_bps: float = 0.0
    clamped: str = ""
    authenticated: bool = False
    df: bool = False
    sendable: bool = True
    send_error: str = ""
    direction: str = "forward"
    # Only some rows carry these; as_dict() leaves them out when unset.
    interrupted: bool = False
    intervals: list | None = None
    per_stream: list | None = None
    # Present once measured, in this order after the fields above (as_dict leaves them out while
    # None). The receiver's interval, first to last arrival, that rx_pps and goodput_bps are over
    # (protocol/delay.py); 0 when there was none and the sending interval stood in.
    rx_interval_s: float | None = None
    # One-way delay (README: owd_basis): how the delays relate to the true ones, the clock
    # correction, then percentiles in microseconds from the actual and the scheduled send time.
    owd_basis: str | None = None  # same-host, estimated or relative (protocol/clock.py)
    clock_offset_us: float | None = None
    clock_error_us: float | None = None  # -1: not estimated
    clock_drift_ppm: float | None = None
    owd_note: str | None = None  # why the delays are relative, "" when they are not
    owd_min_us: float | None = None
    owd_p50_us: float | None = None
    owd_p90_us: float | None = None
    owd_p99_us: float | None = None
    owd_p999_us: float | None = None
    owd_max_us: float | None = None
    sched_owd_min_us: float | None = None
    sched_owd_p50_us: float | None = None
    sched_owd_p90_us: float | None = None
    sched_owd_p99_us: float | None = None
    sched_owd_p999_us: float | None = None
    sched_owd_max_us: float | None = None
    owd_mean_us: float | None = None  # the exact mean of the actual-send delays, on the same basis
    # Loss episodes (RFC 3357) as the receiver counted them.
    loss_burst_count: int | None = None
    loss_burst_mean: float | None = None
    loss_burst_max: int | None = None
    loss_gap_mean: float | None = None
    loss_conditional: float | None = None
    loss_burst_histogram: dict | None = None
    loss_gap_histogram: dict | None = None
    path_mtu_source: str | None = None  # "server": a reverse run, fragmented by the server's kernel
    trace: str | None = None  # the per-datagram trace file a reverse blast wrote
    # Not part of the result files: the session id and the interrupt that cut the row short.
    session: int | None = field(default=None, metadata={"private": True})
    interrupt: BaseException | None = field(default=None, metadata={"private": True}, repr=False)
    # How much of the trace buffers a reverse run filled, until blast writes the trace file.
    trace_length: int = field(default=0, metadata={"private": True}, repr=False)
    trace_cut: int = field(default=0, metadata={"private": True}, repr=False)
    # The receiver's first and last arrival (kernel ns), the datagrams stamped with the first,
    # and the delays' sample count: what combine needs to span parallel streams.
    first_rx_ns: int = field(default=0, metadata={"private": True}, repr=False)
    last_rx_ns: int = field(default=0, metadata={"private": True}, repr=False)
    first_rx_count: int = field(default=0, metadata={"private": True}, repr=False)
    owd_samples: int = field(default=0, metadata={"private": True}, repr=False)
    # Fields a newer udpbench wrote, kept as they came when a file is loaded.
    extra: dict = field(default_factory=dict, metadata={"private": True}, repr=False)

    def as_dict(self) -> dict:
        """The public dict: exactly the JSON and ``.npz`` field names."""
        out = {}
        for f in PUBLIC_FIELDS:
            value = getattr(self, f.name)
            if (f.name in _OPTIONAL_KEYS and not value) or (f.name in _MEASURED_KEYS and value is None):
                continue
            out[f.name] = value
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Row":
        """A Row from a public dict (a loaded file's row); ValueError naming any field of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("a row is not a record of fields")
        known, extra = {}, {}
        for key, value in data.items():
            if key not in _TYPES:
                extra[str(key)] = value
                continue
            if not _fits(value, _TYPES[key]):
                raise ValueError(f"field {key!r} is not {_TYPE_WORDS[key]}")
            known[key] = value
        return cls(**known, extra=extra)

    # Read access by name, for code written against the dict rows this type replaced.
    def __getitem__(self, key: str):
        if key in _TYPES:
            value = getattr(self, key)
            if not ((key in _OPTIONAL_KEYS and not value) or (key in _MEASURED_KEYS and value is None)):
                return value
        if key in self.extra:
            return self.extra[key]
        raise KeyError(key)

    def __contains__(self, key: str) -> bool:
        try:
            self[key]
        except KeyError:
            return False
        return True

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default


PUBLIC_FIELDS = tuple(f for f in dataclasses.fields(Row) if not f.metadata.get("private"))
_OPTIONAL_KEYS = {"interrupted", "intervals", "per_stream"}
# Present once measured; None (and absent from as_dict) in an older file's row or an unmeasured one.
_MEASURED_KEYS = {f.name for f in PUBLIC_FIELDS if f.default is None and f.name not in ("rate_ratio",)
                  and f.name not in _OPTIONAL_KEYS}
_HINTS = typing.get_type_hints(Row)
_TYPES = {f.name: _HINTS[f.name] for f in PUBLIC_FIELDS}


def _accepted(hint) -> tuple[type, ...]:
    args = typing.get_args(hint)
    return tuple(a for a in args) if args else (hint,)


def _fits(value, hint) -> bool:
    for kind in _accepted(hint):
        if kind is type(None) and value is None:
            return True
        if kind is bool and isinstance(value, bool):
            return True
        # within int64: what an .npz column holds (a bigger count is no measurement's)
        if kind is int and isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63:
            return True
        # a whole number is a float too; NaN is how an .npz column stores a missing float
        if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if kind in (str, dict, list) and isinstance(value, kind):
            return True
    return False


_WORDS = {int: "a whole number of at most 64 bits", float: "a number", str: "text", bool: "true or false",
          dict: "a record", list: "a list", type(None): "empty"}
_TYPE_WORDS = {k: " or ".join(_WORDS[t] for t in _accepted(h)) for k, h in _TYPES.items()}


def _wire_bytes_per_datagram(size: int, sender_mtu: int, path_mtu: int, v6: bool) -> tuple[int, int]:
    """(fragments, bytes on the wire) of one datagram, router re-fragmentation included; (0, 0)
    for a size no fragmentation can carry."""
    try:
        packets = frag.fragment_sizes_on_path(size, sender_mtu, path_mtu, v6)
    except ValueError:
        return 0, 0
    return len(packets), frag.wire_bytes_of(packets)


def _derive(row: Row) -> Row:
    """Fill the fields that follow from the counts: rates, loss, fragments.

    Every rate is over ``duration_s``; ``wire_bps`` counts what crosses the bottleneck.
    """
    elapsed, size = row.duration_s, row.size
    row.fragments, wire_per_datagram = _wire_bytes_per_datagram(size, row.sender_mtu, row.path_mtu,
                                                                row.family == 6)
    row.lost = row.sent - row.received
    row.loss_ratio = row.lost / row.sent if row.sent else 0.0
    row.tx_pps = row.sent / elapsed
    row.rx_pps = row.received / elapsed
    row.tx_bps = row.sent * size * 8 / elapsed
    row.rate_ratio = row.tx_bps / row.rate_target_bps if row.rate_target_bps else None
    row.goodput_bps = row.received * size * 8 / elapsed
    row.wire_bps = row.received * wire_per_datagram * 8 / elapsed
    return row


def _attribute(row: Row, socket_drops: int | None, sender_counters: dict) -> None:
    causes = loss.attribute_loss(row.lost, sndbuf_errors=sender_counters.get("Udp.SndbufErrors", 0),
                                 socket_drops=socket_drops,
                                 rcvbuf_errors=row.receiver_counters.get("Udp.RcvbufErrors", 0),
                                 reasm_fails=row.receiver_counters.get("Ip.ReasmFails", 0))
    for name, value in causes.items():
        setattr(row, name, value)


def build(*, host: str, address: str, port: int, v6: bool, size: int, engine: str,
          engine_requested: str = "", engine_note: str = "", duration: float,
          rate_bps: float | None, tx: dict, report: dict, sender_counters: dict | None = None,
          path_mtu: int, sender_mtu: int | None = None, same_clock: bool = False,
          clock_estimate=None, clock_drift_ppm: float | None = None, direction: str = "forward") -> Row:
    """The row of one session, from the sender's counts ``tx`` and the server's ``report``.

    ``duration`` stands in for the sending interval when the sender measured none. The received
    rates are over the receiver's interval, and the one-way delay and loss-episode fields come
    from ``protocol/delay.py`` (absolute delays when ``same_clock``, one kernel's clock, or
    corrected by ``clock_estimate``: the receiver's clock minus the sender's, a ``clock.Estimate``).
    ``direction``: "forward" (the client sent) or "reverse" (the server sent; ``report`` is then
    the client's own receiver and ``tx`` the server's send loop).
    """
    sender_counters = sender_counters or {}
    received = report.get("received", 0)
    span_ns = report.get("max_transit_ns", 0) - report.get("min_transit_ns", 0)
    row = Row(
        host=host, address=address, port=port, family=6 if v6 else 4, size=size,
        engine=engine, engine_requested=engine_requested or engine, engine_note=engine_note,
        streams=1, rate_target_bps=float(rate_bps or 0), duration_s=tx["elapsed_ns"] / 1e9 or duration,
        sent=tx["sent"], send_errors=int(sum(tx["errors"].values())),
        send_errors_by_errno={errno_name(e): n for e, n in tx["errors"].items()},
        received=received, duplicates=report.get("duplicates", 0), reordered=report.get("reordered", 0),
        late=report.get("late", 0), loss_bursts=report.get("gap_events", 0),
        longest_loss_burst=report.get("max_gap", 0), max_reorder_distance=report.get("max_reorder", 0),
        jitter_ms=report.get("jitter_ms", 0.0), delay_spread_ms=span_ns / 1e6 if received else 0.0,
        path_mtu=path_mtu, sender_mtu=sender_mtu or path_mtu,
        syscalls=tx["syscalls"], batch=tx["batch"],
        gap_target_us=tx["target_gap_ns"] / 1e3, gap_mean_us=tx["gap_mean_ns"] / 1e3,
        gap_std_us=tx["gap_std_ns"] / 1e3, gap_p1_us=tx.get("gap_p1_ns", 0) / 1e3,
        gap_p50_us=tx.get("gap_p50_ns", 0) / 1e3, gap_p99_us=tx.get("gap_p99_ns", 0) / 1e3,
        gap_p999_us=tx.get("gap_p999_ns", 0) / 1e3, gap_max_us=tx["gap_max_ns"] / 1e3,
        late_p50_us=tx.get("late_p50_ns", 0) / 1e3, late_p99_us=tx.get("late_p99_ns", 0) / 1e3,
        late_max_us=tx.get("late_max_ns", 0) / 1e3, schedule_resets=tx.get("schedule_resets", 0),
        foreign=report.get("foreign", 0), socket_drops=report.get("socket_drops") or 0,
        gro_buffers=report.get("gro_buffers", 0), sender_counters=sender_counters,
        receiver_counters=report.get("kernel", {}), drain_s=report.get("drain_s", 0.0),
    )
    _derive(row)
    _, wire_per_datagram = _wire_bytes_per_datagram(size, row.sender_mtu, path_mtu, v6)
    received_rates = delay.received_rates(report, size, wire_per_datagram, row.duration_s)
    row.rx_pps, row.goodput_bps, row.wire_bps = (received_rates.pop(k) for k in ("rx_pps", "goodput_bps", "wire_bps"))
    row.direction = direction
    row.rx_interval_s = received_rates["rx_interval_s"]
    if received:
        row.first_rx_ns, row.last_rx_ns = int(report.get("first_rx_ns", 0)), int(report.get("last_rx_ns", 0))
        row.first_rx_count = int(report.get("first_rx_count", 1) or 1)
    row.owd_samples = int(report.get("transit_samples", 0)) if report.get("owd_samples") else 0
    measured = {**delay.delay_fields(report, same_clock=same_clock, estimate=clock_estimate, drift_ppm=clock_drift_ppm),
                **delay.episode_fields(report)}
    for name, value in measured.items():
        if name in _TYPES:
            setattr(row, name, value)
        else:  # a field delay.py has and Row not yet: kept by name, as before it had a type
            row.extra[name] = value
    _attribute(row, socket_drops_datagrams(report), sender_counters)
    return row


def socket_drops_datagrams(report: dict) -> int | None:
    """Datagrams of this session the receiving socket dropped (its buffer was full), or None
    when the server could not read its socket's drop count.

    The kernel counts drops per socket buffer (sk_drops, read with SO_MEMINFO), and with
    UDP_GRO one buffer can hold many coalesced datagrams: a GSO sender's buffer of 44 reaches
    a loopback receiver whole and, when the socket is full, is dropped whole. So the drops
    are scaled by the datagrams per buffer the receiver saw (1 without GRO: exact; a GSO
    sender on loopback: exact but for a short last buffer; an estimate otherwise). The socket
    belongs to this session alone, so every drop on it is this session's.
    """
    drops = report.get("socket_drops")
    if drops is None:
        return None
    drops = max(drops, report.get("rxq_overflow") or 0)
    taken = report.get("received", 0) + report.get("duplicates", 0) + report.get("foreign", 0)
    buffers = report.get("buffers") or 0
    per_buffer = max(1.0, taken / buffers) if buffers else 1.0
    return round(drops * per_buffer)
