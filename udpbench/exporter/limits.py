"""How many probes may run: at once, and per target per minute. Decisions take ``now``."""
from __future__ import annotations

import threading
from collections import deque

WINDOW_S = 60.0


class TooMany(Exception):
    """A probe over a limit; ``limit`` names which: "concurrency" or "target_rate"."""

    def __init__(self, limit: str, detail: str):
        super().__init__(detail)
        self.limit = limit


class ProbeLimits:
    """A concurrency limit and a sliding one-minute window of probes per target.

    ``admit(target, now)`` either takes a slot (give it back with ``release()``) or raises
    TooMany without taking anything. A refused probe is not counted against the target's
    minute, so a scraper that backs off is not punished for asking."""

    def __init__(self, concurrency: int, per_target_per_minute: int):
        self.concurrency = concurrency
        self.per_target = per_target_per_minute
        self.running = 0
        self._recent: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, target: str, now: float) -> None:
        with self._lock:
            self._forget(now)
            recent = self._recent.get(target)
            if recent is not None and len(recent) >= self.per_target:
                wait = recent[0] + WINDOW_S - now
                raise TooMany("target_rate", f"target {target} had {len(recent)} probes in the last minute, "
                                             f"the most allowed; next in {wait:.0f} s")
            if self.running >= self.concurrency:
                raise TooMany("concurrency", f"{self.running} probes are running, the most allowed at once")
            self.running += 1
            self._recent.setdefault(target, deque()).append(now)

    def release(self) -> None:
        with self._lock:
            self.running -= 1

    def _forget(self, now: float) -> None:
        """Drop what is older than the window, and targets with nothing left (memory stays flat)."""
        for target in list(self._recent):
            recent = self._recent[target]
            while recent and recent[0] <= now - WINDOW_S:
                recent.popleft()
            if not recent:
                del self._recent[target]
