"""`udpbench.measure.capacity.capacity`: the highest rate each host carries at each payload size
within a loss threshold (RFC 2544 throughput; NDR at 0 loss, PDR above), and why it stops there.

protocol/capacity.py decides which rate to try; this module runs the trials, over one control
connection per host, waits between them for the receiver's reassembly memory to drain, and
saves after every size. See docs/capacity.md.
"""
from __future__ import annotations

import dataclasses
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from udpbench._version import __version__
from udpbench.errors import UserError
from udpbench.linux import fragment_memory
from udpbench.linux.sockopts import is_loopback
from udpbench.measure.embedded import connect
from udpbench.measure.stopping import stop_flag
from udpbench.output import capacity_file
from udpbench.protocol import frag, wire
from udpbench.protocol.capacity import (MIN_DATAGRAMS_PER_TRIAL, SENDER_DISTURBED, CapacityRow,
                                         CapacitySearch, ReassemblySettle, Trial)
from udpbench.measure import path_mtu
from udpbench.measure.blast import check_sizes
from udpbench.protocol.control import DEFAULT_PORT

ETHERNET_MTU = 1500  # a loopback-only plan is made around Ethernet's, as sweep's is (docs/decisions.md)
DEFAULT_POINTS = 8  # 12 to 20 trials a size: the default plan on loopback takes under 3 minutes


@dataclass
class CapacityOptions:
    """What a capacity search measures and how."""

    sizes: list[int] | None = None
    """Payload sizes in bytes; None: the plan around the path MTU that sweep makes, of ``points`` sizes."""
    points: int = DEFAULT_POINTS
    """Most sizes in the default plan."""
    loss: float = 0.0
    """Largest loss ratio a passing trial may show, in [0, 1): 0 finds the NDR, 0.001 a PDR."""
    resolution: float = 0.01
    """The search ends when the failing rate is within this fraction above the passing one."""
    trial_s: float = 1.0
    """Seconds of sending per trial."""
    confirm: int = 2
    """Further trials at the found rate, all of which must pass."""
    max_rate_bps: float | None = None
    """Payload bits/s of the first trial, the upper bound; None: as fast as the sender can."""
    engine: str = "auto"
    """Send engine: auto, send, mmsg or gso (docs/engines.md)."""
    df: bool = False
    """Set Don't Fragment: a size above the path MTU is reported not sendable, not searched."""
    port: int = DEFAULT_PORT
    family: int | None = None
    token: str | None = None
    max_trials: int = 40
    """Trials per size at most, whatever the outcomes."""
    reassembly_wait: bool = True
    """After a trial that overflowed a far receiver's reassembly memory, wait ``ipfrag_time``
    for it to drain; False: warn on the row instead."""
    output: Path | None = None
    """Result file base name (NAME.npz, NAME.json), rewritten after every size; None: no file."""
    command: str | None = None
    """The command line to record in the file's meta."""

    def validated(self) -> "CapacityOptions":
        if isinstance(self.loss, bool) or not isinstance(self.loss, (int, float)) or not 0 <= self.loss < 1:
            raise UserError(f"loss threshold {self.loss!r} is not a ratio in [0, 1)")
        if not self.resolution > 0:
            raise UserError(f"resolution {self.resolution!r} is not above 0")
        if not self.trial_s > 0:
            raise UserError(f"trial duration {self.trial_s!r} s is not above 0")
        if not 0 <= self.confirm <= 100:
            raise UserError(f"confirmations {self.confirm!r} not between 0 and 100")
        if not 1 <= self.points <= 1000:
            raise UserError(f"points {self.points!r} not between 1 and 1000")
        if self.max_rate_bps is not None and not self.max_rate_bps > 0:
            raise UserError(f"upper bound {self.max_rate_bps!r} bit/s is not above 0")
        check_sizes(self.sizes)
        return self


@dataclass
class CapacityResult:
    """The rows (one per host and size, in order), the file's meta, and where it was saved."""

    meta: dict
    rows: list[CapacityRow] = field(default_factory=list)
    saved: Path | None = None

    def __iter__(self):
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


class CapacityInterrupted(KeyboardInterrupt):
    """Ctrl-C during a search: ``result`` holds every finished size, saved."""

    def __init__(self, result: CapacityResult):
        super().__init__()
        self.result = result


