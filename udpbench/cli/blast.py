"""`udpbench blast`: one measurement at one payload size, like `iperf3 -u` with honest accounting."""
from __future__ import annotations

import json

from udpbench.protocol import control
from udpbench.output import results
from udpbench.protocol import wire
from udpbench.measure.embedded import connect
from udpbench.errors import UserError
from udpbench.transport.interval import HEADER, format_interval
from udpbench.output.report import blast_summary
from udpbench.transport.streams import blast_streams
from udpbench.measure.sweep import add_common_arguments, default_rate
from udpbench.protocol.units import format_count, format_rate, positive_seconds


def add_parser(commands) -> None:
    p = commands.add_parser("blast", help="send datagrams of one size for a while and count what arrives",
                            description="Send SIZE-byte UDP datagrams to a udpbench server for DURATION "
                                        "seconds and report what arrived.")
    p.add_argument("host", metavar="HOST")
    add_common_arguments(p)
    p.add_argument("--size", type=int, default=1472, help="UDP payload bytes (default 1472)")
    p.add_argument("--duration", type=positive_seconds("--duration"), default=2.0, metavar="S", help="seconds (default 2)")
    p.add_argument("-i", "--interval", type=positive_seconds("--interval"), default=None, metavar="S",
                   help="also report every S seconds, like iperf3 -i (with --json: an 'intervals' list)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        wire.check_size(args.size)
    except wire.WireError as exc:
        raise UserError(str(exc)) from None
    on_interval = _print_interval if args.interval and not args.json else None
    with connect(args.host, args.port, args.family, token=control.token_of(args)) as client:
        rate = args.rate if args.rate is not None else default_rate(client.server_addr[0])
        row = blast_streams(client, args.streams, args.size, args.duration, rate, args.engine, df=args.df,
                            interval=args.interval, on_interval=on_interval)
    if args.json:
        print(json.dumps(results.public(row), default=str))
    else:
        if args.interval:
            print()
        print(blast_summary(row))
        for line in engine_lines(row):
            print(line)
    if row.get("interrupted"):
        return 130
    return 0


def engine_lines(row: dict) -> list[str]:
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
