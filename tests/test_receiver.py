"""Sequence accounting: loss, duplicates, reordering and jitter from crafted sequences."""
import socket
import threading

import pytest

from udpbench.engine import _fast
from udpbench.protocol import wire

SESSION = 0xFEEDFACECAFEBEEF


def data(seq, tx_ns=0, session=SESSION, size=64):
    return wire.datagram(wire.Kind.DATA, session, seq, size, tx_ns)


def feed(receiver, seqs, **kw):
    for i, seq in enumerate(seqs):
        receiver.feed(data(seq, **kw), 1_000_000 + i)


def test_in_order_stream_counts_every_datagram():
    rx = _fast.Receiver(SESSION)
    feed(rx, range(1000))
    c = rx.counts()
    assert (c["received"], c["duplicates"], c["reordered"], c["highest_seq"]) == (1000, 0, 0, 999)
    assert c["payload_bytes"] == 64 * 1000


def test_loss_shows_as_gaps():
    rx = _fast.Receiver(SESSION)
    seqs = [s for s in range(100) if s not in (10, 11, 12, 50)]
    feed(rx, seqs)
    c = rx.counts()
    assert c["received"] == 96
    assert c["highest_seq"] + 1 - c["received"] == 4
    assert (c["gap_events"], c["max_gap"]) == (2, 3)


def test_duplicates_are_counted_not_received_twice():
    rx = _fast.Receiver(SESSION)
    feed(rx, [0, 1, 2, 2, 3, 1, 3, 4])
    c = rx.counts()
    assert (c["received"], c["duplicates"], c["reordered"]) == (5, 3, 0)


def test_reordered_datagrams_are_received_and_counted_once():
    rx = _fast.Receiver(SESSION)
    feed(rx, [0, 2, 1, 5, 3, 4, 6, 4])
    c = rx.counts()
    assert (c["received"], c["reordered"], c["duplicates"]) == (7, 3, 1)
    assert c["max_reorder"] == 2  # seq 3 arrived when 5 was the highest


def test_window_slides_without_growing_and_late_datagrams_are_not_lost():
    rx = _fast.Receiver(SESSION)
    feed(rx, [0, 200_000, 1, 199_999, 199_999])
    c = rx.counts()
    # seq 1 is 199_999 behind: outside the 65536 window, counted as late (received, reordered)
    assert c["late"] == 1
    assert (c["received"], c["reordered"], c["duplicates"]) == (4, 2, 1)


def test_64_bit_sequence_numbers():
    rx = _fast.Receiver(SESSION)
    base = 2**63
    feed(rx, [base, base + 1, base + 3, base + 2])
    c = rx.counts()
    assert c["highest_seq"] == base + 3 and c["received"] == 4 and c["reordered"] == 1


def test_foreign_datagrams_are_counted_and_ignored():
    rx = _fast.Receiver(SESSION)
    rx.feed(data(0, session=SESSION + 1), 1)
    rx.feed(b"\0" * 64, 1)
    rx.feed(b"short", 1)
    rx.feed(wire.datagram(wire.Kind.ECHO, SESSION, 0, 64), 1)
    c = rx.counts()
    assert c["foreign"] == 4 and c["received"] == 0


def test_jitter_follows_rfc3550():
    rx = _fast.Receiver(SESSION)
    # transit times 100, 300, 100, 300 ... ns: every |D| is 200 ns
    n = 400
    for i in range(n):
        rx.feed(data(i, tx_ns=1000 * i), 1000 * i + (100 if i % 2 == 0 else 300))
    expected = 0.0
    for _ in range(n - 1):
        expected += (200 - expected) / 16
    assert rx.jitter_ms == pytest.approx(expected / 1e6, rel=1e-9)


def test_receiver_counts_crafted_sequences_over_a_real_socket():
    """A test sender sends a crafted sequence: loss, duplicates and reordering arrive as sent."""
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    tx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx_sock.connect(rx_sock.getsockname())
    rx = _fast.Receiver(SESSION)
    thread = threading.Thread(target=rx.run, args=(rx_sock.fileno(), 0.3))
    thread.start()
    sequence = [0, 1, 3, 2, 2, 5, 6, 6, 9, 7]  # 4 and 8 lost; 2 and 6 twice; 2 and 7 late
    for seq in sequence:
        tx_sock.send(data(seq, size=200))
    tx_sock.send(b"junk that is not udpbench")
    thread.join(timeout=5)
    assert not thread.is_alive()
    c = rx.counts()
    assert c["received"] == 8
    assert c["duplicates"] == 2
    assert c["reordered"] == 2
    assert c["foreign"] == 1
    assert c["highest_seq"] == 9
    rx_sock.close()
    tx_sock.close()


