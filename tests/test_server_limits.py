"""The server's promises under a hostile or careless client (docs/security.md): reply budgets,
clamped echo durations, hard session ends, the empty token, echo bound to an address and a
port, the receive-buffer cap, accept() out of descriptors, slots per source, and the lock."""
from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from udpbench.errors import UserError
from udpbench.protocol import control, wire
from udpbench.transport import server as server_module
from udpbench.transport.channel import Channel
from udpbench.transport.server import Server


@pytest.fixture
def make_server():
    servers = []

    def make(**kwargs):
        server = Server(kwargs.pop("bind", "127.0.0.1"), 0, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def hello(port, source="127.0.0.1"):
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    channel = Channel(sock, timeout=5)
    channel.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
    channel.expect("HELLO")
    return channel


def echo_socket(port):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.connect(("127.0.0.1", port))
    return sock


def replies(sock, quiet=0.3):
    got = []
    sock.settimeout(quiet)
    try:
        while True:
            got.append(sock.recv(65536))
    except socket.timeout:
        return got


def test_echo_replies_stay_within_the_rate_limit_and_the_rest_is_counted(make_server):
    server = make_server(max_rate_bps=1e6)
    channel = hello(server.port)
    channel.send({"type": "START", "session": 21, "mode": "echo", "duration_s": 5})
    channel.expect("STARTED")
    with echo_socket(server.port) as sock:
        sent = 0
        start = time.monotonic()
        for seq in range(600):
            sock.send(wire.datagram(wire.Kind.ECHO, 21, seq, 1000))
            sent += 1
            if seq % 20 == 0:
                time.sleep(0.001)  # the shared socket's buffer is the kernel default
        elapsed = time.monotonic() - start
        got = replies(sock)
    channel.send({"type": "STOP", "session": 21})
    report = channel.expect("REPORT")
    # 1 Mbit/s saves up 524280 bits (one largest datagram): 65 replies of 1000 bytes, plus what
    # 1 Mbit/s refills while the requests arrive (125 a second).
    assert len(got) <= 65 + 125 * (elapsed + 0.5), f"{len(got)} replies in {elapsed:.2f} s"
    assert len(got) >= 65
    # A second count: what the client received and what the server says it did not answer.
    assert report["echo_answered"] == len(got)
    assert report["replies_limited"] == report["echo_requests"] - len(got) > 0
    assert report["echo_requests"] > sent // 2
    channel.close()


def test_an_echo_duration_above_max_duration_is_clamped_and_reported(make_server):
    server = make_server(max_duration=2.0)
    channel = hello(server.port)
    channel.send({"type": "START", "session": 22, "mode": "echo", "duration_s": 30})
    started = channel.expect("STARTED")
    assert started["granted"]["duration_s"] == 2.0 and started["clamped"] == ["duration_s"]
    channel.close()


def test_status_frames_do_not_keep_a_session_past_its_grant(make_server):
    server = make_server(session_grace=0.3)
    channel = hello(server.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as data:
        data.bind(("127.0.0.1", 0))
        channel.send({"type": "START", "session": 23, "mode": "blast", "size": 100, "duration_s": 0.3,
                      "rate_bps": 1e6, "client_port": data.getsockname()[1]})
        channel.expect("STARTED")
        start = time.monotonic()
        with pytest.raises(control.PeerError, match="session ended"):
            while time.monotonic() - start < 5:
                channel.send({"type": "STATUS", "session": 23})
                channel.expect("STATUS")
                time.sleep(0.1)
    assert time.monotonic() - start < 2  # 0.3 s granted + 0.3 s grace, not 5 s of STATUS
    channel.close()


def test_an_empty_token_is_refused_by_the_library_and_by_serve():
    with pytest.raises(UserError, match="empty token"):
        Server("127.0.0.1", 0, token="")
    env = dict(os.environ, UDPBENCH_TOKEN="from-the-environment")
    proc = subprocess.run([sys.executable, "-m", "udpbench", "serve", "--bind", "127.0.0.1", "--port", "0",
                           "--token", ""], capture_output=True, text=True, timeout=30, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--token is empty" in proc.stderr, proc.stderr


def test_an_echo_session_bound_to_its_named_client_port(make_server):
    server = make_server()
    with echo_socket(server.port) as own, echo_socket(server.port) as first:
        channel = hello(server.port)
        channel.send({"type": "START", "session": 25, "mode": "echo", "duration_s": 5,
                      "client_port": own.getsockname()[1]})
        channel.expect("STARTED")
        foreign = server.foreign
        first.send(wire.datagram(wire.Kind.ECHO, 25, 1, 64))  # the owner's address, another port
        first.send(wire.datagram(wire.Kind.PROBE, 25, 2, 64))
        assert replies(first) == []
        assert server.foreign == foreign + 2
        own.send(wire.datagram(wire.Kind.ECHO, 25, 3, 64))
        assert len(replies(own)) == 1
        channel.close()


def test_the_server_caps_the_receive_buffer_a_client_asks_for(make_server):
    server = make_server(max_rcvbuf=1 << 20)
    channel = hello(server.port)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as data:
        data.bind(("127.0.0.1", 0))
        channel.send({"type": "START", "session": 26, "mode": "blast", "size": 100, "duration_s": 0.2,
                      "rate_bps": 1e6, "client_port": data.getsockname()[1], "rcvbuf": 200 << 20})
        started = channel.expect("STARTED")
    # The kernel reports twice what it was asked for (socket(7), SO_RCVBUF): at most 2 MiB.
    assert 0 < started["rcvbuf"] <= 2 << 20
    channel.close()


def test_accept_out_of_descriptors_backs_off_instead_of_spinning(make_server, monkeypatch):
    server = make_server()
    calls = []

    def exhausted(listener):
        calls.append(time.monotonic())
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(server, "_accept", exhausted)
    with socket.create_connection(("127.0.0.1", server.port), timeout=5):  # the listener stays readable
        time.sleep(1.0)
    monkeypatch.undo()
    assert 1 <= len(calls) <= 1.0 / server_module.ACCEPT_BACKOFF_S + 5, f"{len(calls)} accept() calls in 1 s"


def test_one_source_cannot_take_every_slot_before_it_authenticates(make_server, wait_for):
    server = make_server(max_sessions=4)
    silent = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        assert wait_for(lambda: server.active_sessions == 2 and server.refused == 2)
        channel = hello(server.port, source="127.0.0.2")  # another source still gets a slot
        channel.close()
    finally:
        for sock in silent:
            sock.close()
    assert wait_for(lambda: server.active_sessions == 0 and not server.unauthenticated)


class CheckedLock:
    """A lock that knows which thread holds it."""

    def __init__(self):
        self._lock = threading.Lock()
        self.owner = None

    def __enter__(self):
        self._lock.acquire()
        self.owner = threading.get_ident()

    def __exit__(self, *exc):
        self.owner = None
        self._lock.release()


def test_shared_counters_change_only_under_the_lock(make_server, monkeypatch, wait_for):
    """Every update of a shared counter, from any thread, is made holding the server's lock."""
    shared = {"refused", "internal_errors", "active_sessions"}
    unlocked = []
    original = Server.__setattr__

    def checked(self, name, value):
        lock = self.__dict__.get("_lock")
        if name in shared and isinstance(lock, CheckedLock) and lock.owner != threading.get_ident():
            unlocked.append(name)
        original(self, name, value)

    monkeypatch.setattr(Server, "__setattr__", checked)
    server = Server("127.0.0.1", 0, max_sessions=1, token="t" * 20)
    server._lock = CheckedLock()
    server.start()
    try:
        first = hello(server.port)  # holds the only slot: the next connection is busy
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as busy:
            assert b"server busy" in busy.recv(1000)
        first.send({"type": "START", "session": 1, "mode": "echo"})  # before AUTH: refused
        with pytest.raises(control.PeerError, match="requires a token"):
            first.recv()
        first.close()
        assert wait_for(lambda: server.active_sessions == 0)
        monkeypatch.setattr(server_module.conversation.ServerConversation, "on_hello",
                            lambda *a: 1 / 0)  # a bug in a handler: an internal error
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with pytest.raises(control.PeerError, match="internal server error"):
            Channel(sock).send({"type": "HELLO", "version": control.PROTOCOL_VERSION}) or Channel(sock).recv()
        sock.close()
        assert wait_for(lambda: server.active_sessions == 0)
        assert (server.refused, server.internal_errors) == (2, 1)
    finally:
        server.close()
    assert unlocked == []
