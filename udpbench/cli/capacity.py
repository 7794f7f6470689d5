"""`udpbench capacity`: the highest rate each host carries at each payload size within a loss
threshold (RFC 2544 throughput), as a table, a result file and optionally a plot."""
from __future__ import annotations

import json
import math
import shlex
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from udpbench.engine.choice import CHOICES as ENGINE_CHOICES
from udpbench.errors import UserError
from udpbench.measure.capacity import DEFAULT_POINTS, CapacityInterrupted, CapacityOptions, capacity
from udpbench.cli import options
from udpbench.cli.options import positive_seconds, redact, whole_number_between
from udpbench.output import capacity_plot, plot
from udpbench.protocol.units import format_count, format_rate, parse_rate, parse_sizes


def ratio(name: str, low_open: bool):
    """An argparse type for a fraction, as '0.1%' or '0.001', named in its errors: in [0, 1), or
    (0, 1) when ``low_open``."""
    def parse(text: str) -> float:
        body = text.strip()
        scale = 100.0 if body.endswith("%") else 1.0
        try:
            value = float(body.rstrip("%")) / scale
        except ValueError:
            raise UserError(f"{name} {text!r} is not a number like 0.1% or 0.001") from None
        if not math.isfinite(value) or value >= 1 or value < 0 or (low_open and value == 0):
            low = "above 0" if low_open else "at least 0"
            raise UserError(f"{name} {text!r} must be {low} and below 1 (100%)")
        return value
    return parse


