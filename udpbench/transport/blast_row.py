"""The row of one blast session, from the sender's counts and the server's REPORT: the glue
between a ``Client`` and ``protocol/row.py``, which does the arithmetic."""
from __future__ import annotations

from udpbench.engine import _fast
from udpbench.engine import choice as engines
from udpbench.linux import host as this_host
from udpbench.protocol import row as row_of
from udpbench.protocol.row import Row
from udpbench.transport import clock_samples

def nothing_sent(fd: int, size: int, session: int, err: int | None = None) -> dict:
    """The send loop's result for a flow that sent nothing (``err``: the kernel refused the one
    datagram tried): the loop itself, stopped before it began, so every key is there."""
    stop = _fast.StopFlag()
    stop.set()
    tx = _fast.send_datagrams(fd, _fast.ENGINE_SEND, size, session, 0, 1.0, 0.0, stop=stop,
                              check_signals=False)
    if err:
        tx["errors"] = {err: 1}
        tx["syscalls"] = 1
    return tx


def make_row(client, size: int, engine: "engines.Choice | str", duration: float,
             rate_bps: float | None, tx: dict, report: dict, sender_counters: dict, mtu: int,
             sender_mtu: int | None = None, offset: "clock_samples.Offset | None" = None) -> Row:
    """One session's row for ``client``'s server (a connected ``transport.client.Client``;
    ``protocol/row.py`` does the arithmetic)."""
    offset = offset or clock_samples.Offset(None, None)
    choice = engine if isinstance(engine, engines.Choice) else engines.Choice(engine, engine)
    row = row_of.build(host=client.host, address=client.server_addr[0], port=client.port, v6=client.v6,
                       size=size, engine=choice.engine, engine_requested=choice.requested,
                       engine_note=choice.note, duration=duration, rate_bps=rate_bps, tx=tx,
                       report=report, sender_counters=sender_counters, path_mtu=mtu,
                       sender_mtu=sender_mtu, same_clock=same_clock(report),
                       clock_estimate=offset.estimate, clock_drift_ppm=offset.drift_ppm)
    # A traced forward session's REPORT says how much the server kept (transport/trace_fetch.py).
    row.trace_length, row.trace_cut = report.get("trace_length", 0), report.get("trace_cut", 0)
    return row


def same_clock(report: dict) -> bool:
    """Both ends read one CLOCK_REALTIME: the server's kernel is this one (loopback, the lab)."""
    theirs = report.get("clock_domain")
    return bool(theirs) and theirs == this_host.clock_domain()
