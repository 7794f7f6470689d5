"""Loopback measurements: what the client sent, what the server counted, and what the row says."""
import threading

import pytest

from udpbench.measure.embedded import connect
from udpbench.transport.client import Client


def test_moderate_rate_blast_is_counted_exactly(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        row = client.blast(1000, 1.0, 20e6)
    assert row["sent"] > 1000
    assert row["received"] == row["sent"]
    assert row["lost"] == 0 and row["loss_ratio"] == 0.0
    assert row["duplicates"] == 0 and row["reordered"] == 0
    assert row["send_errors"] == 0
    assert row["sent"] <= 2500  # 20 Mbit/s of 8000-bit payloads for 1 s: 2500 slots, by hand
    # Nothing queues on loopback: the datagrams arrive over the 1 s they were sent in, whatever
    # a loaded machine took from the sender.
    assert row["goodput_bps"] == pytest.approx(row["received"] * 8000 / 1.0, rel=0.02)
    assert row["owd_basis"] == "same-host"
    assert row["jitter_ms"] >= 0


# Slot k of a paced run is due at k / rate_pps, so a 1 s run of 1200-byte payloads has
# ceil(1 s * rate / 9600 bits) slots, worked out by hand: 105 at 1 Mbit/s, 5209 at 50 Mbit/s.
@pytest.mark.parametrize("rate, slots", [(1e6, 105), (50e6, 5209)])
def test_achieved_rate_is_within_two_percent_of_target(loopback_server, rate, slots):
    """On a loaded machine one second may lose its sender a stall; the pacer is right if it never
    sends more than the schedule in any run and meets the rate within 2% in one of up to 5 runs
    (a pacer that is slow by 2% fails all five)."""
    ratios = []
    with Client("127.0.0.1", loopback_server.port) as client:
        for _ in range(5):
            row = client.blast(1200, 1.0, rate)
            assert 0 < row["sent"] <= slots  # never faster than asked
            assert row["received"] == row["sent"]
            ratios.append(row["sent"] / slots)
            if ratios[-1] >= 0.98:
                break
    assert max(ratios) >= 0.98, f"sent / slots in each run: {ratios}"


def test_consecutive_measurements_on_one_connection(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        rows = [client.blast(size, 0.2, 10e6) for size in (64, 1472, 9000)]
    for row in rows:
        assert row["received"] == row["sent"] > 0


def test_four_concurrent_clients_do_not_mix_counts(loopback_server):
    rows, errors = {}, []

    def one(i):
        try:
            with Client("127.0.0.1", loopback_server.port) as client:
                rows[i] = client.blast(200 + 100 * i, 1.0, (i + 1) * 4e6)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(rows) == 4
    for i, row in rows.items():
        assert row["size"] == 200 + 100 * i
        assert row["received"] == row["sent"]
        assert row["foreign"] == 0
    # different rates, so different counts: a mix-up could not go unnoticed
    assert len({row["sent"] for row in rows.values()}) == 4


@pytest.mark.ipv6
def test_ipv6_loopback():
    with connect("::1", 1) as client:  # nothing listens on port 1: embedded server
        row = client.blast(1452, 0.3, 10e6)
    assert row["family"] == 6 and row["received"] == row["sent"] > 0


def test_embedded_server_for_loopback_with_nothing_listening():
    with connect("127.0.0.1", 1) as client:
        assert client.port != 1
        row = client.blast(64, 0.2, 1e6)
    assert row["received"] == row["sent"] > 0
