"""`udpbench mtu HOST`: the command line of path-MTU discovery (measure/path_mtu.py)."""
from __future__ import annotations

import json

from udpbench.errors import UserError
from udpbench.measure.path_mtu import METHODS, PathMtuOptions, path_mtu
from udpbench.protocol.pmtud import MAX_PACKET, MAX_PROBES
from udpbench.cli import options
from udpbench.cli.options import seconds_between, whole_number_between
from udpbench.protocol.control import DEFAULT_PORT


def add_parser(commands) -> None:
    p = commands.add_parser(
        "mtu", help="find the path MTU: by ICMP (like tracepath) and by echo probing a udpbench server",
        description="Find the largest IP packet that crosses the path to HOST unfragmented. The ICMP "
                    "method follows routers' 'fragmentation needed' / 'packet too big' messages and works "
                    "against any host (a closed UDP port answers with port unreachable); the echo method "
                    "probes a udpbench server with DF datagrams it acknowledges (RFC 8899), exact to the "
                    "byte and immune to filtered ICMP. Sizes are IP packet bytes.")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--method", choices=METHODS, default="both",
                   help="icmp, echo, or both and compare (default): both also detects PMTU black holes")
    options.add_family(p)
    options.add_port(p, help=f"the udpbench server's port; with no server there, the ICMP method's target "
                             f"port, which should be closed (default {DEFAULT_PORT})")
    sizes = "bytes (IP packet sizes)"
    p.add_argument("--min", dest="min_mtu", type=whole_number_between("--min", 68, MAX_PACKET[6], sizes),
                   metavar="B", help="smallest MTU to consider (default 68 for IPv4, 1280 for IPv6)")
    p.add_argument("--max", dest="max_mtu", type=whole_number_between("--max", 68, MAX_PACKET[6], sizes),
                   metavar="B", help="largest MTU to consider (default: the outgoing interface's MTU)")
    p.add_argument("--timeout", type=seconds_between("--timeout", 0.001, 10), metavar="S",
                   help="fixed probe timer in seconds (default adaptive: 1 s until the first answer, "
                        "then max(0.2 s, 3 x smoothed RTT))")
    p.add_argument("--max-probes", type=whole_number_between("--max-probes", 1, 10), default=MAX_PROBES,
                   metavar="N", help=f"tries per size before it counts as too big (default {MAX_PROBES})")
    p.add_argument("--granularity", type=whole_number_between("--granularity", 1, 1024, "bytes"), default=1,
                   metavar="B", help="stop the echo search when the bracket is this narrow (default 1: exact)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of text")
    options.add_token(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.min_mtu and args.max_mtu and args.min_mtu > args.max_mtu:
        raise UserError(f"--min {args.min_mtu} is above --max {args.max_mtu}")
    opts = PathMtuOptions(method=args.method, family=args.family, port=args.port, min_mtu=args.min_mtu,
                          max_mtu=args.max_mtu, timeout=args.timeout, max_probes=args.max_probes,
                          granularity=args.granularity, token=options.token_of(args))
    result = path_mtu(args.host, opts).as_dict()
    print(json.dumps(result) if args.json else format_text(result))
    return 0 if result["path_mtu"] else 1


def format_text(r: dict) -> str:
    """The result as a person reads it, tracepath-style."""
    fam = f"IPv{r['family']}"
    via = f" via {r['interface']} (MTU {r['interface_mtu']})" if r["interface"] else ""
    lines = [f"udpbench mtu {r['host']} [{r['address']}] port {r['port']}, {fam}{via}"]
    if r.get("icmp"):
        i = r["icmp"]
        hops = "; ".join(f"too big from {h['from']} (mtu {h['mtu']})" for h in i["hops"])
        what = (f"{i['mtu']}" if i["mtu"] else "-").rjust(6)
        how = {"confirmed": "answered" + (f" after {hops}" if hops else ", no router objected"),
               }.get(i["status"], i["detail"] or i["status"])
        lines.append(f"  icmp {what}  {how}  [{i['probes']} probes, {i['elapsed_s']:.2f} s]")
    if r.get("echo"):
        e = r["echo"]
        what = (f"{e['mtu']}" if e["mtu"] else "-").rjust(6)
        if e["status"] == "confirmed" and e["mtu"]:
            how = (f"{e['mtu']} acked, {e['too_big']} lost every try" if e["too_big"]
                   else f"{e['mtu']} acked, the top of the range")
        else:
            how = e["detail"] or e["status"]
        timer = f", timer {e['timer_s'] * 1e3:.0f} ms" if e["timer_s"] is not None else ""
        lines.append(f"  echo {what}  {how}  [{e['probes']} probes + {e['companions']} companions in "
                     f"{e['rounds']} rounds{timer}, {e['elapsed_s']:.2f} s]")
    if r["path_mtu"]:
        lines.append(f"path MTU {r['path_mtu']} bytes: largest UDP payload {r['max_payload']} unfragmented "
                     f"({fam}){'  BLACK HOLE' if r['black_hole'] else ''}  [{r['elapsed_s']:.2f} s]")
    else:
        lines.append(f"path MTU not found  [{r['elapsed_s']:.2f} s]")
    # a method's own verdict is already on its line above
    shown = tuple(f"{m}: " for m in ("icmp", "echo") if r.get(m))
    lines += [f"warning: {w}" for w in r["warnings"] if not w.startswith(shown or ("\0",))]
    return "\n".join(lines)
