"""The mesh's schedule: every ordered pair of hosts once, in rounds where no host is in two
measurements, so that no two throughput tests ever share an endpoint.

The circle method of a round-robin tournament pairs n hosts (n even; an odd count gets a "bye")
in n - 1 rounds, every unordered pair once. Each such round is played twice, A→B and then B→A,
giving 2(n - 1) rounds for the n(n - 1) ordered pairs. A concurrency cap K cuts each round into
pieces of at most K pairs; a piece of a round still never shares a host. No I/O here.
"""
from __future__ import annotations

from collections.abc import Sequence

Pair = tuple[str, str]  # (source, destination)


def round_robin(hosts: Sequence[str], concurrency: int | None = None) -> list[list[Pair]]:
    """Rounds of (source, destination) pairs: each ordered pair exactly once, no host twice in a
    round, at most ``concurrency`` pairs a round (None: as many as the hosts allow)."""
    names = list(hosts)
    if len(set(names)) != len(names):
        raise ValueError(f"hosts repeat: {names}")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency {concurrency} is below 1")
    if len(names) < 2:
        return []
    circle: list[str | None] = [*names, None] if len(names) % 2 else list(names)
    n = len(circle)
    matchings = []
    for _ in range(n - 1):
        pairs = [(circle[i], circle[n - 1 - i]) for i in range(n // 2)]
        matchings.append([(a, b) for a, b in pairs if a is not None and b is not None])
        circle = [circle[0], circle[-1], *circle[1:-1]]  # hold the first, turn the rest
    rounds: list[list[Pair]] = []
    for matching in matchings:
        for flip in (False, True):
            played = [(b, a) if flip else (a, b) for a, b in matching]
            step = concurrency or len(played)
            rounds.extend(played[i:i + step] for i in range(0, len(played), step))
    return rounds
