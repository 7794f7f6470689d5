"""`udpbench ping HOST`: the command line of ping (measure/ping.py): a line per event as it
happens, like ping, then the summary."""
from __future__ import annotations

import json
import sys

from udpbench.errors import UserError
from udpbench.linux.sockopts import format_hostport
from udpbench.measure.ping import (DEFAULT_COUNT, DEFAULT_INTERVAL_S, DEFAULT_SIZE, MAX_COUNT, MIN_INTERVAL_S,
                                   PingOptions, ping)
from udpbench.protocol.rto import RTO_INITIAL_S, RTO_MAX_S, RTO_MIN_S
from udpbench.cli import options
from udpbench.cli.options import seconds_between
from udpbench.transport.pinger import Request
from udpbench.protocol.grant import MAX_DURATION_S


def add_parser(commands) -> None:

    p = commands.add_parser(
        "ping", help="request/reply over UDP: RTT, loss and retransmissions, like ping",
        description="Send ECHO requests to a udpbench server one at a time and time the replies. "
                    "Each request has a random id; an unanswered one is retransmitted with a "
                    "doubling timeout (RFC 6298 RTO, 20 ms floor) until a ceiling, then given up.")
    p.add_argument("host", metavar="HOST")
    p.add_argument("-c", "--count", type=int, default=DEFAULT_COUNT, metavar="N",
                   help=f"requests to send (default {DEFAULT_COUNT})")
    p.add_argument("-s", "--size", type=int, default=DEFAULT_SIZE, metavar="N",
                   help=f"UDP payload bytes of each request and reply (default {DEFAULT_SIZE})")
    p.add_argument("-i", "--interval", type=seconds_between("--interval", MIN_INTERVAL_S, 3600.0),
                   default=DEFAULT_INTERVAL_S, metavar="S",
                   help=f"seconds from one request to the next (default {DEFAULT_INTERVAL_S:g})")
    p.add_argument("-w", "--deadline", type=seconds_between("--deadline", 0.01, MAX_DURATION_S), default=None,
                   metavar="S", help="stop after this many seconds, whatever is left "
                                     "(default: count x interval + 5 x the RTO ceiling, at most 1 hour)")
    options.add_port(p)
    options.add_family(p)
    p.add_argument("--rto-initial", type=seconds_between("--rto-initial", 0.001, 60.0), default=RTO_INITIAL_S,
                   metavar="S", help=f"timeout before the first RTT sample (default {RTO_INITIAL_S:g}, RFC 6298)")
    p.add_argument("--rto-min", type=seconds_between("--rto-min", 0.001, 60.0), default=RTO_MIN_S, metavar="S",
                   help=f"floor of the adaptive timeout (default {RTO_MIN_S:g}: a LAN floor)")
    p.add_argument("--rto-max", type=seconds_between("--rto-max", 0.001, 60.0), default=RTO_MAX_S, metavar="S",
                   help=f"ceiling of the backoff: a request unanswered at this timeout is given up "
                        f"(default {RTO_MAX_S:g})")
    p.add_argument("--df", action="store_true",
                   help="don't fragment: a request larger than the path MTU fails (EMSGSIZE) "
                        "instead of being fragmented, like ping -M do")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the summary")
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout, nothing else")
    options.add_token(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if not 1 <= args.count <= MAX_COUNT:
        raise UserError(f"--count {args.count} must be between 1 and {MAX_COUNT}")
    printer = None if (args.quiet or args.json) else LinePrinter(args.host, args.size, args.count)
    opts = PingOptions(port=args.port, family=args.family, count=args.count, size=args.size,
                       interval=args.interval, deadline=args.deadline, rto_initial=args.rto_initial,
                       rto_min=args.rto_min, rto_max=args.rto_max, df=args.df, token=options.token_of(args))
    result = ping(args.host, opts, on_event=printer,
                  on_notice=lambda text: print(f"udpbench: {text}", file=sys.stderr, flush=True)).as_dict()
    if args.json:
        print(json.dumps(result))
    else:
        print(summary_text(result), flush=True)
    if result["interrupted"]:
        return 130
    return 0 if result["verdict"] == "alive" else 1


class LinePrinter:
    """A line per reply, retransmission and loss, as they happen, like ping."""

    def __init__(self, host: str, size: int, count: int, file=None):
        self.host, self.size, self.count = host, size, count
        self.file = file or sys.stdout

    def __call__(self, kind: str, request: Request | None = None, **f) -> None:
        if kind == "start":
            print(f"UDPBENCH PING {self.host} ({format_hostport(f['address'], f['port'])}): {self.size} bytes "
                  f"of UDP payload, {self.count} request(s), session {f['session']:016x}",
                  file=self.file, flush=True)
            return
        seq = f"seq={request.number}"
        if kind == "reply":
            line = (f"{f['size']} bytes from {self.host}: {seq} id={request.request_id:016x} "
                    f"try={f['try_number']} time={f['rtt_s'] * 1e3:.3f} ms")
        elif kind == "retransmit":
            last = request.tries[-1].timeout_s
            line = (f"{seq}: no reply within {last * 1e3:.0f} ms, try {f['try_number']} "
                    f"waits {f['timeout_s'] * 1e3:.0f} ms")
        elif kind == "lost":
            waited = f["waited_s"]
            tries = len(request.tries)
            why = {"ceiling": f"the {request.tries[-1].timeout_s * 1e3:.0f} ms ceiling was reached",
                   "deadline": "the deadline was reached",
                   "too-big": "EMSGSIZE: larger than the path MTU and not to be fragmented (--df)"
                   }.get(request.reason, request.reason)
            line = (f"{seq}: no reply after {tries} {'try' if tries == 1 else 'tries'} ({waited:.3f} s): "
                    f"{why}; request given up")
        elif kind == "stale":
            state = "given up" if request.outcome == "lost" else "already answered"
            line = (f"{seq}: stale reply to try {f['try_number']} ({state}), "
                    f"{f['rtt_s'] * 1e3:.3f} ms after it was sent: not taken")
        elif kind == "duplicate":
            line = f"{seq}: duplicate reply to try {f['try_number']}: not taken"
        else:
            return
        print(line, file=self.file, flush=True)


def _by_errno(counts: dict) -> str:
    return " ".join(f"{name} {n}" for name, n in counts.items()) if counts else "0"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def summary_text(r: dict) -> str:
    hist = ", ".join(f"{v} answered in {k} {'try' if k == '1' else 'tries'}"
                     for k, v in r["attempts_histogram"].items() if k != "lost")
    if r["lost"]:
        hist += f"{'; ' if hist else ''}{r['lost']} given up"
    lines = [
        f"--- {r['host']} ({format_hostport(r['address'], r['port'])}) udpbench ping statistics ---",
        f"{r['sent']} requests sent, {r['received']} received, {100 * r['loss_ratio']:.3g}% request loss, "
        f"time {r['elapsed_s'] * 1e3:.0f} ms",
        f"{r['transmissions']} datagrams sent ({r['retransmissions']} retransmissions), {r['replies']} "
        f"answered: {100 * r['datagram_loss_ratio']:.3g}% datagram round-trip loss",
        f"requests: {hist or '-'}",
        f"stale {r['stale']} (late {r['late']}), duplicates {r['duplicates']}, foreign {r['foreign']}, "
        f"ICMP errors {_by_errno(r['icmp_errors'])}, send errors {_by_errno(r['send_errors'])}"
        + (f", path MTU {r['path_mtu']}" if r.get("path_mtu") else ""),
        f"rtt min/avg/max/mdev = {_ms(r['rtt_min_ms'])}/{_ms(r['rtt_avg_ms'])}/{_ms(r['rtt_max_ms'])}/"
        f"{_ms(r['rtt_mdev_ms'])} ms",
        f"rtt p50/p90/p99 = {_ms(r['rtt_p50_ms'])}/{_ms(r['rtt_p90_ms'])}/{_ms(r['rtt_p99_ms'])} ms",
        f"rto srtt/rttvar/rto = {_ms(r['srtt_ms'])}/{_ms(r['rttvar_ms'])}/{_ms(r['rto_ms'])} ms "
        f"(floor {r['rto_min_ms']:g}, ceiling {r['rto_max_ms']:g})",
    ]
    server = r.get("server") or {}
    if "echo_requests" in server:
        lines.append(f"server: {server['echo_requests']} echo requests received, {server['echo_answered']} "
                     f"answered, {server['echo_dropped']} dropped on purpose (--drop {server.get('drop', 0):g})")
    elif "error" in server:
        lines.append(f"server report missing: {server['error']}")
    if r["verdict"] == "down":
        why = ""
        if r["refused"]:
            why = f"; ICMP port unreachable came back {r['refused']} time(s): nothing listens on that UDP port?"
        lines.append(f"The server looks down: {r['received']} of {r['sent']} request(s) answered, the last "
                     f"ones unanswered up to the {r['rto_max_ms'] / 1e3:g} s ceiling (or UDP is filtered "
                     f"on the way){why}")
    if r["verdict"] == "too-big":
        lines.append(f"No request could be sent: {r['size']} bytes with don't-fragment exceed the path MTU "
                     f"{r.get('path_mtu')}")
    if r["deadline_reached"]:
        lines.append(f"(stopped at the {r['deadline_s']:g} s deadline)")
    if r["interrupted"]:
        lines.append("(interrupted: the numbers cover the part that ran)")
    return "\n".join(lines)
