"""Capacity result files: NAME.npz and NAME.json as results.py writes a sweep's, under a schema
of their own (``udpbench.capacity``), so that neither kind is mistaken for the other."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from udpbench.output import results

SCHEMA = "udpbench.capacity"
SCHEMA_VERSION = 1


def save(base: str | Path, meta: dict, rows: list[dict]) -> tuple[Path, Path]:
    """Write BASE.npz and BASE.json atomically (temporary file, then rename); returns both paths."""
    base = Path(base)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    npz, js = base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")
    arrays = results.to_arrays(meta, rows)
    described = dict(json.loads(str(arrays["meta"])), schema=SCHEMA, schema_version=SCHEMA_VERSION)
    arrays["meta"] = np.array(json.dumps(described, sort_keys=True))
    results._atomic_write(npz, lambda f: np.savez(f, **arrays))
    document = {"meta": described, "rows": [results.public(r) for r in rows]}
    results._atomic_write(js, lambda f: f.write(json.dumps(document, indent=1, default=str).encode() + b"\n"))
    return npz, js
