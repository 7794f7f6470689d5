"""`udpbench sweep`: the same plan of payload sizes against each host, one row per size, saved as it goes."""
from __future__ import annotations

import json
import platform
import shlex
import socket
import sys
import time
from pathlib import Path

from udpbench._version import __version__
from udpbench.protocol import control
from udpbench.protocol import frag
from udpbench.output import plot
from udpbench.output import results
from udpbench.protocol import wire
from udpbench.measure import path_mtu
from udpbench.measure.embedded import connect
from udpbench.linux.sockopts import is_loopback
from udpbench.transport.client import DEFAULT_LAN_RATE_BPS
from udpbench.engine.choice import CHOICES as ENGINE_CHOICES
from udpbench.errors import MeasurementError, UserError
from udpbench.output.report import print_table
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.transport.streams import blast_streams
from udpbench.protocol.units import parse_rate, parse_sizes, port_number, positive_seconds, whole_number_between

# Loopback's MTU (65536) fragments nothing at Ethernet sizes; a loopback-only sweep is planned
# around Ethernet's 1500 so its rows line up with a LAN's (that contrast is the point).
ETHERNET_MTU = 1500
DEFAULT_POINTS = 24
MAX_STREAMS = 16  # the server serves 16 control connections at once by default


def plan(mtu: int, v6: bool, points: int = DEFAULT_POINTS) -> list[int]:
    return frag.plan_sizes(mtu, v6, budget=points)


def default_rate(address: str) -> float:
    """As fast as possible on this machine; a 100 Mbit/s safety default toward any other host."""
    return 0.0 if is_loopback(address) else DEFAULT_LAN_RATE_BPS


class Progress:
    """A live bar on a terminal's stderr; silence otherwise."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("sweep", total=total)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def step(self, description: str) -> None:
        if self.bar:
            self.bar.update(self.task, description=description)

    def advance(self) -> None:
        if self.bar:
            self.bar.advance(self.task)

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def default_output() -> Path:
    return Path("results") / time.strftime("sweep-%Y%m%d-%H%M%S")


def redact(argv: list[str]) -> list[str]:
    """The command line without the token's value: result files get shared, secrets must not."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--token":
            out.append(arg)
            hide = True
        elif arg.startswith("--token="):
            out.append("--token=***")
        else:
            out.append(arg)
    return out


def run_sweep(hosts: list[str], sizes: list[int] | None, duration: float, rate: float | None,
              engine: str, port: int = DEFAULT_PORT, family: int | None = None,
              output: Path | None = None, points: int = DEFAULT_POINTS, progress: bool = True,
              argv: list[str] | None = None, df: bool = False,
              token: str | None = None, streams: int = 1) -> tuple[dict, list[dict], Path | None]:
    """Run the sweep; save after every row. Returns (meta, rows, npz path).

    A failed row raises MeasurementError naming it, after the finished rows are saved; Ctrl-C
    raises SweepInterrupted after the finished rows (and the interrupted one, marked) are saved.
    """
    meta = {
        "tool": "udpbench", "version": __version__,
        "command": shlex.join(["udpbench", *redact(argv)]) if argv else None,
        "kernel": platform.release(), "machine": platform.machine(), "hostname": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engine": engine, "streams": streams,
        "duration_s": duration, "df": df, "hosts": [],
    }
    rows: list[dict] = []
    saved: Path | None = None

    def checkpoint():
        nonlocal saved
        if output is not None:
            saved = results.save(output, meta, rows)[0]

    # Control connections are not held idle: a server ends a silent one, and a long
    # sweep of one host would otherwise cost the next its connection. First each host's path
    # MTU, then each host's rows on a connection of its own.
    hosts_v6 = []
    for host in hosts:
        with connect(host, port, family, token=token) as client:
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
        sizes = plan(reference, any(hosts_v6), points)
        meta["plan"] = {"kind": "around-mtu", "reference_mtu": reference, "points": points}
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
    with Progress(total, progress) as bar:
        try:
            for info in meta["hosts"]:
                with connect(info["host"], port, family, token=token) as client:
                    info["port"] = client.port  # an embedded server gets a new port each time
                    host_rate = rate if rate is not None else default_rate(client.server_addr[0])
                    for size in sizes:
                        bar.step(f"{client.host} {size} B")
                        try:
                            row = blast_streams(client, streams, size, duration, host_rate, engine,
                                                path_mtu=info["path_mtu"], df=df)
                        except MeasurementError as exc:
                            checkpoint()
                            kept = f"; {len(rows)} finished row(s) kept in {saved}" if saved else ""
                            raise MeasurementError(f"row {len(rows) + 1} ({client.host}, {size} B) failed: "
                                                   f"{exc}{kept}") from None
                        rows.append(row)
                        if row.get("interrupted"):
                            raise KeyboardInterrupt
                        checkpoint()
                        bar.advance()
        except KeyboardInterrupt:
            # Whenever Ctrl-C lands (mid-blast, waiting for a REPORT, mid-save), save again:
            # the write is atomic, so the file holds every finished row and loads.
            meta["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            checkpoint()
            raise SweepInterrupted(rows, saved) from None
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    checkpoint()
    return meta, rows, saved


class SweepInterrupted(KeyboardInterrupt):
    def __init__(self, rows, saved):
        super().__init__()
        self.rows, self.saved = rows, saved

    @property
    def finished(self) -> int:
        return sum(1 for r in self.rows if not r.get("interrupted"))


def add_parser(commands) -> None:
    p = commands.add_parser("sweep", help="throughput and loss over payload sizes around the path MTU",
                            description="Blast each payload size of a plan at each host in turn and record "
                                        "what arrived. With no server at a loopback host, an embedded one serves it.")
    p.add_argument("hosts", nargs="+", metavar="HOST", help="servers to measure (127.0.0.1: this machine)")
    add_common_arguments(p)
    p.add_argument("--sizes", type=parse_sizes, metavar="N,N,...",
                   help="payload sizes in bytes (default: a plan around the path MTU)")
    p.add_argument("--points", type=int, default=DEFAULT_POINTS,
                   help=f"most sizes in the default plan (default {DEFAULT_POINTS})")
    p.add_argument("--duration", type=positive_seconds("--duration"), default=1.0, metavar="S",
                   help="seconds per size (default 1)")
    p.add_argument("-o", "--output", type=Path, metavar="NAME",
                   help="result file base name: writes NAME.npz and NAME.json (default results/sweep-TIME)")
    p.add_argument("--no-save", action="store_true", help="do not write result files")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the sweep to this image (.png, .svg or .pdf), as `udpbench plot` does")
    p.set_defaults(func=run)


def add_common_arguments(p) -> None:
    """Options blast and sweep share."""
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"server port (default {DEFAULT_PORT})")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET, help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only")
    p.add_argument("--rate", type=parse_rate, default=None, metavar="R",
                   help="UDP payload bits/s with k/M/G suffix, or 'max' (default: max for loopback; "
                        "100M for any other host, a safety default)")
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="send: one send() per datagram; mmsg: sendmmsg batches; gso: UDP segmentation "
                        "offload (payloads that fit the path MTU); auto (default): gso where it fits, else mmsg")
    p.add_argument("--streams", type=whole_number_between("--streams", 1, MAX_STREAMS), default=1, metavar="N",
                   help="parallel streams, each its own socket and session; --rate is their total (default 1)")
    p.add_argument("--df", action="store_true",
                   help="set Don't Fragment (IP_PMTUDISC_DO): sizes above the path MTU are refused "
                        "by the kernel (EMSGSIZE) and reported as not sendable instead of fragmented")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    control.add_token_arguments(p)


