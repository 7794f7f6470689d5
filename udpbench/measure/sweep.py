"""``sweep``: the same plan of payload sizes against each host, one row per size, saved as it goes."""
from __future__ import annotations

import os
import platform
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from udpbench._version import __version__
from udpbench.errors import MeasurementError, UserError, errno_name
from udpbench.linux.sockopts import is_loopback
from udpbench.measure.blast import (BlastOptions, check_common, check_sizes, default_rate, options_of, traced_forward_row,
                                    write_trace)
from udpbench.measure.embedded import connect
from udpbench.measure.stopping import stop_flag
from udpbench.output import results
from udpbench.output import trace as traces
from udpbench.protocol import frag
from udpbench.protocol import wire
from udpbench.protocol.row import Row
from udpbench.measure import path_mtu
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.transport.reverse import blast_reverse
from udpbench.transport.streams import blast_streams

# Loopback's MTU (65536) fragments nothing at Ethernet sizes; a loopback-only sweep is planned
# around Ethernet's 1500 so its rows line up with a LAN's (that contrast is the point).
ETHERNET_MTU = 1500
DEFAULT_POINTS = 24
MAX_POINTS = 1000


@dataclass
class SweepOptions:
    """What a sweep measures, how, and where it saves."""

    sizes: list[int] | None = None
    """Payload sizes in bytes; None plans them around the smallest path MTU (README, "The size plan")."""
    points: int = DEFAULT_POINTS
    """The most sizes in a planned sweep."""
    duration: float = 1.0
    """Seconds per size."""
    rate: float | None = None
    """UDP payload bits per second; 0 as fast as possible; None: max on loopback, 100 Mbit/s elsewhere."""
    engine: str = "auto"
    """send, mmsg, gso or auto."""
    streams: int = 1
    """Parallel sessions per size, summed into one row."""
    df: bool = False
    """Set Don't Fragment: sizes above the path MTU are reported not sendable instead of fragmented."""
    port: int = DEFAULT_PORT
    """The servers' port."""
    family: int | None = None
    """socket.AF_INET or socket.AF_INET6 to insist on one; None takes each host's first address."""
    token: str | None = None
    """The shared secret, if a server asks; None reads $UDPBENCH_TOKEN, "" sends none."""
    output: str | Path | None = None
    """Base name of the result files (NAME.npz and NAME.json), rewritten after every row; None saves nothing."""
    command: str | None = None
    """The command line to record in the files' meta (without secrets)."""
    direction: str = "forward"
    """forward: this side sends; reverse: each server sends and this side receives (one stream)."""
    trace: str | None = None
    """A directory or file-name prefix; every row's datagrams go to a trace file of their own,
    named by host, size and direction (``output.trace.per_row_path``); one stream only."""
    trace_limit: int = traces.DEFAULT_LIMIT
    """Datagrams each trace holds at most; a file says when it was cut."""


class Sweep:
    """The rows of a sweep, in order, with ``meta`` (hosts, path MTUs, plan) and ``path`` (the
    .npz written, or None). ``stopped`` is true when ``stop`` ended it early."""

    def __init__(self, meta: dict, rows: list[Row], path: Path | None = None):
        self.meta, self.rows, self.path = meta, rows, path
        self.stopped = False

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        return self.rows[i]

    def __repr__(self) -> str:
        return f"Sweep({len(self.rows)} rows, path={str(self.path) if self.path else None})"


