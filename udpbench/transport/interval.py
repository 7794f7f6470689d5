"""Interim reports during a blast (``blast --interval S``), like ``iperf3 -i``.

The client sends in slices of the interval: one ``_fast.send_datagrams`` call per slice, the
sequence numbers continuing from one slice to the next in the same session. After each slice a
reporter thread asks the server for its receiver's counts (STATUS on the control channel) while
the next slice is already being sent, so the control round trip does not open a hole in the
sending schedule. The last interval is taken from the final REPORT, after the server drained
stragglers, so the intervals add up exactly to the summary.

Per interval: ``sent`` is exact (the sender's own count for the slice). ``received`` is the
change in the server's count between two snapshots. ``expected`` is how far the highest
sequence number the server has seen advanced; ``lost = expected - received`` counts the gaps
opened in the sequence during the interval that were still open at the snapshot. A datagram
still in flight at a snapshot is neither received nor expected yet, so it is not taken for
lost; one that arrives after a later datagram fills its gap in the next interval, which then
shows a negative ``lost``. The last interval's ``expected`` runs up to the last datagram sent,
so its ``lost`` also holds datagrams lost at the very end.
"""
from __future__ import annotations

import queue
import threading
import time

from udpbench.errors import MeasurementError
from udpbench.protocol.units import format_count, format_rate

# iperf3's floor for -i: below it the STATUS round trips and per-slice bookkeeping are the
# measurement. The cap bounds the intervals list a row carries (a few hundred bytes each).
MIN_INTERVAL_S = 0.1
MAX_INTERVALS = 10_000

# The first snapshot of a session: nothing received, no sequence number seen.
_NOTHING = {"received": 0, "highest_seq": -1, "duplicates": 0, "reordered": 0, "socket_drops": 0}


class IntervalReports:
    """Sends one blast in slices and turns server snapshots into per-interval rows.

    ``on_interval(entry)`` is called for each interval as soon as its numbers are known: from
    the reporter thread for all but the last, from the caller's thread for the last.
    """

    def __init__(self, client, session: int, size: int, interval: float, on_interval=None):
        if not interval >= MIN_INTERVAL_S:
            raise ValueError(f"interval {interval!r} s is below the {MIN_INTERVAL_S:g} s floor")
        self.client = client
        self.session = session
        self.size = size
        self.interval = interval
        self.on_interval = on_interval
        self.intervals: list[dict] = []
        self.failure: BaseException | None = None
        self._previous = dict(_NOTHING)
        self._slices: "queue.Queue[tuple | None]" = queue.Queue()
        self._thread = threading.Thread(target=self._report_loop, name=f"status-{session:x}", daemon=True)
        self._last_slice: tuple | None = None

    # --- sending -------------------------------------------------------------------------

    def send(self, send_slice, duration: float) -> dict:
        """Send for ``duration`` seconds in slices; returns the slices' results merged like one call's.

        ``send_slice(first_seq, seconds)`` sends one slice and returns ``_fast.send_datagrams``'s
        dict; the caller binds the socket, engine, size, session and rate.
        """
        if duration / self.interval > MAX_INTERVALS:
            raise ValueError(f"{duration:g} s in intervals of {self.interval:g} s is more than {MAX_INTERVALS}")
        self._thread.start()
        t0 = time.monotonic()
        slices: list[dict] = []
        next_seq = 0
        previous_end = 0.0
        k = 0
        try:
            while True:
                k += 1
                boundary = k * self.interval
                if boundary > duration - 1e-3 * self.interval:  # no sliver of a slice at the end
                    boundary = duration
                now = time.monotonic() - t0
                length = boundary - now
                if length > 1e-6:
                    tx = send_slice(next_seq, length)
                else:  # Python overhead ate this slice's time: an empty slice keeps the grid
                    tx = _empty_tx(next_seq)
                next_seq = tx["next_seq"]
                slices.append(tx)
                end = time.monotonic() - t0
                last = boundary == duration or tx["interrupt"] is not None or self.failure is not None
                # the time range shown is the nominal grid (cut short by an interrupt); rates use the
                # real span from the previous slice's end, so the gap between slices is counted
                nominal = ((k - 1) * self.interval, boundary if tx["interrupt"] is None else end)
                item = (nominal, (previous_end, end), tx)
                previous_end = end
                if last:
                    self._last_slice = item
                    break
                self._slices.put(item)
        finally:
            # the control channel is the reporter's until here: STOP must not cross a STATUS
            self._slices.put(None)
            self._thread.join()  # it ends: each STATUS it waits for has the channel's own timeout
        merged = merge_tx(slices)
        merged["elapsed_ns"] = int((time.monotonic() - t0) * 1e9)
        return merged

    def _report_loop(self) -> None:
        while True:
            item = self._slices.get()
            if item is None:
                return
            if self.failure is not None:
                continue
            try:
                status = self.client.status(self.session)
            except BaseException as exc:  # surfaced by finish(); the sender stops at the next slice
                self.failure = exc
                continue
            self._add(item, status, final=False)

    # --- accounting ----------------------------------------------------------------------

    def _add(self, item: tuple, status: dict, final: bool, sent_total: int | None = None) -> dict:
        (start, end), (real_start, real_end), tx = item
        prev = self._previous
        received = status.get("received", 0) - prev["received"]
        seen_before = prev["highest_seq"] + 1
        if final:
            expected = sent_total - seen_before  # up to the last datagram sent: losses at the end count
        else:
            expected = status.get("highest_seq", -1) + 1 - seen_before
        lost = expected - received
        span = max(real_end - real_start, 1e-9)
        entry = {
            "start_s": round(start, 6),
            "end_s": round(end, 6),
            "sent": tx["sent"],
            "send_errors": int(sum(tx["errors"].values())),
            "received": received,
            "expected": expected,
            "lost": lost,
            "loss_ratio": lost / expected if expected > 0 else 0.0,
            "duplicates": status.get("duplicates", 0) - prev["duplicates"],
            "reordered": status.get("reordered", 0) - prev["reordered"],
            "tx_bps": tx["sent"] * self.size * 8 / span,
            "goodput_bps": received * self.size * 8 / span,
            "jitter_ms": status.get("jitter_ms", 0.0),
            "final": final,
        }
        drops = status.get("socket_drops")
        if drops is not None and prev.get("socket_drops") is not None:
            entry["socket_drops"] = drops - prev["socket_drops"]
        self._previous = {key: status.get(key, value) for key, value in _NOTHING.items()}
        self.intervals.append(entry)
        if self.on_interval is not None:
            self.on_interval(entry)
        return entry

    def finish(self, report: dict, sent_total: int) -> list[dict]:
        """The intervals, the last one from the final REPORT; raises what the reporter met."""
        if self.failure is not None:
            exc = self.failure
            if isinstance(exc, MeasurementError):
                raise exc
            raise MeasurementError(f"interim report failed: {exc}") from None
        if self._last_slice is not None:
            self._add(self._last_slice, report, final=True, sent_total=sent_total)
        return self.intervals


