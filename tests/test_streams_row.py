"""The row of parallel streams from hand-made per-stream reports: its received rates span the
receiver's interval over all streams, and its one-way delays come from every stream."""
from __future__ import annotations

import pytest

from udpbench.protocol import row as row_of
from udpbench.protocol.streams import combine

SIZE = 1000


def _tx(sent: int) -> dict:
    return {"elapsed_ns": 1_000_000_000, "sent": sent, "errors": {}, "syscalls": sent, "batch": 1,
            "target_gap_ns": 0, "gap_mean_ns": 0, "gap_std_ns": 0, "gap_max_ns": 0}


def _stream(session: int, received: int, first_s: float, last_s: float, first_count: int = 1,
            owd_us: tuple | None = None, owd_mean_us: float = 0.0, owd_samples: int = 0):
    report = {"received": received, "first_rx_ns": int(first_s * 1e9), "last_rx_ns": int(last_s * 1e9),
              "first_rx_count": first_count}
    if owd_us:
        report.update(owd_samples=owd_samples, transit_samples=owd_samples, mean_transit_ns=owd_mean_us * 1e3)
        for prefix in ("owd", "sched_owd"):
            for part, us in zip(("min", "p50", "p90", "p99", "p999", "max"), owd_us):
                report[f"{prefix}_{part}_ns"] = us * 1e3
    r = row_of.build(host="h", address="127.0.0.1", port=9, v6=False, size=SIZE, engine="send",
                     duration=1.0, rate_bps=None, tx=_tx(received), report=report, path_mtu=1500,
                     same_clock=True)
    r.session = session
    return r


def test_received_rates_of_streams_span_the_earliest_first_to_the_latest_last_arrival():
    # Both streams sent for 1 s. A's datagrams arrived from 10.0 s to 11.0 s; B's, behind a
    # queue, from 10.2 s until 11.5 s. The receivers' interval is 10.0-11.5 s: 1.5 s, and
    # the one datagram stamped at 10.0 s opens it, so 1001 + 501 - 1 = 1501 arrived within.
    a = _stream(1, 1001, 10.0, 11.0)
    b = _stream(2, 501, 10.2, 11.5)
    row = combine([a, b])
    assert row.rx_interval_s == pytest.approx(1.5)
    assert row.rx_pps == pytest.approx(1000.667, rel=1e-5)  # 1501 / 1.5
    assert row.goodput_bps == pytest.approx(8_005_333, rel=1e-6)  # 1501 x 8000 bit / 1.5 s
    assert row.received == 1502
    assert row.tx_bps == pytest.approx(12_016_000)  # the sender's own rate stays over its 1 s


def test_streams_sharing_the_first_arrival_time_all_open_the_interval():
    # Both first stamped at 5.0 s, with 2 and 3 datagrams there (GRO buffers): 600 - 5 = 595
    # within 5.0-6.0 s. A stream that received nothing has no times and does not count.
    row = combine([_stream(1, 300, 5.0, 6.0, first_count=2), _stream(2, 300, 5.0, 5.5, first_count=3),
                   _stream(3, 0, 0.0, 0.0)])
    assert row.rx_interval_s == pytest.approx(1.0)
    assert row.rx_pps == pytest.approx(595.0)


def test_one_way_delays_of_streams_come_from_every_stream():
    # A: 1000 samples, 100-600 us, mean 250. B: 500 samples, 150-2000 us, mean 1100.
    a = _stream(1, 1000, 1.0, 2.0, owd_us=(100, 200, 300, 400, 500, 600), owd_mean_us=250, owd_samples=1000)
    b = _stream(2, 500, 1.0, 2.0, owd_us=(150, 1000, 1200, 1500, 1800, 2000), owd_mean_us=1100, owd_samples=500)
    row = combine([a, b])
    assert (row.owd_min_us, row.owd_max_us) == (pytest.approx(100), pytest.approx(2000))
    # the percentiles are the worst stream's (no histograms in a REPORT to merge)
    assert (row.owd_p50_us, row.owd_p99_us, row.sched_owd_p999_us) == (pytest.approx(1000), pytest.approx(1500),
                                                                      pytest.approx(1800))
    assert row.owd_mean_us == pytest.approx(533.333, rel=1e-5)  # (250 x 1000 + 1100 x 500) / 1500
