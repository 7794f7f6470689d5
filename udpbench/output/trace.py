"""Per-datagram traces: every datagram of a run, as a self-describing ``.npz``.

Arrays, one entry per datagram, ordered by sequence number then arrival: ``seq``,
``scheduled_ns`` and ``tx_ns`` (the sender's CLOCK_REALTIME), ``rx_ns`` (the receiver's kernel
timestamp; 0 where lost), ``duplicate`` (1 for a second or later copy). A lost datagram's
times are 0 too: only its sender knew them. ``meta`` (JSON) says whether the trace was cut:
the receiver stops recording at ``limit`` arrivals and counts the rest in ``cut``; a cut trace
lists no lost datagrams, since it cannot tell them from the arrivals it did not keep.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from udpbench.output import results

SCHEMA = "udpbench.trace"
SCHEMA_VERSION = 1
DEFAULT_LIMIT = 1_000_000
FIELDS = (("seq", np.uint64), ("scheduled_ns", np.int64), ("tx_ns", np.int64), ("rx_ns", np.int64),
          ("duplicate", np.uint8))


def per_row_path(target: str, host: str, size: int, direction: str) -> str:
    """Where a sweep writes one row's trace. ``target`` is a directory (one that exists, or any
    name ending in "/") that gets ``HOST-SIZEB-DIRECTION.npz`` files, or else a prefix that
    gets "-HOST-SIZEB-DIRECTION.npz" appended. Characters a file name should not carry (an
    IPv6 address's colons) become "_"."""
    name = f"{re.sub(r'[^A-Za-z0-9._-]', '_', host)}-{size}B-{direction}.npz"
    if target.endswith(os.sep) or os.path.isdir(target):
        return os.path.join(target, name)
    return f"{target}-{name}"


def buffers(limit: int = DEFAULT_LIMIT) -> tuple[np.ndarray, ...]:
    """Empty arrays for a receiver to fill (``Receiver.set_trace(*buffers(n))``)."""
    if limit < 0:
        raise ValueError(f"trace limit {limit} is negative")
    return tuple(np.zeros(limit, dtype) for _, dtype in FIELDS)


def build(arrays: tuple[np.ndarray, ...], length: int, cut: int, first_seq: int, sent: int) -> dict:
    """The trace's columns: the ``length`` recorded arrivals, plus a row for every sequence
    number in [first_seq, first_seq + sent) that never arrived (unless the trace was cut)."""
    columns = {name: a[:length].copy() for (name, _), a in zip(FIELDS, arrays)}
    if not cut and sent:
        seen = np.unique(columns["seq"])
        expected = np.arange(first_seq, first_seq + sent, dtype=np.uint64)
        lost = np.setdiff1d(expected, seen, assume_unique=True)
        for name, dtype in FIELDS:
            extra = lost if name == "seq" else np.zeros(len(lost), dtype)
            columns[name] = np.concatenate([columns[name], extra])
    order = np.lexsort((columns["rx_ns"], columns["seq"]))
    return {name: columns[name][order] for name, _ in FIELDS}


def write(path: str, columns: dict, *, limit: int, cut: int, sent: int) -> None:
    """Write atomically (temp file + rename); an unwritable path raises OSError."""
    meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, "limit": limit, "cut": cut,
            "truncated": cut > 0, "sent": sent}
    results.write_atomically(Path(path), lambda f: np.savez(f, meta=np.array(json.dumps(meta)), **columns))


def read(path: str) -> tuple[dict, dict]:
    """(meta, columns) of a trace file."""
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        if meta.get("schema") != SCHEMA:
            raise ValueError(f"{path} is not a udpbench trace")
        return meta, {name: f[name] for name, _ in FIELDS}
