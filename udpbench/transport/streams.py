"""Parallel streams: N sessions at once, each with its own control connection, data socket,
session id and sending thread, summed into one row.

The send loops release the GIL, so the threads run in parallel. Only the main thread sees
signals: it waits for the senders and, on Ctrl-C, sets a flag they watch. ``--rate`` is the
total over all streams, split evenly (iperf3's ``-b`` with ``-P`` is per stream instead).
"""
from __future__ import annotations

import statistics
import threading

from udpbench.engine import _fast
from udpbench.protocol import frag
from udpbench.linux import counters as kernel
from udpbench.protocol import loss as stats
from udpbench.transport.client import Client
from udpbench.errors import UserError

# Counts that add up over streams; the rest is recomputed or taken as the worst stream's.
# The loss causes are not summed: the kernel counters behind them cover the namespace, so every
# stream sees all streams' drops; they are attributed once, over the summed loss.
SUMMED = ("sent", "send_errors", "received", "duplicates", "reordered", "late", "lost",
          "loss_bursts", "syscalls", "foreign", "socket_drops", "gro_buffers", "rate_target_bps",
          "rate_requested_bps")
WORST = ("longest_loss_burst", "max_reorder_distance", "delay_spread_ms", "gap_std_us", "gap_p99_us",
         "gap_p999_us", "gap_max_us", "late_p50_us", "late_p99_us", "late_max_us", "schedule_resets",
         "drain_s")
# What each stream reports in the row's per_stream list.
PER_STREAM = ("engine", "sent", "received", "lost", *stats.CAUSES, "duplicates",
              "reordered", "duration_s", "tx_pps", "rx_pps", "goodput_bps", "jitter_ms", "gap_p50_us",
              "gap_p99_us", "send_errors")


def blast_streams(client: Client, streams: int, size: int, duration: float, rate_bps: float | None,
                  engine: str = "auto", rcvbuf: int | None = None, path_mtu: int | None = None,
                  df: bool = False, *, interval: float | None = None, on_interval=None) -> dict:
    """One row for ``streams`` parallel sessions of ``size``-byte datagrams (1: a plain blast)."""
    if streams <= 1:
        return client.blast(size, duration, rate_bps, engine, rcvbuf, path_mtu, df=df,
                            interval=interval, on_interval=on_interval)
    if interval:
        raise UserError("--interval reports one stream; leave it out with --streams")
    stream_rate = rate_bps / streams if rate_bps else rate_bps
    clients = [client]
    flows = []
    errors: list[BaseException] = []
    stop = _fast.StopFlag()
    interrupt = None
    rows = []
    try:
        for _ in range(streams - 1):
            clients.append(client.sibling())
        for c in clients:
            flows.append(c.start_blast(size, duration, stream_rate, engine, rcvbuf, path_mtu, df))

        def send(flow):
            try:
                flow.send(stop)
            except BaseException as exc:  # re-raised in the main thread after every STOP
                errors.append(exc)
                stop.set()

        before = kernel.snapshot(client.v6)
        threads = [threading.Thread(target=send, args=(f,), name=f"stream-{i}", daemon=True)
                   for i, f in enumerate(flows)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                try:
                    t.join(0.1)
                except KeyboardInterrupt as exc:
                    interrupt = exc
                    stop.set()
        sender_counters = kernel.delta(before, kernel.snapshot(client.v6))
    finally:
        try:
            for flow in flows:  # every flow gets its STOP, even when another one failed
                try:
                    rows.append(flow.finish())
                except BaseException as exc:
                    errors.append(exc)
        finally:
            for c in clients[1:]:
                c.close()
    if errors:
        raise errors[0]
    row = combine(rows, sender_counters)
    if interrupt is not None:
        row["interrupted"] = True
        row["_interrupt"] = interrupt
    return row


def combine(rows: list[dict], sender_counters: dict | None = None) -> dict:
    """The summed row of parallel streams; each stream's own numbers in ``per_stream``."""
    first = rows[0]
    row = dict(first)
    for key in SUMMED:
        row[key] = sum(r.get(key) or 0 for r in rows)
    for key in WORST:
        row[key] = max(r.get(key) or 0 for r in rows)
    elapsed = max(r["duration_s"] for r in rows)
    size = first["size"]
    errors: dict[str, int] = {}
    for r in rows:
        for name, n in r["send_errors_by_errno"].items():
            errors[name] = errors.get(name, 0) + n
    try:  # as make_row does: what crosses the bottleneck, router re-fragmentation included
        wire_per_datagram = frag.wire_bytes_of(frag.fragment_sizes_on_path(
            size, first["sender_mtu"], first["path_mtu"], first["family"] == 6))
    except ValueError:
        wire_per_datagram = 0
    row.update(
        streams=len(rows),
        duration_s=elapsed,
        send_errors_by_errno=errors,
        loss_ratio=row["lost"] / row["sent"] if row["sent"] else 0.0,
        tx_pps=row["sent"] / elapsed,
        rx_pps=row["received"] / elapsed,
        tx_bps=row["sent"] * size * 8 / elapsed,
        rate_ratio=row["sent"] * size * 8 / elapsed / row["rate_target_bps"] if row["rate_target_bps"] else None,
        goodput_bps=row["received"] * size * 8 / elapsed,
        wire_bps=row["received"] * wire_per_datagram * 8 / elapsed,
        jitter_ms=statistics.fmean(r["jitter_ms"] for r in rows),
        gap_mean_us=statistics.fmean(r["gap_mean_us"] for r in rows),
        gap_p1_us=min(r["gap_p1_us"] for r in rows),
        gap_p50_us=statistics.median(r["gap_p50_us"] for r in rows),
        engine_note="; ".join(sorted({r["engine_note"] for r in rows if r["engine_note"]})),
        receiver_counters={k: max(r["receiver_counters"].get(k, 0) for r in rows)
                           for k in first["receiver_counters"]},
        per_stream=[{"session": f"{r['_session']:016x}" if "_session" in r else None,
                     **{k: r.get(k) for k in PER_STREAM}} for r in rows],
    )
    counters = row["receiver_counters"]
    row.update(stats.attribute_loss(
        row["lost"], sndbuf_errors=(sender_counters or {}).get("Udp.SndbufErrors", 0),
        socket_drops=sum(r["loss_socket"] for r in rows),  # exact: each stream's own socket
        reasm_fails=counters.get("Ip.ReasmFails", 0)))
    engines_used = sorted({r["engine"] for r in rows})
    row["engine"] = engines_used[0] if len(engines_used) == 1 else "+".join(engines_used)
    if sender_counters is not None:
        row["sender_counters"] = sender_counters
    row.pop("_interrupt", None)
    row.pop("_session", None)
    row.pop("interrupted", None)
    if any(r.get("interrupted") for r in rows):
        row["interrupted"] = True
    return row
