"""`udpbench sweep`: the command line of ``measure.sweep``, with a live bar, a table and files."""
from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

from udpbench.cli import options
from udpbench.cli.blast import add_measuring_arguments
from udpbench.cli.common import print_notice, print_table
from udpbench.errors import MeasurementError, UserError
from udpbench.measure.sweep import DEFAULT_POINTS, MAX_POINTS, ResultsNotSaved, SweepInterrupted, results_path, sweep
from udpbench.output import plot
from udpbench.output import results
from udpbench.output import trace as traces
from udpbench.protocol.units import parse_sizes


def add_parser(commands) -> None:
    p = commands.add_parser("sweep", help="throughput and loss over payload sizes around the path MTU",
                            description="Blast each payload size of a plan at each host in turn and record "
                                        "what arrived. With no server at a loopback host, an embedded one serves it.")
    p.add_argument("hosts", nargs="+", metavar="HOST", help="servers to measure (127.0.0.1: this machine)")
    add_measuring_arguments(p)
    p.add_argument("--sizes", type=parse_sizes, metavar="N,N,...",
                   help="payload sizes in bytes (default: a plan around the path MTU)")
    p.add_argument("--points", type=int, default=DEFAULT_POINTS,
                   help=f"most sizes in the default plan (default {DEFAULT_POINTS})")
    p.add_argument("--duration", type=options.positive_seconds("--duration"), default=1.0, metavar="S",
                   help="seconds per size (default 1)")
    p.add_argument("-o", "--output", type=Path, metavar="NAME",
                   help="result file base name: writes NAME.npz and NAME.json (default results/sweep-TIME)")
    p.add_argument("--no-save", action="store_true", help="do not write result files")
    p.add_argument("-R", "--reverse", action="store_true",
                   help="each server sends and this side receives: the reverse path's curves (one stream)")
    p.add_argument("--trace", metavar="DIR_OR_PREFIX", default=None,
                   help="write each row's datagrams to a trace file of its own, "
                        "DIR/HOST-SIZEB-reverse.npz (an existing directory, or a name ending in /) "
                        "or PREFIX-HOST-SIZEB-reverse.npz")
    p.add_argument("--trace-limit", type=options.whole_number_between("--trace-limit", 1, 100_000_000),
                   default=traces.DEFAULT_LIMIT, metavar="N",
                   help=f"datagrams each trace holds at most (default {traces.DEFAULT_LIMIT:,}); a file says when it was cut")
    p.add_argument("--bidir", action="store_true",
                   help="not available on sweep (refused): run blast --bidir per size instead")
    p.add_argument("--plot", metavar="PNG", default=None,
                   help="also draw the sweep to this image (.png, .svg or .pdf), as `udpbench plot` does")
    p.set_defaults(func=run)


def default_output() -> Path:
    return Path("results") / time.strftime("sweep-%Y%m%d-%H%M%S")


class Progress:
    """A live bar on a terminal's stderr, driven by the sweep's on_progress; silence otherwise."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

            self.bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           TimeRemainingColumn(), transient=True)
            self.task = self.bar.add_task("sweep", total=None)

    def __enter__(self):
        if self.bar:
            self.bar.start()
        return self

    def update(self, done: int, total: int, current: str) -> None:
        if self.bar:
            self.bar.update(self.task, completed=done, total=total, description=current or "sweep")

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def run(args) -> int:
    if not 1 <= args.points <= MAX_POINTS:
        raise UserError(f"--points must be between 1 and {MAX_POINTS}")
    if args.bidir:
        raise UserError("sweep does not take --bidir: its rows are one direction each; sweep once, then with -R")
    if args.reverse and (args.streams > 1 or args.df):
        raise UserError("sweep -R runs one stream sent by the server: leave out --streams and --df")
    output = None if args.no_save else (args.output or default_output())
    if args.plot:
        plot.check_output(args.plot)  # refuse a bad image name before measuring, not after
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("udpbench", "__main__.py")) else None
    command = shlex.join(["udpbench", *options.redact(argv)]) if argv else None
    try:
        with Progress(enabled=not args.json) as bar:
            done = sweep(args.hosts, sizes=args.sizes, points=args.points, duration=args.duration,
                         rate=args.rate, engine=args.engine, streams=args.streams, df=args.df,
                         direction="reverse" if args.reverse else "forward",
                         trace=args.trace, trace_limit=args.trace_limit,
                         port=args.port, family=args.family, token=options.token_of(args),
                         output=output, command=command, on_progress=bar.update, on_notice=print_notice)
    except SweepInterrupted as stop:
        partial = " and the interrupted one" if len(stop.rows) > stop.finished else ""
        where = f"; {stop.finished} finished row(s){partial} saved in {stop.saved}" if stop.saved else ""
        print(f"udpbench: sweep interrupted{where}", file=sys.stderr)
        if args.plot and stop.saved and stop.rows:
            _plot_partial(stop.saved, args.plot)
        return 130
    except ResultsNotSaved as failed:
        return _rescue(failed, args)
    except MeasurementError:
        partial = results_path(output) if output is not None else None
        if args.plot and partial is not None and partial.exists():
            _plot_partial(partial, args.plot)
        raise
    meta, rows, saved = done.meta, done.rows, done.path
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


def _plot_partial(path: Path, image: str) -> None:
    """Draw the rows an unfinished sweep saved; a failure here must not hide why the sweep stopped."""
    try:
        _, rows = results.load(path)
        if rows:
            print(f"wrote {plot.plot_file(path, image)} from the {len(rows)} finished row(s)", file=sys.stderr)
    except (UserError, ValueError, OSError) as exc:
        print(f"udpbench: no plot of the unfinished sweep: {exc}", file=sys.stderr)


def _rescue(failed: ResultsNotSaved, args) -> int:
    """The result files could not be written mid-sweep: keep every measured row somewhere (the
    system's temporary directory) and print them, so a long sweep is not lost to a full disk."""
    rows = failed.rows
    if not rows:
        print(f"udpbench: {failed}", file=sys.stderr)
        return 1
    rescue = Path(tempfile.gettempdir()) / time.strftime("udpbench-unsaved-%Y%m%d-%H%M%S")
    try:
        where = str(results.save(rescue, failed.meta, rows)[0])
    except OSError as exc:
        where = f"the table on stdout only ({rescue}: {exc.strerror})"
    if args.json:
        print(json.dumps({"meta": failed.meta, "rows": [results.public(r) for r in rows]}, default=str))
    else:
        print_table(rows, title="udpbench sweep: rows measured before the result files failed")
    print(f"udpbench: {failed}; all {len(rows)} measured row(s) are in {where}", file=sys.stderr)
    return 1
