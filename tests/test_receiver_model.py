"""The receiver's sequence accounting against a plain Python model, past the window's wrap.

The compiled receiver keeps a 65,536-bit ring to tell duplicates from late arrivals. The model
below keeps a set of the sequence numbers inside the same window instead: a second way of
counting, with nothing shared but the rules (docs/decisions.md, "Very late datagrams count as
received"). Every count must agree, for 300k datagrams with loss, duplicates, reordering, jumps
and arrivals from beyond the window.
"""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udpbench.engine import _fast
from udpbench.protocol import wire

SESSION = 0x0DDC0FFEE0DDF00D
WINDOW = 65536


def model(seqs: list[int]) -> dict[str, int]:
    """What a receiver with an exact, set-based window of WINDOW sequence numbers counts."""
    counts = dict(received=0, duplicates=0, reordered=0, late=0, gap_events=0, max_gap=0, max_reorder=0)
    seen: set[int] = set()
    highest = None
    for seq in seqs:
        if highest is None:
            highest = seq
        elif seq > highest:
            gap = seq - highest - 1
            if gap:
                counts["gap_events"] += 1
                counts["max_gap"] = max(counts["max_gap"], gap)
            highest = seq
            if len(seen) > 4 * WINDOW:  # forget what fell out of the window, to keep the set small
                seen = {s for s in seen if highest - s < WINDOW}
        else:
            behind = highest - seq
            if behind >= WINDOW:
                counts["late"] += 1
                counts["reordered"] += 1
                counts["received"] += 1
                continue
            if seq in seen:
                counts["duplicates"] += 1
                continue
            counts["reordered"] += 1
            counts["max_reorder"] = max(counts["max_reorder"], behind)
        seen.add(seq)
        counts["received"] += 1
    counts["highest_seq"] = highest if highest is not None else -1  # as the receiver says "none yet"
    return counts


def receiver_counts(seqs: list[int]) -> dict[str, int]:
    rx = _fast.Receiver(SESSION)
    for i, seq in enumerate(seqs):
        rx.feed(wire.datagram(wire.Kind.DATA, SESSION, seq, 40, 0), 1_000_000 + i)
    c = rx.counts()
    return {k: c[k] for k in ("received", "duplicates", "reordered", "late", "gap_events", "max_gap",
                              "max_reorder", "highest_seq")}


def lossy_stream(n: int, rng: random.Random) -> list[int]:
    """n arrivals: a sender counting up, with drops (some in bursts), duplicates, local reordering,
    forward jumps larger than the window, and stragglers from well beyond the window."""
    out: list[int] = []
    seq = 0
    held: list[int] = []
    while len(out) < n:
        r = rng.random()
        if r < 0.02:
            seq += rng.randint(1, 40)                     # a loss burst
        elif r < 0.0205:
            seq += rng.randint(WINDOW, 3 * WINDOW)         # a jump past the whole window
        elif r < 0.03 and out:
            out.append(rng.choice(out[-200:]))             # a duplicate of something recent
            continue
        elif r < 0.031 and seq > 2 * WINDOW:
            out.append(seq - rng.randint(WINDOW, 2 * WINDOW))  # a straggler from beyond the window
            continue
        if rng.random() < 0.05:
            held.append(seq)                               # delivered later: reordering
        else:
            out.append(seq)
        if held and rng.random() < 0.3:
            out.append(held.pop(rng.randrange(len(held))))
        seq += 1
    return out[:n]


def test_300k_datagrams_past_the_window_wrap_agree_with_the_model():
    seqs = lossy_stream(300_000, random.Random(20261130))
    expected = model(seqs)
    # The premises: the stream really exercises every rule, and wraps the ring many times.
    assert expected["highest_seq"] > 10 * WINDOW
    assert min(expected["duplicates"], expected["late"], expected["reordered"], expected["gap_events"]) > 100
    assert receiver_counts(seqs) == expected


def test_a_duplicate_just_inside_the_window_is_caught_and_just_outside_is_late():
    # Hand-worked: seq 0, then 65535 (0 is 65535 behind: inside), then 65536 (0 is now 65536 behind).
    seqs = [0, WINDOW - 1, 0, WINDOW, 0]
    counts = receiver_counts(seqs)
    assert counts["duplicates"] == 1      # the first repeat of 0, inside the window
    assert counts["late"] == 1            # the second, outside: received again, not checked
    assert counts["received"] == 4
    assert counts == model(seqs)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 300) | st.integers(0, 4 * WINDOW), max_size=80))
def test_every_count_matches_the_model(seqs):
    """Stronger than counts summing to the input: swapping received and duplicates, or reordered
    and late, fails here."""
    assert receiver_counts(seqs) == model(seqs)
