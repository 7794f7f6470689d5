"""Parallel streams: N sessions at once, each with its own control connection, data socket,
session id and sending thread, summed into one row.

The send loops release the GIL, so the threads run in parallel. Only the main thread sees
signals: it waits for the senders and, on Ctrl-C, sets a flag they watch. The rate is the
total over all streams, split evenly (iperf3's ``-b`` with ``-P`` is per stream instead).

A Ctrl-C can land anywhere in the main thread, even between two lines, so no stream's STOP
goes out while its send loop may still run: each stream is claimed once, by its thread (which
then sends and stores its counts) or by the main thread (the stream never sent). The STOP
then carries what the kernel accepted, and the server's count never exceeds it.
"""
from __future__ import annotations

import threading

from udpbench.engine import _fast
from udpbench.linux import counters as kernel
from udpbench.protocol.row import Row
from udpbench.protocol.streams import combine
from udpbench.transport.client import Client, SenderSession
from udpbench.errors import UserError

__all__ = ["blast_streams", "combine"]


class _Stream:
    """One stream's session and who ran its send loop."""

    def __init__(self, flow: SenderSession):
        self.flow = flow
        self._claim = threading.Lock()  # taken once: by the sender thread, or by settle()
        self._sent = threading.Event()  # the send loop ended and its counts are stored

    def run(self, stop: "_fast.StopFlag", errors: list) -> None:
        if not self._claim.acquire(blocking=False):
            return  # settled before this thread began: the stream sends nothing
        try:
            self.flow.send(stop)
        except BaseException as exc:  # re-raised in the main thread after every STOP
            errors.append(exc)
            stop.set()
        finally:
            self._sent.set()

    def ended(self, timeout: float) -> bool:
        """True once the send loop ended and stored its counts."""
        return self._sent.wait(timeout)

    def settled(self, timeout: float) -> bool:
        """After the stop: True once the loop ended, or it never began and now never will."""
        return self._claim.acquire(blocking=False) or self._sent.wait(timeout)


def _settle(streams: "list[_Stream]", stop: "_fast.StopFlag") -> BaseException | None:
    """Wait until every stream's loop has ended or will never start; a Ctrl-C meanwhile stops
    them all and is returned."""
    interrupt = None
    pending = list(streams)
    while pending:
        try:
            while pending and pending[0].settled(0.1):
                pending.pop(0)
        except KeyboardInterrupt as exc:
            interrupt = interrupt or exc
            stop.set()
    return interrupt


def blast_streams(client: Client, streams: int, size: int, duration: float, rate_bps: float | None,
                  engine: str = "auto", rcvbuf: int | None = None, path_mtu: int | None = None,
                  df: bool = False, *, interval: float | None = None, on_interval=None,
                  stop: "_fast.StopFlag | None" = None) -> Row:
    """One row for ``streams`` parallel sessions of ``size``-byte datagrams (1: a plain blast).

    ``stop``: a ``_fast.StopFlag`` another thread may set to end the send loops early. A Ctrl-C
    (in the main thread) ends every stream; the row of the sessions opened so far is then marked
    ``interrupted``, and a Ctrl-C before any session opened is raised.
    """
    if streams <= 1:
        return client.blast(size, duration, rate_bps, engine, rcvbuf, path_mtu, df=df,
                            interval=interval, on_interval=on_interval, stop=stop)
    if interval:
        raise UserError(f"interval reports cover one stream, not {streams}: ask for one or the other")
    stream_rate = rate_bps / streams if rate_bps else rate_bps
    clients = [client]
    opened: list[_Stream] = []
    errors: list[BaseException] = []
    stop = stop if stop is not None else _fast.StopFlag()
    interrupt = None
    before = None
    sender_counters: dict = {}
    rows = []
    try:
        try:
            for _ in range(streams - 1):
                clients.append(client.sibling())
            for c in clients:
                opened.append(_Stream(c.start_blast(size, duration, stream_rate, engine, rcvbuf, path_mtu, df)))
            before = kernel.snapshot(client.v6)
            for i, s in enumerate(opened):
                threading.Thread(target=s.run, args=(stop, errors), name=f"stream-{i}", daemon=True).start()
            for s in opened:
                while not s.ended(0.1):
                    pass
        except KeyboardInterrupt as exc:
            interrupt = exc
            stop.set()
        except BaseException:
            stop.set()
            raise
        finally:
            interrupt = _settle(opened, stop) or interrupt
        if before is not None:
            sender_counters = kernel.delta(before, kernel.snapshot(client.v6))
    finally:
        try:
            for s in opened:  # every session gets its STOP, even when another one failed
                try:
                    rows.append(s.flow.finish())
                except BaseException as exc:
                    errors.append(exc)
        finally:
            for c in clients[1:]:
                c.close()
    if errors:
        raise errors[0]
    if not rows:
        raise interrupt or KeyboardInterrupt
    row = combine(rows, sender_counters)
    if interrupt is not None:
        row.interrupted = True
        row.interrupt = interrupt
    return row
