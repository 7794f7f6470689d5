"""The control channel: length-prefixed JSON frames over TCP, and the protocol's state machines.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON, an object
with a string ``type``. Frames larger than ``MAX_FRAME`` are refused before they are read.

Conversation (client C, server S)::

    C HELLO {version}                S HELLO {version, server, nonce}
    C START {session, mode, ...}     S STARTED {data_port, rcvbuf}
    C STOP {sent}                    S REPORT {received, ...}
      ... more START/STOP rounds ...
    C STATUS {session}               S STATUS {received, highest_seq, ...}   (while RUNNING, any number)
    C BYE                            (close)

Anything that does not fit the state ends the conversation with ``ERROR {message}``.
"""
from __future__ import annotations

import enum
import json
import socket
import struct

PROTOCOL_VERSION = 1
MAX_FRAME = 64 * 1024
LENGTH = struct.Struct("!I")


class ProtocolError(Exception):
    """The peer sent something that breaks the protocol: bad framing, JSON, type or state."""


class PeerError(Exception):
    """The peer answered with an ERROR frame; the message is the peer's."""


class PeerClosed(ProtocolError):
    """The peer closed the connection."""


# Required fields and their types for each message. Extra fields are allowed (newer peers).
_NUMBER = (int, float)
SCHEMA: dict[str, dict[str, type | tuple]] = {
    "HELLO": {"version": int},
    "START": {"session": int, "mode": str},
    "STARTED": {"session": int},
    "STOP": {"session": int},
    # C asks for, S answers with, the receiver's counts so far (interim reports, `blast --interval`)
    "STATUS": {"session": int},
    "REPORT": {"session": int},
    "BYE": {},
    "ERROR": {"message": str},
}
# Fields of START in "blast" mode: the receiver needs them to count and to check limits.
BLAST_FIELDS = {"size": int, "duration_s": _NUMBER, "rate_bps": _NUMBER, "client_port": int}
MODES = ("blast", "echo")


def _check_fields(msg: dict, fields: dict) -> None:
    for key, kind in fields.items():
        if key not in msg:
            raise ProtocolError(f"{msg['type']} frame lacks '{key}'")
        value = msg[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ProtocolError(f"{msg['type']} field '{key}' has the wrong type")


def decode(payload: bytes) -> dict:
    """Parse one frame's payload into a checked message dict."""
    try:
        msg = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"control frame is not JSON: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError("control frame is not an object with a 'type'")
    kind = msg["type"]
    if kind not in SCHEMA:
        raise ProtocolError(f"unknown control message {kind[:40]!r}")
    _check_fields(msg, SCHEMA[kind])
    if kind == "START":
        if msg["mode"] not in MODES:
            raise ProtocolError(f"unknown START mode {msg['mode'][:40]!r}")
        if msg["mode"] == "blast":
            _check_fields(msg, BLAST_FIELDS)
    if "session" in msg and not 0 <= msg["session"] < 2**64:
        raise ProtocolError("session id out of range")
    return msg


def encode(msg: dict) -> bytes:
    payload = json.dumps(msg, separators=(",", ":")).encode()
    if len(payload) > MAX_FRAME:
        raise ProtocolError(f"control frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return LENGTH.pack(len(payload)) + payload


class Channel:
    """One end of a control connection: whole frames in, whole frames out, with timeouts."""

    def __init__(self, sock: socket.socket, timeout: float | None = 10.0):
        self.sock = sock
        self.timeout = timeout
        sock.settimeout(timeout)
        self.peer = sock.getpeername()

    def _read_exactly(self, n: int) -> bytes:
        chunks = []
        while n:
            chunk = self.sock.recv(min(n, 65536))
            if not chunk:
                raise PeerClosed("control connection closed by peer")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def send(self, msg: dict) -> None:
        self.sock.sendall(encode(msg))

    def recv(self, timeout: float | None = ...) -> dict:
        """The next message; raises PeerError for an ERROR frame, TimeoutError, ProtocolError."""
        if timeout is not ...:
            self.sock.settimeout(timeout)
        try:
            (length,) = LENGTH.unpack(self._read_exactly(LENGTH.size))
            if length > MAX_FRAME:
                raise ProtocolError(f"control frame of {length} bytes exceeds the {MAX_FRAME}-byte cap")
            msg = decode(self._read_exactly(length))
        except socket.timeout:
            raise TimeoutError("no answer on the control channel") from None
        finally:
            if timeout is not ...:
                self.sock.settimeout(self.timeout)
        if msg["type"] == "ERROR":
            raise PeerError(msg["message"])
        return msg

    def expect(self, kind: str, timeout: float | None = ...) -> dict:
        msg = self.recv(timeout)
        if msg["type"] != kind:
            raise ProtocolError(f"expected {kind}, got {msg['type']}")
        return msg

    def error(self, message: str) -> None:
        """Tell the peer why the conversation ends; ignore a peer that is already gone."""
        try:
            self.send({"type": "ERROR", "message": message[:1000]})
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class ServerState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    READY = "ready"  # between measurements
    RUNNING = "running"  # a session's datagrams are flowing
    CLOSED = "closed"


# Which client messages each server state accepts, and the state each leads to.
SERVER_TRANSITIONS: dict[ServerState, dict[str, ServerState]] = {
    ServerState.AWAIT_HELLO: {"HELLO": ServerState.READY},
    ServerState.READY: {"START": ServerState.RUNNING, "BYE": ServerState.CLOSED},
    ServerState.RUNNING: {"STOP": ServerState.READY, "BYE": ServerState.CLOSED,
                          "STATUS": ServerState.RUNNING},
    ServerState.CLOSED: {},
}


def next_server_state(state: ServerState, msg: dict) -> ServerState:
    allowed = SERVER_TRANSITIONS[state]
    if msg["type"] not in allowed:
        expected = " or ".join(allowed) or "nothing"
        raise ProtocolError(f"{msg['type']} is out of order: the server expected {expected}")
    return allowed[msg["type"]]
