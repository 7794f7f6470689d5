"""The capacity search, sans-IO: the highest rate a path carries at one payload size within a
loss threshold (RFC 2544 section 26.1 "throughput"; 0 loss is the NDR, a small threshold the PDR).

``CapacitySearch`` says which rate to try next and takes each trial's outcome; it never sends,
sleeps or reads a clock. The first trial runs at ``max`` (rate 0) and its achieved rate is the
upper bound; a binary search between 0 and that bound follows, to a resolution relative to
the rate, and the candidate must then pass ``confirm`` more trials at the same rate. One
failed confirmation sends the search on below. A failing trial during which the sender fell
further behind its schedule than the path's queue can absorb is spoiled, not evidence about the
path: it is repeated, a bounded number of times (docs/capacity.md). ``ReassemblySettle`` decides, from the time
and the receiver's fragment memory, how long to wait before the next trial. See docs/capacity.md.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

MAX_RATE = 0.0  # a trial at rate 0 sends as fast as the kernel takes datagrams
SENDER_LIMITED_RATIO = 0.99  # below this share of the asked rate, the sender was the limit
CAUSES = ("sender", "socket", "reassembly", "network")
MIN_DATAGRAMS_PER_TRIAL = 10  # a rate that sends fewer in a trial tells nothing about loss
# A paced sender late by L catches up at twice its rate (engine/_fast.pyx CATCHUP), which adds
# about L of queue at a bottleneck near its rate: a burst that a queue shorter than L may drop.
# Lateness under 1 ms is an idle sender's timer slack; on a loaded machine stalls run to
# tens or hundreds of ms (docs/decisions.md).
LATE_FLOOR_US = 1000.0
SPOILED_RETRIES = 3  # repeats of a spoiled failing trial at one rate before it is taken as it is
SENDER_DISTURBED = "sender-disturbed"  # the cause when the knee rests on a spoiled trial


@dataclass(frozen=True)
class Trial:
    """What the search needs of one trial: the rate asked and the counts a row holds."""

    rate_bps: float  # asked; MAX_RATE for the first
    tx_bps: float  # achieved, over the sender's own interval
    sent: int
    lost: int
    loss_sender: int = 0
    loss_socket: int = 0
    loss_reassembly: int = 0
    loss_network: int = 0
    late_max_us: float = 0.0  # how far the sender fell behind its schedule, at worst
    queue_us: float | None = None  # the most the path queued a datagram (one-way delay max - min); None: unknown
    size: int = 0  # payload bytes; 0: unknown, and a stall is not weighed against the loss

    @property
    def offered_bps(self) -> float:
        """The rate this trial stands for: the one asked, or for a trial at max the one achieved."""
        return self.rate_bps or self.tx_bps

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    @property
    def sender_limited(self) -> bool:
        return self.rate_bps > 0 and self.tx_bps < SENDER_LIMITED_RATIO * self.rate_bps

    @property
    def late_bound_us(self) -> float:
        """The lateness the path's queue, as this trial saw it, could absorb."""
        return max(LATE_FLOOR_US, self.queue_us or 0.0)

    @property
    def owed(self) -> float:
        """Datagrams the sender owed its schedule at its latest: what one catch-up burst carried."""
        return self.offered_bps * self.late_max_us / 1e6 / (8 * self.size) if self.size else float("inf")

    @property
    def carried_bps(self) -> float:
        """The rate the path delivered, less what its queue absorbed: a bottleneck's rate when
        this trial overfilled it. 0 without a queue measurement or a size."""
        if self.queue_us is None or not self.size or not self.tx_bps or not self.sent:
            return 0.0
        sending_s = self.sent * 8 * self.size / self.tx_bps
        return self.tx_bps * (self.sent - self.lost) / self.sent * sending_s / (sending_s + self.queue_us / 1e6)

    @property
    def disturbed(self) -> bool:
        """The sender fell behind by more than the path's queue, and lost no more than one
        catch-up burst carried: that burst alone may have overflowed the queue. Unknown without
        a queue measurement (nothing received)."""
        return (self.queue_us is not None and self.late_max_us > self.late_bound_us
                and self.lost <= self.owed)

    @property
    def cause(self) -> str:
        """Where most of the loss happened ('' without loss); ties go to the earlier cause."""
        counts = (self.loss_sender, self.loss_socket, self.loss_reassembly, self.loss_network)
        if self.lost <= 0 or max(counts) <= 0:
            return ""
        return CAUSES[counts.index(max(counts))]


