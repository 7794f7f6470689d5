"""Row fields from the receiver's report: rates over its interval, delays on each basis."""
import pytest

from udpbench.protocol import delay
from udpbench.protocol.clock import Estimate


def test_goodput_counts_the_arrivals_after_the_first_over_the_receivers_interval():
    # 1001 datagrams of 1000 bytes arrive 1 ms apart: 1000 gaps in 1 s -> 1000 pps, 8 Mbit/s,
    # whatever the sender's interval (here 0.9 s, as if a queue drained 0.1 s after it stopped).
    report = {"received": 1001, "first_rx_ns": 5_000_000_000, "last_rx_ns": 6_000_000_000, "first_rx_count": 1}
    rates = delay.received_rates(report, 1000, 1042, 0.9)
    assert rates["rx_pps"] == pytest.approx(1000)
    assert rates["goodput_bps"] == pytest.approx(8e6)
    assert rates["wire_bps"] == pytest.approx(1000 * 1042 * 8)
    assert rates["rx_interval_s"] == pytest.approx(1.0)


def test_a_first_gro_buffer_opens_the_interval():
    # The first buffer held 44 datagrams, all stamped at its arrival: 88 - 44 arrived after it.
    report = {"received": 88, "first_rx_ns": 0, "last_rx_ns": 1_000_000, "first_rx_count": 44}
    assert delay.received_rates(report, 1000, 1000, 1.0)["rx_pps"] == pytest.approx(44_000)


@pytest.mark.parametrize("report", [
    {"received": 1, "first_rx_ns": 7, "last_rx_ns": 7, "first_rx_count": 1},
    {"received": 44, "first_rx_ns": 7, "last_rx_ns": 7, "first_rx_count": 44},  # one buffer
])
def test_without_a_receiver_interval_the_sending_interval_is_used(report):
    rates = delay.received_rates(report, 100, 100, 0.5)
    assert rates["rx_pps"] == pytest.approx(report["received"] / 0.5)
    assert rates["rx_interval_s"] == 0.0


def test_nothing_received_is_zero():
    assert delay.received_rates({"received": 0}, 100, 100, 1.0)["goodput_bps"] == 0.0


REPORT = {"owd_samples": 10, "owd_min_ns": 2_000_000, "owd_p50_ns": 2_500_000, "owd_max_ns": 9_000_000,
          "sched_owd_min_ns": 2_000_000, "sched_owd_p50_ns": 3_000_000, "sched_owd_max_ns": 12_000_000}


def test_same_host_delays_are_absolute():
    f = delay.delay_fields(REPORT, same_clock=True)
    assert f["owd_basis"] == "same-host"
    assert (f["owd_min_us"], f["owd_p50_us"], f["sched_owd_max_us"]) == (2000, 2500, 12000)


def test_estimated_delays_are_corrected_by_the_offset():
    # The receiver's clock is 1.5 ms ahead of the sender's: 1.5 ms of every raw delay is offset.
    f = delay.delay_fields(REPORT, same_clock=False, estimate=Estimate(1_500_000, 100_000, 0))
    assert f["owd_basis"] == "estimated"
    assert (f["owd_min_us"], f["owd_p50_us"], f["clock_offset_us"], f["clock_error_us"]) == (500, 1000, 1500, 100)


def test_relative_delays_start_at_zero():
    f = delay.delay_fields(REPORT, same_clock=False)
    assert f["owd_basis"] == "relative"
    assert (f["owd_min_us"], f["owd_p50_us"], f["sched_owd_p50_us"]) == (0, 500, 1000)
    assert f["clock_error_us"] == -1.0


def test_an_offset_too_uncertain_gives_relative_delays_and_says_why():
    # 5 ms of uncertainty on a 2.5 ms delay: an absolute p50 would be meaningless.
    f = delay.delay_fields(REPORT, same_clock=False, estimate=Estimate(1_500_000, 5_000_000, 0), drift_ppm=3.0)
    assert f["owd_basis"] == "relative"
    assert (f["owd_min_us"], f["owd_p50_us"]) == (0, 500)  # not 2000 - 1500 = 500 by luck: min is 0
    assert f["clock_error_us"] == 5000 and "5,000 us" in f["owd_note"]
    assert f["clock_drift_ppm"] == 3.0


def test_same_host_rows_carry_no_offset_or_drift():
    f = delay.delay_fields(REPORT, same_clock=True, estimate=Estimate(7_000, 10_000, 0), drift_ppm=2.0)
    assert (f["clock_offset_us"], f["clock_error_us"], f["clock_drift_ppm"], f["owd_note"]) == (0, 0, 0, "")


def test_the_mean_delay_is_the_arithmetic_mean_of_the_arrivals():
    """Four datagrams cross in 100, 200, 300 and 1000 us: the mean is 400 us (not the p50's 250),
    absolute on one clock and 300 us above the smallest when relative."""
    from udpbench.engine import _fast
    from udpbench.protocol import wire

    receiver = _fast.Receiver(7)
    for seq, transit_us in enumerate((100, 200, 300, 1000)):
        tx_ns = 5_000_000_000 + seq * 1_000_000
        receiver.feed(wire.datagram(wire.Kind.DATA, 7, seq, 100, tx_ns), tx_ns + transit_us * 1000)
    report = receiver.counts()
    assert delay.delay_fields(report, same_clock=True)["owd_mean_us"] == pytest.approx(400)
    assert delay.delay_fields(report, same_clock=False)["owd_mean_us"] == pytest.approx(300)
    assert delay.delay_fields({"received": 0}, same_clock=True)["owd_mean_us"] == 0.0