def add_parser(commands) -> None:
    p = commands.add_parser("capacity", help="the highest rate without loss at each payload size (RFC 2544 NDR/PDR)",
                            description="For each payload size, search the highest rate at which the path "
                                        "loses no more than --loss: a trial at max, then a binary search, "
                                        "then confirmations. Says where the loss above it happened.")
    p.add_argument("hosts", nargs="+", metavar="HOST", help="servers to measure (127.0.0.1: this machine)")
    p.add_argument("--loss", type=ratio("--loss", low_open=False), default=0.0, metavar="RATIO",
                   help="loss a passing trial may show: 0 (default) finds the no-drop rate, 0.1%% a partial-drop rate")
    p.add_argument("--sizes", type=parse_sizes, metavar="N,N,...",
                   help="payload sizes in bytes (default: a plan around the path MTU)")
    p.add_argument("--points", type=whole_number_between("--points", 1, 1000), default=DEFAULT_POINTS,
                   metavar="N", help=f"most sizes in the default plan (default {DEFAULT_POINTS})")
    p.add_argument("--resolution", type=ratio("--resolution", low_open=True), default=0.01, metavar="RATIO",
                   help="stop when the failing rate is within this much above the passing one (default 1%%)")
    p.add_argument("--trial", type=positive_seconds("--trial", high=600.0), default=1.0, metavar="S",
                   help="seconds a trial (default 1)")
    p.add_argument("--confirm", type=whole_number_between("--confirm", 0, 100), default=2, metavar="N",
                   help="further trials at the found rate, all of which must pass (default 2)")
    p.add_argument("--max-rate", type=parse_rate, default=None, metavar="R",
                   help="payload bits/s of the first trial, the upper bound (default: max)")
    p.add_argument("--no-reassembly-wait", action="store_true",
                   help="after a far receiver's reassembly memory overflowed, warn instead of waiting "
                        "ipfrag_time (30 s) for it to drain")
    options.add_port(p)
    options.add_family(p)
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto", help="send engine (default auto)")
    p.add_argument("--df", action="store_true",
                   help="set Don't Fragment: a size above the path MTU is reported not sendable")
    p.add_argument("-o", "--output", type=Path, metavar="NAME",
                   help="result file base name: NAME.npz and NAME.json (default results/capacity-TIME)")
    p.add_argument("--no-save", action="store_true", help="do not write result files")
    p.add_argument("--plot", metavar="PNG", default=None, help="also draw the found rates (.png, .svg or .pdf)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    options.add_token(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.plot:
        plot.check_output(args.plot)  # refuse a bad image name before measuring, not after
    output = None if args.no_save else (args.output or Path("results") / time.strftime("capacity-%Y%m%d-%H%M%S"))
    argv = sys.argv[1:] if sys.argv and sys.argv[0].endswith(("udpbench", "__main__.py")) else None
    search = CapacityOptions(sizes=args.sizes, points=args.points, loss=args.loss, resolution=args.resolution,
                             trial_s=args.trial, confirm=args.confirm, max_rate_bps=args.max_rate or None,
                             engine=args.engine, df=args.df, port=args.port, family=args.family,
                             token=options.token_of(args), reassembly_wait=not args.no_reassembly_wait,
                             output=output, command=shlex.join(["udpbench", *redact(argv)]) if argv else None)
    on_row = None if args.json or not sys.stderr.isatty() else _progress
    try:
        result = capacity(args.hosts, search, on_row=on_row, on_notice=_notice)
    except CapacityInterrupted as stop:
        done = stop.result
        where = f"; {len(done.rows)} finished size(s) saved in {done.saved}" if done.saved else ""
        print(f"udpbench: capacity interrupted{where}", file=sys.stderr)
        if args.plot and done.rows:
            _draw(done, args.plot)
        return 130
    rows = [r.as_dict() for r in result.rows]
    if args.json:
        print(json.dumps({"meta": result.meta, "rows": rows}, default=str))
    else:
        Console(width=200 if not sys.stdout.isatty() else None).print(table(rows, _title(result.meta)))
        for row in rows:
            for warning in row["warnings"]:
                print(f"udpbench: {row['host']} {row['size']} B: {warning}", file=sys.stderr)
    if result.saved:
        print(f"saved {result.saved} and {result.saved.with_suffix('.json')}", file=sys.stderr)
    if args.plot and rows:
        _draw(result, args.plot)
    refused = [r for r in rows if not r["sendable"]]
    if refused:
        sizes = ", ".join(f"{r['size']} B to {r['host']} ({r['send_error']}, path MTU {r['path_mtu']})"
                          for r in refused)
        print(f"udpbench: capacity: not sendable with --df: {sizes}", file=sys.stderr)
        return 2
    return 0


def _draw(result, image: str) -> None:
    print(f"wrote {capacity_plot.render(result.meta, [r.as_dict() for r in result.rows], image)}", file=sys.stderr)


def _notice(text: str) -> None:
    print(f"udpbench: {text}", file=sys.stderr, flush=True)


def _progress(row) -> None:
    print(f"  {row.host} {row.size} B: {format_rate(row.found_bps)} after {row.trials} trials",
          file=sys.stderr, flush=True)


def _title(meta: dict) -> str:
    what = "no-drop rate" if meta["loss_threshold"] == 0 else f"rate losing at most {100 * meta['loss_threshold']:g}%"
    hosts = ", ".join(f"{h['host']} (path MTU {h['path_mtu']})" for h in meta["hosts"])
    return f"udpbench capacity: {what}, {hosts}{', DF set' if meta['df'] else ''}"


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.3g}%"


def table(rows: list[dict], title: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for heading in ("host", "size B", "frags", "found", "found pps", "loss there", "failed at",
                    "loss there ", "cause", "trials", "resolution", "note"):
        t.add_column(heading, justify="left" if heading in ("host", "cause", "note") else "right")
    for r in rows:
        if not r["sendable"]:
            t.add_row(r["host"], str(r["size"]), "-", "-", "-", "-", "-", "-", "-", str(r["trials"]), "-",
                      f"not sendable: {r['send_error']} (DF, > path MTU {r['path_mtu']})")
            continue
        notes = ["sender-limited"] if r["sender_limited"] else []
        if r.get("disturbed_trials"):  # files from before this field lack it
            notes.append(f"{r['disturbed_trials']} spoiled by sender stalls")
        note = "; ".join(notes)
        t.add_row(r["host"], str(r["size"]), str(r["fragments"]), format_rate(r["found_bps"]),
                  format_count(r["found_pps"]), _percent(r["loss_at_found"]),
                  format_rate(r["failed_bps"]) if r["failed_bps"] else "-", _percent(r["loss_above"]),
                  r["cause"] or "-", str(r["trials"]), _percent(r["resolution"]) if r["failed_bps"] else "-", note)
    return t
