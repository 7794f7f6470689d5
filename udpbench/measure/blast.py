"""``blast``: one measurement at one payload size, like ``iperf3 -u`` with honest accounting."""
from __future__ import annotations

import dataclasses
import math
import os
import threading
from dataclasses import dataclass

from udpbench.errors import MeasurementError, UserError
from udpbench.linux.sockopts import is_loopback
from udpbench.measure.embedded import connect
from udpbench.measure.stopping import stop_flag
from udpbench.protocol import wire
from udpbench.protocol.row import Row
from udpbench.transport.client import DEFAULT_LAN_RATE_BPS
from udpbench.transport.interval import MAX_INTERVALS, MIN_INTERVAL_S
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.transport.reverse import blast_bidir as _blast_bidir
from udpbench.transport.reverse import blast_reverse
from udpbench.transport import trace_fetch
from udpbench.transport.streams import blast_streams
from udpbench.output import trace as traces

MIN_PATH_MTU = 68  # the smallest MTU every IPv4 link carries (RFC 791)
MAX_STREAMS = 16  # a server serves 16 control connections at once by default


@dataclass
class BlastOptions:
    """What a blast sends, and to which server."""

    size: int = 1472
    """UDP payload bytes of every datagram (the 32-byte udpbench header included)."""
    duration: float = 2.0
    """Seconds to send for (the server may grant less; the row says so)."""
    rate: float | None = None
    """UDP payload bits per second, all streams together; 0 is as fast as the kernel takes them;
    None picks per host: as fast as possible on loopback, 100 Mbit/s toward any other host."""
    engine: str = "auto"
    """How datagrams reach the kernel: send, mmsg, gso, or auto (gso where it fits, else mmsg)."""
    streams: int = 1
    """Parallel sessions, each its own socket and sending thread, summed into one row."""
    df: bool = False
    """Set Don't Fragment: a payload above the path MTU is refused (row.sendable False), not fragmented."""
    interval: float | None = None
    """Seconds between interim reports (one stream only; at least 0.1 s, at most 10,000 of them);
    the row then holds ``intervals``."""
    port: int = DEFAULT_PORT
    """The server's port (TCP control and UDP data)."""
    family: int | None = None
    """socket.AF_INET or socket.AF_INET6 to insist on one; None takes the host's first address."""
    token: str | None = None
    """The shared secret, if the server asks for one; None reads $UDPBENCH_TOKEN, "" sends none."""
    embedded: bool = True
    """For a loopback host with no server listening, start one for this measurement."""
    path_mtu: int | None = None
    """The path MTU to count fragments at (``row.fragments``, ``row.wire_bps``), as found by
    ``path_mtu()``; None: the MTU this kernel's route to the host holds. The kernel still
    fragments at its route's MTU (docs/decisions.md, "fragments counts what crosses the
    bottleneck"); the engine sends GSO segments only if they cross both unfragmented."""
    direction: str = "forward"
    """forward: this side sends, the server receives; reverse: the server sends, this side receives."""
    trace: str | None = None
    """Write every datagram (seq, scheduled, sent, received) to this ``.npz``. A forward run's
    trace is kept by the server and fetched after its report (one stream only)."""
    trace_limit: int = traces.DEFAULT_LIMIT
    """Datagrams a trace holds at most; the file says when it was cut."""


DIRECTIONS = ("forward", "reverse")


def check_direction(o) -> None:
    """Refuse the combinations a reverse run does not have, naming the values."""
    if o.direction not in DIRECTIONS:
        raise UserError(f"direction {o.direction!r} is neither forward nor reverse")
    if o.trace is not None:
        if o.streams != 1:
            raise UserError(f"a trace covers one stream, not {o.streams}: ask for one or the other")
        check_trace_path(o.trace)
    if not (isinstance(o.trace_limit, int) and 0 < o.trace_limit <= 100_000_000):
        raise UserError(f"trace limit {o.trace_limit!r} is outside 1..100000000 datagrams")
    if o.direction == "reverse":
        for name, value, why in (("streams", o.streams != 1, "one stream"), ("df", o.df, "the server's sending"),
                                 ("interval", o.interval, "the forward direction")):
            if value:
                raise UserError(f"a reverse run does not take {name}: it covers {why} only")


