"""The echo search as a sans-IO stepper: packetization-layer PMTUD (RFC 8899 DPLPMTUD) against
a udpbench server, which acknowledges each probe that arrives. It is driven exactly as the ICMP
search in protocol/pmtud.py is. See docs/mtu.md, "echo method"."""
from __future__ import annotations

from dataclasses import dataclass, field

from udpbench.errors import MeasurementError
from udpbench.protocol.pmtud import (COMMON_MTUS, MAX_PROBES, MAX_ROUNDS, PROBES_PER_ROUND, SEARCH_LIMIT_S, STOPPED, Done,
                                     IcmpError, Send, Wait, Stepper, smallest_probe)


@dataclass
class EchoResult:
    mtu: int | None = None
    status: str = "inconclusive"  # confirmed | silent | below-floor | unsettled | stopped
    detail: str = ""
    too_big: int | None = None  # the smallest size that failed MAX_PROBES times (None: none)
    probes: int = 0
    companions: int = 0
    rounds: int = 0
    ptb: list = field(default_factory=list)  # ICMP too-big seen meanwhile: [{"from", "mtu", "count"}]
    inconsistent: bool = False
    timer_s: float | None = None
    srtt_ms: float | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"mtu": self.mtu, "status": self.status, "detail": self.detail, "too_big": self.too_big,
                "probes": self.probes, "companions": self.companions, "rounds": self.rounds,
                "ptb": self.ptb, "inconsistent": self.inconsistent,
                "timer_s": None if self.timer_s is None else round(self.timer_s, 4),
                "srtt_ms": None if self.srtt_ms is None else round(self.srtt_ms, 3),
                "elapsed_s": round(self.elapsed_s, 4)}


def plan_round(lo: int, hi: int, fails: dict[int, int], max_probes: int, granularity: int,
               hints: tuple[int, ...] = (), width: int = PROBES_PER_ROUND) -> list[int]:
    """The sizes to probe next, given ``lo`` (largest size acknowledged) and ``hi`` (smallest
    size that failed ``max_probes`` times): the top candidate, or the smallest size under
    suspicion, then common MTUs and hints inside the bracket, then evenly spaced sizes."""
    suspects = sorted(s for s, n in fails.items() if lo < s < hi and 0 < n < max_probes)
    ceiling = suspects[0] if suspects else hi
    sizes = [ceiling if suspects else hi - 1]
    for s in (*hints, *COMMON_MTUS):
        if len(sizes) >= width:
            break
        if lo < s < ceiling and s not in sizes:
            sizes.append(s)
    room = width - len(sizes)
    if room > 0 and ceiling - lo > 1:
        step = max(granularity, (ceiling - lo) / (room + 1))
        k = 1
        while len(sizes) < width:
            s = lo + int(round(k * step))
            if s >= ceiling:
                break
            if s not in sizes:
                sizes.append(s)
            k += 1
    return sizes


