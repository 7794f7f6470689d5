"""One place where every measurement finds its server: the one at HOST:PORT, or, for a
loopback host where none listens, an embedded one started for the measurement and stopped after."""
from __future__ import annotations

import contextlib

from udpbench.protocol import control
from udpbench.linux.sockopts import is_loopback
from udpbench.transport.client import Client, ServerAbsent, resolve
from udpbench.protocol.control import DEFAULT_PORT
from udpbench.transport.server import Server


@contextlib.contextmanager
def connect(host: str, port: int = DEFAULT_PORT, family: int | None = None, embedded: bool = True,
            token: str | None = None, on_notice=None):
    """A Client for ``host``; for a loopback host with no server listening, an embedded one.

    The embedded server listens on a free port of the same loopback address, holds the same
    token as the client (so the handshake is the one a real server runs) and is closed when
    the block ends. ``token`` and ``on_notice`` as for ``Client``.
    """
    token = control.resolve_token() if token is None else token
    try:
        client = Client(host, port, family, token=token or "", on_notice=on_notice)
        server = None
    except ServerAbsent:
        fam, addr = resolve(host, port, family)
        if not (embedded and is_loopback(addr[0])):
            raise
        server = Server(addr[0], 0, token=token or None).start()
        try:
            client = Client(addr[0], server.port, fam, token=token or "", on_notice=on_notice)
        except BaseException:
            server.close()
            raise
    try:
        yield client
    finally:
        client.close()
        if server is not None:
            server.close()
