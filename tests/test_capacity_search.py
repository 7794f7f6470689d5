"""The capacity search stepper, driven by synthetic trial outcomes: no sockets, no sleeps."""
import pytest

from udpbench.protocol.capacity import MAX_RATE, CapacityRow, CapacitySearch, ReassemblySettle, Trial

M = 1e6


def path(knee_bps, max_bps=100 * M, cause="socket", sender_reaches=None, flaky=()):
    """A synthetic path: every trial above ``knee_bps`` loses 10 % (at ``cause``); the sender
    reaches at most ``sender_reaches``; the trials numbered in ``flaky`` lose 1 % whatever the rate."""
    count = [0]

    def trial(rate):
        count[0] += 1
        tx = max_bps if rate == MAX_RATE else min(rate, sender_reaches or rate)
        sent = 100_000
        lost = 10_000 if tx > knee_bps else 0
        if count[0] in flaky:
            lost = 1_000
        causes = {f"loss_{c}": 0 for c in ("sender", "socket", "reassembly", "network")}
        causes[f"loss_{cause}"] = lost
        return Trial(rate_bps=rate, tx_bps=tx, sent=sent, lost=lost, **causes)
    return trial


def run(search, trial, size=1000):
    rates = []
    while (rate := search.next_rate()) is not None:
        rates.append(rate)
        search.record(trial(rate))
    return rates, search.result(CapacityRow(host="h", size=size, loss_threshold=search.loss_threshold))


def test_binary_search_to_one_percent_then_two_confirmations():
    # Worked by hand: knee 37.3 Mbit/s under a 100 Mbit/s max. Halving between the last pass
    # and the last failure until the gap is within 1 % of the pass, then two more at the pass.
    rates, row = run(CapacitySearch(), path(37.3 * M))
    assert [r / M for r in rates] == [0, 50, 25, 37.5, 31.25, 34.375, 35.9375, 36.71875, 37.109375,
                                      37.3046875, 37.109375, 37.109375]
    assert row.found_bps == 37.109375 * M
    assert row.found_pps == 37.109375 * M / 8000
    assert row.failed_bps == 37.3046875 * M
    assert row.loss_above == 0.1 and row.loss_at_found == 0
    assert row.cause == "socket" and row.loss_socket == 10_000
    assert row.trials == 12
    assert row.resolution == pytest.approx(0.1953125 / 37.109375)
    assert row.max_bps == 100 * M and not row.sender_limited


def test_a_failed_confirmation_sends_the_search_below():
    # trial 11 is the first confirmation at 37.109375: it fails, so that rate becomes the ceiling
    # and the search halves between 36.71875 (the last pass below) and it.
    rates, row = run(CapacitySearch(), path(37.3 * M, flaky={11}))
    assert rates[10] / M == 37.109375
    assert rates[11] / M == pytest.approx((36.71875 + 37.109375) / 2)
    assert row.found_bps < 37.109375 * M
    assert row.failed_bps == 37.109375 * M and row.loss_above == 0.01


def test_partial_drop_rate_passes_loss_under_the_threshold():
    # 10 % loss above the knee: a 20 % threshold passes everything, a 5 % one does not.
    _, loose = run(CapacitySearch(loss_threshold=0.2), path(37.3 * M))
    _, strict = run(CapacitySearch(loss_threshold=0.05), path(37.3 * M))
    assert loose.found_bps == 100 * M and loose.cause == "sender"
    assert strict.found_bps == 37.109375 * M


def test_nothing_lost_at_max_means_the_sender_is_the_limit():
    rates, row = run(CapacitySearch(), path(knee_bps=1e12, max_bps=80 * M))
    assert rates == [MAX_RATE, 80 * M, 80 * M]
    assert row.found_bps == 80 * M and row.failed_bps is None and row.loss_above is None
    assert row.sender_limited and row.cause == "sender"


def test_a_sender_that_cannot_reach_the_rate_is_called_the_limit():
    # max reaches 100M in a burst, but paced the sender manages only 30M, and nothing is lost
    # below 40M: the search must say "sender-limited", not blame the path.
    _, row = run(CapacitySearch(), path(knee_bps=40 * M, sender_reaches=30 * M))
    assert row.sender_limited
    assert row.found_bps == 30 * M  # what went out, not what was asked


def test_nothing_passes_ends_at_the_floor():
    rates, row = run(CapacitySearch(floor_bps=1 * M), path(knee_bps=0))
    assert row.found_bps == 0 and row.found_pps == 0
    assert min(rates[1:]) >= 1 * M and len(rates) == 1 + 6  # 50, 25, 12.5, 6.25, 3.125, 1.5625 Mbit/s
    assert row.cause == "socket"


def test_trials_are_bounded():
    _, row = run(CapacitySearch(resolution=1e-9, max_trials=15), path(37.3 * M))
    assert row.trials == 15 and row.found_bps == 0  # unconfirmed: nothing claimed


@pytest.mark.parametrize("kwargs", [{"loss_threshold": 1}, {"loss_threshold": -0.1}, {"resolution": 0},
                                    {"confirm": -1}])
def test_bad_parameters_are_refused(kwargs):
    with pytest.raises(ValueError):
        CapacitySearch(**kwargs)


def test_cause_is_the_largest_share():
    t = Trial(rate_bps=M, tx_bps=M, sent=100, lost=10, loss_sender=1, loss_socket=2, loss_reassembly=3,
              loss_network=4)
    assert t.cause == "network"
    assert Trial(rate_bps=M, tx_bps=M, sent=100, lost=0).cause == ""


def test_settle_waits_for_fragment_memory_back_to_the_baseline():
    settle = ReassemblySettle(now=100.0, limit_s=31.0, baseline=4096, poll_s=0.1)
    assert settle.step(100.0, 3_000_000) == 0.1
    assert settle.step(110.0, 1_000_000) == 0.1
    assert settle.step(110.1, 4096) is None and not settle.pinned


def test_settle_gives_up_and_says_pinned():
    settle = ReassemblySettle(now=0.0, limit_s=31.0, baseline=0)
    assert settle.step(30.95, 3_000_000) == pytest.approx(0.05)
    assert settle.step(31.0, 3_000_000) is None and settle.pinned


def test_settle_without_a_readable_receiver_waits_the_whole_limit():
    settle = ReassemblySettle(now=5.0, limit_s=30.0)
    assert settle.step(5.0, None) == 30.0
    assert settle.step(35.0, None) is None and not settle.pinned
