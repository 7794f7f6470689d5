"""`udpbench show FILE`: the tables of a saved result file."""
from __future__ import annotations

import json
from udpbench.cli.common import console as make_console
from udpbench.output import results
from udpbench.output.report import delay_table, table


def add_parser(commands) -> None:
    p = commands.add_parser("show", help="print the tables of a saved result file (.npz or .json)",
                            description="Print a saved result file: the measurement table and, where "
                                        "the rows have them, one-way delay percentiles.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print the file as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    meta, rows = results.load(args.file)
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, default=str))
        return 0
    hosts = ", ".join(f"{h['host']} (MTU {h['path_mtu']})" for h in meta.get("hosts", []))
    console = make_console()
    console.print(table(rows, title=f"{args.file}: {hosts}" if hosts else str(args.file)))
    delays = delay_table(rows, title="one-way delay, \u00b5s: from the actual send time, and from the "
                                     "scheduled send time (sched)")
    if delays is not None:
        console.print()
        console.print(delays)
        for note in dict.fromkeys(str(r.get("owd_note")) for r in rows if r.get("owd_note")):
            console.print(f"note: {note}", highlight=False)
    return 0
