"""The receiving end of a reverse run, on the client: the server sends, this side counts.

START carries ``direction: reverse``; STARTED carries a nonce, which the client sends back
from its data socket (a NONCE datagram) until the first datagram arrives: the server sends
nothing before that (docs/security.md, "Reverse runs"). The client's receiver is the same
``_fast.Receiver`` the server runs for a forward blast, so the row's loss attribution is this
side's: its socket's drops and this kernel's counters. The server's REPORT carries its send
loop's counts and its view of the path MTU.
"""
from __future__ import annotations

import secrets
import threading
import time

from udpbench.engine import _fast
from udpbench.engine import choice as engines
from udpbench.errors import MeasurementError, UserError
from udpbench.linux import counters as kernel
from udpbench.linux import host as this_host
from udpbench.linux import sockopts
from udpbench.linux.receive_socket import enable_receive_options, set_receive_buffer
from udpbench.protocol import grant, wire
from udpbench.protocol import report as report_rules
from udpbench.protocol import row as row_of
from udpbench.protocol.control import FEATURE_REVERSE
from udpbench.protocol.row import Row
from udpbench.protocol.units import format_rate
from udpbench.transport import clock_samples

RCVBUF = 8 << 20
NONCE_EVERY_S = 0.05
NONCE_TRIES = 40  # two seconds of proofs at most: the server waits three
QUIET_S, DRAIN_LIMIT_S = 0.1, 2.0  # as the server drains a forward run (session.py)


def offers_reverse(client) -> bool:
    features = client.hello.get("features")
    return isinstance(features, list) and FEATURE_REVERSE in features


class ReverseSession:
    """One reverse session: START, the nonce, then ``receive()`` and ``finish()`` for the row."""

    def __init__(self, client, size: int, duration: float, rate_bps: float | None, engine: str = "auto",
                 rcvbuf: int | None = None, trace_arrays: tuple | None = None):
        try:
            wire.check_size(size, client.v6)
        except wire.WireError as exc:
            raise UserError(f"{client.host}: {exc}") from None
        if not offers_reverse(client):
            raise UserError(f"server {client.where} does not send to clients (it forbids reverse runs, "
                            f"or is older than reverse runs)")
        self.client, self.size = client, size
        self.session = secrets.randbits(64)
        self.sock = client.data_socket()
        self.receiver = _fast.Receiver(self.session)
        self.trace_arrays = trace_arrays
        if trace_arrays is not None:
            self.receiver.set_trace(*trace_arrays)
        self.thread = None
        try:
            self.rcvbuf = set_receive_buffer(self.sock, rcvbuf or RCVBUF)
            enable_receive_options(self.sock)
            self.counters_before = kernel.snapshot(client.v6)
            self.thread = threading.Thread(target=self.receiver.run, args=(self.sock.fileno(),),
                                           name=f"rx-{self.session:x}", daemon=True)
            self.thread.start()
            self.clock_before = clock_samples.take(client)
            start = {"type": "START", "session": self.session, "mode": "blast", "direction": "reverse",
                     "size": size, "duration_s": duration, "rate_bps": rate_bps or 0, "engine": engine,
                     "client_port": self.sock.getsockname()[1]}
            try:
                self.started = client._converse(start, "STARTED")
            except MeasurementError as exc:
                if grant.REVERSE_FORBIDDEN in str(exc):
                    raise UserError(f"server {client.where}: {grant.REVERSE_FORBIDDEN}") from None
                raise
            self.asked_duration, self.asked_rate = duration, rate_bps or 0.0
            self.duration, self.rate_bps, self.clamped = client._granted(self.started, duration, self.asked_rate)
            nonce = self.started.get("nonce")
            if not (isinstance(nonce, str) and len(nonce) == 2 * wire.NONCE_BYTES):
                raise MeasurementError(f"server {client.where} sent no nonce for a reverse run")
            self.nonce = bytes.fromhex(nonce)
        except BaseException:
            self._stop_receiver()
            self.sock.close()
            raise
        self.requested_engine = engine
        self.proof_sent = 0
        self.interrupted = False

    def _stop_receiver(self) -> None:
        self.receiver.request_stop()
        if self.thread is not None:
            self.thread.join(timeout=2.0)

    def prove(self) -> bool:
        """Send the nonce until the first datagram arrives (bounded); whether one arrived."""
        proof = wire.nonce_datagram(self.session, self.nonce)
        for _ in range(NONCE_TRIES):
            if self.receiver.received or self.receiver.duplicates:
                return True
            try:
                self.sock.send(proof)
                self.proof_sent += 1
            except OSError:
                pass  # ECONNREFUSED from an ICMP: try again
            time.sleep(NONCE_EVERY_S)
        return bool(self.receiver.received)

    def receive(self, stop=None) -> None:
        """Prove, then wait the granted duration and a drain. Ctrl-C (main thread) or ``stop``
        ends the wait early: the row then says ``interrupted``."""
        try:
            if not self.prove():
                return
            end = time.monotonic() + self.duration
            while time.monotonic() < end:
                if stop is not None and stop.is_set():
                    self.interrupted = True
                    return
                time.sleep(min(0.05, max(0.0, end - time.monotonic())))
            self._drain()
        except KeyboardInterrupt:
            self.interrupted = True

    def _drain(self) -> None:
        start = last = time.monotonic()
        seen = self.receiver.received + self.receiver.duplicates
        while True:
            time.sleep(0.01)
            now = time.monotonic()
            count = self.receiver.received + self.receiver.duplicates
            if count != seen:
                seen, last = count, now
            if now - last >= QUIET_S or now - start >= DRAIN_LIMIT_S:
                self.drain_s = now - start
                return

    def finish_quietly(self) -> None:
        """End the session without a row (the run it belonged to failed to start)."""
        try:
            self.client._converse({"type": "STOP", "session": self.session}, "REPORT")
        except (MeasurementError, OSError):
            pass
        finally:
            self._stop_receiver()
            self.sock.close()

    def finish(self) -> Row:
        """STOP and the server's REPORT; this side's counts; the row."""
        try:
            report = self.client._converse({"type": "STOP", "session": self.session}, "REPORT")
            after = clock_samples.take(self.client)
        finally:
            self._stop_receiver()
            drops = sockopts.socket_drops(self.sock)
            self.sock.close()
        local = self.receiver.counts()
        local.update(socket_drops=drops, kernel=kernel.delta(self.counters_before, kernel.snapshot(self.client.v6)),
                     drain_s=round(getattr(self, "drain_s", 0.0), 4), rcvbuf=self.rcvbuf)
        tx = report.get("tx")
        if tx is None:
            raise MeasurementError(f"server {self.client.where} sent nothing: the nonce did not reach it "
                                   f"({self.proof_sent} sent)" + (f"; {str(report['send_error'])[:200]}"
                                                                  if report.get("send_error") else ""))
        # As a forward run's REPORT is checked (protocol/report.py): a broken or hostile server's
        # numbers end the measurement naming the field, never a TypeError or an impossible row.
        self.client.checked(report, self.session)
        report_rules.check_sender_counts(tx, where=f"server {self.client.where}")
        if local["received"] > tx["sent"]:
            raise MeasurementError(f"server {self.client.where} sent a broken report: it says it sent "
                                   f"{tx['sent']} datagrams, and {local['received']} distinct ones arrived")
        tx["errors"] = {int(k): v for k, v in tx.get("errors", {}).items()}
        offset = clock_samples.over_run(self.clock_before, after, server_receives=False)
        path_mtu = int(report.get("path_mtu") or 1500)
        engine = str(report.get("engine", ""))
        same = bool(report.get("clock_domain")) and report.get("clock_domain") == this_host.clock_domain()
        row = row_of.build(host=self.client.host, address=self.client.server_addr[0], port=self.client.port,
                           v6=self.client.v6, size=self.size, engine=engine,
                           engine_requested=self.requested_engine,
                           engine_note=str(report.get("engine_note", "")), duration=self.duration,
                           rate_bps=self.rate_bps, tx=tx, report=local,
                           sender_counters=report.get("sender_counters") or {}, path_mtu=path_mtu,
                           same_clock=same, clock_estimate=offset.estimate, clock_drift_ppm=offset.drift_ppm,
                           direction="reverse")
        row.rcvbuf = self.rcvbuf
        row.duration_requested_s, row.duration_granted_s = float(self.asked_duration), float(self.duration)
        row.rate_requested_bps = float(self.asked_rate)
        row.clamped = ",".join(self.clamped)
        row.authenticated = self.client.authenticated
        row.session = self.session
        row.interrupted = self.interrupted
        # The server's kernel fragments these datagrams: its IP_MTU toward the client.
        row.path_mtu_source = "server"
        if self.trace_arrays is not None:
            row.trace_length, row.trace_cut = self.receiver.trace_length, self.receiver.trace_cut
        return row


