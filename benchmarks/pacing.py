#!/usr/bin/env python3
"""How well `--rate` is kept, from 1 Mbit/s to what the machine can do, on loopback.

    python benchmarks/pacing.py                       # 1472 B, auto engine, 2 s per rate
    python benchmarks/pacing.py --size 64 --engine mmsg --rates 1M,10M,100M

Not a test: for each target rate, one paced blast against an embedded server; prints the
achieved rate as a fraction of the target, the gaps between syscalls against their target,
and how late sends went out, and writes results/pacing-TIME.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from udpbench import results  # noqa: E402
from udpbench.transport.client import connect  # noqa: E402
from udpbench.protocol.units import format_rate, parse_rate  # noqa: E402

DEFAULT_RATES = "1M,10M,100M,1G,5G,10G,20G,50G"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, default=1472)
    p.add_argument("--engine", default="auto")
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--rates", default=DEFAULT_RATES, help=f"comma-separated (default {DEFAULT_RATES})")
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    rows = []
    print("| target | achieved | achieved/target | engine, batch | gap target us | gap p1/p50/p99 us | late p50/p99 us | lost |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    with connect("127.0.0.1", 1) as client:
        for text in args.rates.split(","):
            rate = parse_rate(text)
            row = client.blast(args.size, args.duration, rate, args.engine)
            rows.append(results.public(row))
            print(f"| {format_rate(rate)} | {format_rate(row['tx_bps'])} | {row['rate_ratio']:.4f} | "
                  f"{row['engine']}, {row['batch']} | {row['gap_target_us']:.1f} | "
                  f"{row['gap_p1_us']:.1f} / {row['gap_p50_us']:.1f} / {row['gap_p99_us']:.1f} | "
                  f"{row['late_p50_us']:.1f} / {row['late_p99_us']:.1f} | {row['lost']} |", flush=True)
    load = Path("/proc/loadavg").read_text().split()[:3]
    output = args.output or ROOT / "results" / time.strftime("pacing-%Y%m%d-%H%M%S.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"size": args.size, "engine": args.engine, "duration_s": args.duration,
                                  "load_after": load, "rows": rows}, indent=1, default=str) + "\n")
    print(f"\nload average after: {' '.join(load)}; written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
