"""ping and mtu name the port their datagrams leave from, so the server binds each echo session
to the owner's address and port (docs/security.md); test_server_limits checks the server keeps
a session so named from answering any other port."""
from __future__ import annotations

import pytest

from udpbench.measure import path_mtu as path_mtu_api
from udpbench.measure import ping as ping_api
from udpbench.transport.client import Client
from udpbench.transport.server import Server


@pytest.fixture
def echo_starts(monkeypatch):
    """Every echo START a client sends, with the local port of the client's data sockets seen."""
    starts = []
    real = Client._converse

    def converse(self, msg, answer):
        if msg.get("type") == "START" and msg.get("mode") == "echo":
            starts.append(dict(msg))
        return real(self, msg, answer)

    monkeypatch.setattr(Client, "_converse", converse)
    return starts


def test_ping_binds_its_echo_session_to_its_socket(echo_starts):
    events = []
    with Server("127.0.0.1", 0) as server:
        r = ping_api.ping("127.0.0.1", port=server.port, count=3, interval=0.02,
                          on_event=lambda kind, **f: events.append((kind, f)))
    assert r.received == 3
    (start,) = echo_starts
    assert 1 <= start["client_port"] <= 65535


def test_both_path_mtu_phases_bind_their_sessions_to_their_own_sockets(echo_starts):
    with Server("127.0.0.1", 0) as server:
        found = path_mtu_api.path_mtu("127.0.0.1", port=server.port, method="both")
    assert found.echo_mtu and found.icmp_mtu
    assert len(echo_starts) >= 2 and all(1 <= s["client_port"] <= 65535 for s in echo_starts)
    # each phase probes from a socket of its own: two different ports
    assert len({s["client_port"] for s in echo_starts}) >= 2
