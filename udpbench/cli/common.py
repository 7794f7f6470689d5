"""What every measuring command prints the same way."""
from __future__ import annotations

import sys

from udpbench.errors import LabState, ServerAbsent, TokenRequired


def print_notice(text: str) -> None:
    """A library notice (a clamp, an unused token): one line on stderr."""
    print(f"udpbench: {text}", file=sys.stderr, flush=True)


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
