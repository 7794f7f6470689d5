"""Command line: ``python -m udpbench COMMAND ...``. Each command module adds its own subparser."""
from __future__ import annotations

import argparse
import importlib
import sys

from udpbench._version import __version__
from udpbench.cli.common import user_words
from udpbench.errors import MeasurementError, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other user error
        command = self.prog.partition(" ")[2]
        raise UserError(f"{command}: {message}" if command else message)


# Each command's module owns its arguments and a run(args) -> int; in the order `--help` lists them.
COMMANDS = {
    "sweep": "udpbench.cli.sweep", "blast": "udpbench.cli.blast", "capacity": "udpbench.cli.capacity",
    "mtu": "udpbench.cli.mtu", "ping": "udpbench.cli.ping", "serve": "udpbench.cli.serve",
    "discover": "udpbench.cli.discover", "show": "udpbench.cli.show", "plot": "udpbench.cli.plot",
    "lab": "udpbench.cli.lab", "mesh": "udpbench.cli.mesh", "exporter": "udpbench.cli.exporter",
}


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given ``argv`` naming a command, only that command's module is imported, so
    `show` and `plot` run without the compiled core."""
    parser = _Parser(prog="udpbench", description="Measure what a network path does to UDP datagrams.")
    parser.add_argument("--version", action="version", version=f"udpbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    first = next((a for a in argv or () if not a.startswith("-")), None)
    names = [first] if first in COMMANDS else list(COMMANDS)
    for name in names:
        importlib.import_module(COMMANDS[name]).add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else argv
        args = build_parser(argv).parse_args(argv)
        return int(args.func(args) or 0)
    except (UserError, MeasurementError) as exc:
        print(f"udpbench: {user_words(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("udpbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except SystemExit as exc:  # --help and --version: argparse exits; main returns instead
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
