"""The mesh schedule, checked by counting, without Dask or sockets."""
from __future__ import annotations

import itertools

import pytest

from udpbench.protocol.schedule import round_robin


def check(hosts, rounds, cap=None):
    played = [pair for r in rounds for pair in r]
    assert sorted(played) == sorted(itertools.permutations(hosts, 2))  # every ordered pair, once
    for r in rounds:
        ends = [h for pair in r for h in pair]
        assert len(ends) == len(set(ends)), r  # no host in two measurements of a round
        assert r and (cap is None or len(r) <= cap)


@pytest.mark.parametrize("n", range(2, 12))
def test_every_ordered_pair_once_and_no_shared_host(n):
    hosts = [f"h{i}" for i in range(1, n + 1)]
    rounds = round_robin(hosts)
    check(hosts, rounds)
    # The fewest rounds possible: a host is in 2(n-1) measurements, one a round.
    assert len(rounds) == 2 * (n - 1) if n % 2 == 0 else len(rounds) == 2 * n


def test_three_hosts_by_hand():
    # Odd: one host sits out each round, so every round holds one pair.
    assert round_robin(["a", "b", "c"]) == [[("b", "c")], [("c", "b")], [("a", "c")], [("c", "a")],
                                              [("a", "b")], [("b", "a")]]


@pytest.mark.parametrize("cap", [1, 2, 3])
def test_concurrency_caps_each_round(cap):
    hosts = [f"h{i}" for i in range(8)]
    rounds = round_robin(hosts, concurrency=cap)
    check(hosts, rounds, cap)
    assert len(rounds) == 2 * 7 * -(-4 // cap)  # each of the 14 rounds of 4 pairs, cut in pieces


def test_one_at_a_time_is_strictly_serial():
    rounds = round_robin(["a", "b", "c", "d"], concurrency=1)
    assert all(len(r) == 1 for r in rounds) and len(rounds) == 12


@pytest.mark.parametrize("hosts, cap, message", [(["a", "a"], None, "repeat"), (["a", "b"], 0, "below 1")])
def test_bad_input(hosts, cap, message):
    with pytest.raises(ValueError, match=message):
        round_robin(hosts, cap)


def test_fewer_than_two_hosts_have_nothing_to_measure():
    assert round_robin([]) == [] and round_robin(["a"]) == []
