"""The library face: a measurement another thread stops, and a Row that round-trips its files."""
from __future__ import annotations

import socket
import threading
import time

import pytest

import udpbench
from udpbench.output import results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_another_thread_stops_a_blast_promptly():
    """Another thread sets the stop once the blast is provably sending (its first interim report
    is in), not after a fixed delay that a loaded machine may spend still connecting."""
    stop, sending = threading.Event(), threading.Event()
    stopped_at = []

    def stopper():
        if sending.wait(30):
            stopped_at.append(time.monotonic())
            stop.set()

    threading.Thread(target=stopper, daemon=True).start()
    row = udpbench.blast("127.0.0.1", port=_free_port(), size=500, duration=20.0, rate=20e6, interval=0.2,
                         on_interval=lambda entry: sending.set(), stop=stop)
    assert stopped_at, "the blast never reported an interval"
    assert time.monotonic() - stopped_at[0] < 5.0  # not the 20 s asked for
    assert row.interrupted and row.duration_s < 5.0
    assert row.received == row.sent > 0  # what was sent before the stop is still accounted


def test_row_round_trips_through_a_result_file(tmp_path):
    row = udpbench.blast("127.0.0.1", port=_free_port(), size=200, duration=0.1, rate=1e6)
    path, _ = results.save(tmp_path / "one", {"hosts": []}, [row])
    _, (loaded,) = udpbench.load_results(path.with_suffix(".json"))
    assert loaded.as_dict() == row.as_dict()
    _, (from_npz,) = udpbench.load_results(path)
    assert (from_npz.sent, from_npz.goodput_bps, from_npz.host) == (row.sent, row.goodput_bps, row.host)


def test_a_row_of_the_wrong_type_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="'sent' is not a whole number"):
        udpbench.Row.from_dict({"sent": "12"})
