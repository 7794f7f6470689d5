"""Capacity result files: NAME.npz and NAME.json as results.py writes a sweep's, under a schema
of their own (``udpbench.capacity``), so that neither kind is mistaken for the other."""
from __future__ import annotations

from pathlib import Path

from udpbench.output import results

SCHEMA = "udpbench.capacity"
SCHEMA_VERSION = 1


def save(base: str | Path, meta: dict, rows: list[dict]) -> tuple[Path, Path]:
    """Write BASE.npz and BASE.json atomically (temporary file, then rename); returns both paths."""
    return results.save(base, meta, rows, schema=SCHEMA, schema_version=SCHEMA_VERSION)