def check_trace_path(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"cannot write trace {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UserError(f"cannot write trace {path}: directory {directory} is not writable")


def default_rate(address: str) -> float:
    """As fast as possible on this machine; a 100 Mbit/s safety default toward any other host."""
    return 0.0 if is_loopback(address) else DEFAULT_LAN_RATE_BPS


def options_of(options, fields: dict, kind=BlastOptions):
    """``options`` (or the defaults) with ``fields`` replacing some of them."""
    options = options if options is not None else kind()
    try:
        return dataclasses.replace(options, **fields)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(kind))
        unknown = ", ".join(sorted(set(fields) - {f.name for f in dataclasses.fields(kind)}))
        raise TypeError(f"unknown {kind.__name__} field(s) {unknown}: known are {known}") from None


def check_common(duration: float, rate: float | None, streams: int) -> None:
    """Refuse values no measurement can run with, naming the value."""
    if not (isinstance(duration, (int, float)) and math.isfinite(duration) and 0 < duration <= 86400):
        raise UserError(f"duration {duration!r} s must be more than 0 and at most 86400 seconds")
    if rate is not None and not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate >= 0):
        raise UserError(f"rate {rate!r} bit/s must be 0 (as fast as possible) or a positive number")
    if not (isinstance(streams, int) and 1 <= streams <= MAX_STREAMS):
        raise UserError(f"streams {streams!r} is outside 1..{MAX_STREAMS}")


def check_sizes(sizes) -> None:
    """Refuse payload sizes no host could carry, before resolving any: the IPv6 limit (65527)
    here, the IPv4 one (65507) per host once its family is known."""
    for size in sizes or ():
        try:
            wire.check_size(size, v6=True)
        except wire.WireError as exc:
            raise UserError(str(exc)) from None


def check_interval(interval: float | None, duration: float) -> None:
    """Refuse interim reports so frequent, or so many, that they would be the measurement."""
    if interval is None:
        return
    if not (isinstance(interval, (int, float)) and math.isfinite(interval) and interval >= MIN_INTERVAL_S):
        raise UserError(f"interval {interval!r} s is below the {MIN_INTERVAL_S:g} s floor")
    if duration / interval > MAX_INTERVALS:
        raise UserError(f"{duration:g} s in intervals of {interval:g} s makes more than {MAX_INTERVALS} "
                        f"interim reports: make the interval at least {duration / MAX_INTERVALS:g} s")


def blast(host: str, options: BlastOptions | None = None, *, on_interval=None, on_notice=None,
          stop: threading.Event | None = None, **fields) -> Row:
    """Send datagrams of one size to ``host`` for a while and return the measured ``Row``.

    Options come as a ``BlastOptions``, as keywords (``blast(host, size=1472, duration=1.0)``),
    or both (keywords win). ``on_interval(entry)`` hears each interim report (with
    ``interval``); ``on_notice(text)`` hears what is worth knowing but no error (the server
    clamped the rate, a token went unused). Set ``stop`` from another thread to end the
    sending early: the row then covers what was sent and is marked ``interrupted``.

    Raises ``UserError`` for what the caller must fix (bad size, no server) and
    ``MeasurementError`` when the measurement fails midway.
    """
    o = options_of(options, fields)
    check_common(o.duration, o.rate, o.streams)
    check_interval(o.interval, o.duration)
    check_direction(o)
    try:
        wire.check_size(o.size)
    except wire.WireError as exc:
        raise UserError(str(exc)) from None
    if o.path_mtu is not None and not (isinstance(o.path_mtu, int) and o.path_mtu >= MIN_PATH_MTU):
        raise UserError(f"path MTU {o.path_mtu!r} is not a whole number of bytes of at least {MIN_PATH_MTU}")
    with connect(host, o.port, o.family, embedded=o.embedded, token=o.token, on_notice=on_notice) as client, \
            stop_flag(stop) as flag:
        rate = o.rate if o.rate is not None else default_rate(client.server_addr[0])
        if o.direction == "reverse":
            row = reverse_row(client, o, rate, flag)
        elif o.trace:
            row = traced_forward_row(client, o, rate, flag, on_interval)
        else:
            row = blast_streams(client, o.streams, o.size, o.duration, rate, o.engine, df=o.df,
                                interval=o.interval, on_interval=on_interval, stop=flag, path_mtu=o.path_mtu)
    if stop is not None and stop.is_set():
        row.interrupted = True
    return row


