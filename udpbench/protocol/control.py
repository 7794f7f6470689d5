"""The control channel: length-prefixed JSON frames over TCP, and the protocol's state machines.

A frame is a 4-byte big-endian length followed by that many bytes of UTF-8 JSON, an object
with a string ``type``. Frames larger than ``MAX_FRAME`` are refused before they are read.

Conversation (client C, server S)::

    C HELLO {version}                S HELLO {version, server, nonce[, auth]}
    C AUTH {nonce, mac}              S AUTH_OK {mac}         (only when the server has a token)
    C START {session, mode, ...}     S STARTED {data_port, rcvbuf, granted, clamped}
    C STOP {sent}                    S REPORT {received, ...}
      ... more START/STOP rounds ...
    C STATUS {session}               S STATUS {received, highest_seq, ...}   (while RUNNING, any number)
    C BYE                            (close)

Anything that does not fit the state ends the conversation with ``ERROR {message}``.

Authentication: a server started with a token announces ``auth: "hmac-sha256"`` in its HELLO.
The client answers with its own nonce and HMAC-SHA256(token, client label, both nonces); the
server checks it with ``hmac.compare_digest`` and proves it knows the token too, with the
server label. The token itself never crosses the network, and the server's fresh nonce makes
a recorded AUTH useless on another connection.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
import os
import secrets
import socket
import struct
import time

from udpbench.errors import UserError

PROTOCOL_VERSION = 1
MAX_FRAME = 64 * 1024
LENGTH = struct.Struct("!I")
AUTH_METHOD = "hmac-sha256"
TOKEN_ENV = "UDPBENCH_TOKEN"
NONCE_BYTES = 16
MAX_NONCE_CHARS = 128


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
    "AUTH": {"nonce": str, "mac": str},
    "AUTH_OK": {"mac": str},
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
    except RecursionError:  # "[[[[..." nested deeper than the parser's stack, within 64 KiB
        raise ProtocolError("control frame is nested too deeply") from None
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
            if not 0 < msg["client_port"] <= 65535:
                raise ProtocolError("START client_port is outside 1-65535")
    session = msg.get("session")
    if "session" in msg and (isinstance(session, bool) or not isinstance(session, int)
                             or not 0 <= session < 2**64):
        raise ProtocolError("session id out of range: it is an integer in 0 to 2**64-1")
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

    def _read_exactly(self, n: int, deadline: float | None) -> bytes:
        chunks = []
        while n:
            if deadline is not None:
                # The timeout bounds the whole frame, not each recv: a peer dribbling one
                # byte at a time cannot hold a session slot forever.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise socket.timeout
                self.sock.settimeout(remaining)
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
        limit = self.timeout if timeout is ... else timeout
        deadline = None if limit is None else time.monotonic() + limit
        try:
            (length,) = LENGTH.unpack(self._read_exactly(LENGTH.size, deadline))
            if length > MAX_FRAME:
                raise ProtocolError(f"control frame of {length} bytes exceeds the {MAX_FRAME}-byte cap")
            msg = decode(self._read_exactly(length, deadline))
        except socket.timeout:
            raise TimeoutError("no answer on the control channel") from None
        finally:
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


# --- authentication ------------------------------------------------------------------------

def resolve_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The shared secret: ``--token``, else the first line of ``--token-file``, else $UDPBENCH_TOKEN.

    An empty string means no token.
    """
    if token is None and token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.readline().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise UserError(f"cannot read token file {token_file}: {getattr(exc, 'strerror', None) or exc}") from None
        if not token:
            raise UserError(f"token file {token_file} is empty")
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return token or None


def new_nonce() -> str:
    return secrets.token_hex(NONCE_BYTES)


def auth_mac(token: str, role: str, server_nonce: str, client_nonce: str) -> str:
    """HMAC-SHA256 over a role label and both nonces, keyed with the token (hex).

    The role label keeps the client's proof from being reflected back as the server's.
    """
    message = "\0".join(("udpbench-auth-v1", role, server_nonce, client_nonce)).encode()
    return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()


def check_mac(token: str, role: str, server_nonce: str, client_nonce: str, mac: str) -> bool:
    expected = auth_mac(token, role, server_nonce, client_nonce)
    return hmac.compare_digest(expected.encode(), mac.encode("utf-8", "replace"))


def valid_nonce(nonce) -> bool:
    return isinstance(nonce, str) and 16 <= len(nonce) <= MAX_NONCE_CHARS


class ServerState(enum.Enum):
    AWAIT_HELLO = "await-hello"
    AWAIT_AUTH = "await-auth"  # the server has a token: nothing but AUTH until the client proves it
    READY = "ready"  # between measurements
    RUNNING = "running"  # a session's datagrams are flowing
    CLOSED = "closed"


# Which client messages each server state accepts, and the state each leads to.
SERVER_TRANSITIONS: dict[ServerState, dict[str, ServerState]] = {
    ServerState.AWAIT_HELLO: {"HELLO": ServerState.READY},
    ServerState.AWAIT_AUTH: {"AUTH": ServerState.READY, "BYE": ServerState.CLOSED},
    ServerState.READY: {"START": ServerState.RUNNING, "BYE": ServerState.CLOSED},
    ServerState.RUNNING: {"STOP": ServerState.READY, "BYE": ServerState.CLOSED,
                          "STATUS": ServerState.RUNNING},
    ServerState.CLOSED: {},
}


NEED_TOKEN = "server requires a token: pass --token or set UDPBENCH_TOKEN"
AUTH_FAILED = "authentication failed"


def next_server_state(state: ServerState, msg: dict, auth_required: bool = False) -> ServerState:
    """The state after ``msg``; a server with a token goes from HELLO to AWAIT_AUTH, not READY."""
    allowed = SERVER_TRANSITIONS[state]
    if msg["type"] not in allowed:
        if state is ServerState.AWAIT_AUTH:
            raise ProtocolError(NEED_TOKEN)
        expected = " or ".join(allowed) or "nothing"
        raise ProtocolError(f"{msg['type']} is out of order: the server expected {expected}")
    if state is ServerState.AWAIT_HELLO and auth_required:
        return ServerState.AWAIT_AUTH
    return allowed[msg["type"]]


def add_token_arguments(p) -> None:
    """--token and --token-file, for every command that connects to a server (read with token_of)."""
    p.add_argument("--token", default=None, metavar="SECRET",
                   help=f"shared secret for a server that requires one (default: ${TOKEN_ENV}); "
                        f"other local users can read a command line: prefer the variable or --token-file")
    p.add_argument("--token-file", default=None, metavar="FILE", help="read the token from FILE's first line")


def token_of(args) -> str:
    """The token the options or the environment give ("" for none)."""
    return resolve_token(args.token, args.token_file) or ""