def capacity(hosts: list[str], options: CapacityOptions | None = None, *,
             on_row: Callable[[CapacityRow], None] | None = None,
             on_notice: Callable[[str], None] | None = None,
             stop: threading.Event | None = None, **fields) -> CapacityResult:
    """Search each host's capacity at each payload size; the rows, saved after every size.

    ``fields`` override ``options`` (``capacity(["127.0.0.1"], sizes=[512], loss=0.001)``).
    ``stop``, set from another thread, ends the running trial within a few tens of milliseconds
    and the search with it, keeping the finished sizes. Ctrl-C raises CapacityInterrupted after saving them.
    """
    options = dataclasses.replace(options or CapacityOptions(), **fields).validated()
    notice = on_notice or (lambda _text: None)
    stop = stop or threading.Event()
    meta = {
        "tool": "udpbench", "version": __version__, "command": options.command,
        "kernel": platform.release(), "machine": platform.machine(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "engine": options.engine, "df": options.df,
        "loss_threshold": options.loss, "resolution": options.resolution, "trial_s": options.trial_s,
        "confirm": options.confirm, "max_rate_bps": options.max_rate_bps, "hosts": [],
        "trial_log": [],
    }
    result = CapacityResult(meta)

    def checkpoint() -> None:
        if options.output is not None:
            result.saved = capacity_file.save(options.output, meta, [r.as_dict() for r in result.rows])[0]

    # As sweep does: each host's path MTU first, then each host's trials on one connection of its
    # own, so that no control connection sits idle while another host is measured.
    for host in hosts:
        with connect(host, options.port, options.family, token=options.token) as client:
            loopback = is_loopback(client.server_addr[0])
            found = path_mtu.sweep_path_mtu(client, loopback)
            meta["hosts"].append({"host": host, "address": client.server_addr[0], "port": client.port,
                                  "family": 6 if client.v6 else 4, "loopback": loopback, **found})
            for warning in found["mtu_warnings"]:
                notice(f"{host}: {warning}")
    sizes = options.sizes
    if sizes is None:
        reference = min(min(h["path_mtu"], ETHERNET_MTU) if h["loopback"] else h["path_mtu"]
                        for h in meta["hosts"])
        sizes = frag.plan_sizes(reference, any(h["family"] == 6 for h in meta["hosts"]), budget=options.points)
        meta["plan"] = {"kind": "around-mtu", "reference_mtu": reference, "points": options.points}
    else:
        meta["plan"] = {"kind": "given"}
    for info in meta["hosts"]:
        for size in sizes:
            try:
                wire.check_size(size, info["family"] == 6)
            except wire.WireError as exc:
                raise UserError(f"{info['host']}: {exc}") from None
    meta["sizes"] = list(sizes)
    try:
        for info in meta["hosts"]:
            with connect(info["host"], options.port, options.family, token=options.token) as client:
                info["port"] = client.port  # an embedded server gets a new port each time
                host = HostSearch(client, info, options, notice, stop, meta["trial_log"])
                for size in sizes:
                    if stop.is_set():
                        break
                    row = host.search(size)
                    if row is None:  # stopped mid-size: that size is not finished
                        break
                    result.rows.append(row)
                    checkpoint()
                    if on_row is not None:
                        on_row(row)
            if stop.is_set():
                meta["stopped"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
                break
    except KeyboardInterrupt:
        # Whenever Ctrl-C lands, save again: the write is atomic, the file holds every finished size.
        meta["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        checkpoint()
        raise CapacityInterrupted(result) from None
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    checkpoint()
    return result


def run_trial(client, size: int, rate_bps: float, options: CapacityOptions, mtu: int, flag=None):
    """One trial at ``rate_bps`` (0: max) and its row: the one place a capacity search measures.
    ``flag``: a ``_fast.StopFlag`` that ends the trial early (measure/stopping.py)."""
    return client.blast(size, options.trial_s, rate_bps, options.engine, path_mtu=mtu, df=options.df, stop=flag)


def trial_of(measured, asked: float, size: int) -> Trial:
    """What the search needs of a trial's row. The path's queue is the spread of the one-way
    delay from the actual send time, last arrival's against first's (the clock offset cancels)."""
    received = _value(measured, "received") > 0
    return Trial(rate_bps=asked, tx_bps=_value(measured, "tx_bps"), sent=_value(measured, "sent"),
                 lost=max(_value(measured, "lost"), 0),
                 loss_sender=_value(measured, "loss_sender"), loss_socket=_value(measured, "loss_socket"),
                 loss_reassembly=_value(measured, "loss_reassembly"),
                 loss_network=_value(measured, "loss_network"),
                 late_max_us=_value(measured, "late_max_us", 0.0), size=size,
                 queue_us=1e3 * _value(measured, "delay_spread_ms", 0.0) if received else None)


LOGGED = ("received", "gap_max_us", "delay_spread_ms", "rate_ratio")


def log_entry(host: str, trial: Trial, measured, search: CapacitySearch) -> dict:
    """A trial as the meta's ``trial_log`` keeps it: enough to see why the search went where it did."""
    entry = {"host": host, "size": trial.size, "rate_bps": trial.offered_bps, "tx_bps": trial.tx_bps,
             "sent": trial.sent, "lost": trial.lost, "late_max_us": trial.late_max_us,
             "queue_us": trial.queue_us, "passed": search.passes(trial), "disturbed": search.spoiled_by_sender(trial),
             "loss_sender": trial.loss_sender, "loss_socket": trial.loss_socket,
             "loss_reassembly": trial.loss_reassembly, "loss_network": trial.loss_network}
    entry.update((name, _value(measured, name, 0)) for name in LOGGED)
    return entry


def _value(row, name: str, default=0):
    """A field of a row, whether the row is a dict or a typed Row."""
    value = row.get(name, default) if isinstance(row, dict) else getattr(row, name, default)
    return default if value is None else value


class HostSearch:
    """The searches at one host, over its one control connection."""

    def __init__(self, client, info: dict, options: CapacityOptions, notice, stop: threading.Event,
                 log: list | None = None):
        self.client, self.info, self.options, self.notice, self.stop = client, info, options, notice, stop
        self.log = [] if log is None else log  # one entry a trial: what each decision rested on
        self.v6 = info["family"] == 6
        # Fragment memory is readable only where the receiver runs: this namespace, for loopback.
        self.local_receiver = info["loopback"]
        self.baseline = fragment_memory.memory(self.v6) if self.local_receiver else None

    def search(self, size: int) -> CapacityRow | None:
        """The capacity at ``size``; None if ``stop`` was set before the search ended."""
        options = self.options
        floor = MIN_DATAGRAMS_PER_TRIAL * 8 * size / options.trial_s
        search = CapacitySearch(options.loss, options.resolution, options.confirm, floor, options.max_trials)
        row = CapacityRow(host=self.info["host"], size=size, loss_threshold=options.loss,
                          address=self.info["address"], family=self.info["family"],
                          path_mtu=self.info["path_mtu"], trial_s=options.trial_s)
        overheads: list[float] = []
        while (rate := search.next_rate()) is not None:
            if self.stop.is_set():
                return None
            asked = rate or (options.max_rate_bps or 0.0)
            began = time.monotonic()
            with stop_flag(self.stop) as flag:
                measured = run_trial(self.client, size, asked, options, self.info["path_mtu"], flag)
            overheads.append(max(time.monotonic() - began - _value(measured, "duration_s"), 0.0))
            if _value(measured, "interrupted", False):
                if self.stop.is_set():
                    return None  # a trial cut short by the caller's stop decides nothing
                raise KeyboardInterrupt
            if not search.trials:
                row.engine = _value(measured, "engine", "")
                row.fragments = _value(measured, "fragments")
                row.sender_mtu = _value(measured, "sender_mtu")
                if not _value(measured, "sendable", True):
                    row.sendable, row.send_error = False, _value(measured, "send_error", "")
                    row.trials = 1
                    return row
            trial = trial_of(measured, asked, size)
            search.record(trial)
            self.log.append(log_entry(self.info["host"], trial, measured, search))
            row.settle_s += self.settle(measured, row)
        search.result(row)
        row.overhead_s = sum(overheads) / len(overheads) if overheads else 0.0
        if row.sender_limited and row.failed_bps is None:
            row.warnings.append("nothing was lost at the fastest the sender went: the sender is the limit")
        elif row.sender_limited:
            row.warnings.append("the sender could not reach a rate the search asked for (rate ratio < 0.99)")
        if row.cause == SENDER_DISTURBED:
            row.warnings.append(f"the sender fell further behind its schedule than the path's queue holds in "
                                f"every repeat of the trial above the found rate: that failure may be the "
                                f"sender's own (late by {search.failing.late_max_us / 1e3:.0f} ms, queue "
                                f"{(search.failing.queue_us or 0) / 1e3:.0f} ms)")
        elif row.disturbed_trials:
            row.warnings.append(f"{row.disturbed_trials} failing trials were repeated: the sender fell further "
                                "behind its schedule than the path's queue holds")
        if not row.found_bps and row.trials >= options.max_trials:
            row.warnings.append(f"no rate was confirmed within the search's {options.max_trials} trials: "
                                "nothing found")
        return row

    def settle(self, measured, row: CapacityRow) -> float:
        """Wait, after a trial, until the receiver's reassembly memory has drained; the seconds waited.

        Its queues are drained already: the server reports only after 100 ms with nothing arriving.
        """
        limit = fragment_memory.expiry_s(self.v6) + 1
        began = time.monotonic()
        if self.local_receiver:
            if self.baseline is None or (fragment_memory.memory(self.v6) or 0) <= self.baseline:
                return 0.0
            settle = ReassemblySettle(began, limit, self.baseline)
            read = lambda: fragment_memory.memory(self.v6)  # noqa: E731
        else:
            counters = _value(measured, "receiver_counters", {}) or {}
            if counters.get("Ip.ReasmFails", 0) <= 0:
                return 0.0
            if not self.options.reassembly_wait:
                _warn_once(row, "the receiver's reassembly memory overflowed; later trials may have "
                                "failed for it (wait disabled)")
                return 0.0
            self.notice(f"{self.info['host']}: reassembly memory overflowed (Ip.ReasmFails); waiting "
                        f"{limit:g} s for incomplete datagrams to expire before the next trial")
            settle = ReassemblySettle(began, limit)
            read = lambda: None  # noqa: E731
        while (wait := settle.step(time.monotonic(), read())) is not None:
            if self.stop.wait(wait):
                break
        if settle.pinned:
            _warn_once(row, f"reassembly memory stayed above its level at the start for {limit:g} s")
        return time.monotonic() - began


def _warn_once(row: CapacityRow, text: str) -> None:
    if text not in row.warnings:
        row.warnings.append(text)