def reverse_row(client, o, rate: float, flag) -> Row:
    """A reverse run's row, and its trace written beside it when asked for."""
    arrays = traces.buffers(o.trace_limit) if o.trace else None
    row = blast_reverse(client, o.size, o.duration, rate, o.engine, stop=flag, trace_arrays=arrays)
    if arrays is not None:
        write_trace(o.trace, arrays, row)
    return row


def traced_forward_row(client, o, rate: float, flag, on_interval) -> Row:
    """A forward run whose server keeps the trace; fetched after its REPORT and written."""
    trace_fetch.check_offered(client)
    flow = client.start_blast(o.size, o.duration, rate, o.engine, path_mtu=o.path_mtu, df=o.df,
                              trace_limit=o.trace_limit)
    try:
        flow.send(flag, interval=o.interval, on_interval=on_interval)
    finally:
        row = flow.finish()
    # The server may keep fewer than asked (grant.MAX_TRACE_DATAGRAMS): the file says its limit.
    limit = flow.started.get("trace_limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 0 < limit <= o.trace_limit:
        raise MeasurementError(f"server {client.where} did not say how large a trace it keeps")
    arrays = trace_fetch.fetch(client, flow.session, row.trace_length, limit)
    write_trace(o.trace, arrays, row)
    return row


def write_trace(path: str, arrays: tuple, row: Row) -> None:
    length, cut = row.trace_length, row.trace_cut
    columns = traces.build(arrays, length, cut, 0, row.sent)
    try:
        traces.write(path, columns, limit=len(arrays[0]), cut=cut, sent=row.sent)
    except OSError as exc:
        raise UserError(f"cannot write trace {path}: {exc.strerror or exc}") from None
    row.trace = str(path)


def blast_bidir(host: str, options: BlastOptions | None = None, *, on_notice=None,
                stop: threading.Event | None = None, **fields) -> tuple[Row, Row]:
    """Both directions at once: this side and the server each send ``rate``; (forward, reverse).

    One stream each way; ``streams``, ``interval``, ``df`` and ``trace`` are refused here.
    """
    o = options_of(options, fields)
    check_common(o.duration, o.rate, o.streams)
    for name, value in (("streams", o.streams != 1), ("interval", o.interval), ("df", o.df),
                        ("trace", o.trace), ("direction", o.direction != "forward")):
        if value:
            raise UserError(f"a bidirectional run does not take {name}: it is one stream each way")
    try:
        wire.check_size(o.size)
    except wire.WireError as exc:
        raise UserError(str(exc)) from None
    with connect(host, o.port, o.family, embedded=o.embedded, token=o.token, on_notice=on_notice) as client, \
            stop_flag(stop) as flag:
        rate = o.rate if o.rate is not None else default_rate(client.server_addr[0])
        rows = _blast_bidir(client, o.size, o.duration, rate, o.engine, stop=flag)
    if stop is not None and stop.is_set():
        for row in rows:
            row.interrupted = True
    return rows
