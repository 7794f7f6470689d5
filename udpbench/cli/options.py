"""Option groups and argument types the commands share, written once.

Each type names its flag in its one-line error, so ``--duration -1`` says which option is wrong
and how; the library beneath names values only (docs/architecture.md).
"""
from __future__ import annotations

import math
import socket

from udpbench.errors import UserError
from udpbench.protocol import control
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.protocol.units import parse_rate


def positive_seconds(name: str, high: float = 86400.0):
    """An argparse type: a number of seconds above 0 and at most ``high``, named in its errors."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{name} {text!r} is not a number of seconds") from None
        if not (math.isfinite(value) and 0 < value <= high):
            raise UserError(f"{name} {text!r} must be more than 0 and at most {high:g} seconds")
        return value
    return parse


def seconds_between(name: str, low: float, high: float):
    """An argparse type: a number of seconds in [low, high], or a one-line error naming ``name``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise UserError(f"{name} {text!r} is not a number of seconds") from None
        if not low <= value <= high:  # also refuses NaN
            raise UserError(f"{name} {text!r} must be between {low:g} and {high:g} seconds")
        return value
    return parse


def whole_number_between(name: str, low: int, high: int, unit: str = ""):
    """An argparse type: a whole number in [low, high], or a one-line error naming ``name``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{name} {text!r} is not a whole number") from None
        if not low <= value <= high:
            raise UserError(f"{name} {value} is outside {low}..{high}{' ' + unit if unit else ''}")
        return value
    return parse


def port_number(text: str) -> int:
    """An argparse type for a server port: 1-65535, or a one-line error."""
    return whole_number_between("--port", 1, 65535)(text)


def add_port(p, help: str | None = None, lowest: int = 1) -> None:
    """--port (``args.port``); ``lowest=0`` where 0 means "pick a free one" (serve)."""
    p.add_argument("--port", type=port_number if lowest == 1 else whole_number_between("--port", lowest, 65535),
                   default=DEFAULT_PORT, help=help or f"server port (default {DEFAULT_PORT})")


def add_family(p, by_number: bool = False, v4_help: str = "IPv4 only", v6_help: str = "IPv6 only") -> None:
    """-4 / -6: one address family only (``args.family``: AF_INET, AF_INET6 or None; 4, 6 or None
    ``by_number``)."""
    v4, v6 = (4, 6) if by_number else (socket.AF_INET, socket.AF_INET6)
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=v4, help=v4_help)
    fam.add_argument("-6", dest="family", action="store_const", const=v6, help=v6_help)


def add_rate(p, help: str | None = None) -> None:
    """--rate (``args.rate``: bits/s, 0 for max, None when not given)."""
    p.add_argument("--rate", type=parse_rate, default=None, metavar="R",
                   help=help or "UDP payload bits/s with k/M/G suffix, or 'max' (default: max for loopback; "
                                "100M for any other host, a safety default)")


def add_token(p, help: str | None = None) -> None:
    """--token and --token-file, for every command that connects to a server (read with token_of)."""
    p.add_argument("--token", default=None, metavar="SECRET",
                   help=help or f"shared secret for a server that requires one (default: ${control.TOKEN_ENV}); "
                                f"other local users can read a command line: prefer the variable or --token-file")
    add_token_file(p)


def add_token_file(p, help: str = "read the token from FILE's first line") -> None:
    """--token-file alone (the exporter, which keeps secrets off its command line)."""
    p.add_argument("--token-file", default=None, metavar="FILE", help=help)


def token_of(args) -> str:
    """The token the options or the environment give ("" for none)."""
    return control.resolve_token(getattr(args, "token", None), args.token_file) or ""


def redact(argv: list[str]) -> list[str]:
    """The command line without the token's value: result files get shared, secrets must not."""
    out, hide = [], False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--token":
            out.append(arg)
            hide = True
        elif arg.startswith("--token="):
            out.append("--token=***")
        else:
            out.append(arg)
    return out
