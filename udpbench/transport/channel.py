"""One end of a control connection: whole length-prefixed frames over TCP, with timeouts.

The frames and their checks are ``protocol/control.py``; this module only moves them.
"""
from __future__ import annotations

import socket
import time

from udpbench.protocol import control
from udpbench.protocol.control import LENGTH, MAX_FRAME, PeerClosed, PeerError, ProtocolError


class Channel:
    """Whole frames in, whole frames out, with timeouts."""

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
        self.sock.sendall(control.encode(msg))

    def recv(self, timeout: float | None = ...) -> dict:
        """The next message; raises PeerError for an ERROR frame, TimeoutError, ProtocolError."""
        limit = self.timeout if timeout is ... else timeout
        deadline = None if limit is None else time.monotonic() + limit
        try:
            (length,) = LENGTH.unpack(self._read_exactly(LENGTH.size, deadline))
            if length > MAX_FRAME:
                raise ProtocolError(f"control frame of {length} bytes exceeds the {MAX_FRAME}-byte cap")
            msg = control.decode(self._read_exactly(length, deadline))
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
