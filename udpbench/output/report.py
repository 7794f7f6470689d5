"""Rows for people: the sweep table and the delay table (rich renderables), and a blast summary
(text). Nothing here prints; the command line does."""
from __future__ import annotations

from rich.table import Table

from udpbench.protocol.units import format_count, format_rate

# (heading, row key, format)
COLUMNS = [
    ("host", "host", str),
    ("size B", "size", lambda v: f"{v}"),
    ("frags", "fragments", lambda v: f"{v}"),
    ("engine", "engine", str),
    ("sent", "sent", format_count),
    ("received", "received", format_count),
    ("lost", "lost", format_count),
    ("loss", "loss_ratio", lambda v: f"{100 * v:.3g}%"),
    ("dup", "duplicates", lambda v: f"{v}"),
    ("reord", "reordered", lambda v: f"{v}"),
    ("tx pps", "tx_pps", format_count),
    ("goodput", "goodput_bps", format_rate),
    ("jitter ms", "jitter_ms", lambda v: f"{v:.4f}"),
    ("send err", "send_errors", lambda v: f"{v}"),
]
CAUSE_LABELS = (("loss_sender", "sender"), ("loss_socket", "socket"), ("loss_reassembly", "reasm"),
                ("loss_network", "network"))


def where_lost(row: dict) -> str:
    """Lost datagrams by cause, e.g. 'socket 16.2k, network 3'; '-' when nothing was lost."""
    parts = [f"{label} {format_count(row[key])}" for key, label in CAUSE_LABELS if row.get(key)]
    return ", ".join(parts) or "-"


# Measured-at-the-receiver columns mean nothing for a size the kernel would not send.
_NOT_MEASURED = {"received", "lost", "loss_ratio", "duplicates", "reordered", "goodput_bps", "jitter_ms"}


def note(row: dict) -> str:
    """Why a row is not an ordinary measurement: a size the kernel refused (DF above the path MTU)."""
    if row.get("sendable") is False:
        why = row.get("send_error") or "every send failed"
        return f"not sendable: {why}" + (f" (DF, > path MTU {row['path_mtu']})" if row.get("df") and why == "EMSGSIZE" else "")
    return ""


def table(rows: list[dict], title: str | None = None) -> Table:
    t = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    notes = [note(row) for row in rows]
    for heading, key, _ in COLUMNS:
        t.add_column(heading, justify="left" if key in ("host", "engine") else "right")
    t.add_column("lost at", justify="left")
    if any(notes):
        t.add_column("note", justify="left")
    for row, why in zip(rows, notes):
        cells = [fmt(row[key]) if key in row and not (why and key in _NOT_MEASURED) else "-"
                 for _, key, fmt in COLUMNS]
        t.add_row(*cells, "-" if why else where_lost(row), *([why] if any(notes) else []))
    return t


DELAY_PARTS = (("min", "min"), ("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))


def _delay_us(row: dict, key: str) -> float | None:
    """A one-way delay field, or None for a row without a delay sample (nothing received; an
    older file without the fields)."""
    value = row.get(key)
    if not isinstance(row.get("owd_basis"), str) or not row.get("received") or note(row):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _microseconds(v: float) -> str:
    return f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"


def delay_basis(row: dict) -> str:
    """The row's owd_basis, an estimated one with its uncertainty (README: owd_basis)."""
    basis = str(row.get("owd_basis") or "-")
    error = row.get("clock_error_us")
    if basis == "estimated" and isinstance(error, (int, float)) and error >= 0:
        basis += f" \u00b1{_microseconds(error)}"
    return basis


def delay_table(rows: list[dict], title: str | None = None) -> Table | None:
    """One-way delay percentiles in microseconds, from the actual and from the scheduled send
    time, per row; None when no row carries them (a file from before they were measured)."""
    if not any(_delay_us(row, "owd_p50_us") is not None for row in rows):
        return None
    t = Table(title=title, header_style="bold", show_edge=False, pad_edge=False)
    for heading in ("host", "size B", "engine", "basis"):
        t.add_column(heading, justify="right" if heading == "size B" else "left")
    for prefix, words in (("owd", ""), ("sched_owd", "sched ")):
        for _, part in DELAY_PARTS:
            t.add_column(f"{words}{part}", justify="right")
    for row in rows:
        cells = []
        for prefix in ("owd", "sched_owd"):
            for key, _ in DELAY_PARTS:
                value = _delay_us(row, f"{prefix}_{key}_us")
                cells.append(_microseconds(value) if value is not None else "-")
        measured = _delay_us(row, "owd_p50_us") is not None
        t.add_row(str(row.get("host", "")), str(row.get("size", "")), str(row.get("engine", "")),
                  delay_basis(row) if measured else "-", *cells)
    return t


def blast_summary(row: dict) -> str:
    """A few lines a person reads after one blast."""
    toward = " from the server (reverse)" if row.get("direction") == "reverse" else ""
    lines = [
        f"{row['host']}{toward} {row['size']} B x {row['sent']} datagrams in {row['duration_s']:.3f} s "
        f"({row['engine']}, {row['fragments']} fragment(s) at MTU {row['path_mtu']})",
        f"  sent      {row['sent']:>12}   {format_count(row['tx_pps'])} pps  {format_rate(row['tx_bps'])}",
        f"  received  {row['received']:>12}   {format_count(row['rx_pps'])} pps  goodput {format_rate(row['goodput_bps'])}",
        f"  lost      {row['lost']:>12}   {100 * row['loss_ratio']:.4g}%   duplicates {row['duplicates']}  "
        f"reordered {row['reordered']}",
        f"  lost at   {where_lost(row)}",
        f"  jitter    {row['jitter_ms']:.4f} ms   send errors {row['send_errors']}"
        + (f" {row['send_errors_by_errno']}" if row["send_errors"] else ""),
    ]
    if note(row):
        lines = [f"{row['host']} {row['size']} B: {note(row)}: nothing was sent"]
    if row.get("interrupted"):
        lines.append("  (interrupted: the numbers cover the part that ran)")
    return "\n".join(lines)
