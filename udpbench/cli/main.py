"""Command line: ``python -m udpbench COMMAND ...``. Each command module adds its own subparser."""
from __future__ import annotations

import argparse
import sys

from udpbench._version import __version__
from udpbench.errors import MeasurementError, UserError


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like every other user error
        command = self.prog.partition(" ")[2]
        raise UserError(f"{command}: {message}" if command else message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="udpbench", description="Measure what a network path does to UDP datagrams.")
    parser.add_argument("--version", action="version", version=f"udpbench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    # Each module owns its command: arguments and a run(args) -> int.
    from udpbench.cli import blast, plot, show, sweep
    from udpbench.lab import lab
    from udpbench.transport import discover, mtu, ping, server
    for module in (sweep, blast, mtu, ping, server, discover, show, plot, lab):
        module.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except (UserError, MeasurementError) as exc:
        print(f"udpbench: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("udpbench: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except SystemExit as exc:  # --help and --version: argparse exits; main returns instead
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
