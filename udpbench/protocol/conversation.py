"""The server's side of a control conversation, as a state machine without I/O.

``TRANSITIONS`` is the single source of truth for what may follow what: for each state, the
client messages it accepts, the handler that answers each one and the state it leads to
(the model is h11's ``_state.py``). ``ServerConversation.receive(msg, now)`` looks the
message up, runs its handler and returns the frames to send back.

What this module does not know: sockets, threads, clocks. The time comes in as ``now``;
opening, reading and ending a session's sockets is the ``Sessions`` object's job, which the
transport adapter (``transport/server.py``) provides.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from udpbench._version import __version__
from udpbench.protocol import auth, grant
from udpbench.protocol.control import FEATURE_CLOCK, FEATURE_REVERSE, FEATURE_TRACE, PROTOCOL_VERSION, ProtocolError

HANDSHAKE_TIMEOUT_S = 5.0  # HELLO and AUTH: an unauthenticated connection holds a slot this long
IDLE_TIMEOUT_S = 120.0  # between measurements: a sweep's other hosts wait while one host runs


class ServerState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    AWAIT_AUTH = "await-auth"  # the server has a token: nothing but AUTH until the client proves it
    READY = "ready"  # between measurements
    RUNNING = "running"  # a session is live: a blast's datagrams flow, or echo requests are answered
    CLOSED = "closed"


HANDSHAKE_STATES = (ServerState.AWAIT_HELLO, ServerState.AWAIT_AUTH)


@dataclass(frozen=True)
class Rule:
    handler: str  # the ServerConversation method that answers the message
    next_state: ServerState
    with_token: ServerState | None = None  # where a server that holds a token goes instead


S = ServerState
TRANSITIONS: dict[ServerState, dict[str, Rule]] = {
    S.AWAIT_HELLO: {"HELLO": Rule("on_hello", S.READY, with_token=S.AWAIT_AUTH)},
    S.AWAIT_AUTH: {"AUTH": Rule("on_auth", S.READY), "BYE": Rule("on_bye_without_token", S.CLOSED)},
    S.READY: {"START": Rule("on_start", S.RUNNING), "CLOCK": Rule("on_clock", S.READY),
              "TRACE": Rule("on_trace", S.READY), "BYE": Rule("on_bye", S.CLOSED)},
    S.RUNNING: {"STOP": Rule("on_stop", S.READY), "STATUS": Rule("on_status", S.RUNNING),
                "BYE": Rule("on_bye", S.CLOSED)},
    S.CLOSED: {},
}
del S


def rule_for(state: ServerState, msg: dict) -> Rule:
    """The rule for ``msg`` in ``state``, or the ProtocolError that ends the conversation."""
    rule = TRANSITIONS[state].get(msg["type"])
    if rule is None:
        if state is ServerState.AWAIT_AUTH:
            raise ProtocolError(auth.NEED_TOKEN)
        expected = " or ".join(TRANSITIONS[state]) or "nothing"
        raise ProtocolError(f"{msg['type']} is out of order: the server expected {expected}")
    return rule


def next_server_state(state: ServerState, msg: dict, auth_required: bool = False) -> ServerState:
    """The state after ``msg``, read from the table; raises ProtocolError for a message out of order."""
    rule = rule_for(state, msg)
    return rule.with_token if auth_required and rule.with_token else rule.next_state


class AuthFailed(ProtocolError):
    """A wrong proof: the adapter pauses before it answers, to slow guessing."""


class Sessions(Protocol):
    """The sessions of one control connection, as the transport adapter keeps them."""

    def open_blast(self, start: dict, granted: dict) -> dict:
        """Open the receiving socket; returns STARTED's extra fields (``rcvbuf``)."""

    def open_reverse(self, start: dict, granted: dict) -> dict:
        """Open the sending socket toward the client; returns STARTED's extra fields (``nonce``).
        Nothing is sent before the client echoes the nonce from its data socket."""

    def open_echo(self, start: dict, granted: dict) -> None:
        """Start answering the session's probes and echo requests; ProtocolError if the id is taken."""

    def report(self, session: int) -> dict:
        """End the session and return its REPORT frame."""

    def status(self, session: int) -> dict:
        """The running blast's counts so far (a STATUS frame)."""

    def trace_chunk(self, session: int, offset: int) -> dict:
        """A TRACE_DATA frame: the kept trace of ``session`` from entry ``offset``; ProtocolError
        if no trace of that session is kept (it is kept from its REPORT to the next START)."""

    def clock_ns(self) -> int:
        """This host's CLOCK_REALTIME in ns: the clock datagrams are stamped with."""


