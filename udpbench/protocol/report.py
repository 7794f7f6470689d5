"""Checking the server's counts (REPORT, STATUS) before a row is built from them.

The server checks every START a client sends (``control.decode``); the client checks what the
server reports the same way, so a broken or hostile server ends the measurement with a
protocol error naming the field, not a TypeError in the arithmetic nor a row of impossible
numbers. Fields this udpbench does not know are left alone: a newer server may send more.

A receiver that failed on the server (``receive_error``) is not a protocol error: the REPORT
is well formed, but its counts stop where the receiver did, and would pass for loss.
"""
from __future__ import annotations

import math

from udpbench.errors import MeasurementError
from udpbench.protocol.control import ProtocolError

# Whole numbers of at least 0: what the receiver counted.
COUNTS = frozenset({
    "received", "duplicates", "reordered", "late", "foreign", "payload_bytes", "gap_events", "max_gap",
    "max_reorder", "gro_buffers", "buffers", "transit_samples", "max_segments", "first_rx_count",
    "first_rx_ns", "last_rx_ns", "loss_burst_count", "loss_burst_max", "owd_samples", "sched_owd_samples",
    "rcvbuf",
})
# Counts the server may not know (null): a socket's drops where the kernel does not say.
OPTIONAL_COUNTS = frozenset({"socket_drops", "rxq_overflow"})
# Finite numbers of at least 0.
AMOUNTS = frozenset({"jitter_ms", "drain_s", "loss_burst_mean", "loss_gap_mean", "loss_conditional"})
# Records of name -> whole number: kernel counter deltas (any sign) and histograms (at least 0).
SIGNED_RECORDS = frozenset({"kernel"})
HISTOGRAMS = frozenset({"loss_burst_histogram", "loss_gap_histogram"})
TEXT = frozenset({"receive_error", "clock_domain"})
_LARGEST = 2**64  # sequence numbers and counters are 64-bit


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_LARGEST < value < _LARGEST


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _field_problem(key: str, value) -> str | None:
    """What is wrong with one field, or None."""
    if key in COUNTS or (key in OPTIONAL_COUNTS and value is not None):
        return None if _whole(value) and value >= 0 else "is not a whole number of at least 0"
    if key in AMOUNTS:
        return None if _number(value) and value >= 0 else "is not a finite number of at least 0"
    if key == "highest_seq":  # -1 before the first datagram
        return None if _whole(value) and value >= -1 else "is not a sequence number"
    if key.endswith("_ns") and key not in COUNTS:  # one-way delays: negative across two clocks
        return None if _number(value) else "is not a finite number of nanoseconds"
    if key in SIGNED_RECORDS or key in HISTOGRAMS:
        if not isinstance(value, dict):
            return "is not a record"
        low = 0 if key in HISTOGRAMS else -_LARGEST
        if not all(isinstance(k, str) and _whole(v) and v >= low for k, v in value.items()):
            return "holds a value that is not a whole number" + (" of at least 0" if low == 0 else "")
    if key in TEXT and not isinstance(value, str):
        return "is not text"
    return None


def check_counts(msg: dict, session: int, sent: int | None = None) -> dict:
    """``msg`` (a decoded REPORT or STATUS) if it is the counts of ``session``; ProtocolError otherwise.

    ``sent``: the datagrams the kernel accepted for the session, when known (the final REPORT):
    a receiver cannot count more distinct datagrams than were sent.
    """
    kind = msg.get("type", "report")
    if msg.get("session") != session:
        raise ProtocolError(f"{kind} is for session {msg.get('session')!r}, not this one ({session:016x})")
    for key, value in msg.items():
        problem = _field_problem(key, value)
        if problem:
            raise ProtocolError(f"{kind} field '{key}' {problem} ({str(value)[:40]})")
    received = msg.get("received", 0)
    if sent is not None and received > sent:
        raise ProtocolError(f"{kind} counts {received} datagrams received of {sent} sent")
    return msg


def checked(counts: dict, session: int, sent: int | None = None, where: str = "server") -> dict:
    """``check_counts`` for a measurement: MeasurementError for a broken report, and for one
    whose receiver failed (its counts stop where it did; what it missed would pass for loss)."""
    try:
        check_counts(counts, session, sent)
    except ProtocolError as exc:
        raise MeasurementError(f"{where} sent a broken report: {exc}") from None
    if counts.get("receive_error"):
        raise MeasurementError(f"{where}: its receiver failed ({counts['receive_error'][:200]}); "
                               f"the counts would pass for loss, so the measurement is void")
    return counts


def check_sender_counts(tx, where: str = "server") -> dict:
    """The counts a reverse run's server reports of its own sending (REPORT ``tx``), checked before
    a row is built from them: ``sent`` and ``elapsed_ns`` whole numbers of at least 0, ``errors`` a
    record of errno -> count, every other field a finite number of at least 0 (or null)."""
    if not isinstance(tx, dict):
        raise MeasurementError(f"{where} sent a broken report: its sending counts are not a record")
    problems = []
    for key in ("sent", "elapsed_ns"):
        if not (_whole(tx.get(key)) and tx[key] >= 0):
            problems.append(f"'{key}' is not a whole number of at least 0")
    errors = tx.get("errors", {})
    if not (isinstance(errors, dict) and all(isinstance(k, str) and k.lstrip("-").isdigit() and _whole(v) and v >= 0
                                             for k, v in errors.items())):
        problems.append("'errors' is not a record of errno -> count")
    for key, value in tx.items():
        if key in ("sent", "elapsed_ns", "errors", "interrupt") or value is None:
            continue
        if not (_number(value) and value >= 0):
            problems.append(f"'{key}' is not a finite number of at least 0")
    if problems:
        raise MeasurementError(f"{where} sent a broken report: sending counts field {problems[0]}")
    return tx
