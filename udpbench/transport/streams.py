"""Parallel streams: N sessions at once, each with its own control connection, data socket,
session id and sending thread, summed into one row.

The send loops release the GIL, so the threads run in parallel. Only the main thread sees
signals: it waits for the senders and, on Ctrl-C, sets a flag they watch. The rate is the
total over all streams, split evenly (iperf3's ``-b`` with ``-P`` is per stream instead).
"""
from __future__ import annotations

import threading

from udpbench.engine import _fast
from udpbench.linux import counters as kernel
from udpbench.protocol.row import Row, combine
from udpbench.transport.client import Client
from udpbench.errors import UserError

__all__ = ["blast_streams", "combine"]

def blast_streams(client: Client, streams: int, size: int, duration: float, rate_bps: float | None,
                  engine: str = "auto", rcvbuf: int | None = None, path_mtu: int | None = None,
                  df: bool = False, *, interval: float | None = None, on_interval=None,
                  stop: "_fast.StopFlag | None" = None) -> Row:
    """One row for ``streams`` parallel sessions of ``size``-byte datagrams (1: a plain blast).

    ``stop``: a ``_fast.StopFlag`` another thread may set to end the send loops early.
    """
    if streams <= 1:
        return client.blast(size, duration, rate_bps, engine, rcvbuf, path_mtu, df=df,
                            interval=interval, on_interval=on_interval, stop=stop)
    if interval:
        raise UserError(f"interval reports cover one stream, not {streams}: ask for one or the other")
    stream_rate = rate_bps / streams if rate_bps else rate_bps
    clients = [client]
    flows = []
    errors: list[BaseException] = []
    stop = stop if stop is not None else _fast.StopFlag()
    interrupt = None
    rows = []
    try:
        for _ in range(streams - 1):
            clients.append(client.sibling())
        for c in clients:
            flows.append(c.start_blast(size, duration, stream_rate, engine, rcvbuf, path_mtu, df))

        def send(flow):
            try:
                flow.send(stop)
            except BaseException as exc:  # re-raised in the main thread after every STOP
                errors.append(exc)
                stop.set()

        before = kernel.snapshot(client.v6)
        threads = [threading.Thread(target=send, args=(f,), name=f"stream-{i}", daemon=True)
                   for i, f in enumerate(flows)]
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                try:
                    t.join(0.1)
                except KeyboardInterrupt as exc:
                    interrupt = exc
                    stop.set()
        sender_counters = kernel.delta(before, kernel.snapshot(client.v6))
    finally:
        try:
            for flow in flows:  # every flow gets its STOP, even when another one failed
                try:
                    rows.append(flow.finish())
                except BaseException as exc:
                    errors.append(exc)
        finally:
            for c in clients[1:]:
                c.close()
    if errors:
        raise errors[0]
    row = combine(rows, sender_counters)
    if interrupt is not None:
        row.interrupted = True
        row.interrupt = interrupt
    return row
