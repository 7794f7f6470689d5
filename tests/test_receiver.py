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