def run(args) -> int:
    if not 1 <= args.points <= 1000:
        raise UserError("--points must be between 1 and 1000")
    for size in args.sizes or ():
        try:
            wire.check_size(size, v6=True)  # the IPv4 limit is checked per host, once resolved
        except wire.WireError as exc:
            raise UserError(str(exc)) from None
    output = None if args.no_save else (args.output or default_output())
    if args.plot:
        plot.check_output(args.plot)  # refuse a bad image name before measuring, not after
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("udpbench", "__main__.py")) else None
    try:
        meta, rows, saved = run_sweep(args.hosts, args.sizes, args.duration, args.rate, args.engine,
                                      args.port, args.family, output, args.points,
                                      progress=not args.json, argv=argv, df=args.df, token=control.token_of(args),
                                      streams=args.streams)
    except SweepInterrupted as stop:
        partial = " and the interrupted one" if len(stop.rows) > stop.finished else ""
        where = f"; {stop.finished} finished row(s){partial} saved in {stop.saved}" if stop.saved else ""
        print(f"udpbench: sweep interrupted{where}", file=sys.stderr)
        if args.plot and stop.saved and stop.rows:
            _plot_partial(stop.saved, args.plot)
        return 130
    except MeasurementError:
        partial = results_path(output) if output is not None else None
        if args.plot and partial is not None and partial.exists():
            _plot_partial(partial, args.plot)
        raise
    if args.json:
        print(json.dumps({"meta": meta, "rows": [results.public(r) for r in rows]}, default=str))
    else:
        hosts = ", ".join(f"{h['host']} (path MTU {h['path_mtu']} by {h['mtu_method']}"
                          f"{', BLACK HOLE' if h['black_hole'] else ''})" for h in meta["hosts"])
        print_table(rows, title=f"udpbench sweep: {hosts}{', DF set' if meta['df'] else ''}")
        for h in meta["hosts"]:
            for w in h["mtu_warnings"]:
                print(f"udpbench: {h['host']}: {w}", file=sys.stderr)
    if saved:
        print(f"saved {saved} and {saved.with_suffix('.json')}", file=sys.stderr)
    if args.plot and rows:
        print(f"wrote {plot.render(meta, rows, args.plot)}", file=sys.stderr)
    return 0


def results_path(output: Path) -> Path:
    """The .npz that ``results.save(output, ...)`` writes."""
    base = Path(output)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz")


def _plot_partial(path: Path, image: str) -> None:
    """Draw the rows an unfinished sweep saved; a failure here must not hide why the sweep stopped."""
    try:
        _, rows = results.load(path)
        if rows:
            print(f"wrote {plot.plot_file(path, image)} from the {len(rows)} finished row(s)", file=sys.stderr)
    except (UserError, ValueError, OSError) as exc:
        print(f"udpbench: no plot of the unfinished sweep: {exc}", file=sys.stderr)
