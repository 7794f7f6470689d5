"""Every measurement of the library face ends promptly when another thread sets ``stop=``
(docs/architecture.md): path_mtu, ping, capacity and mesh here; blast in test_api.py, the server
search in test_discover.py. Each would run for minutes unstopped."""
from __future__ import annotations

import socket
import threading
import time
from types import SimpleNamespace

import udpbench
from udpbench.measure import mesh as mesh_module


def stopped_after(seconds: float) -> threading.Event:
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return stop


def test_path_mtu_stops_mid_search_and_claims_no_mtu():
    # A UDP socket that never answers and no TCP listener: the ICMP search waits out every
    # probe, 10 tries of 10 s each, unless stopped.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        started = time.monotonic()
        found = udpbench.path_mtu("127.0.0.1", method="icmp", port=port, timeout=10, max_probes=10,
                                  stop=stopped_after(0.3))
    assert time.monotonic() - started < 3.0
    assert found.stopped and found.path_mtu is None and found.icmp.status == "stopped"
    assert found.as_dict()["stopped"] is True


def test_ping_stops_between_requests_keeping_the_answers(loopback_server):
    started = time.monotonic()
    result = udpbench.ping("127.0.0.1", port=loopback_server.port, count=1000, interval=1.0,
                           stop=stopped_after(0.5))
    assert time.monotonic() - started < 3.0  # not the 1000 s asked for
    assert result.interrupted and result.sent == result.received == 1  # one request per second


def test_capacity_stops_the_running_trial(loopback_server):
    started = time.monotonic()
    result = udpbench.capacity(["127.0.0.1"], port=loopback_server.port, sizes=[1000], trial_s=30.0,
                               max_rate_bps=5e6, stop=stopped_after(0.5))
    assert time.monotonic() - started < 6.0  # not one 30 s trial
    assert "stopped" in result.meta and result.rows == []  # an unfinished size is no row


class _PendingFuture:
    status = "pending"

    def __init__(self):
        self.cancelled = False

    def cancel(self):
        self.cancelled = True


class _Cluster:
    """Two workers whose measurements never finish: only a stop ends the mesh before its
    60 s per-pair timeout."""

    WORKERS = {"tcp://127.0.0.1:1": {"name": "a"}, "tcp://127.0.0.1:2": {"name": "b"}}

    def __init__(self):
        self.futures: list[_PendingFuture] = []
        self.scheduler = SimpleNamespace(identity=lambda **kw: {"workers": self.WORKERS})

    def scheduler_info(self):
        return {"workers": self.WORKERS}

    def sync(self, function, **kwargs):  # the mesh asks the scheduler itself (docs/mesh.md)
        return function(**kwargs)

    def run(self, function, *args):
        return {}

    def submit(self, *args, **kwargs):
        self.futures.append(_PendingFuture())
        return self.futures[-1]

    def close(self):
        pass


def test_mesh_stops_and_cancels_the_pairs_under_way(monkeypatch):
    cluster = _Cluster()
    monkeypatch.setattr(mesh_module, "connect", lambda scheduler, timeout: cluster)
    started = time.monotonic()
    result = udpbench.mesh("tcp://127.0.0.1:8786", stop=stopped_after(0.3))
    assert time.monotonic() - started < 3.0
    assert "stopped" in result.meta and "finished" not in result.meta
    assert cluster.futures and all(f.cancelled for f in cluster.futures)
    assert result.rows == [] and result.pairs == []


def test_a_stopped_search_stepper_is_done_without_an_answer():
    from udpbench.protocol.plpmtud import EchoSearch
    from udpbench.protocol.pmtud import Done, IcmpSearch, Send

    echo = EchoSearch(0.0, 1500, 1280, v6=True)
    assert isinstance(echo.next_action(0.0), Send)
    echo.on_ack(1, 0.001)  # the first probe's ack: a size proven, yet no answer once stopped
    echo.stop(0.5)
    done = echo.next_action(0.5)
    assert isinstance(done, Done) and (done.result.mtu, done.result.status) == (None, "stopped")
    assert done.result.elapsed_s == 0.5 and done.result.probes == 1
    icmp = IcmpSearch(0.0, 1500, 68, "192.0.2.1", False, 3, None)
    icmp.next_action(0.0)
    icmp.stop(2.0)
    assert icmp.next_action(2.0).result.status == "stopped"
