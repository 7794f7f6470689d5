"""`udpbench show FILE`: the table of a saved result file."""
from __future__ import annotations

import json

from udpbench.output import results
from udpbench.output.report import print_table


def add_parser(commands) -> None:
    p = commands.add_parser("show", help="print the table of a saved result file (.npz or .json)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the file as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    meta, rows = results.load(args.file)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, default=str))
        return 0
    hosts = ", ".join(f"{h['host']} (MTU {h['path_mtu']})" for h in meta.get("hosts", []))
    print_table(rows, title=f"{args.file}: {hosts}" if hosts else str(args.file))
    return 0
