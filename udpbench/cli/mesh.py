"""`udpbench mesh`: every path among a Dask cluster's hosts, or among the hosts of a lab."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from udpbench.cli.lab import parse_links
from udpbench.errors import UserError
from udpbench.output import matrix
from udpbench.cli import options
from udpbench.cli.options import positive_seconds, whole_number_between
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.protocol.units import parse_rate, parse_sizes


def add_parser(commands) -> None:
    p = commands.add_parser("mesh", help="measure every path among a Dask cluster's hosts",
                            description="Start a udpbench server in every Dask worker and measure each ordered "
                                        "pair of workers from the source's worker, in rounds where no host is "
                                        "in two measurements. Needs: pip install \"udpbench[mesh]\".")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--scheduler", metavar="ADDRESS", help="the Dask scheduler, e.g. tcp://10.0.0.1:8786")
    where.add_argument("--lab", type=whole_number_between("--lab", 2, 64), metavar="N",
                       help="no cluster: build an N-host lab (root), run the mesh in it, remove it")
    p.add_argument("--link", action="append", default=[], metavar="HOST:SETTINGS",
                   help="with --lab: one host's link, e.g. h3:mtu=1400,loss=1%% (default: MTUs 1500, 1400, "
                        "1300, ... and 2%% loss into the last host)")
    options.add_port(p, help=f"udpbench server port (default {DEFAULT_PORT})")
    p.add_argument("--sizes", type=parse_sizes, metavar="N,N,...",
                   help="payload sizes (default: the largest unfragmented payload of each pair)")
    p.add_argument("--duration", type=positive_seconds("--duration"), default=1.0, metavar="S",
                   help="seconds per size (default 1)")
    options.add_rate(p, help="UDP payload bits/s (default 100M, sweep's safety default for other hosts)")
    p.add_argument("--mtu-only", action="store_true", help="the path MTU matrix only: no blast")
    p.add_argument("--concurrency", type=whole_number_between("--concurrency", 1, 10_000), default=None,
                   metavar="K", help="most measurements at once (default: all a round allows; 1: one at a time)")
    p.add_argument("--timeout", type=positive_seconds("--timeout"), default=60.0, metavar="S",
                   help="seconds a measurement may take before it is marked failed (default 60)")
    p.add_argument("--max-rate", type=parse_rate, default=0.0, metavar="R",
                   help="rate limit of the servers the mesh starts (default: none)")
    p.add_argument("--wait-workers", type=whole_number_between("--wait-workers", 0, 100_000), default=0,
                   metavar="N", help="wait for N workers to join before starting")
    p.add_argument("--connect-timeout", type=positive_seconds("--connect-timeout"), default=10.0, metavar="S",
                   help="seconds to reach the scheduler and for --wait-workers (default 10)")
    p.add_argument("-o", "--output", type=Path, metavar="NAME",
                   help="result file base name: NAME.npz and NAME.json (default results/mesh-TIME)")
    p.add_argument("--plot", metavar="PNG", default=None, help="also draw the matrices as heatmaps")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of the matrices")
    p.add_argument("--progress", action="store_true", help="print a line as each pair finishes")
    options.add_token(p)
    p.set_defaults(func=run)


def run(args) -> int:
    output = args.output or Path("results") / time.strftime("mesh-%Y%m%d-%H%M%S")
    if args.lab:
        return _run_lab(args, output)
    if args.link:
        raise UserError("mesh: --link applies to --lab only")
    from udpbench.measure import mesh

    mesh.require_distributed()
    mesh_options = mesh.MeshOptions(port=args.port, token=options.token_of(args), sizes=args.sizes,
                                    duration=args.duration, rate=args.rate, mtu_only=args.mtu_only,
                                    concurrency=args.concurrency, timeout=args.timeout, max_rate_bps=args.max_rate,
                                    wait_workers=args.wait_workers, output=output,
                                    connect_timeout=args.connect_timeout)
    on_pair = _print_pair if args.progress else None
    try:
        result = mesh.mesh(args.scheduler, mesh_options, on_pair=on_pair,
                           on_notice=lambda text: print(f"udpbench: {text}", file=sys.stderr))
    except mesh.MeshInterrupted as stop:
        done = stop.result
        _print_result(args, done)
        planned = sum(len(r) for r in done.meta["schedule"])
        where = f", saved in {done.saved.with_suffix('.json')}" if done.saved else ""
        print(f"udpbench: mesh interrupted: {len(done.pairs)} of {planned} pairs finished{where}", file=sys.stderr)
        return 130
    _print_result(args, result)
    failed = [p for p in result.pairs if p["status"] != "ok"]
    if failed:
        print(f"udpbench: partial result: {len(failed)} of {len(result.pairs)} pairs failed "
              f"({failed[0]['src']}->{failed[0]['dst']}: {failed[0]['reason']})", file=sys.stderr)
        return 1
    return 0


def _print_result(args, result) -> None:
    if args.json:
        print(json.dumps({"meta": result.meta, "rows": result.rows}, default=str))
    else:
        print(format_summary(result.meta, result.rows))
    if result.saved:
        print(f"saved {result.saved} and {result.saved.with_suffix('.json')}", file=sys.stderr)
    if args.plot and result.pairs:
        print(f"wrote {matrix.heatmap(result.meta, result.rows, args.plot)}", file=sys.stderr)


def _run_lab(args, output: Path) -> int:
    from udpbench.lab import cluster

    links = parse_links(args.link) if args.link else None
    tail = _mesh_argv(args, output.resolve())
    return cluster.run_mesh_in_lab(args.lab, links, tail, prefix=f"ubmesh{os.getpid()}")


def _mesh_argv(args, output: Path) -> list[str]:
    """The options to pass on to the mesh that runs inside the lab."""
    tail = ["--port", str(args.port), "--duration", repr(args.duration), "--timeout", repr(args.timeout),
            "-o", str(output)]
    if args.sizes:
        tail += ["--sizes", ",".join(map(str, args.sizes))]
    if args.rate is not None:
        tail += ["--rate", repr(args.rate) if args.rate else "max"]
    if args.max_rate:
        tail += ["--max-rate", repr(args.max_rate)]
    if args.concurrency:
        tail += ["--concurrency", str(args.concurrency)]
    for flag in ("mtu_only", "json", "progress"):
        if getattr(args, flag):
            tail.append("--" + flag.replace("_", "-"))
    if args.plot:
        tail += ["--plot", str(Path(args.plot).resolve())]
    return tail


def _print_pair(pair: dict) -> None:
    what = f"path MTU {pair['path_mtu']}" if pair["status"] == "ok" else f"FAILED: {pair['reason']}"
    print(f"pair {pair['round']:>3}  {pair['src']} -> {pair['dst']}  {what}", flush=True)


def format_summary(meta: dict, rows: list[dict]) -> str:
    table = matrix.cells(meta, rows)
    marks = matrix.outliers(table)
    hosts = [h["host"] for h in meta["hosts"]]
    width = max(8, *(len(h) for h in hosts)) + 2
    lines = [f"udpbench mesh: {len(hosts)} hosts, {len(meta['pairs'])} pairs in {len(meta['schedule'])} rounds "
             f"(rows: source, columns: destination; * stands out)"]
    panels = [("path MTU", "path_mtu", lambda v: f"{v}"),
              ("goodput Mbit/s at the largest unfragmented size", "goodput_bps", lambda v: f"{v / 1e6:.1f}"),
              ("loss %", "loss_ratio", lambda v: f"{100 * v:.2f}")]
    bases = matrix.delay_bases(table)
    if bases:  # several bases: each cell says its own, by initial (README: owd_basis)
        legend = ", ".join(f"{b[0]} {b}" for b in bases) if len(bases) > 1 else bases[0]
        panels.append((f"p99 one-way delay us ({legend})", "owd_p99_us", lambda v: f"{v:.0f}"))
    for title, key, fmt in panels:
        if meta.get("mtu_only") and key != "path_mtu":
            continue
        lines += ["", title, " " * width + "".join(f"{h:>{width}}" for h in hosts)]
        for src in hosts:
            cells = []
            for dst in hosts:
                cell = table.get((src, dst))
                if src == dst or cell is None:
                    text = "-"
                elif cell["status"] != "ok":
                    text = "failed"
                else:
                    value = cell[key]
                    text = "?" if value is None else fmt(value)
                    flag = {"path_mtu": "mtu", "loss_ratio": "loss"}.get(key)
                    text += "*" if flag in marks.get((src, dst), []) else ""
                    if key == "owd_p99_us" and value is not None and len(bases) > 1:
                        text += f" {cell['owd_basis'][0]}"
                cells.append(f"{text:>{width}}")
            lines.append(f"{src:<{width}}" + "".join(cells))
    for a, b, what in matrix.asymmetric(table):
        lines.append(f"asymmetric: {a}->{b} and {b}->{a} differ: {what}")
    for (src, dst), cell in table.items():
        if cell["status"] != "ok":
            lines.append(f"failed: {src}->{dst}: {cell['reason']}")
    return "\n".join(lines)
