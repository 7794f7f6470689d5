"""``udpbench serve``: the options, the lines that say where the server listens, and the run."""
from __future__ import annotations

import sys

from udpbench._version import __version__
from udpbench.errors import UserError
from udpbench.linux import interfaces, sockopts
from udpbench.protocol import control, discovery
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.protocol.grant import MAX_DURATION_S, MAX_RCVBUF, SESSION_GRACE_S
from udpbench.cli import options
from udpbench.cli.options import positive_seconds, whole_number_between
from udpbench.protocol.units import format_rate, parse_rate
from udpbench.transport.server import Server, check_drop


def drop_fraction(text: str) -> float:
    try:
        return check_drop(text)
    except UserError:
        raise UserError(f"--drop {text} must be a fraction with 0 <= P < 1 (0.5 drops half the "
                        "echo requests)") from None


def byte_count(text: str) -> int:
    """A size in bytes, with an optional k/M/G suffix (powers of 1024, as the kernel's buffers)."""
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale != 1 else text
    try:
        value = int(digits) * scale
    except ValueError:
        raise UserError(f"--max-rcvbuf {text!r} is not a size in bytes (like 4M)") from None
    if value <= 0:
        raise UserError(f"--max-rcvbuf {text} must be at least 1 byte")
    return value


def add_parser(commands) -> None:
    p = commands.add_parser("serve", help="serve measurements: TCP control and UDP data on one port",
                            description="Serve udpbench measurements. The TCP control channel and the UDP "
                                        "datagrams use the same port number.")
    p.add_argument("--bind", metavar="ADDR", default=None,
                   help="address to serve: 127.0.0.1 serves this machine only, an interface's address "
                        "serves that interface; default: all interfaces, IPv4 and IPv6")
    options.add_port(p, lowest=0, help=f"port number (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--max-sessions", type=whole_number_between("--max-sessions", 1, 100000), default=16,
                   metavar="N", help="control connections served at once (default 16); one source address "
                                     "may hold at most half of them before it authenticates")
    options.add_token(p, help=f"require clients to prove this shared secret (HMAC-SHA256; it never crosses "
                              f"the network); default: ${control.TOKEN_ENV}. Other local users can read a "
                              f"command line: prefer the variable or --token-file")
    p.add_argument("--max-rate", type=parse_rate, default=0.0, metavar="R",
                   help="grant at most R payload bits/s per session (k/M/G suffix), and answer an echo "
                        "session's requests within R bits/s of replies; faster requests are clamped and "
                        "told so; N sessions or --streams N get N times R (default: no limit)")
    p.add_argument("--max-duration", type=positive_seconds("--max-duration"), default=MAX_DURATION_S, metavar="S",
                   help=f"grant at most S seconds per session, blast or echo; longer requests are clamped "
                        f"(default {MAX_DURATION_S:g})")
    p.add_argument("--max-rcvbuf", type=byte_count, default=MAX_RCVBUF, metavar="BYTES",
                   help=f"receive buffer a client may ask for, per session (k/M/G suffix; default "
                        f"{MAX_RCVBUF >> 20}M)")
    p.add_argument("--session-grace", type=positive_seconds("--session-grace"), default=SESSION_GRACE_S, metavar="S",
                   help=f"end a session S seconds past its granted duration, whatever the client sends "
                        f"(default {SESSION_GRACE_S:g})")
    p.add_argument("--no-reverse", action="store_true",
                   help="refuse reverse and bidirectional runs (blast -R, --bidir): this server then "
                        "never sends a blast's datagrams, only receives them")
    p.add_argument("--quiet", action="store_true", help="do not log sessions to stderr")
    p.add_argument("--drop", type=drop_fraction, default=0.0, metavar="P",
                   help="ignore this fraction of the ECHO requests received (0 <= P < 1), to watch "
                        "`udpbench ping` back off and count loss; path-MTU probes are never dropped")
    p.add_argument("--seed", type=int, default=None,
                   help="seed for --drop, so a run can be repeated (default: random, printed)")
    p.set_defaults(func=run)


def describe_listening(server: Server) -> list[str]:
    """Lines that say where the server can be reached, in the terms of --bind."""
    lines = [f"udpbench {__version__} serving on {', '.join(server.addresses)} (TCP control + UDP data)"]
    wildcard = server.bind in (None, "", "*")
    if wildcard:
        try:
            reachable = [a.address for a in interfaces.interface_addresses()
                         if not a.address.startswith("fe80:")]
        except OSError:
            reachable = []
        if reachable:
            lines.append(f"  all interfaces: reachable at {', '.join(reachable)}")
    else:
        address = server.listeners[0][0].getsockname()[0]
        entry = interfaces.owner_of(address)
        if sockopts.is_loopback(address):
            lines.append(f"  bound to {address}: this machine only")
        elif entry is not None:
            lines.append(f"  bound to {address}: only datagrams and connections addressed to it "
                         f"(interface {entry.ifname})")
    if server.discovery_interface is not None:
        lines.append(f"  answers discovery broadcasts arriving on {server.discovery_interface.ifname} "
                     f"({', '.join(server.discovery_addresses)})")
    elif server.discovery_addresses:
        lines.append("  answers discovery broadcasts arriving on any interface")
    if server.discovery_group_interfaces:
        lines.append(f"  answers IPv6 discovery to {discovery.MULTICAST_GROUP_V6} on "
                     f"{', '.join(server.discovery_group_interfaces)}")
    if server.token:
        lines.append("  token required: clients prove it with HMAC-SHA256")
    else:
        lines.append("  no token: anyone who reaches the port may measure (see --token)")
    limits = f"  limits: {server.max_sessions} sessions, {server.max_duration:g} s a session"
    if server.max_rate_bps:
        limits += f", {format_rate(server.max_rate_bps)} a session"
    limits += f", {server.max_rcvbuf >> 10} KiB receive buffer a session"
    lines.append(limits)
    if server.drop:
        lines.append(f"  dropping {server.drop:.0%} of echo requests on purpose (--drop {server.drop:g} "
                     f"--seed {server.seed})")
    return lines


def run(args) -> int:
    if args.token == "":
        raise UserError("--token is empty: an empty token would serve without authentication "
                        "(leave --token out to serve without one)")
    token = options.token_of(args) or None
    server = Server(args.bind, args.port, max_sessions=args.max_sessions, max_duration=args.max_duration,
                    log=None if args.quiet else sys.stderr, drop=args.drop, seed=args.seed, token=token,
                    max_rate_bps=args.max_rate, session_grace=args.session_grace, max_rcvbuf=args.max_rcvbuf,
                    allow_reverse=not args.no_reverse)
    print("\n".join(describe_listening(server)), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
