"""What every measuring command prints the same way."""
from __future__ import annotations

import sys


def print_notice(text: str) -> None:
    """A library notice (a clamp, an unused token): one line on stderr."""
    print(f"udpbench: {text}", file=sys.stderr, flush=True)
