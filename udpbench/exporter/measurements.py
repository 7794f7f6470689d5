"""The one place the exporter calls the measurement library, and turns its errors into reasons.

It calls ``measure.ping.ping`` and ``measure.path_mtu.path_mtu`` (typed results, read here as
their dicts) and ``measure.blast.blast`` (typed rows); when the library changes, only this
module does. The exporter never starts an embedded server: "no
server" is what a probe must be able to report (docs/exporter.md).
"""
from __future__ import annotations

import socket

from udpbench.errors import MeasurementError, UserError
from udpbench.protocol.row import Row

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


def _server_present(address: str, port: int, token: str | None) -> None:
    """ServerAbsent unless a udpbench server answers at address:port. ``measure.ping`` starts an
    embedded server for a loopback host with none, so the exporter looks first."""
    from udpbench.transport.client import Client

    Client(address, port, token=token or "").close()


def ping(address: str, port: int, count: int, size: int, interval: float, deadline: float,
         token: str | None) -> dict:
    """``measure.ping.ping``'s result as its dict (sent, received, rtt_*_ms, requests...)."""
    from udpbench.measure.ping import PingOptions, ping as run_ping

    _server_present(address, port, token)
    options = PingOptions(port=port, count=count, size=size, interval=interval, deadline=deadline,
                          token=token or "")
    return run_ping(address, options).as_dict()


def path_mtu(address: str, port: int, method: str, timeout: float | None, token: str | None) -> dict:
    """``measure.path_mtu.path_mtu``'s result as its dict (path_mtu, black_hole, probes...)."""
    from udpbench.measure.path_mtu import PathMtuOptions, path_mtu as find_path_mtu
    from udpbench.transport.client import Client, ServerAbsent

    options = PathMtuOptions(method=method, port=port, timeout=timeout, token=token or "")
    try:
        client = Client(address, port, token=token or "")
    except ServerAbsent:
        if method == "echo":
            raise
        return find_path_mtu(address, options, method="icmp").as_dict()
    with client:  # our own client: path_mtu() would start an embedded server on loopback
        return find_path_mtu(address, options, client=client).as_dict()


def blast(address: str, port: int, sizes, duration: float, rate_bps: float,
          token: str | None) -> tuple[list[Row], int | None]:
    """``measure.blast``'s rows of ``duration`` seconds at ``rate_bps`` (never "max"), one per size,
    and the path MTU they were planned around.

    ``sizes``: a list of payload sizes, or a function of (path MTU, IPv6?) that plans them; the
    path MTU is found (``sweep_path_mtu``, as a sweep finds it) only for the latter, None
    otherwise, and the rows count fragments at it. Loopback is planned around Ethernet's 1500,
    as a sweep is (docs/decisions.md). No embedded server: a probe that finds no server says so."""
    from udpbench.linux.sockopts import is_loopback
    from udpbench.measure.blast import BlastOptions, blast as run_blast
    from udpbench.measure.embedded import connect
    from udpbench.measure.path_mtu import sweep_path_mtu
    from udpbench.measure.sweep import ETHERNET_MTU

    options = BlastOptions(duration=duration, rate=rate_bps, port=port, token=token or "", embedded=False)
    mtu = None
    if callable(sizes):
        with connect(address, port, embedded=False, token=token or "") as client:
            if is_loopback(client.server_addr[0]):
                mtu = ETHERNET_MTU  # planning only: loopback's own MTU fragments nothing
            else:
                mtu = sweep_path_mtu(client, False)["path_mtu"]
                options.path_mtu = mtu
            sizes = sizes(mtu, client.v6)
    return [run_blast(address, options, size=size) for size in sizes], mtu
