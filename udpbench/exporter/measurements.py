"""The one place the exporter calls the measurement library, and turns its errors into reasons.

Everything here is the library's today's face (``measure.embedded.connect`` with
``Client.blast``, ``transport.mtu.discover``, ``transport.ping.ping``); when the typed API
(``udpbench.blast``, ``path_mtu``, ``ping``) lands, only this module changes.
"""
from __future__ import annotations

import socket

from udpbench.errors import MeasurementError, UserError

# Why a probe failed: a fixed set, so that a reason label never makes a new series out of an
# error message (docs/exporter.md).
REASONS = ("resolve", "no_server", "unreachable", "refused", "auth", "timeout", "no_reply", "protocol",
           "internal")


class ProbeFailed(Exception):
    """A measurement that could not be made; ``reason`` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        assert reason in REASONS
        super().__init__(detail)
        self.reason = reason


def reason_of(exc: BaseException) -> str:
    """The fixed reason for an error the library raised (its messages are the only signal today)."""
    if isinstance(exc, ProbeFailed):
        return exc.reason
    text = str(exc)
    if isinstance(exc, (TimeoutError, socket.timeout)) or "within" in text and "no answer" in text:
        return "timeout"
    if isinstance(exc, socket.gaierror) or "has no address" in text or "cannot resolve" in text:
        return "resolve"
    if "no udpbench server" in text or isinstance(exc, ConnectionRefusedError):
        return "no_server"
    if "token" in text or "authentication" in text:
        return "auth"
    if "cannot reach" in text or isinstance(exc, OSError):
        return "unreachable"
    if "refused" in text or "busy" in text:
        return "refused"
    if isinstance(exc, (MeasurementError, UserError)):
        return "protocol"
    return "internal"


def ping(address: str, port: int, count: int, size: int, interval: float, deadline: float,
         token: str | None) -> dict:
    """Today's ``transport.ping.ping``: the summary dict (sent, received, rtt_*_ms, requests...)."""
    from udpbench.transport.ping import ping as run_ping

    return run_ping(address, port, count=count, size=size, interval=interval, deadline=deadline,
                    token=token or "")


def path_mtu(address: str, port: int, method: str, timeout: float | None, token: str | None) -> dict:
    """Today's ``transport.mtu.discover``: {path_mtu, black_hole, max_payload, probes, elapsed_s...}."""
    from udpbench.transport.client import Client, ServerAbsent
    from udpbench.transport.mtu import Options, discover

    options = Options(method=method, port=port, timeout=timeout, token=token or "")
    try:
        client = Client(address, port, token=token or "")
    except ServerAbsent:
        if method == "echo":
            raise
        return discover(address, Options(method="icmp", port=port, timeout=timeout))
    with client:  # our own client: discover() would start an embedded server on loopback
        return discover(address, options, client=client)


def blast(address: str, port: int, sizes, duration: float, rate_bps: float,
          token: str | None) -> tuple[list[dict], int | None]:
    """Rows of ``duration`` seconds at ``rate_bps`` (never "max") over one control connection,
    one per size, and the path MTU; today's ``Client.blast`` and ``sweep_path_mtu``.

    ``sizes``: a list of payload sizes, or a function of (path MTU, IPv6?) that plans them; the
    path MTU is found only for the latter (None otherwise). Loopback is planned around
    Ethernet's 1500, as a sweep is (docs/decisions.md). No embedded server: a probe that finds
    no server says so."""
    from udpbench.linux.sockopts import is_loopback
    from udpbench.measure.embedded import connect
    from udpbench.measure.sweep import ETHERNET_MTU
    from udpbench.transport.mtu import sweep_path_mtu

    with connect(address, port, embedded=False, token=token or "") as client:
        mtu = None
        if callable(sizes):
            loopback = is_loopback(client.server_addr[0])
            mtu = ETHERNET_MTU if loopback else sweep_path_mtu(client, False)["path_mtu"]
            sizes = sizes(mtu, client.v6)
        rows = [client.blast(size, duration, rate_bps) for size in sizes]
    return rows, mtu
