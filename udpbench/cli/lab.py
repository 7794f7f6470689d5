"""`udpbench lab`: build, change, show, use and remove the network-namespace lab (root only)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from udpbench.errors import UserError
from udpbench.lab import demo, topology
from udpbench.lab import lab as labmod
from udpbench.lab.lab import DEFAULT_MTU, DEFAULT_PREFIX, Lab, format_rate


def format_status(st: dict) -> str:
    if not st["up"]:
        if st.get("partial"):
            return (f"lab {st['prefix']!r} is half built ({', '.join(st['partial'])}); "
                    f"run `udpbench lab down`")
        return f"lab {st['prefix']!r} is down"
    lines = [f"lab {st['prefix']!r} is up"]
    for info in st["namespaces"].values():
        for i, iface in enumerate(info["interfaces"]):
            head = f"{info['name']:<16}" if i == 0 else " " * 16
            addrs = "  ".join(iface["ipv4"] + iface["ipv6"]) or "no address"
            lines.append(f"  {head} {iface['name']:<10} -> {iface['peer'] or '?':<7} "
                         f"mtu {iface['mtu']:<6} {addrs}")
    icmp = "blocked (PMTUD black hole)" if st["impairments"]["block_icmp"] else "sent"
    for host, link in st["links"].items():
        loss = (f"{link['loss_percent']:g}% per packet ({link['loss_method']})" if link["loss_percent"] else "none")
        lines.append(f"  router -> {host}: mtu {link['mtu']}, loss {loss}, rate {format_rate(link['rate_bps'])}")
    lines.append(f"  router: ICMP frag-needed/packet-too-big {icmp}")
    return "\n".join(lines)


def _impairment_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    keep = argparse.SUPPRESS
    parser.add_argument("--mtu", type=int, default=DEFAULT_MTU if defaults else keep,
                        help=f"MTU of the router-server link; with --hosts above 2, of every link (default {DEFAULT_MTU})")
    parser.add_argument("--loss", type=float, default=0.0 if defaults else keep, metavar="PCT",
                        help="percent of packets (each fragment on its own) dropped toward the server "
                             "(with --hosts above 2: toward every host)")
    parser.add_argument("--rate", default=None if defaults else keep, metavar="R",
                        help="rate limit toward the server in bits/s: 10M, 500k, 1G (0 = none)")
    parser.add_argument("--link", action="append", default=[], metavar="HOST:SETTINGS",
                        help="one host's link, e.g. h3:mtu=1400,loss=1%%,rate=50M (repeatable)")
    if defaults:
        parser.add_argument("--block-icmp", action="store_true",
                            help="the router drops the ICMP frag-needed / packet-too-big it would send")
    else:
        parser.add_argument("--block-icmp", dest="block_icmp", action="store_const", const=True, default=keep,
                            help="start blocking ICMP frag-needed / packet-too-big")
        parser.add_argument("--allow-icmp", dest="block_icmp", action="store_const", const=False, default=keep,
                            help="stop blocking them")


def hosts_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hosts {text!r} is not a whole number") from None
    if not topology.DEFAULT_HOSTS <= count <= topology.MAX_HOSTS:
        raise argparse.ArgumentTypeError(f"--hosts must be {topology.DEFAULT_HOSTS}..{topology.MAX_HOSTS}")
    return count


def parse_links(specs: list[str]) -> dict[str, dict]:
    links: dict[str, dict] = {}
    for spec in specs:
        host, settings = topology.parse_link(spec)
        links.setdefault(host, {}).update(settings)
    return links


def add_parser(commands):
    parser = commands.add_parser("lab", help="build an emulated LAN in network namespaces (root)",
                                 description="hosts behind one router in network namespaces, "
                                             "addresses in 198.18.0.0/15, no default route.")
    actions = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION",
                                    parser_class=type(parser))
    prefix = argparse.ArgumentParser(add_help=False)
    prefix.add_argument("--prefix", default=DEFAULT_PREFIX, metavar="NAME",
                        help=f"namespace names are NAME-client, NAME-router, NAME-server (default {DEFAULT_PREFIX})")

    up = actions.add_parser("up", parents=[prefix], help="build the lab")
    up.add_argument("--hosts", type=hosts_count, default=topology.DEFAULT_HOSTS, metavar="N",
                    help="hosts behind the router (default 2: client and server; more: h1..hN)")
    _impairment_options(up, defaults=True)
    up.set_defaults(lab_func=_run_up)

    change = actions.add_parser("set", parents=[prefix], help="change impairments on a running lab")
    _impairment_options(change, defaults=False)
    change.set_defaults(lab_func=_run_set)

    status = actions.add_parser("status", parents=[prefix], help="namespaces, addresses, MTUs, impairments")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(lab_func=_run_status)

    execute = actions.add_parser("exec", parents=[prefix], help="run a command in a node: exec client -- CMD",
                                 usage="udpbench lab exec [--prefix NAME] {client,router,server,hN} -- CMD...")
    execute.add_argument("node", metavar="NODE")
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD")
    execute.set_defaults(lab_func=_run_exec)

    down = actions.add_parser("down", parents=[prefix], help="remove the lab (idempotent)")
    down.set_defaults(lab_func=_run_down)

    _add_demo(actions)
    parser.set_defaults(func=run)


def _add_demo(actions) -> None:
    p = actions.add_parser("demo", help="build a lab, sweep loopback and the lab path into one file and plot, "
                                        "remove the lab")
    p.add_argument("--mtu", type=int, default=1400, help="the lab link's MTU (default 1400)")
    p.add_argument("--loss", type=float, default=1.0, metavar="PCT", help="loss per packet, %% (default 1)")
    p.add_argument("--duration", type=float, default=1.0, metavar="S", help="seconds per size (default 1)")
    p.add_argument("--points", type=int, default=16, help="sizes in the plan (default 16)")
    p.add_argument("--rate", default="100M", help="send rate in bits/s (default 100M)")
    p.add_argument("-o", "--output", type=Path, default=Path("results") / "lab-demo",
                   help="result base name (default results/lab-demo)")
    p.add_argument("--plot", type=Path, default=None, help="PNG path (default: the output name with .png)")
    p.set_defaults(lab_func=_run_demo)


def run(args) -> int:
    return args.lab_func(args)


def _notice(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _run_demo(args) -> int:
    return demo.run_demo(args.output, args.mtu, args.loss, args.duration, args.points, args.rate, args.plot,
                         on_notice=_notice)


def _run_up(args) -> int:
    lab = Lab(args.prefix, mtu=args.mtu, loss=args.loss, rate=args.rate, block_icmp=args.block_icmp,
              hosts=args.hosts, links=parse_links(args.link))
    lab.up()
    print(format_status(lab.status()))
    return 0


def _run_set(args) -> int:
    changes = {k: getattr(args, k) for k in ("mtu", "loss", "rate", "block_icmp") if hasattr(args, k)}
    if not changes and not args.link:
        raise UserError("lab set: nothing to change (give --mtu, --loss, --rate, --link, --block-icmp "
                        "or --allow-icmp)")
    lab = Lab(args.prefix)
    lab.set_impairments(**changes, links=parse_links(args.link))
    print(format_status(lab.status()))
    return 0


def _run_status(args) -> int:
    labmod._require_root()
    labmod._tool("ip")
    st = Lab(args.prefix).status()
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _run_exec(args) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UserError("lab exec: give a command after the node, e.g. `lab exec client -- ip addr`")
    lab = Lab(args.prefix)
    lab._require_up()
    sys.stdout.flush()
    proc = lab.run(args.node, argv)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def _run_down(args) -> int:
    lab = Lab(args.prefix)
    removed = lab.down()
    print(f"lab {args.prefix!r} removed" if removed else f"lab {args.prefix!r} was not up; nothing to remove")
    return 0