class EchoSearch(Stepper):
    """DPLPMTUD against a udpbench server: rounds of DF PROBE datagrams of several sizes, each
    followed by a small companion. An ack proves a size passes; a size fails once for each try
    that went unanswered while its companion was answered (a lost companion means plain loss,
    and that try does not count). Reports P only when P was acknowledged and P + granularity
    failed ``max_probes`` times (or P is the top of the range)."""

    def __init__(self, now: float, limit: int, floor: int, v6: bool, max_probes: int = MAX_PROBES,
                 granularity: int = 1, hints: tuple[int, ...] = (), timer: float | None = None,
                 first_id: int = 1):
        super().__init__(now, v6, timer, first_id)
        self.limit, self.floor, self.max_probes = limit, floor, max_probes
        self.granularity, self.hints = granularity, hints
        self.result = EchoResult()
        self.lo, self.hi = floor - 1, limit + 1
        self.fails: dict[int, int] = {}
        self.silent_rounds = 0
        self.to_send: list[int] = []  # sizes of this round not yet sent
        self.pairs: list[tuple[int, int | None, int]] = []  # (probe id, companion id, size)
        self.round_open = False
        self.last_sent: float | None = None  # when the round's last datagram left
        self.answered = 0

    def on_ack(self, probe_id: int, now: float) -> None:
        probe = self._answered(probe_id, now)
        if probe is None:
            return
        self.answered += 1  # an ack that comes after its round ended still counts
        if not probe.companion and probe.size > self.lo:
            self.lo = probe.size

    def on_error(self, e: IcmpError, now: float) -> None:
        if e.too_big and not e.local:
            seen = next((p for p in self.result.ptb if (p["from"], p["mtu"]) == (e.offender, e.info)), None)
            if seen is None:
                self.result.ptb.append({"from": e.offender, "mtu": e.info, "count": 1})
            else:
                seen["count"] += 1
        elif e.port_unreachable:
            raise MeasurementError("the server's UDP port is closed (ICMP port unreachable): "
                                   "is the udpbench server still running?")

    def on_refused(self, probe_id: int, error: IcmpError, now: float) -> None:
        super().on_refused(probe_id, error, now)
        probe = self.probes[probe_id]
        if probe.companion:
            return
        if error.too_big:  # above the interface MTU after all: the kernel said so
            self.fails[probe.size] = self.max_probes
        self.pairs = [p for p in self.pairs if p[0] != probe_id]  # no companion for it

    def next_action(self, now: float) -> Send | Wait | Done:
        while self.done is None:
            if not self.round_open:
                self._start_round(now)  # or finish
                continue
            if self.to_send or (self.pairs and self.pairs[-1][1] is None):
                return self._send_next(now)
            if self.last_sent is None:
                self.last_sent = now  # the whole round is out: its timer starts
            if self.pairs and not self._round_over(now):
                return Wait(self.last_sent + self.timer.timeout)  # the timer adapts as acks come
            self._end_round(now)
        return self.done

    def _send_next(self, now: float) -> Send:
        if self.pairs and self.pairs[-1][1] is None:  # the probe went out: its companion follows
            pid, _, size = self.pairs[-1]
            action = self._send(smallest_probe(self.v6), now, companion=True)
            self.pairs[-1] = (pid, action.probe_id, size)
            return action
        size = self.to_send.pop(0)
        action = self._send(size, now)
        self.pairs.append((action.probe_id, None, size))
        return action

    def _start_round(self, now: float) -> None:
        if self.hi - self.lo <= self.granularity:
            return self._finish(now, "confirmed")
        if self.result.rounds >= MAX_ROUNDS or now - self.started > SEARCH_LIMIT_S:
            self.result.detail = f"stopped after {self.result.rounds} rounds between {self.lo} and {self.hi}"
            return self._finish(now, "unsettled")
        self.result.rounds += 1
        self.to_send = plan_round(self.lo, self.hi, self.fails, self.max_probes, self.granularity, self.hints)
        self.pairs, self.answered, self.round_open = [], 0, True

    def _round_over(self, now: float) -> bool:
        if all(size <= self.lo or self.probes[pid].acked for pid, _, size in self.pairs):
            return True  # nothing left that could still raise lo
        return now >= self.last_sent + self.timer.timeout

    def _end_round(self, now: float) -> None:
        for pid, cid, size in self.pairs:
            if size <= self.lo or self.probes[pid].acked:
                continue
            if self.probes[cid].acked:
                self.fails[size] = self.fails.get(size, 0) + 1
        if self.pairs and self.answered == 0:  # (a round the kernel refused whole says nothing of the path)
            self.silent_rounds += 1
            if self.silent_rounds >= self.max_probes:
                self.result.detail = (f"the server answered none of {self.sent} probes and "
                                      f"{self.companions} companions: UDP to it is filtered or lost")
                return self._finish(now, "silent")
        elif self.answered:
            self.silent_rounds = 0
        if any(n >= self.max_probes and s <= self.lo for s, n in self.fails.items()):
            # a size failed every try, yet a larger one passed: paths of different MTUs (ECMP)
            # or heavy loss. The ack is proof; forget failures it contradicts.
            self.result.inconsistent = True
            for s in [s for s in self.fails if s <= self.lo]:
                del self.fails[s]
        self.hi = min((s for s, n in self.fails.items() if n >= self.max_probes and s > self.lo),
                      default=self.limit + 1)
        self.pairs, self.last_sent, self.round_open = [], None, False

    def stop(self, now: float) -> None:
        """End the search here, without an answer (a caller's stop): ``next_action`` is Done."""
        result = self.result
        result.status, result.detail, result.mtu = STOPPED, "stopped before the search ended", None
        result.probes, result.companions, result.elapsed_s = self.sent, self.companions, now - self.started
        self.done = Done(result)

    def _finish(self, now: float, status: str) -> None:
        result = self.result
        result.status = status
        if status == "confirmed" and self.lo < self.floor:
            result.status = "below-floor"
            result.detail = (f"even {self.floor}-byte probes failed: the path MTU is below the smallest "
                             "size searched")
        if self.lo >= self.floor:
            result.mtu = self.lo
        result.too_big = self.hi if self.hi <= self.limit else None
        result.probes, result.companions = self.sent, self.companions
        result.timer_s = self.timer.timeout
        result.srtt_ms = None if self.timer.srtt is None else self.timer.srtt * 1e3
        result.elapsed_s = now - self.started
        self.done = Done(result)
