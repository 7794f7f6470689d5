"""The capacity search stepper, driven by synthetic trial outcomes: no sockets, no sleeps."""
import pytest

from udpbench.protocol.capacity import (MAX_RATE, SENDER_DISTURBED, CapacityRow, CapacitySearch, ReassemblySettle,
                                         Trial)

M = 1e6


def path(knee_bps, max_bps=100 * M, cause="socket", sender_reaches=None, flaky=(), stalls=None):
    """A synthetic path: every trial above ``knee_bps`` loses 10 % (at ``cause``); the sender
    reaches at most ``sender_reaches``; the trials numbered in ``flaky`` lose 1 % whatever the rate.
    ``stalls(number, rate)`` -> (late_max_us, queue_us) or None: the sender stalled that long
    behind a queue that long; a stall longer than the queue loses 0.5 % below the knee too."""
    count = [0]

    def trial(rate):
        count[0] += 1
        tx = max_bps if rate == MAX_RATE else min(rate, sender_reaches or rate)
        sent = 100_000
        lost = 10_000 if tx > knee_bps else 0
        if count[0] in flaky:
            lost = 1_000
        late_us, queue_us = (stalls and stalls(count[0], rate)) or (100.0, 50_000.0)
        if late_us > queue_us:
            lost = max(lost, 500)
        causes = {f"loss_{c}": 0 for c in ("sender", "socket", "reassembly", "network")}
        causes[f"loss_{cause}"] = lost
        return Trial(rate_bps=rate, tx_bps=tx, sent=sent, lost=lost, late_max_us=late_us, queue_us=queue_us,
                     **causes)
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


def test_a_trial_spoiled_by_a_sender_stall_is_repeated_not_taken_as_the_path():
    # Trial 3, at 25 Mbit/s (below the knee), loses 0.5 %: the sender was 70 ms late behind a
    # 50 ms queue. It is tried again, passes, and the search ends as the undisturbed one does.
    stall = lambda number, rate: (70_000.0, 50_000.0) if number == 3 else None  # noqa: E731
    rates, row = run(CapacitySearch(), path(37.3 * M, stalls=stall))
    assert [r / M for r in rates[:5]] == [0, 50, 25, 25, 37.5]
    assert row.found_bps == 37.109375 * M and row.failed_bps == 37.3046875 * M
    assert row.cause == "socket" and row.disturbed_trials == 1 and row.trials == 13


def test_a_stall_the_queue_absorbs_is_the_path_s_failure():
    # The same loss with the sender 40 ms late behind a 50 ms queue: the burst fitted the queue,
    # so the loss is the path's. Worked by hand: halving below 25 to 24.8046875 Mbit/s.
    stall = lambda number, rate: (40_000.0, 50_000.0) if number == 3 else None  # noqa: E731
    _, plain = run(CapacitySearch(), path(37.3 * M, flaky={3}))
    _, row = run(CapacitySearch(), path(37.3 * M, stalls=stall, flaky={3}))
    assert row.found_bps == plain.found_bps == 24.8046875 * M
    assert row.failed_bps == 25 * M and row.disturbed_trials == 0 and row.cause == "socket"


def test_a_rate_spoiled_every_time_makes_the_knee_sender_disturbed():
    # Every trial at 37.109375 Mbit/s is spoiled: the first and its 3 repeats fail, the last is
    # taken as a failure, and the search finds the rate below it; the knee is not the path's.
    stall = lambda number, rate: (90_000.0, 50_000.0) if rate == 37.109375 * M else None  # noqa: E731
    rates, row = run(CapacitySearch(), path(37.3 * M, stalls=stall))
    assert [r / M for r in rates[8:]] == [37.109375] * 4 + [36.9140625] * 3
    assert row.found_bps == 36.9140625 * M and row.failed_bps == 37.109375 * M
    assert row.cause == SENDER_DISTURBED and row.disturbed_trials == 4 and row.trials == 15


def test_retries_bound_the_repeats():
    stall = lambda number, rate: (90_000.0, 50_000.0) if rate == 25 * M else None  # noqa: E731
    rates, _ = run(CapacitySearch(retries=1), path(37.3 * M, stalls=stall))
    assert [r / M for r in rates[:4]] == [0, 50, 25, 25]
    assert rates[4] / M == 12.5  # after one repeat, 25 counts as failed