class ServerConversation:
    """One control connection, seen from the server: messages in, frames out, ``now`` given.

    ``notes`` collects lines for the server's log and ``refused`` says whether the peer was
    turned away before it authenticated; the adapter reads both.
    """

    def __init__(self, sessions: Sessions, limits: grant.Limits, now: float, *, token: str | None = None,
                 port: int = 0, peer: str = "", nonce: str | None = None, handshake_timeout: float = HANDSHAKE_TIMEOUT_S,
                 idle_timeout: float = IDLE_TIMEOUT_S):
        if token == "":
            raise ValueError(auth.EMPTY_TOKEN)
        self.sessions = sessions
        self.limits = limits
        self.token = token
        self.port = port
        self.peer = peer  # the client's address, for log lines only
        self.nonce = nonce or auth.new_nonce()
        self.idle_timeout = idle_timeout
        self.state = ServerState.AWAIT_HELLO
        self.session: int | None = None  # the live session's id
        self.mode: str | None = None  # "blast" or "echo"
        self.deadline = now + handshake_timeout  # the handshake must finish by then, whatever arrives
        self.notes: list[str] = []
        self.refused = False

    def timeout(self, now: float) -> float:
        """Seconds the adapter may wait for the next frame (0: the conversation is over)."""
        return max(0.0, self.deadline - now)

    def expiry_reason(self) -> str:
        """Why the conversation ends when ``timeout`` reaches 0: the ERROR message."""
        if self.session is not None:
            return (f"session ended: its granted duration and the {self.limits.session_grace:g} s grace "
                    f"are over")
        return "control channel silent for too long: session ended"

    def receive(self, msg: dict, now: float) -> list[dict]:
        """Answer one message from the client: the frames to send, in order."""
        try:
            rule = rule_for(self.state, msg)
            replies = getattr(self, rule.handler)(msg, now)
        except ProtocolError as exc:
            if self.state in HANDSHAKE_STATES:
                self.refused = True
                if str(exc) == auth.NEED_TOKEN:
                    self.notes.append(f"refused {self.peer}: no token")
            raise
        self.state = rule.with_token if self.token and rule.with_token else rule.next_state
        if self.state is ServerState.READY:
            self.deadline = now + self.idle_timeout
        return replies

    # --- one handler per message (named in TRANSITIONS) ----------------------------------------

    def on_hello(self, msg: dict, now: float) -> list[dict]:
        if msg["version"] != PROTOCOL_VERSION:
            raise ProtocolError(f"client speaks protocol {msg['version']}, this server speaks {PROTOCOL_VERSION}")
        features = [FEATURE_CLOCK, FEATURE_TRACE] + ([FEATURE_REVERSE] if self.limits.allow_reverse else [])
        hello = {"type": "HELLO", "version": PROTOCOL_VERSION, "server": f"udpbench {__version__}",
                 "nonce": self.nonce, "port": self.port, "features": features}
        if self.token:
            hello["auth"] = auth.AUTH_METHOD
        return [hello]

    def on_auth(self, msg: dict, now: float) -> list[dict]:
        if not (auth.valid_nonce(msg["nonce"])
                and auth.check_mac(self.token, "client", self.nonce, msg["nonce"], msg["mac"])):
            self.notes.append(f"refused {self.peer}: {auth.AUTH_FAILED}")
            raise AuthFailed(auth.AUTH_FAILED)
        return [{"type": "AUTH_OK", "mac": auth.auth_mac(self.token, "server", self.nonce, msg["nonce"])}]

    def on_bye_without_token(self, msg: dict, now: float) -> list[dict]:
        self.refused = True
        self.notes.append(f"refused {self.peer}: the client has no token")
        return []

    def on_bye(self, msg: dict, now: float) -> list[dict]:
        return []  # a live session is closed by the adapter, as for any end of the connection

    def on_start(self, msg: dict, now: float) -> list[dict]:
        session = msg["session"]
        if msg["mode"] == "blast":
            reverse = msg.get("direction") == "reverse"
            if reverse and not self.limits.allow_reverse:
                raise ProtocolError(grant.REVERSE_FORBIDDEN)
            granted, clamped = grant.grant_blast(msg, self.limits)
            extra = (self.sessions.open_reverse if reverse else self.sessions.open_blast)(msg, granted)
            note = f" (clamped: {', '.join(clamped)})" if clamped else ""
            what = "sent to" if reverse else "from"
            self.notes.append(f"session {session:016x} {what} {self.peer}: {msg['size']} B for "
                              f"{granted['duration_s']:g} s{note}")
        else:
            granted, clamped = grant.grant_echo(msg, self.limits)
            self.sessions.open_echo(msg, granted)
            extra = {}
        self.session, self.mode = session, msg["mode"]
        # The session ends at its granted duration plus the grace, whatever the client sends.
        self.deadline = now + granted["duration_s"] + self.limits.session_grace
        return [{"type": "STARTED", "session": session, "data_port": self.port, **extra,
                 "granted": granted, "clamped": clamped}]

    def on_clock(self, msg: dict, now: float) -> list[dict]:
        # t2 and t3 are read here, not when the frame arrived: the turnaround between them is
        # taken out of the round trip (protocol/clock.py), so only their difference matters.
        t2 = self.sessions.clock_ns()
        return [{"type": "CLOCK_REPLY", "t1": msg["t1"], "t2": t2, "t3": self.sessions.clock_ns()}]

    def on_stop(self, msg: dict, now: float) -> list[dict]:
        if msg["session"] != self.session:
            raise ProtocolError("STOP names a session that is not running")
        report = self.sessions.report(self.session)
        self._forget()
        return [report]

    def on_trace(self, msg: dict, now: float) -> list[dict]:
        return [self.sessions.trace_chunk(msg["session"], msg["offset"])]

    def on_status(self, msg: dict, now: float) -> list[dict]:
        if self.mode != "blast" or msg["session"] != self.session:
            raise ProtocolError("STATUS names a session that is not a running blast")
        return [self.sessions.status(self.session)]

    def _forget(self) -> None:
        self.session = self.mode = None
