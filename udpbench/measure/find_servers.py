"""``find_servers``: udpbench servers that answer a broadcast (a minimal face over
``transport/discover.py`` until discovery gets its own options and result types)."""
from __future__ import annotations

from udpbench.transport import discover
from udpbench.transport.server import DEFAULT_PORT


def find_servers(broadcast: str = discover.DEFAULT_BROADCAST, port: int = DEFAULT_PORT,
                 timeout: float = discover.DEFAULT_TIMEOUT_S, *, interface: str | None = None,
                 on_found=None) -> list[dict]:
    """The servers that answered a discovery broadcast, in the order they answered.

    The default broadcast, 127.255.255.255, searches this machine only. Each server is a dict
    as ``transport.discover.discover`` reports it; ``on_found(server)`` hears each as it answers.
    """
    return discover.discover(broadcast, port, timeout, interface=interface, on_found=on_found)["servers"]
