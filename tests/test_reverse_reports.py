"""A reverse run's REPORT is checked like a forward one's: the server's own sending counts too."""
from __future__ import annotations

import socket

import pytest

import udpbench
from udpbench.errors import MeasurementError
from udpbench.protocol.report import check_sender_counts
from udpbench.transport.client import Client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("tx, field", [
    ({"sent": "many", "elapsed_ns": 5}, "'sent'"),
    ({"sent": -3, "elapsed_ns": 5}, "'sent'"),
    ({"sent": 10}, "'elapsed_ns'"),
    ({"sent": 10, "elapsed_ns": 5, "errors": {"EMSGSIZE": 1}}, "'errors'"),
    ({"sent": 10, "elapsed_ns": 5, "gap_max_ns": float("inf")}, "'gap_max_ns'"),
    ({"sent": 10, "elapsed_ns": 5, "syscalls": -1}, "'syscalls'"),
    ([1, 2], "not a record"),
])
def test_broken_sending_counts_are_named(tx, field):
    with pytest.raises(MeasurementError, match="broken report") as caught:
        check_sender_counts(tx)
    assert field in str(caught.value)


def test_sound_sending_counts_pass():
    tx = {"sent": 10, "elapsed_ns": 5_000, "errors": {"90": 2}, "gap_max_ns": 12.5, "interrupt": None}
    assert check_sender_counts(tx) is tx


@pytest.mark.parametrize("tamper, words", [
    (lambda r: r["tx"].update(sent="many"), "'sent'"),
    (lambda r: r["tx"].update(sent=1), "distinct ones arrived"),   # fewer sent than arrived
    (lambda r: r.update(session=12345), "session"),
])
def test_a_tampered_reverse_report_ends_the_measurement_in_one_error(monkeypatch, tamper, words):
    """A real reverse run against a real server; only its REPORT is altered on the way in."""
    real = Client._converse

    def converse(self, msg, answer):
        reply = real(self, msg, answer)
        if answer == "REPORT" and isinstance(reply.get("tx"), dict):
            tamper(reply)
        return reply

    monkeypatch.setattr(Client, "_converse", converse)
    with pytest.raises(MeasurementError, match="broken report") as caught:
        udpbench.blast("127.0.0.1", port=_free_port(), size=200, duration=0.3, rate=2e6, direction="reverse")
    assert words in str(caught.value)
