"""Clock samples over the control channel (CLOCK, CLOCK_REPLY): the table, and a server whose
clock is made to read 5 ms ahead, so that the estimate and the correction can be checked."""
from __future__ import annotations

import pytest

from udpbench.protocol import clock, control, grant
from udpbench.protocol.conversation import ServerConversation, ServerState
from udpbench.transport import clock_samples
from udpbench.transport.client import Client
from udpbench.transport.server_connection import ConnectionSessions
from udpbench.transport.session import ReceiverSession

HELLO = {"type": "HELLO", "version": control.PROTOCOL_VERSION}
AHEAD_NS = 5_000_000


class FixedClock:
    def __init__(self, times):
        self.times = list(times)

    def clock_ns(self):
        return self.times.pop(0)


def test_clock_reply_carries_the_servers_two_times_and_stays_ready():
    talk = ServerConversation(FixedClock([1000, 1040]), grant.Limits(), 0.0)
    [hello] = talk.receive(HELLO, 0.0)
    assert "clock" in hello["features"] and "reverse" in hello["features"]
    [reply] = talk.receive({"type": "CLOCK", "t1": 7}, 1.0)
    assert reply == {"type": "CLOCK_REPLY", "t1": 7, "t2": 1000, "t3": 1040}
    assert talk.state is ServerState.READY


def test_clock_during_a_handshake_is_refused():
    talk = ServerConversation(FixedClock([]), grant.Limits(), 0.0, token="s3cret")
    talk.receive(HELLO, 0.0)
    with pytest.raises(control.ProtocolError):
        talk.receive({"type": "CLOCK", "t1": 7}, 0.0)


def test_a_server_forbidding_reverse_does_not_list_it():
    talk = ServerConversation(FixedClock([]), grant.Limits(allow_reverse=False), 0.0)
    [hello] = talk.receive(HELLO, 0.0)
    assert "clock" in hello["features"] and "reverse" not in hello["features"]


def test_a_server_clock_5_ms_ahead_is_estimated_and_taken_out(loopback_server, monkeypatch):
    """Loopback shares one clock, so the true one-way delay is well under 1 ms. With the
    server's CLOCK answers 5 ms ahead and its REPORT claiming another host, the row must be
    ``estimated`` with an offset of 5 ms, and the correction must come out as the true delay
    less 5 ms (the kernel's receive stamps were not shifted): the sign of the correction."""
    with Client("127.0.0.1", loopback_server.port) as client:
        same = client.blast(500, 0.3, 5e6)
    assert same.owd_basis == "same-host" and same.clock_error_us == 0
    assert 0 < same.owd_p50_us < 1000

    import time
    monkeypatch.setattr(ConnectionSessions, "clock_ns", lambda self: time.time_ns() + AHEAD_NS)
    real_close = ReceiverSession.close

    def elsewhere(self, drain_s=0.0):
        report = real_close(self, drain_s)
        report["clock_domain"] = "another-host"
        return report

    monkeypatch.setattr(ReceiverSession, "close", elsewhere)
    with Client("127.0.0.1", loopback_server.port) as client:
        before = clock_samples.take(client)
        row = client.blast(500, 0.3, 5e6)
    assert abs(before.offset_ns - AHEAD_NS) <= before.error_ns
    assert before.error_ns < clock.MAX_USEFUL_ERROR_NS
    x = row.as_dict()
    assert x["owd_basis"] == "estimated", x["owd_note"]
    assert abs(x["clock_offset_us"] - AHEAD_NS / 1e3) <= x["clock_error_us"]
    # True delay (0..1 ms) less the 5 ms the estimate believed the clocks apart.
    assert -AHEAD_NS / 1e3 - x["clock_error_us"] < x["owd_p50_us"] < -AHEAD_NS / 1e3 + 1000 + x["clock_error_us"]
    assert abs(x["clock_drift_ppm"]) < 1e4  # one clock: the two estimates differ by their noise only
