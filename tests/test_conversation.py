"""The server's conversation without sockets or sleeps: the transition table, the session
deadline, what is granted, and the reply budget, all with ``now`` passed in."""
from __future__ import annotations

import pytest

from udpbench.protocol import auth, control, grant
from udpbench.protocol.conversation import TRANSITIONS, ServerConversation, ServerState, next_server_state

HELLO = {"type": "HELLO", "version": control.PROTOCOL_VERSION}


class FakeSessions:
    """Records what the conversation asked for; the sockets are the adapter's business."""

    def __init__(self):
        self.calls = []

    def open_blast(self, start, granted):
        self.calls.append(("open_blast", start["session"], granted))
        return {"rcvbuf": 4096}

    def open_echo(self, start, granted):
        self.calls.append(("open_echo", start["session"], granted))

    def report(self, session):
        self.calls.append(("report", session))
        return {"type": "REPORT", "session": session}

    def status(self, session):
        self.calls.append(("status", session))
        return {"type": "STATUS", "session": session}


def blast_start(session=7, duration=1.0, rate=0.0, **extra):
    return {"type": "START", "session": session, "mode": "blast", "size": 100, "duration_s": duration,
            "rate_bps": rate, "client_port": 5000, **extra}


def ready(limits=None, now=0.0, **kwargs):
    talk = ServerConversation(FakeSessions(), limits or grant.Limits(), now, **kwargs)
    talk.receive(HELLO, now)
    return talk


def test_every_message_out_of_its_state_is_refused_by_the_table():
    kinds = [k for k in control.SCHEMA if k not in ("ERROR", "STARTED", "REPORT", "AUTH_OK")]
    for state in ServerState:
        for kind in kinds:
            if kind in TRANSITIONS[state]:
                continue
            with pytest.raises(control.ProtocolError):
                next_server_state(state, {"type": kind})
    assert next_server_state(ServerState.AWAIT_HELLO, HELLO, auth_required=True) is ServerState.AWAIT_AUTH


def test_a_token_server_asks_for_auth_and_accepts_a_correct_proof():
    talk = ServerConversation(FakeSessions(), grant.Limits(), 0.0, token="s3cret", nonce="n" * 32)
    [hello] = talk.receive(HELLO, 0.0)
    assert hello["auth"] == auth.AUTH_METHOD and talk.state is ServerState.AWAIT_AUTH
    with pytest.raises(control.ProtocolError, match="requires a token"):
        talk.receive(blast_start(), 0.1)
    assert talk.refused
    talk = ServerConversation(FakeSessions(), grant.Limits(), 0.0, token="s3cret", nonce="n" * 32)
    talk.receive(HELLO, 0.0)
    mac = auth.auth_mac("s3cret", "client", "n" * 32, "c" * 32)
    [ok] = talk.receive({"type": "AUTH", "nonce": "c" * 32, "mac": mac}, 0.1)
    assert ok["mac"] == auth.auth_mac("s3cret", "server", "n" * 32, "c" * 32)
    assert talk.state is ServerState.READY and not talk.refused


def test_an_empty_token_is_refused():
    with pytest.raises(ValueError, match="empty token"):
        ServerConversation(FakeSessions(), grant.Limits(), 0.0, token="")


def test_the_handshake_has_one_deadline_however_it_dribbles():
    talk = ServerConversation(FakeSessions(), grant.Limits(), 100.0, handshake_timeout=5.0)
    assert talk.timeout(103.0) == 2.0
    assert talk.timeout(106.0) == 0.0


def test_a_session_ends_at_granted_duration_plus_grace_whatever_the_client_sends():
    talk = ready(grant.Limits(max_duration=2.0, session_grace=10.0), now=0.0)
    [started] = talk.receive(blast_start(duration=30.0), now=1.0)
    assert started["granted"]["duration_s"] == 2.0 and started["clamped"] == ["duration_s"]
    # Ends at 1 + 2 + 10 = 13 s. STATUS frames at 5 s and 12 s do not move that.
    assert talk.timeout(1.0) == 12.0
    talk.receive({"type": "STATUS", "session": 7}, 5.0)
    talk.receive({"type": "STATUS", "session": 7}, 12.0)
    assert talk.timeout(12.0) == 1.0
    assert talk.timeout(13.5) == 0.0
    assert "granted duration" in talk.expiry_reason()


def test_an_echo_duration_is_clamped_not_refused():
    talk = ready(grant.Limits(max_duration=5.0, session_grace=1.0))
    [started] = talk.receive({"type": "START", "session": 9, "mode": "echo", "duration_s": 11.0}, 0.0)
    assert started["granted"] == {"duration_s": 5.0} and started["clamped"] == ["duration_s"]
    assert talk.timeout(0.0) == 6.0
    talk = ready(grant.Limits(max_duration=5.0))
    [started] = talk.receive({"type": "START", "session": 9, "mode": "echo"}, 0.0)  # path-MTU search
    assert started["granted"] == {"duration_s": 5.0} and started["clamped"] == []
    with pytest.raises(control.ProtocolError, match="not a positive number"):
        ready().receive({"type": "START", "session": 9, "mode": "echo", "duration_s": -1}, 0.0)


def test_status_of_an_echo_session_and_stop_of_another_session_are_refused():
    talk = ready()
    talk.receive({"type": "START", "session": 9, "mode": "echo", "duration_s": 1}, 0.0)
    with pytest.raises(control.ProtocolError, match="not a running blast"):
        talk.receive({"type": "STATUS", "session": 9}, 0.1)
    talk = ready()
    talk.receive(blast_start(session=3), 0.0)
    with pytest.raises(control.ProtocolError, match="not running"):
        talk.receive({"type": "STOP", "session": 4}, 0.1)
    [report] = talk.receive({"type": "STOP", "session": 3}, 0.2)
    assert report == {"type": "REPORT", "session": 3} and talk.state is ServerState.READY
    assert talk.timeout(0.2) == talk.idle_timeout


@pytest.mark.parametrize("asked, cap, expected", [
    (256 << 20, 32 << 20, 32 << 20),  # the client's wish, cut to the server's cap
    (1 << 20, 32 << 20, 1 << 20),
    (None, 32 << 20, 8 << 20),  # none asked: the default
    (None, 4 << 20, 4 << 20),  # the default is capped too
    (1 << 40, 32 << 20, 8 << 20),  # nonsense: the default
])
def test_the_receive_buffer_is_capped(asked, cap, expected):
    assert grant.receive_buffer(asked, grant.Limits(max_rcvbuf=cap)) == expected


def test_the_reply_budget_by_hand():
    # 10 Mbit/s saves up 0.1 s: 1e6 bits, 125 replies of 1000 bytes; then 10 Mbit/s refills
    # 1e5 bits (12.5 replies) in 10 ms.
    budget = grant.ReplyBudget(10e6, now=0.0)
    assert sum(budget.take(1000, 0.0) for _ in range(200)) == 125
    assert sum(budget.take(1000, 0.01) for _ in range(200)) == 12
    # A budget slower than one largest datagram still answers one.
    slow = grant.ReplyBudget(8.0, now=0.0)
    assert slow.take(65535, 0.0) and not slow.take(1, 0.0)
    # Without --max-rate the fixed budget holds: 10000 replies/s saved up for 0.1 s is 1000.
    fixed = grant.ReplyBudget(0.0, now=0.0)
    assert sum(fixed.take(40, 0.0) for _ in range(5000)) == 1000
