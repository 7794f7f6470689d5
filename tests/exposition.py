"""Reading Prometheus's text exposition in tests: one sample per line, comments dropped."""
from __future__ import annotations


def samples(text: str) -> dict[str, float]:
    """{'name{labels}': value} of an exposition (comment lines dropped)."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out