@dataclass
class CapacityRow:
    """The capacity of one path at one payload size. ``as_dict()`` gives the result-file names."""

    host: str
    size: int
    loss_threshold: float  # the largest loss ratio a passing trial may show
    found_bps: float = 0.0  # UDP payload bits/s of the confirmed rate (0: nothing passed)
    found_pps: float = 0.0  # datagrams/s at it
    loss_at_found: float = 0.0  # the worst loss ratio among the trials at the found rate
    failed_bps: float | None = None  # the lowest rate above it that failed (None: none did)
    loss_above: float | None = None  # the loss ratio there
    cause: str = ""  # where the loss at failed_bps happened; "sender" when nothing failed;
    # "sender-disturbed" when that trial was spoiled by the sender's own stall, every time
    loss_sender: int = 0  # the failed trial's loss, split by cause (protocol/loss.py)
    loss_socket: int = 0
    loss_reassembly: int = 0
    loss_network: int = 0
    sender_limited: bool = False  # the sender could not reach a rate the search asked for
    max_bps: float = 0.0  # what the first trial, at max, achieved: the upper bound
    trials: int = 0
    disturbed_trials: int = 0  # failing trials spoiled by the sender's stalls, not taken as the path's
    resolution: float = 0.0  # (failed - found) / found when the search ended
    sendable: bool = True
    send_error: str = ""
    address: str = ""
    family: int = 4
    path_mtu: int = 0
    sender_mtu: int = 0
    fragments: int = 0
    engine: str = ""
    trial_s: float = 0.0
    overhead_s: float = 0.0  # mean seconds between one trial's end of sending and the next's start
    settle_s: float = 0.0  # seconds spent waiting for reassembly memory to drain
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