def blast_reverse(client, size: int, duration: float, rate_bps: float | None, engine: str = "auto",
                  rcvbuf: int | None = None, *, stop=None, trace_arrays: tuple | None = None) -> Row:
    """The server sends ``size``-byte datagrams to this client for ``duration`` s: the row."""
    if engine not in engines.CHOICES:
        raise UserError(f"unknown engine {engine!r}: choose from {', '.join(engines.CHOICES)}")
    if rate_bps and rate_bps * duration < 8 * size:
        raise UserError(f"rate {format_rate(rate_bps)} for {duration:g} s is less than one {size}-byte "
                        "datagram: raise the rate or the duration")
    flow = ReverseSession(client, size, duration, rate_bps, engine, rcvbuf, trace_arrays)
    try:
        flow.receive(stop)
    finally:
        row = flow.finish()
    return row


def blast_bidir(client, size: int, duration: float, rate_bps: float | None, engine: str = "auto",
                rcvbuf: int | None = None, *, stop=None) -> tuple[Row, Row]:
    """Both directions at once, each at ``rate_bps``: (forward row, reverse row).

    The reverse session runs on a second control connection; this thread sends the forward
    one (so Ctrl-C reaches its loop), another waits out the reverse one.
    """
    other = client.sibling()
    try:
        reverse = ReverseSession(other, size, duration, rate_bps, engine, rcvbuf)
        try:
            forward = client.start_blast(size, duration, rate_bps, engine, rcvbuf)
        except BaseException:
            reverse.finish_quietly()
            raise
        done = _fast.StopFlag() if stop is None else stop
        waiter = threading.Thread(target=reverse.receive, args=(done,), name="reverse", daemon=True)
        waiter.start()
        try:
            forward.send(stop)
        finally:
            forward_row = forward.finish()
            if forward_row.interrupted:
                done.set()
            waiter.join()
            reverse_row = reverse.finish()
    finally:
        other.close()
    return forward_row, reverse_row
