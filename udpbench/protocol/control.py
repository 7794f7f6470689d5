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
    C CLOCK {t1}                     S CLOCK_REPLY {t1, t2, t3}   (between measurements, any number)
    C TRACE {session, offset}        S TRACE_DATA {offset, count, data}   (after a traced blast's REPORT)
    C BYE                            (close)

Anything that does not fit the state ends the conversation with ``ERROR {message}``. The
server's transition table is in ``conversation.py``, the token proofs in ``auth.py``, what a
server grants in ``grant.py``; the framed TCP channel itself is ``transport/channel.py``.
"""
from __future__ import annotations

import json
import os
import struct

from udpbench.errors import UserError
from udpbench.files import open_regular
from udpbench.protocol.auth import (  # noqa: F401  (re-exported: the names callers know)
    AUTH_FAILED, AUTH_METHOD, NEED_TOKEN, TOKEN_ENV, auth_mac, check_mac, new_nonce, valid_nonce,
)

PROTOCOL_VERSION = 1
DEFAULT_PORT = 1060  # TCP control and UDP data share it
MAX_FRAME = 64 * 1024
LENGTH = struct.Struct("!I")
MAX_TOKEN_BYTES = 4096  # a token is a passphrase; a longer first line is not one


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
    # An NTP-style clock sample (protocol/clock.py): C's send time t1, S's receive and reply times.
    "CLOCK": {"t1": int},
    "CLOCK_REPLY": {"t1": int, "t2": int, "t3": int},
    # A forward blast's per-datagram trace, fetched in chunks after its REPORT (transport/trace_fetch.py).
    "TRACE": {"session": int, "offset": int},
    "TRACE_DATA": {"session": int, "offset": int, "count": int, "data": str},
}
# What a server's HELLO lists in ``features``: a client asks for nothing a server did not list.
FEATURE_CLOCK = "clock"
FEATURE_REVERSE = "reverse"
FEATURE_TRACE = "trace"
# Fields of START in "blast" mode: the receiver needs them to count and to check limits.
BLAST_FIELDS = {"size": int, "duration_s": _NUMBER, "rate_bps": _NUMBER, "client_port": int}
MODES = ("blast", "echo")
# A blast's direction: "forward", the client sends (the default), or "reverse", the server does.
DIRECTIONS = ("forward", "reverse")


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
            if msg.get("direction", "forward") not in DIRECTIONS:
                raise ProtocolError("START direction is neither forward nor reverse")
            limit = msg.get("trace_limit", 1)
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ProtocolError("START trace_limit is not a positive whole number of datagrams")
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


# --- authentication ------------------------------------------------------------------------

def resolve_token(token: str | None = None, token_file: str | None = None) -> str | None:
    """The shared secret: ``token``, else the first line of ``token_file``, else $UDPBENCH_TOKEN.

    An empty string means no token.
    """
    if token is None and token_file:
        with open_regular(token_file, "token file") as f:  # not /dev/zero, not a FIFO
            try:
                line = f.readline(MAX_TOKEN_BYTES + 1)
            except OSError as exc:
                raise UserError(f"cannot read token file {token_file}: {exc.strerror}") from None
        if len(line) > MAX_TOKEN_BYTES and not line.endswith(b"\n"):
            raise UserError(f"token file {token_file}: the first line is longer than {MAX_TOKEN_BYTES} bytes")
        try:
            token = line.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise UserError(f"token file {token_file}: the first line is not UTF-8 text") from None
        if not token:
            raise UserError(f"token file {token_file} is empty")
    if token is None:
        token = os.environ.get(TOKEN_ENV)
    return token or None