@pytest.mark.parametrize("late_us, queue_us, disturbed", [
    (70_000.0, 50_000.0, True),    # late beyond the queue
    (50_000.0, 50_000.0, False),   # the queue absorbs it
    (900.0, 0.0, False),           # under 1 ms: timer slack, not a stall
    (1_500.0, 200.0, True),        # a shallow queue: 1.5 ms is too much for it
    (90_000.0, None, False),       # nothing received, no queue measured: unknown
])
def test_disturbed_is_late_beyond_the_queue_or_1_ms(late_us, queue_us, disturbed):
    t = Trial(rate_bps=M, tx_bps=M, sent=100, lost=10, late_max_us=late_us, queue_us=queue_us)
    assert t.disturbed is disturbed


@pytest.mark.parametrize("lost, disturbed", [(70, True), (71, False)])
def test_a_stall_explains_no_more_loss_than_its_catch_up_burst_carried(lost, disturbed):
    # 1000-byte payloads at 8 Mbit/s are 1000 datagrams/s: 70 ms behind, the sender owed 70.
    t = Trial(rate_bps=8 * M, tx_bps=8 * M, sent=4000, lost=lost, late_max_us=70_000.0, queue_us=50_000.0,
              size=1000)
    assert t.disturbed is disturbed


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


# Real trials of the lab's 40 Mbit/s token bucket (payload capacity 38.89 Mbit/s at 1472 B, 4 s
# trials) on a loaded 2-CPU machine. At max (paced at 80 Mbit/s) the bucket passed 13387 of
# 27174 datagrams behind a 52.9 ms queue: it carried 80 * 13387/27174 * 4/(4 + 0.0529) = 38.90.
AT_MAX = Trial(rate_bps=0.0, tx_bps=80 * M, sent=27174, lost=13787, loss_network=13787,
               late_max_us=205_100.0, queue_us=52_900.0, size=1472)


def bucket_trial(rate, lost=0, late_us=5_000.0, queue_us=52_000.0):
    sent = round(rate * 4 / (8 * 1472))
    return Trial(rate_bps=rate, tx_bps=rate, sent=sent, lost=lost, loss_network=lost, late_max_us=late_us,
                 queue_us=queue_us, size=1472)


def test_what_the_bucket_carried_at_max():
    assert AT_MAX.carried_bps / M == pytest.approx(38.897, abs=0.001)


def test_several_stalls_below_what_the_path_carried_are_the_sender_s():
    # Seen: 35.62 Mbit/s lost 3695 with the sender 924 ms late at worst behind a 51.9 ms queue.
    # One catch-up burst carried only 35.62e6 * 0.924 / (8 * 1472) = 2795 datagrams, so it was
    # counted as the path's failure ("network", found 34.92); but the path had carried 38.90.
    stalled = bucket_trial(35.62 * M, lost=3695, late_us=923_800.0, queue_us=51_900.0)
    assert not stalled.disturbed
    search = CapacitySearch(confirm=1, floor_bps=1 * M)
    search.next_rate()
    search.record(AT_MAX)
    assert search.spoiled_by_sender(stalled)
    # the same loss with the sender 40 ms late: the queue absorbed that, so it is the path's
    assert not search.spoiled_by_sender(bucket_trial(35.62 * M, lost=3695, late_us=40_000.0))


def test_a_bottleneck_seen_at_max_is_tried_first_then_galloped_above():
    search = CapacitySearch(confirm=1, floor_bps=1 * M)
    capacity = 38.89 * M

    def trial(rate):
        if rate == MAX_RATE:
            return AT_MAX
        return bucket_trial(rate, lost=0 if rate <= capacity * 1.013 else 300)  # 52 ms of 4 s absorbed
    rates, row = run(search, trial, size=1472)
    # 38.897 / 1.01 = 38.512 passes; 1 % above it (38.897) passes, 2 % above that (39.675) fails
    # (4 s trials let 1.3 % through); halving: 39.286 passes, exactly 1 % below 39.675: confirm it.
    carried = AT_MAX.carried_bps
    assert [r / M for r in rates] == pytest.approx([0, 38.512, 38.897, 39.675, 39.286, 39.286], abs=0.001)
    assert rates[2] == pytest.approx(carried) and row.found_bps == rates[4] and row.failed_bps == rates[3]
    assert row.cause == "network" and row.trials == 6
