"""`udpbench blast`: one measurement at one payload size, like `iperf3 -u` with honest accounting."""
from __future__ import annotations

import json

from udpbench.cli import options
from udpbench.cli.common import print_notice
from udpbench.engine.choice import CHOICES as ENGINE_CHOICES
from udpbench.errors import UserError
from udpbench.measure.blast import MAX_STREAMS, blast, blast_bidir
from udpbench.output import trace as traces
from udpbench.output import results
from udpbench.output.report import blast_summary
from udpbench.protocol.units import format_count, format_rate
from udpbench.transport.interval import HEADER, MAX_INTERVALS, MIN_INTERVAL_S, format_interval


def add_measuring_arguments(p) -> None:
    """Options blast and sweep share."""
    options.add_port(p)
    options.add_family(p)
    options.add_rate(p)
    p.add_argument("--engine", choices=ENGINE_CHOICES, default="auto",
                   help="send: one send() per datagram; mmsg: sendmmsg batches; gso: UDP segmentation "
                        "offload (payloads that fit the path MTU); auto (default): gso where it fits, else mmsg")
    p.add_argument("--streams", type=options.whole_number_between("--streams", 1, MAX_STREAMS), default=1,
                   metavar="N", help="parallel streams, each its own socket and session; --rate is their total "
                                     "(default 1)")
    p.add_argument("--df", action="store_true",
                   help="set Don't Fragment (IP_PMTUDISC_DO): sizes above the path MTU are refused "
                        "by the kernel (EMSGSIZE) and reported as not sendable instead of fragmented")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of a table")
    options.add_token(p)


def add_parser(commands) -> None:
    p = commands.add_parser("blast", help="send datagrams of one size for a while and count what arrives",
                            description="Send SIZE-byte UDP datagrams to a udpbench server for DURATION "
                                        "seconds and report what arrived.")
    p.add_argument("host", metavar="HOST")
    add_measuring_arguments(p)
    p.add_argument("--size", type=int, default=1472, help="UDP payload bytes (default 1472)")
    p.add_argument("--duration", type=options.positive_seconds("--duration"), default=2.0, metavar="S",
                   help="seconds (default 2)")
    p.add_argument("-i", "--interval", type=options.positive_seconds("--interval"), default=None, metavar="S",
                   help=f"also report every S seconds (at least {MIN_INTERVAL_S:g}), like iperf3 -i "
                        f"(with --json: an 'intervals' list)")
    add_direction_arguments(p, bidir=True)
    p.add_argument("--latency", action="store_true",
                   help="print the one-way delay percentiles (the row and --json always carry them)")
    p.add_argument("--trace", metavar="FILE.npz", default=None,
                   help="write every datagram (seq, scheduled, sent, received, duplicate) to FILE.npz; "
                        "a forward run's server keeps the trace and returns it after the run")
    p.add_argument("--trace-limit", type=options.whole_number_between("--trace-limit", 1, 100_000_000),
                   default=traces.DEFAULT_LIMIT, metavar="N",
                   help=f"datagrams a trace holds at most (default {traces.DEFAULT_LIMIT:,}); the file says when it was cut")
    p.set_defaults(func=run)