def test_one_way_delay_percentiles_from_actual_and_scheduled_send_times():
    rx = _fast.Receiver(SESSION)
    # 100 datagrams, each 50 us in flight; the first 90 left on time, the last 10 left
    # 2 ms after their scheduled time (a stalled sender).
    for i in range(100):
        sched = 1_000_000_000 + i * 100_000
        tx = sched + (2_000_000 if i >= 90 else 0)
        rx.feed(wire.data_datagram(SESSION, i, 64, tx, sched), tx + 50_000)
    c = rx.counts()
    assert c["owd_samples"] == 100
    assert (c["owd_min_ns"], c["owd_max_ns"]) == (50_000, 50_000)
    assert c["owd_p99_ns"] == pytest.approx(50_000, rel=0.03)
    assert c["sched_owd_p50_ns"] == pytest.approx(50_000, rel=0.03)
    assert c["sched_owd_p90_ns"] == pytest.approx(50_000, rel=0.03)   # rank 90: still on time
    assert c["sched_owd_p99_ns"] == pytest.approx(2_050_000, rel=0.03)  # the stall shows
    assert c["sched_owd_max_ns"] == 2_050_000


def test_a_datagram_sent_ahead_of_its_slot_counts_from_its_send_time():
    rx = _fast.Receiver(SESSION)
    rx.feed(wire.data_datagram(SESSION, 0, 64, tx_ns=1000, scheduled_ns=5000), 1300)
    c = rx.counts()
    assert c["sched_owd_max_ns"] == c["owd_max_ns"] == 300


def test_negative_raw_delays_between_two_clocks_keep_their_order():
    rx = _fast.Receiver(SESSION)
    for i, d in enumerate([-3000, -1000, 500, 2000, 4000]):  # the receiver's clock is behind
        rx.feed(data(i, tx_ns=10_000_000), 10_000_000 + d)
    c = rx.counts()
    assert (c["owd_min_ns"], c["owd_p50_ns"], c["owd_max_ns"]) == (-3000, 500, 4000)
    assert c["owd_p90_ns"] == 4000  # rank round(4.5) = 5 of 5: the maximum


def _episodes(lost: set[int], n: int) -> dict:
    rx = _fast.Receiver(SESSION)
    feed(rx, [s for s in range(n) if s not in lost])
    return rx.counts()


def _model(lost: set[int], n: int):
    """Bursts counted the plain way: runs of consecutive lost sequence numbers."""
    last = max(s for s in range(n) if s not in lost)
    bursts, run = [], 0
    for s in range(last + 1):
        if s in lost:
            run += 1
        elif run:
            bursts.append(run)
            run = 0
    return bursts


def test_loss_episodes_by_hand():
    c = _episodes({3, 4, 7, 8, 14, 15, 16, 17, 18, 19}, 21)
    assert (c["loss_burst_count"], c["loss_burst_max"]) == (3, 6)
    assert c["loss_burst_mean"] == pytest.approx(10 / 3)
    assert c["loss_conditional"] == pytest.approx(7 / 10)  # 7 of 10 losses follow a loss
    assert c["loss_burst_histogram"] == {2: 2, 6: 1}
    assert c["loss_gap_mean"] == pytest.approx(11 / 4)  # arrivals 0-2, 5-6, 9-13, 20


def test_random_and_bursty_loss_look_different_past_the_window():
    import random
    rng = random.Random(7)
    n = 300_000  # past the 65536-bit window several times
    scattered = {s for s in range(n) if rng.random() < 0.02}
    bursty = set()
    s = 0
    while s < n - 2000:
        s += rng.randrange(1000, 3000)
        bursty.update(range(s, s + 50))  # 50 in a row, as an overfull queue drops
    for lost, conditional in ((scattered, (0.0, 0.05)), (bursty, (0.95, 1.0))):
        c = _episodes(lost, n)
        model = _model(lost, n)
        assert c["loss_burst_count"] == len(model)
        assert c["loss_burst_max"] == max(model)
        assert c["loss_burst_mean"] == pytest.approx(sum(model) / len(model), rel=0.02)
        assert conditional[0] <= c["loss_conditional"] <= conditional[1]


def test_a_jump_past_the_window_is_one_long_burst():
    c = _episodes(set(range(10, 100_010)), 100_020)
    assert (c["loss_burst_count"], c["loss_burst_max"]) == (1, 100_000)


def test_trace_holds_every_arrival_and_says_when_it_was_cut():
    import numpy as np
    rx = _fast.Receiver(SESSION)
    cap = 6
    arrays = (np.zeros(cap, np.uint64), np.zeros(cap, np.int64), np.zeros(cap, np.int64),
              np.zeros(cap, np.int64), np.zeros(cap, np.uint8))
    rx.set_trace(*arrays)
    for i, seq in enumerate([0, 1, 1, 3, 2, 4, 5, 6]):
        rx.feed(wire.data_datagram(SESSION, seq, 64, 100 + seq, 90 + seq), 1000 + i)
    seq, sched, tx, rxt, dup = arrays
    assert seq.tolist() == [0, 1, 1, 3, 2, 4]
    assert dup.tolist() == [0, 0, 1, 0, 0, 0]
    assert tx.tolist() == [100, 101, 101, 103, 102, 104] and sched.tolist() == [90, 91, 91, 93, 92, 94]
    assert rxt.tolist() == [1000, 1001, 1002, 1003, 1004, 1005]
    assert (rx.trace_length, rx.trace_cut) == (6, 2)
