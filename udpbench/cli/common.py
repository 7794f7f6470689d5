"""What every measuring command prints the same way."""
from __future__ import annotations

import sys

from udpbench.errors import LabState, ServerAbsent, TokenRequired


def print_notice(text: str) -> None:
    """A library notice (a clamp, an unused token): one line on stderr."""
    print(f"udpbench: {text}", file=sys.stderr, flush=True)


def console(file=None):
    """Where tables go (a rich Console): stdout, 200 columns wide when it is not a terminal."""
    from rich.console import Console  # here, not above: every command's start imports this module

    out = file or sys.stdout
    return Console(file=out, width=None if out.isatty() else 200)


def print_table(rows: list, title: str | None = None, file=None) -> None:
    """The measurement table of ``rows`` (output/report.py), printed."""
    from udpbench.output.report import table

    console(file).print(table(rows, title))


def user_words(exc: Exception) -> str:
    """A library error in the user's words: the library names values, the command line adds the
    flag or the command that fixes it (docs/architecture.md)."""
    text = str(exc)
    if isinstance(exc, ServerAbsent) and exc.reason == "refused":
        return f"{text}: start one there with `python -m udpbench serve --port {exc.port}`"
    if isinstance(exc, ServerAbsent) and exc.reason == "timeout":
        return f"{text}: is `python -m udpbench serve --port {exc.port}` running there?"
    if isinstance(exc, TokenRequired):
        return f"{text}: pass --token or set UDPBENCH_TOKEN"
    if isinstance(exc, LabState):
        return f"{text}; run `udpbench lab {exc.fix}{'' if exc.default_prefix else ' --prefix ' + exc.prefix}`"
    return text