def add_direction_arguments(p, bidir: bool) -> None:
    """-R (and --bidir where the command has it)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("-R", "--reverse", action="store_true",
                       help="the server sends and this side receives, like iperf3 -R (the server's --max-rate "
                            "and --max-duration apply; a server started with --no-reverse refuses)")
    if bidir:
        group.add_argument("--bidir", action="store_true",
                           help="both directions at once, one row each, each at --rate (one stream each way)")


def run(args) -> int:
    on_interval = _print_interval if args.interval and not args.json else None
    if args.interval and args.streams > 1:
        raise UserError("--interval reports one stream; leave it out with --streams")
    if args.interval is not None and args.interval < MIN_INTERVAL_S:
        raise UserError(f"--interval {args.interval:g} is below the floor of {MIN_INTERVAL_S:g} s")
    if args.interval and args.duration / args.interval > MAX_INTERVALS:
        raise UserError(f"--duration {args.duration:g} with --interval {args.interval:g} makes more than "
                        f"{MAX_INTERVALS} reports: raise --interval to at least {args.duration / MAX_INTERVALS:g}")
    if args.trace and (args.bidir or args.streams > 1):
        raise UserError("--trace covers one stream one way: leave out --bidir and --streams")
    if args.reverse or args.bidir:
        flag = "-R" if args.reverse else "--bidir"
        for name, given in (("--streams", args.streams > 1), ("--interval", args.interval), ("--df", args.df)):
            if given:
                raise UserError(f"{flag} does not take {name}: it runs one stream each way, sent by the server")
    common = dict(size=args.size, duration=args.duration, rate=args.rate, engine=args.engine, port=args.port,
                  family=args.family, token=options.token_of(args), on_notice=print_notice)
    if args.bidir:
        rows = list(blast_bidir(args.host, **common))
    else:
        rows = [blast(args.host, streams=args.streams, df=args.df, interval=args.interval, on_interval=on_interval,
                      direction="reverse" if args.reverse else "forward", trace=args.trace,
                      trace_limit=args.trace_limit, **common)]
    for row in rows:
        if args.json:
            print(json.dumps(results.public(row), default=str))
            continue
        if args.interval:
            print()
        print(blast_summary(row))
        for line in engine_lines(row):
            print(line)
        if args.latency:
            for line in latency_lines(row):
                print(line)
    if any(row.interrupted for row in rows):
        return 130
    return 0


def latency_lines(row) -> list[str]:
    """The one-way delay percentiles, from the actual and from the scheduled send time."""
    basis = row.owd_basis or "relative"
    head = f"  delay     one-way, {basis}"
    if basis == "estimated":
        head += f" (clock offset {row.clock_offset_us:,.1f} +- {row.clock_error_us:,.1f} us, " \
                f"drift {row.clock_drift_ppm or 0.0:.2f} ppm)"
    lines = [head]
    if row.owd_note:
        lines.append(f"            {row.owd_note}")
    for prefix, label in (("owd", "sent"), ("sched_owd", "scheduled")):
        parts = "  ".join(f"{p} {row.get(f'{prefix}_{p}_us', 0.0):,.1f}" for p in ("min", "p50", "p90", "p99", "p999", "max"))
        lines.append(f"  from {label:<9} {parts} us")
    return lines


def engine_lines(row) -> list[str]:
    """How the datagrams went out: the engine and why, the pacing, the streams."""
    lines = []
    if row.get("engine_note"):
        lines.append(f"  engine    {row['engine']} ({row['engine_requested']} asked; {row['engine_note']})")
    if row.get("rate_target_bps"):
        lines.append(
            f"  pacing    {format_rate(row['tx_bps'])} of {format_rate(row['rate_target_bps'])} "
            f"({100 * row['rate_ratio']:.2f}%); gap between sends p1/p50/p99 "
            f"{row['gap_p1_us']:.1f}/{row['gap_p50_us']:.1f}/{row['gap_p99_us']:.1f} us "
            f"for a target of {row['gap_target_us']:.1f} us; late p99 {row['late_p99_us']:.1f} us")
    for i, s in enumerate(row.get("per_stream") or []):
        lines.append(f"  stream {i:<2} sent {s['sent']:>10}  received {s['received']:>10}  lost {s['lost']:>8}  "
                     f"{format_count(s['rx_pps'])} pps  {format_rate(s['goodput_bps'])}")
    return lines


def _print_interval(entry: dict) -> None:
    if entry["start_s"] == 0:  # the heading once the first numbers are in, not before a failed connect
        print(HEADER)
    print(format_interval(entry), flush=True)
