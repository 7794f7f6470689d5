"""`udpbench discover`: find udpbench servers on the directly connected segments.

Arguments and printing only; the search is ``measure.find_servers``.
"""
from __future__ import annotations

import json
import sys

from udpbench.errors import MeasurementError
from udpbench.measure.find_servers import search_servers
from udpbench.protocol import discovery
from udpbench.cli import options
from udpbench.cli.options import seconds_between


def add_parser(commands) -> None:
    p = commands.add_parser(
        "discover", help="find udpbench servers on the directly connected segments",
        description="Send a few small DISCOVER datagrams and list the udpbench servers that answer. "
                    "By default they go to the broadcast address of every up IPv4 interface (loopback "
                    f"included) and to the IPv6 link-local group {discovery.MULTICAST_GROUP_V6} on every "
                    "up interface that does multicast. --interface limits the search to one interface; "
                    "--broadcast searches one address instead.")
    p.add_argument("--broadcast", metavar="ADDR", default=None,
                   help="search this IPv4 address only: a broadcast address such as "
                        f"{discovery.LOOPBACK_BROADCAST} (this machine) or 255.255.255.255, or one host")
    p.add_argument("--interface", metavar="IFACE", default=None,
                   help="search on this interface only (with --broadcast: send out of it, which "
                        "255.255.255.255 needs where there is no default route)")
    options.add_family(p, by_number=True, v4_help="IPv4 broadcast only", v6_help="IPv6 multicast only")
    options.add_port(p)
    p.add_argument("--timeout", type=seconds_between("--timeout", 0.01, 60), default=discovery.DEFAULT_TIMEOUT_S,
                   metavar="S", help=f"seconds to listen for answers (default {discovery.DEFAULT_TIMEOUT_S:g}; "
                                     f"{discovery.DEFAULT_SENDS} rounds are sent within it)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        result = search_servers(broadcast=args.broadcast, interface=args.interface, family=args.family,
                                port=args.port, timeout=args.timeout)
    except MeasurementError as exc:
        if args.broadcast == discovery.LIMITED_BROADCAST and args.interface is None:
            raise MeasurementError(f"{exc} (255.255.255.255 leaves by the default route's interface: name one "
                                   "with --interface, or give the segment's directed broadcast address)") from None
        raise
    targets = [str(t) for t in result.targets]
    if args.json:
        print(json.dumps({
            "broadcast": args.broadcast, "interface": args.interface, "targets": targets, "port": result.port,
            "sent": result.sent, "timeout_s": result.timeout_s, "servers": [s.as_dict() for s in result.servers],
            "duplicates": result.duplicates, "foreign": result.foreign, "send_errors": result.send_errors,
            "elapsed_s": result.elapsed_s}))
    else:
        if result.servers:
            print(f"{'address':<28} {'port':>5}  {'server':<20} {'protocol':>8} {'rtt ms':>8}")
            for s in result.servers:
                print(f"{s.address:<28} {s.port:>5}  {s.server:<20} {s.protocol!s:>8} {s.rtt_ms:>8.3f}")
        for where, why in result.send_errors.items():
            print(f"could not search {where}: {why}", file=sys.stderr)
        print(f"{len(result.servers)} server(s) answered {result.sent} discovery datagram(s) to "
              f"{', '.join(targets)} port {result.port} within {result.timeout_s:g} s", file=sys.stderr)
    return 0 if result.servers else 1