class CapacitySearch:
    """The search at one payload size: ``next_rate()`` until it returns None, ``record()`` each outcome.

    ``loss_threshold`` in [0, 1): a trial passes when ``lost <= loss_threshold * sent``.
    ``resolution`` > 0: the search narrows until the failing rate is within this fraction above
    the passing one. ``confirm`` >= 0: further trials at the candidate, all of which must pass.
    ``floor_bps``: below it a trial sends too few datagrams to mean anything, and the search ends
    with nothing found. ``max_trials`` bounds the search whatever the outcomes. A failing trial
    that is ``disturbed`` is repeated at its rate up to ``retries`` times; after that it counts
    as a failure, and if it is the one above the found rate the row's cause is "sender-disturbed".
    """

    def __init__(self, loss_threshold: float = 0.0, resolution: float = 0.01, confirm: int = 2,
                 floor_bps: float = 0.0, max_trials: int = 40, retries: int = SPOILED_RETRIES):
        if not 0 <= loss_threshold < 1:
            raise ValueError(f"loss threshold {loss_threshold!r} is not in [0, 1)")
        if not resolution > 0:
            raise ValueError(f"resolution {resolution!r} is not above 0")
        if confirm < 0:
            raise ValueError(f"confirmations {confirm!r} is below 0")
        self.loss_threshold, self.resolution, self.confirm = loss_threshold, resolution, confirm
        self.floor_bps, self.max_trials, self.retries = floor_bps, max_trials, retries
        self.repeat: float | None = None  # the rate of a spoiled trial, to be tried again
        self.repeats = 0  # spoiled trials in a row at that rate
        self.spoiled = 0  # spoiled trials in all
        self.trials: list[Trial] = []
        self.upper: Trial | None = None  # the trial at max
        self.passing: dict[float, list[Trial]] = {}  # offered rate -> its passing trials
        self.failing: Trial | None = None  # the failing trial at the lowest rate
        self.candidate: float | None = None  # the rate being confirmed
        self.confirmations = 0
        self.found = 0.0
        self.done = False
        self.carried = 0.0  # the most any trial showed the path's bottleneck carries (network loss)
        self.guess: float | None = None  # the next rate to try instead of halving, if any
        self.first_guess: float | None = None  # the rate the path carried at max, then the gallop above it
        self.step_up = 1  # the next gallop step above first_guess, in resolutions (doubled each pass)

    def spoiled_by_sender(self, trial: Trial) -> bool:
        """A failure the sender's stall explains: ``trial.disturbed``, or late beyond the queue at a
        rate below what the path's bottleneck was seen to carry. Several stalls in one trial lose
        more than the largest one's burst, but a rate the path carried cannot overflow it."""
        if trial.disturbed:
            return True
        return (trial.queue_us is not None and trial.late_max_us > trial.late_bound_us
                and 0 < trial.offered_bps < self.carried)

    def passes(self, trial: Trial) -> bool:
        return trial.sent > 0 and trial.lost <= self.loss_threshold * trial.sent

    @property
    def low(self) -> float:
        """The highest rate that passed, below the lowest that failed (0 if none)."""
        ceiling = self.failing.offered_bps if self.failing else float("inf")
        return max((r for r in self.passing if r < ceiling), default=0.0)

    @property
    def high(self) -> float:
        if self.failing is not None:
            return self.failing.offered_bps
        return self.upper.tx_bps if self.upper else 0.0

    def next_rate(self) -> float | None:
        """The rate of the next trial (MAX_RATE first), or None when the search is over."""
        if self.done:
            return None
        if self.upper is None:
            return MAX_RATE
        if len(self.trials) >= self.max_trials:
            self.done = True  # unconfirmed: nothing found
            return None
        if self.repeat is not None:
            return self.repeat
        if self.candidate is not None:
            return self.candidate
        low, high = self.low, self.high
        # 1e-9: a step of exactly the resolution above a pass ends the search despite rounding
        if low > 0 and high - low <= self.resolution * low * (1 + 1e-9):
            return self._confirm(low)
        if self.guess is not None:
            guess, self.guess = self.guess, None
            if max(low, self.floor_bps) < guess < high:
                return guess
        middle = (low + high) / 2
        if middle < self.floor_bps:
            self.done = True  # nothing passes at a rate worth measuring
            return None
        return middle

    def _confirm(self, rate: float) -> float | None:
        if self.confirm == 0:
            self.found, self.done = rate, True
            return None
        self.candidate, self.confirmations = rate, 0
        return rate

    def record(self, trial: Trial) -> None:
        self.trials.append(trial)
        first = self.upper is None
        if first:
            self.upper = trial
        passed = self.passes(trial)
        if not passed and trial.cause == "network":
            # Network loss: the bottleneck overflowed, and carried at most its own rate (less, if
            # the sender stalled and the queue ran dry), so the path carries at least this much.
            self.carried = max(self.carried, trial.carried_bps)
            if first:
                # Try about that rate, then (while trials pass) steps of 1, 2, 4 ... resolutions
                # above it, before halving between the last pass and the first failure.
                # One resolution below it: at the carried rate itself a stall is not told from the path.
                self.guess = self.first_guess = trial.carried_bps / (1 + self.resolution)
        if not passed and self.spoiled_by_sender(trial):
            self.spoiled += 1
            if self.repeats < self.retries:
                self.repeat, self.repeats = trial.rate_bps, self.repeats + 1
                return
        self.repeat, self.repeats = None, 0
        if passed:
            self.passing.setdefault(trial.offered_bps, []).append(trial)
            if trial.offered_bps == self.first_guess and self.candidate is None:
                # Gallop up from it, doubling the step while trials pass (1, 2, 4 ... resolutions).
                self.step_up *= 2
                self.guess = self.first_guess = trial.offered_bps * (1 + self.resolution * self.step_up / 2)
            if first:
                # Nothing lost at max: confirm at the rate the sender reached.
                self._confirm(trial.offered_bps)
            elif self.candidate is not None:
                self.confirmations += 1
                if self.confirmations >= self.confirm:
                    self.found, self.done = self.candidate, True
            return
        if (self.failing is None or trial.offered_bps < self.failing.offered_bps
                or (trial.offered_bps == self.failing.offered_bps and self.spoiled_by_sender(self.failing))):
            self.failing = trial
        self.passing.pop(trial.offered_bps, None)  # a rate that failed once has not passed
        self.candidate = None  # a failed confirmation: the search goes on below

    def result(self, row: CapacityRow) -> CapacityRow:
        """Fill ``row`` with what the search found."""
        at_found = self.passing.get(self.found, []) if self.found else []
        found = self.found
        if any(t.sender_limited for t in at_found):
            found = min(t.tx_bps for t in at_found)  # what went out, not what was asked
        row.found_bps = found
        row.found_pps = found / (8 * row.size) if row.size else 0.0
        row.loss_at_found = max((t.loss_ratio for t in at_found), default=0.0)
        row.trials = len(self.trials)
        row.disturbed_trials = self.spoiled
        row.max_bps = self.upper.tx_bps if self.upper else 0.0
        nothing_failed = self.upper is not None and self.failing is None
        row.sender_limited = nothing_failed or any(t.sender_limited for t in at_found)
        failed = self.failing
        if failed is not None:
            row.failed_bps = failed.offered_bps
            row.loss_above = failed.loss_ratio
            row.cause = SENDER_DISTURBED if self.spoiled_by_sender(failed) else failed.cause
            row.loss_sender, row.loss_socket = failed.loss_sender, failed.loss_socket
            row.loss_reassembly, row.loss_network = failed.loss_reassembly, failed.loss_network
            row.resolution = (failed.offered_bps - found) / found if found else 0.0
        elif found:
            row.cause = "sender"  # nothing failed: the sender could send no faster
        return row


class ReassemblySettle:
    """How long to wait after a trial for the receiver's reassembly memory to drain.

    Incomplete datagrams pin fragment memory until ``ipfrag_time`` (30 s by default) expires
    them, and above ``ipfrag_high_thresh`` the kernel drops every new fragment: a trial started
    then fails for its predecessor's sake (docs/capacity.md). ``step(now, memory)`` returns the
    seconds to wait before looking again, or None to go on. With the memory readable (the
    receiver shares this host's network namespace) it waits until the memory is back to
    ``baseline`` bytes, at most ``limit_s``; ``memory=None`` (a far receiver) waits the whole
    ``limit_s``. ``pinned`` tells whether the limit passed with memory still held.
    """

    def __init__(self, now: float, limit_s: float, baseline: int = 0, poll_s: float = 0.1):
        self.start, self.limit_s, self.baseline, self.poll_s = now, limit_s, baseline, poll_s
        self.pinned = False

    def step(self, now: float, memory: int | None) -> float | None:
        left = self.start + self.limit_s - now
        if memory is not None and memory <= self.baseline:
            return None
        if left <= 0:
            self.pinned = memory is not None
            return None
        return left if memory is None else min(self.poll_s, left)
