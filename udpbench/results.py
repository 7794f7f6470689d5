"""The result-file schema: NAME.npz (numpy arrays, one entry per row) and NAME.json (the same, readable).

Both are written atomically (a temporary file, then rename), after every finished row, so an
interrupted sweep keeps what it measured. Loading never unpickles.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import UserError

SCHEMA = "udpbench.sweep"
SCHEMA_VERSION = 1


def _column(values: list):
    """A 1-D array for one column, and whether it holds JSON-encoded values."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return np.array([bool(v) for v in values]), False
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return np.array([v if v is not None else 0 for v in values], dtype=np.int64), False
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return np.array([v if v is not None else np.nan for v in values], dtype=np.float64), False
    if present and all(isinstance(v, str) for v in present):
        return np.array([v if v is not None else "" for v in values], dtype=np.str_), False
    return np.array([json.dumps(v, sort_keys=True) for v in values], dtype=np.str_), True


def public(row: dict) -> dict:
    """A row without private fields (those starting with '_')."""
    return {k: v for k, v in row.items() if not k.startswith("_")}


def to_arrays(meta: dict, rows: list[dict]) -> dict[str, np.ndarray]:
    keys: list[str] = []
    for row in rows:
        keys.extend(k for k in public(row) if k not in keys)
    arrays, json_columns = {}, []
    for key in keys:
        arrays[key], encoded = _column([row.get(key) for row in rows])
        if encoded:
            json_columns.append(key)
    meta = dict(meta, schema=SCHEMA, schema_version=SCHEMA_VERSION, rows=len(rows), json_columns=json_columns)
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    return arrays


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def save(base: str | Path, meta: dict, rows: list[dict]) -> tuple[Path, Path]:
    """Write BASE.npz and BASE.json atomically; returns both paths."""
    base = Path(base)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    npz, js = base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")
    arrays = to_arrays(meta, rows)
    _atomic_write(npz, lambda f: np.savez(f, **arrays))
    document = {"meta": json.loads(str(arrays["meta"])), "rows": [public(r) for r in rows]}
    _atomic_write(js, lambda f: f.write(json.dumps(document, indent=1, default=str).encode() + b"\n"))
    return npz, js


def load(path: str | Path) -> tuple[dict, list[dict]]:
    """(meta, rows) from a .npz or .json result file; a clear UserError for anything else."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"no result file {path}")
    if path.suffix == ".json":
        try:
            document = json.loads(path.read_text())
            meta, rows = document["meta"], document["rows"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            raise UserError(f"{path} is not a udpbench result file (bad or truncated JSON)") from None
        _check_meta(path, meta)
        return meta, rows
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            _check_meta(path, meta)
            columns = {k: data[k] for k in data.files if k != "meta"}
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile, EOFError):
        raise UserError(f"{path} is not a udpbench result file (unreadable, truncated or foreign)") from None
    encoded = set(meta.get("json_columns", []))
    rows = [{} for _ in range(meta.get("rows", 0))]
    for key, column in columns.items():
        if column.shape != (len(rows),):
            raise UserError(f"{path}: column {key!r} does not have one entry per row")
        for row, value in zip(rows, column.tolist()):
            row[key] = json.loads(value) if key in encoded else value
    return meta, rows


def _check_meta(path: Path, meta) -> None:
    if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
        raise UserError(f"{path} is not a udpbench result file (no '{SCHEMA}' schema in meta)")
    if meta.get("schema_version", 0) > SCHEMA_VERSION:
        raise UserError(f"{path} has schema version {meta['schema_version']}; this udpbench reads "
                        f"up to {SCHEMA_VERSION}: upgrade udpbench")
