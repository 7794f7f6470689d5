"""The latency fields are typed Row fields with the file names they always had.

The values are worked by hand from a receiver's REPORT: 95 of 100 datagrams of 1000 bytes, the
first at 0 s and the last at 0.5 s by the receiver's clock.
"""
from __future__ import annotations

import json

import pytest

from udpbench.output import results
from udpbench.protocol import row as row_module
from udpbench.protocol.row import Row

TX = {"elapsed_ns": 1_000_000_000, "sent": 100, "errors": {}, "syscalls": 100, "batch": 1,
      "target_gap_ns": 10_000_000, "gap_mean_ns": 10_000_000, "gap_std_ns": 0, "gap_max_ns": 10_000_000}
REPORT = {"received": 95, "owd_samples": 95, "first_rx_ns": 1_000, "last_rx_ns": 500_001_000,
          "first_rx_count": 1, "owd_min_ns": 40_000, "owd_p50_ns": 55_000, "owd_p90_ns": 70_000,
          "owd_p99_ns": 90_000, "owd_p999_ns": 95_000, "owd_max_ns": 99_000,
          "sched_owd_min_ns": 41_000, "sched_owd_p50_ns": 60_000, "sched_owd_p90_ns": 80_000,
          "sched_owd_p99_ns": 120_000, "sched_owd_p999_ns": 130_000, "sched_owd_max_ns": 150_000,
          "loss_burst_count": 2, "loss_burst_mean": 2.5, "loss_burst_max": 3, "loss_gap_mean": 30.0,
          "loss_conditional": 0.6, "loss_burst_histogram": {2: 1, 3: 1}, "loss_gap_histogram": {30: 2}}


def built() -> Row:
    return row_module.build(host="h", address="127.0.0.1", port=1, v6=False, size=1000, engine="send",
                            duration=1.0, rate_bps=None, tx=TX, report=REPORT, path_mtu=1500, same_clock=True)


def test_latency_fields_are_attributes_worked_by_hand():
    row = built()
    assert row.extra == {}
    # 94 datagrams after the first, over the 0.5 s between the first and the last arrival
    assert row.rx_interval_s == pytest.approx(0.5)
    assert row.rx_pps == pytest.approx(188.0)
    assert row.goodput_bps == pytest.approx(94 * 1000 * 8 / 0.5)
    assert (row.owd_basis, row.owd_note, row.clock_error_us) == ("same-host", "", 0.0)
    assert (row.owd_min_us, row.owd_p50_us, row.owd_max_us) == (40.0, 55.0, 99.0)
    assert row.sched_owd_p99_us == 120.0
    assert (row.loss_burst_count, row.loss_burst_max, row.loss_conditional) == (2, 3, 0.6)
    assert row.loss_burst_histogram == {"2": 1, "3": 1}
    assert row.direction == "forward" and row.path_mtu_source is None


def test_the_file_names_are_unchanged_and_round_trip_through_json_and_npz(tmp_path):
    row = built()
    names = row.as_dict()
    for name in ("rx_interval_s", "owd_basis", "owd_note", "clock_offset_us", "clock_drift_ppm", "owd_p999_us",
                 "sched_owd_min_us", "loss_burst_mean", "loss_gap_mean", "loss_gap_histogram", "direction"):
        assert name in names
    assert "path_mtu_source" not in names and "trace" not in names  # a forward run has neither
    assert Row.from_dict(json.loads(json.dumps(names))) == Row.from_dict(names)
    results.save(tmp_path / "r", {"hosts": []}, [row])
    for suffix in (".npz", ".json"):
        _, (back,) = results.load_rows(tmp_path / f"r{suffix}")
        assert back.owd_p50_us == 55.0 and back.loss_burst_count == 2 and back.owd_basis == "same-host"
        assert back.loss_gap_histogram == {"30": 2} and back.extra == {}


def test_a_row_from_an_older_file_loads_without_them_and_writes_none_of_them():
    old = {k: v for k, v in built().as_dict().items() if k in {"host", "size", "sent", "received", "goodput_bps"}}
    row = Row.from_dict(old)
    assert row.owd_basis is None and row.rx_interval_s is None
    assert row.get("owd_basis") is None and "owd_p50_us" not in row
    assert set(row.as_dict()) == {f.name for f in row_module.PUBLIC_FIELDS} - row_module._MEASURED_KEYS - {
        "interrupted", "intervals", "per_stream"}


@pytest.mark.parametrize("name, value, words", [
    ("owd_p50_us", "fast", "is not a number or empty"),
    ("owd_basis", 3, "is not text or empty"),
    ("loss_burst_count", 2.5, "is not a whole number of at most 64 bits or empty"),
    ("loss_burst_histogram", [1, 2], "is not a record or empty"),
])
def test_a_mistyped_latency_field_is_named(name, value, words):
    with pytest.raises(ValueError, match=f"field '{name}' {words}"):
        Row.from_dict({"host": "h", name: value})