class ResultsNotSaved(MeasurementError):
    """The result files could not be written mid-sweep (a full or failing disk). The sweep stops;
    ``rows`` holds every row measured, ``saved`` the .npz that still holds the first
    ``saved_rows`` of them (None if none was written), so the caller can put the rest elsewhere."""

    def __init__(self, message: str, meta: dict, rows: list, saved: Path | None, saved_rows: int):
        super().__init__(message)
        self.meta, self.rows, self.saved, self.saved_rows = meta, rows, saved, saved_rows


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: the finished rows (and the interrupted one, marked) are saved."""

    def __init__(self, rows, saved):
        super().__init__()
        self.rows, self.saved = rows, saved

    @property
    def finished(self) -> int:
        return sum(1 for r in self.rows if not r.get("interrupted"))


def plan(mtu: int, v6: bool, points: int = DEFAULT_POINTS) -> list[int]:
    return frag.plan_sizes(mtu, v6, budget=points)


def results_path(output: str | Path) -> Path:
    """The .npz that ``results.save(output, ...)`` writes."""
    base = Path(output)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz")


def sweep(hosts: list[str] | str, options: SweepOptions | None = None, *, on_row=None, on_progress=None,
          on_notice=None, stop: threading.Event | None = None, **fields) -> Sweep:
    """Measure every payload size of a plan at each host in turn; one ``Row`` per (host, size).

    Options come as a ``SweepOptions``, as keywords, or both (keywords win). The path MTU of
    each host is discovered first. With ``output`` the result files are rewritten atomically
    after every row, so a sweep cut short keeps what it measured.

    Callbacks: ``on_row(row)`` after each row; ``on_progress(done, total, current)`` before each
    measurement (``current`` names it, e.g. "127.0.0.1 1472 B") and once at the end with
    ``current`` ""; ``on_notice(text)`` for what is worth knowing but no error. Set ``stop``
    from another thread to end the sweep early: the row under way is kept, marked
    ``interrupted``, and the Sweep comes back with ``stopped`` true.

    A failed row raises ``MeasurementError`` naming it, after the finished rows are saved;
    Ctrl-C raises ``SweepInterrupted`` after saving the finished rows and the interrupted one.
    """
    o = options_of(options, fields, SweepOptions)
    hosts = [hosts] if isinstance(hosts, str) else list(hosts)
    if not hosts:
        raise UserError("no hosts to sweep")
    check_common(o.duration, o.rate, o.streams)
    if o.direction not in ("forward", "reverse"):
        raise UserError(f"direction {o.direction!r} is neither forward nor reverse")
    if o.direction == "reverse" and (o.streams != 1 or o.df):
        raise UserError("a reverse sweep runs one stream, sent by the server, without df")
    if o.trace is not None:
        check_trace_target(o)
    if not (isinstance(o.points, int) and 1 <= o.points <= MAX_POINTS):
        raise UserError(f"points {o.points!r} must be between 1 and {MAX_POINTS}")
    if o.output is not None:
        results.check_writable(o.output)  # before measuring, not after a long sweep
    sizes = None if o.sizes is None else sorted(set(o.sizes))
    check_sizes(sizes)
    meta = {
        "tool": "udpbench", "version": __version__, "command": o.command,
        "kernel": platform.release(), "machine": platform.machine(), "hostname": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engine": o.engine, "streams": o.streams,
        "duration_s": o.duration, "df": o.df, "direction": o.direction, "hosts": [],
    }
    result = Sweep(meta, [])
    rows = result.rows

    saved_rows = 0

    def checkpoint():
        nonlocal saved_rows
        if o.output is None:
            return
        try:
            result.path = results.save(o.output, meta, rows)[0]
        except OSError as exc:
            target = results.paths(o.output)[0]
            kept = (f"{result.path} still holds the {saved_rows} row(s) saved before" if result.path
                    else "nothing was saved")
            why = f"{exc.strerror} ({errno_name(exc.errno)})" if exc.errno else str(exc)
            raise ResultsNotSaved(f"cannot write {target}: {why}; {kept}", meta, list(rows), result.path,
                                  saved_rows) from None
        saved_rows = len(rows)

    # Control connections are not held idle: a server ends a silent one, and a long
    # sweep of one host would otherwise cost the next its connection. First each host's path
    # MTU, then each host's rows on a connection of its own.
    hosts_v6 = []
    for host in hosts:
        with connect(host, o.port, o.family, token=o.token, on_notice=on_notice) as client:
            loopback = is_loopback(client.server_addr[0])
            # Discovered, not assumed: the echo method through this client (exact, black-hole
            # proof), else ICMP, else the route's MTU; loopback just reads its interface.
            found = path_mtu.sweep_path_mtu(client, loopback)
            meta["hosts"].append({"host": host, "address": client.server_addr[0], "port": client.port,
                                  "family": 6 if client.v6 else 4, "loopback": loopback, **found})
            hosts_v6.append(client.v6)
    if sizes is None:
        reference = min(h["path_mtu"] if not h["loopback"] else min(h["path_mtu"], ETHERNET_MTU)
                        for h in meta["hosts"])
        sizes = plan(reference, any(hosts_v6), o.points)
        meta["plan"] = {"kind": "around-mtu", "reference_mtu": reference, "points": o.points}
    else:
        meta["plan"] = {"kind": "given"}
    for host, v6 in zip(hosts, hosts_v6):
        for size in sizes:
            try:
                wire.check_size(size, v6)
            except wire.WireError as exc:
                raise UserError(f"{host}: {exc}") from None
    meta["sizes"] = sizes
    total = len(sizes) * len(hosts)
    try:
        with stop_flag(stop) as flag:
            _measure(o, result, sizes, total, checkpoint, flag, stop, on_row, on_progress, on_notice)
    except KeyboardInterrupt:
        # Whenever Ctrl-C lands (mid-blast, waiting for a REPORT, mid-save), save again:
        # the write is atomic, so the file holds every finished row and loads.
        meta["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            checkpoint()
        except ResultsNotSaved:
            pass  # Ctrl-C wins; the file holds what the last good write put there
        raise SweepInterrupted(rows, result.path) from None
    if stop is not None and stop.is_set():
        result.stopped = True
        meta["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    else:
        meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if on_progress is not None:
            on_progress(total, total, "")
    checkpoint()
    return result


def check_trace_target(o: SweepOptions) -> None:
    """Refuse a trace nobody could write before measuring, not after the first row."""
    if o.streams != 1:
        raise UserError(f"a trace covers one stream, not {o.streams}: ask for one or the other")
    if not (isinstance(o.trace_limit, int) and 0 < o.trace_limit <= 100_000_000):
        raise UserError(f"trace limit {o.trace_limit!r} is outside 1..100000000 datagrams")
    directory = os.path.dirname(os.path.abspath(traces.per_row_path(str(o.trace), "host", 0, o.direction)))
    if not os.path.isdir(directory):
        raise UserError(f"cannot write traces {o.trace}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UserError(f"cannot write traces {o.trace}: directory {directory} is not writable")


def _measure(o: SweepOptions, result: Sweep, sizes: list[int], total: int, checkpoint,
             flag, stop, on_row, on_progress, on_notice) -> None:
    """The rows, host by host; returns early once ``stop`` is set."""
    rows = result.rows
    arrays = traces.buffers(o.trace_limit) if o.trace is not None else None  # reused row after row
    for info in result.meta["hosts"]:
        with connect(info["host"], o.port, o.family, token=o.token, on_notice=on_notice) as client:
            info["port"] = client.port  # an embedded server gets a new port each time
            host_rate = o.rate if o.rate is not None else default_rate(client.server_addr[0])
            for size in sizes:
                if stop is not None and stop.is_set():
                    return
                if on_progress is not None:
                    on_progress(len(rows), total, f"{client.host} {size} B")
                try:
                    if o.direction == "reverse":
                        row = blast_reverse(client, size, o.duration, host_rate, o.engine, stop=flag,
                                            trace_arrays=arrays)
                        if arrays is not None:
                            write_trace(traces.per_row_path(str(o.trace), client.host, size, o.direction),
                                        arrays, row)
                    elif o.trace is not None:  # the server keeps the trace; fetched after each REPORT
                        row = traced_forward_row(client, BlastOptions(
                            size=size, duration=o.duration, engine=o.engine, path_mtu=info["path_mtu"], df=o.df,
                            trace=traces.per_row_path(str(o.trace), client.host, size, o.direction),
                            trace_limit=o.trace_limit), host_rate, flag, None)
                    else:
                        row = blast_streams(client, o.streams, size, o.duration, host_rate, o.engine,
                                            path_mtu=info["path_mtu"], df=o.df, stop=flag)
                except MeasurementError as exc:
                    checkpoint()
                    kept = f"; {len(rows)} finished row(s) kept in {result.path}" if result.path else ""
                    raise MeasurementError(f"row {len(rows) + 1} ({client.host}, {size} B) failed: "
                                           f"{exc}{kept}") from None
                if stop is not None and stop.is_set():
                    row.interrupted = True
                rows.append(row)
                if row.interrupted and row.interrupt is not None:
                    raise KeyboardInterrupt
                checkpoint()
                if on_row is not None:
                    on_row(row)
