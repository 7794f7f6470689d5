"""A session on the server: a blast's receiving socket and thread, or an echo session's rules.

A blast gets its own UDP socket, bound to the server's port and connected to the client's
data socket (SO_REUSEPORT; the kernel prefers the connected socket for its 4-tuple), so
concurrent clients never mix their counts (docs/decisions.md, "Each session gets its own socket").
"""
from __future__ import annotations

import random
import socket
import threading
import time

from udpbench.engine._fast import Receiver
from udpbench.linux import counters as kernel
from udpbench.linux import host as this_host
from udpbench.linux import sockopts
from udpbench.linux.receive_socket import enable_receive_options, set_receive_buffer
from udpbench.protocol import wire
from udpbench.protocol.grant import ReplyBudget
from udpbench.transport import trace_fetch


class ReceiverSession:
    """One blast session on the server: its connected UDP socket and its receiver thread."""

    def __init__(self, session: int, size: int, duration_s: float, family: int, local: tuple, peer: tuple,
                 rcvbuf: int, trace_limit: int = 0):
        """``local`` (address, port) to bind, ``peer`` (address, port) of the client's data socket;
        ``duration_s`` is the granted duration, ``rcvbuf`` the bytes to ask the kernel for;
        ``trace_limit`` > 0 keeps that many arrivals' trace for the client to fetch (trace_fetch.py)."""
        self.session = session
        self.size = size
        self.duration_s = duration_s
        self.v6 = family == socket.AF_INET6
        wire.check_size(self.size, self.v6)
        self.sock = sockopts.session_socket(family)
        try:
            self.rcvbuf = set_receive_buffer(self.sock, rcvbuf)
            enable_receive_options(self.sock)
            self.sock.bind(local)
            self.sock.connect(peer)
        except OSError:
            self.sock.close()
            raise
        self.receiver = Receiver(self.session)
        self.trace_arrays = trace_fetch.buffers(trace_limit) if trace_limit else None
        if self.trace_arrays is not None:
            self.receiver.set_trace(*self.trace_arrays)
        self.counters_before = kernel.snapshot(self.v6)
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._receive, name=f"rx-{self.session:x}", daemon=True)
        self.thread.start()

    def _receive(self) -> None:
        try:
            self.receiver.run(self.sock.fileno())
        except BaseException as exc:  # reported in REPORT, never lost in a thread
            self.failure = exc

    def drain(self, quiet_s: float = 0.1, limit_s: float = 2.0) -> float:
        """Wait until nothing has arrived for ``quiet_s`` (at most ``limit_s``): stragglers count."""
        start = last_change = time.monotonic()
        rx = self.receiver
        seen = rx.received + rx.duplicates + rx.foreign
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            count = rx.received + rx.duplicates + rx.foreign
            if count != seen:
                seen, last_change = count, now
            if now - last_change >= quiet_s or now - start >= limit_s:
                return now - start

    def finish(self) -> dict:
        drain_s = self.drain()
        return self.close(drain_s)

    def status(self) -> dict:
        """The receiver's counts so far, for an interim report; the session keeps running."""
        status = self.receiver.counts()
        status.update(type="STATUS", session=self.session, socket_drops=sockopts.socket_drops(self.sock))
        return status

    def close(self, drain_s: float = 0.0) -> dict:
        self.receiver.request_stop()
        self.thread.join(timeout=2.0)
        drops = sockopts.socket_drops(self.sock)
        self.sock.close()
        report = self.receiver.counts()
        report.update(
            type="REPORT",
            session=self.session,
            socket_drops=drops,
            kernel=kernel.delta(self.counters_before, kernel.snapshot(self.v6)),
            drain_s=round(drain_s, 4),
            rcvbuf=self.rcvbuf,
            clock_domain=this_host.clock_domain(),
        )
        if self.trace_arrays is not None:
            report.update(trace_length=self.receiver.trace_length, trace_cut=self.receiver.trace_cut)
        if self.failure is not None:
            report["receive_error"] = str(self.failure)
        return report


class EchoCounts:
    """What the server did with one echo session's ECHO requests, for its REPORT.

    Each session draws its drops from its own generator seeded with ``--seed``, so the k-th
    echo request of every session meets the same fate whatever other clients do.
    """

    def __init__(self, drop: float, seed: int):
        self.drop = drop
        self.rng = random.Random(seed) if drop else None
        self.requests = self.answered = self.dropped = self.limited = 0

    def should_drop(self) -> bool:
        return self.rng is not None and self.rng.random() < self.drop

    def report(self) -> dict:
        return {"echo_requests": self.requests, "echo_answered": self.answered,
                "echo_dropped": self.dropped, "drop": self.drop, "replies_limited": self.limited}


class EchoSession:
    """An echo session: whose probes and echo requests the shared socket answers, and how many.

    It is bound to its owner's address, and to the port the START names in ``client_port``.
    A START without one (today's ping and path-MTU clients, which probe one session from more
    than one socket) binds the address only (docs/security.md, "No reflection").
    """

    def __init__(self, session: int, address: str, port: int | None, counts: EchoCounts, budget: ReplyBudget):
        self.session = session
        self.address = address
        self.port = port
        self.counts = counts
        self.budget = budget

    def owns(self, addr: tuple) -> bool:
        """Whether a datagram from ``addr`` belongs to this session."""
        return addr[0] == self.address and (self.port is None or addr[1] == self.port)
