"""`udpbench plot FILE`: draw a saved sweep (output/plot.py does the drawing)."""
from __future__ import annotations

import sys

from udpbench.output import plot


def add_parser(commands) -> None:
    p = commands.add_parser("plot", help="plot goodput, loss and jitter over payload size from a result file",
                            description="Draw a saved sweep (.npz or .json): goodput, loss and jitter against "
                                        "payload size, one line per host, with the path-MTU and fragment "
                                        "boundaries marked.")
    p.add_argument("file", metavar="FILE", help="a udpbench result file (.npz or .json)")
    p.add_argument("-o", "--output", metavar="PNG", default=None,
                   help="image to write (.png, .svg or .pdf; default: FILE with a .png suffix)")
    p.set_defaults(func=run)


def run(args) -> int:
    out = plot.plot_file(args.file, args.output)
    print(f"wrote {out}", file=sys.stderr)
    return 0
