"""The client checks what a server reports, as the server checks what a client starts.

A fake server (hand-written frames on a loopback socket) answers a real client's blast with a
REPORT of our choosing: the client must refuse a broken or hostile one with a MeasurementError
naming the field, and fail the row when the server says its receiver failed (issue 11, section 2).
"""
from __future__ import annotations

import socket
import threading

import pytest

from udpbench import cli
from udpbench.errors import MeasurementError
from udpbench.protocol import control
from udpbench.transport import session as server_session
from udpbench.transport.channel import Channel
from udpbench.transport.client import Client
from udpbench.transport.server import Server

GOOD = {"received": 3, "duplicates": 0, "reordered": 0, "late": 0, "foreign": 0, "socket_drops": 0,
        "jitter_ms": 0.0, "kernel": {"Udp.RcvbufErrors": 0}, "drain_s": 0.1}


class FakeServer:
    """Accepts one control connection, greets, grants any START, and answers STOP with
    ``make_report(session, sent)``. Sends no UDP: its data port is the client's business."""

    def __init__(self, make_report):
        self.make_report = make_report
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(10)
        conn, _ = self.listener.accept()
        channel = Channel(conn, timeout=10)
        try:
            channel.expect("HELLO")
            channel.send({"type": "HELLO", "version": control.PROTOCOL_VERSION, "server": "fake"})
            while True:
                msg = channel.recv()
                if msg["type"] == "START":
                    channel.send({"type": "STARTED", "session": msg["session"], "data_port": self.port})
                elif msg["type"] == "STOP":
                    report = {"type": "REPORT", "session": msg["session"]}
                    report.update(self.make_report(msg["session"], msg.get("sent", 0)))
                    channel.send(report)
                else:
                    return
        except (OSError, control.ProtocolError):
            return
        finally:
            channel.close()

    def close(self) -> None:
        self.listener.close()
        self.thread.join(timeout=5)


def blast_against(make_report):
    server = FakeServer(make_report)
    try:
        with Client("127.0.0.1", server.port, token="") as client:
            return client.blast(200, 0.05, 1e6)
    finally:
        server.close()


@pytest.mark.parametrize("change, words", [
    ({"received": "many"}, "'received' is not a whole number of at least 0"),
    ({"received": -5}, "'received' is not a whole number of at least 0"),
    ({"duplicates": 1.5}, "'duplicates' is not a whole number"),
    ({"jitter_ms": None}, "'jitter_ms' is not a finite number"),
    ({"jitter_ms": -1.0}, "'jitter_ms' is not a finite number"),
    ({"socket_drops": -1}, "'socket_drops' is not a whole number"),
    ({"kernel": ["Udp.InErrors"]}, "'kernel' is not a record"),
    ({"kernel": {"Udp.InErrors": "x"}}, "'kernel' holds a value"),
    ({"received_error": 1, "receive_error": 7}, "'receive_error' is not text"),
    ({"received": True}, "'received' is not a whole number"),
], ids=["text", "negative", "fraction", "null-jitter", "negative-jitter", "negative-drops", "kernel-list",
        "kernel-text", "error-number", "bool"])
def test_a_broken_report_is_refused_naming_the_field(change, words):
    with pytest.raises(MeasurementError, match="sent a broken report") as caught:
        blast_against(lambda session, sent: {**GOOD, **change})
    assert words in str(caught.value)


def test_a_report_for_another_session_is_refused():
    with pytest.raises(MeasurementError, match="is for session .*not this one"):
        blast_against(lambda session, sent: {**GOOD, "session": session ^ 1})


def test_more_received_than_sent_is_refused():
    with pytest.raises(MeasurementError, match=r"counts \d+ datagrams received of \d+ sent"):
        blast_against(lambda session, sent: {**GOOD, "received": sent + 1})


def test_a_sane_report_from_the_fake_server_makes_a_row():
    # the control case: the same fake server with plausible counts is accepted as it stands
    row = blast_against(lambda session, sent: {**GOOD, "received": sent - 1})
    assert row.lost == 1 and row.sent >= 1


def test_a_receiver_that_failed_fails_the_row():
    with pytest.raises(MeasurementError, match=r"its receiver failed \(MemoryError: boom\)"):
        blast_against(lambda session, sent: {**GOOD, "received": 0, "receive_error": "MemoryError: boom"})


def test_a_real_servers_crashed_receiver_is_reported_not_taken_for_loss(monkeypatch, capsys):
    """The server's receiver thread dies at once; before, the row showed every datagram lost."""
    def crash(self):
        self.failure = RuntimeError("receiver thread crashed")

    monkeypatch.setattr(server_session.ReceiverSession, "_receive", crash)
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    with Server("127.0.0.1", 0) as server:
        with Client("127.0.0.1", server.port, token="") as client:
            with pytest.raises(MeasurementError, match="receiver failed .*receiver thread crashed"):
                client.blast(200, 0.05, 1e6)
        code = cli.main(["blast", "127.0.0.1", "--port", str(server.port), "--size", "200",
                         "--duration", "0.05", "--rate", "1M"])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "receiver failed" in err and "Traceback" not in err
