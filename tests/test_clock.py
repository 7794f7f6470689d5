"""Clock offset from four-timestamp samples, with numbers worked by hand."""
import pytest

from udpbench.protocol import clock
from udpbench.protocol.clock import Estimate, Sample


def test_symmetric_path_gives_the_exact_offset():
    # The server's clock is 5000 ns ahead; 300 ns each way; 100 ns turnaround.
    # t1=1000, t2=1000+300+5000=6300, t3=6400, t4=6400-5000+300=1700
    s = Sample(1000, 6300, 6400, 1700)
    assert s.offset_ns == 5000
    assert s.delay_ns == 600


def test_asymmetric_path_errs_by_half_the_difference_and_says_so():
    # True offset 5000; 100 ns out, 500 ns back: the estimate is off by (100 - 500) / 2 = -200,
    # within the uncertainty of delay / 2 = 300.
    s = Sample(0, 5100, 5100, 600)
    est = clock.estimate([s])
    assert est.offset_ns == 4800
    assert est.error_ns == 300
    assert abs(est.offset_ns - 5000) <= est.error_ns


def test_the_sample_with_the_smallest_round_trip_is_taken():
    samples = [
        Sample(0, 10_000, 10_000, 10_000),     # delay 10000, offset 0: queued
        Sample(20_000, 21_050, 21_060, 20_110),  # delay 100, offset 1000
        Sample(30_000, 32_000, 32_000, 30_500),  # delay 500, offset 1750
    ]
    est = clock.estimate(samples)
    assert (est.offset_ns, est.error_ns, est.at_ns) == (1000, 50, 20_055)


def test_samples_with_a_negative_round_trip_are_refused():
    with pytest.raises(ValueError):
        clock.estimate([Sample(0, 100, 200, 50)])  # turnaround longer than the round trip


def test_drift_between_two_estimates():
    before = Estimate(1000.0, 50.0, 0)
    after = Estimate(1020.0, 80.0, 2_000_000_000)  # 20 ns in 2 s
    assert clock.drift_ppm(before, after) == pytest.approx(0.01)
    both = clock.combine(before, after)
    assert both.offset_ns == 1010 and both.error_ns == 90  # worst error + half the change


@pytest.mark.parametrize("same, est, basis", [
    (True, None, "same-host"),
    (False, Estimate(5e6, 200e3, 0), "estimated"),
    (False, Estimate(5e6, 5e6, 0), "relative"),  # 5 ms of doubt: no absolute delay
    (False, None, "relative"),
])
def test_basis(same, est, basis):
    assert clock.basis(same, est) == basis