def _empty_tx(next_seq: int) -> dict:
    return {"sent": 0, "next_seq": next_seq, "errors": {}, "elapsed_ns": 0, "syscalls": 0, "batch": 0,
            "gap_min_ns": 0, "gap_max_ns": 0, "gap_mean_ns": 0.0, "gap_std_ns": 0.0, "target_gap_ns": 0.0,
            "schedule_resets": 0, "interrupt": None}


def merge_tx(slices: list[dict]) -> dict:
    """One ``send_datagrams`` result from several consecutive calls: counts add, gap statistics pool."""
    errors: dict[int, int] = {}
    for tx in slices:
        for err, n in tx["errors"].items():
            errors[err] = errors.get(err, 0) + n
    gaps = [(tx["syscalls"] - 1, tx) for tx in slices if tx["syscalls"] > 1]
    n = sum(g for g, _ in gaps)
    mean = sum(g * tx["gap_mean_ns"] for g, tx in gaps) / n if n else 0.0
    square = sum(g * (tx["gap_std_ns"] ** 2 + tx["gap_mean_ns"] ** 2) for g, tx in gaps) / n if n else 0.0
    real = [tx for tx in slices if tx["syscalls"]]
    merged = {}
    for tx in slices:  # anything else the sender reports: the last slice that says something
        merged.update({k: v for k, v in tx.items() if v or k not in merged})
    merged.update({
        "sent": sum(tx["sent"] for tx in slices),
        "next_seq": slices[-1]["next_seq"] if slices else 0,
        "errors": errors,
        "elapsed_ns": sum(tx["elapsed_ns"] for tx in slices),
        "syscalls": sum(tx["syscalls"] for tx in slices),
        "batch": max((tx["batch"] for tx in slices), default=0),
        "gap_min_ns": min((tx["gap_min_ns"] for _, tx in gaps), default=0),
        "gap_max_ns": max((tx["gap_max_ns"] for tx in real), default=0),
        "gap_mean_ns": mean,
        "gap_std_ns": max(square - mean * mean, 0.0) ** 0.5,
        "target_gap_ns": real[0]["target_gap_ns"] if real else 0.0,
        "schedule_resets": sum(tx["schedule_resets"] for tx in slices),
        "interrupt": next((tx["interrupt"] for tx in slices if tx["interrupt"] is not None), None),
        "slices": len(slices),
    })
    return merged


HEADER = (f"{'interval':>15}  {'sent':>9}  {'received':>9}  {'lost':>7}  {'loss':>7}  "
          f"{'rx rate':>12}  {'jitter':>10}")


def format_interval(entry: dict) -> str:
    """One line per interval, in the spirit of ``iperf3 -i``."""
    span = f"{entry['start_s']:6.2f}-{entry['end_s']:.2f} s"
    loss = f"{100 * entry['loss_ratio']:.3g}%"
    line = (f"{span:>15}  {entry['sent']:>9}  {entry['received']:>9}  {entry['lost']:>7}  {loss:>7}  "
            f"{format_rate(entry['goodput_bps']):>12}  {entry['jitter_ms']:>7.4f} ms")
    if entry.get("send_errors"):
        line += f"  send errors {format_count(entry['send_errors'])}"
    return line
