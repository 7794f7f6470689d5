"""Parsing and printing the quantities users type and read: rates, sizes, durations."""
from __future__ import annotations

import math
import re

from udpbench.errors import UserError

_SUFFIX = {"": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}
# Case matters in the unit: a capital B means bytes, and udpbench rates are bits per second.
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMgGtT]?)(?:bit/s|bit|bps|b)?\s*$")


def parse_rate(text: str) -> float:
    """Bits per second from '500M', '1.5G', '100k', '2500000' or 'max' (0: as fast as possible)."""
    if text.strip().lower() in ("max", "0", "unlimited"):
        return 0.0
    m = _RATE.match(text)
    if not m and re.search(r"[0-9.]\s*[kKmMgGtT]?B", text):
        raise UserError(f"rate {text!r} looks like bytes/s: give bits/s, like 100M (a capital B means bytes)")
    if not m:
        raise UserError(f"rate {text!r} is not bits/s like 100M, 1.5G, 250k or 'max'")
    value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"rate {text!r} must be a positive number of bits/s, or 'max'")
    return value


def parse_sizes(text: str) -> list[int]:
    """Payload sizes from '64,512,1472' (any order; duplicates dropped)."""
    sizes = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            sizes.append(int(part))
        except ValueError:
            raise UserError(f"payload size {part!r} is not a whole number of bytes") from None
    if not sizes:
        raise UserError("no payload sizes given")
    return sorted(set(sizes))



def format_rate(bps: float) -> str:
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.3g} {unit}"
    return f"{bps:.3g} bit/s"


def format_count(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"
