"""The server's side of a reverse run: it sends a blast's datagrams to the client.

No amplification (docs/security.md, "Reverse runs"): the socket is connected to the control
peer's own address and the port its START names, so the kernel sends nowhere else and hands
this socket datagrams from there only; nothing is sent until a NONCE datagram carrying the
STARTED nonce has come back from that address and port, which proves the client receives
there; the send loop runs at the granted rate for the granted duration at most, and ends at
STOP or when the connection ends.
"""
from __future__ import annotations

import hmac
import secrets
import socket
import threading
import time

from udpbench.engine import _fast
from udpbench.engine import choice as engines
from udpbench.linux import counters as kernel
from udpbench.linux import host as this_host
from udpbench.linux import sockopts
from udpbench.protocol import wire

NONCE_WAIT_S = 3.0  # the client sends its proof at once, and again every 50 ms
SNDBUF = 4 << 20


class ReverseSender:
    """One reverse session: a connected socket, a nonce to wait for, then the send loop."""

    def __init__(self, session: int, size: int, granted: dict, engine: str, family: int, local: tuple,
                 peer: tuple, nonce_wait_s: float = NONCE_WAIT_S):
        self.session, self.size = session, size
        self.duration_s, self.rate_bps = float(granted["duration_s"]), float(granted["rate_bps"])
        self.v6 = family == socket.AF_INET6
        wire.check_size(size, self.v6)
        self.nonce = secrets.token_bytes(wire.NONCE_BYTES)
        self.nonce_wait_s = nonce_wait_s
        self.sock = sockopts.session_socket(family)
        try:
            sockopts.set_buffers(self.sock, sndbuf=SNDBUF)
            self.sock.bind(local)
            self.sock.connect(peer)
            # The reverse path's MTU as this kernel knows it: where the server's datagrams fragment.
            self.path_mtu = sockopts.route_mtu(self.sock) or 1500
            self.choice = engines.choose(engine if engine in engines.CHOICES else "auto", size, self.path_mtu,
                                         self.v6, sockopts.gso_available(self.sock))
        except OSError:
            self.sock.close()
            raise
        self.stop = _fast.StopFlag()
        self.proved = False
        self.tx: dict | None = None
        self.sender_counters: dict = {}
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"tx-{session:x}", daemon=True)
        self.thread.start()

    def _await_nonce(self) -> bool:
        deadline = time.monotonic() + self.nonce_wait_s
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(min(left, 0.1))
            try:
                data = self.sock.recv(wire.HEADER_SIZE + wire.NONCE_BYTES + 1)
            except (TimeoutError, socket.timeout, BlockingIOError, InterruptedError):
                continue
            except OSError:  # ECONNREFUSED from an earlier ICMP: the client is not there yet
                continue
            got = wire.nonce_of(data, self.session)
            if got is not None and hmac.compare_digest(got, self.nonce):
                return True
        return False

    def _run(self) -> None:
        try:
            self.proved = self._await_nonce()
            if not self.proved:
                return
            self.sock.setblocking(True)
            rate_pps = self.rate_bps / (8.0 * self.size) if self.rate_bps else 0.0
            before = kernel.snapshot(self.v6)
            self.tx = _fast.send_datagrams(self.sock.fileno(), engines.ENGINES[self.choice.engine], self.size,
                                           self.session, 0, self.duration_s, rate_pps, stop=self.stop,
                                           check_signals=False)
            self.sender_counters = kernel.delta(before, kernel.snapshot(self.v6))
        except BaseException as exc:  # reported in REPORT, never lost in a thread
            self.failure = exc

    def close(self) -> dict:
        """Stop sending (if still), and the REPORT: what the send loop did."""
        self.stop.set()
        self.thread.join(timeout=5.0)
        self.sock.close()
        report = {"type": "REPORT", "session": self.session, "direction": "reverse", "proved": self.proved,
                  "path_mtu": self.path_mtu, "engine": self.choice.engine, "engine_note": self.choice.note,
                  "sender_counters": self.sender_counters, "clock_domain": this_host.clock_domain()}
        if self.tx is not None:
            tx = dict(self.tx)
            tx["errors"] = {str(k): v for k, v in tx["errors"].items()}
            report["tx"] = {k: v for k, v in tx.items() if isinstance(v, (int, float, str, dict))}
        if self.failure is not None:
            report["send_error"] = str(self.failure)
        return report

    finish = close

    def status(self) -> dict:
        return {"type": "STATUS", "session": self.session, "proved": self.proved}
