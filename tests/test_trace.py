"""Per-datagram traces agree with the receiver's counts."""
import socket
import threading

import numpy as np

from udpbench.engine import _fast
from udpbench.output import trace
from udpbench.transport.server import enable_receive_options

SESSION = 0x5EED


def _run(limit, count=20_000):
    rx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx_sock.bind(("127.0.0.1", 0))
    rx_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    enable_receive_options(rx_sock)  # kernel receive timestamps, as the server's sockets
    tx_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx_sock.connect(rx_sock.getsockname())
    rx = _fast.Receiver(SESSION)
    arrays = trace.buffers(limit)
    rx.set_trace(*arrays)
    thread = threading.Thread(target=rx.run, args=(rx_sock.fileno(), 0.3))
    thread.start()
    try:
        # Paced so a loaded machine's receiver keeps up; some datagrams may still be dropped.
        tx = _fast.send_datagrams(tx_sock.fileno(), _fast.ENGINE_MMSG, 200, SESSION, 0, 5.0, 100_000.0,
                                  max_count=count)
        thread.join(timeout=10)
    finally:
        rx_sock.close()
        tx_sock.close()
    return rx, arrays, tx["sent"]


def test_trace_counts_equal_the_receivers(tmp_path):
    rx, arrays, sent = _run(limit=50_000)
    c = rx.counts()
    columns = trace.build(arrays, rx.trace_length, rx.trace_cut, 0, sent)
    path = tmp_path / "t.npz"
    trace.write(str(path), columns, limit=50_000, cut=rx.trace_cut, sent=sent)
    meta, got = trace.read(str(path))
    assert meta["truncated"] is False and meta["sent"] == sent == 20_000
    arrived = got["rx_ns"] > 0
    firsts = arrived & (got["duplicate"] == 0)
    assert int(firsts.sum()) == c["received"]
    assert int(got["duplicate"].sum()) == c["duplicates"]
    assert int((~arrived).sum()) == sent - c["received"]
    # every sequence number once as a first copy or a loss, in order
    assert np.array_equal(got["seq"][got["duplicate"] == 0], np.arange(sent, dtype=np.uint64))
    assert np.all(got["scheduled_ns"][firsts] <= got["tx_ns"][firsts])  # the earlier of the two
    assert np.all(got["rx_ns"][firsts] >= got["tx_ns"][firsts])  # one clock: same host


def test_a_cut_trace_says_so(tmp_path):
    rx, arrays, sent = _run(limit=1000, count=3000)
    assert rx.trace_length == 1000 and rx.trace_cut == rx.counts()["received"] - 1000
    columns = trace.build(arrays, rx.trace_length, rx.trace_cut, 0, sent)
    trace.write(str(tmp_path / "t.npz"), columns, limit=1000, cut=rx.trace_cut, sent=sent)
    meta, got = trace.read(str(tmp_path / "t.npz"))
    assert meta["truncated"] is True and meta["cut"] == rx.trace_cut and len(got["seq"]) == 1000
