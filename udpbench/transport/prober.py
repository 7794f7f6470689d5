"""The blocking adapter of the path-MTU searches (protocol/pmtud.py): a DF UDP socket connected
to the target that sends probes of exact IP sizes and collects what comes back, PROBE_ACKs from
a udpbench server and ICMP errors from the socket's error queue, and feeds them to a search.

The socket sends with ``IP_PMTUDISC_PROBE`` (IPv6: ``IPV6_MTU_DISCOVER`` PROBE plus
``IPV6_DONTFRAG``): DF is set and the kernel checks sizes against the interface MTU only, so a
path MTU it learned earlier neither blocks a probe nor passes for a fresh finding (docs/mtu.md).
"""
from __future__ import annotations

import errno
import secrets
import select
import socket
import time

from udpbench.linux import errqueue, sockopts
from udpbench.protocol import frag, pmtud, wire
from udpbench.protocol.pmtud import Done, IcmpError, Send

SESSION_REFRESH_S = 5.0  # the server ends an echo session after 10 s of control silence
STOP_POLL_S = 0.05  # with a stop event, waits are cut into slices this long to notice it


class Prober:
    """Sends the probes a search asks for and returns what arrives for them."""

    def __init__(self, sock: socket.socket, session: int):
        self.sock = sock
        self.v6 = sockopts.is_v6(sock)
        self.session = session
        self.sessions = {session}  # answers to a renewed session's older probes still count
        self.sizes: dict[int, int] = {}  # probe id -> IP size, to check what an ack says it got
        sockopts.set_pmtu_mode(sock, sockopts.PMTUDISC_PROBE)
        errqueue.enable(sock)
        sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLERR)
        self.pending_errors: list[IcmpError] = []

    def send(self, probe: Send) -> IcmpError | None:
        """Send one probe; if the kernel refused it (EMSGSIZE above the interface MTU), that error."""
        payload = probe.size - frag.header_overhead(self.v6)
        flags = wire.Flag.COMPANION if probe.companion else 0
        data = wire.datagram(wire.Kind.PROBE, self.session, probe.probe_id, payload, time.time_ns(), flags)
        self.sizes[probe.probe_id] = probe.size
        for _ in range(4):
            try:
                self.sock.send(data)
                return None
            except BlockingIOError:
                select.select([], [self.sock], [], 0.05)
            except OSError as exc:
                # Either the kernel refused this datagram (EMSGSIZE above the interface MTU,
                # with a LOCAL entry on the error queue), or an ICMP error for an earlier probe
                # was pending on the socket (sk_err) and failed this send once: reading the
                # error queue clears it, and the send is tried again.
                errors = self.read_errors()
                local = next((e for e in errors if e.local and e.too_big), None)
                self.pending_errors.extend(e for e in errors if e is not local)
                if exc.errno == errno.EMSGSIZE and (local is not None or not errors):
                    return local or IcmpError(errno.EMSGSIZE, pmtud.ORIGIN_LOCAL, 0, 0, 0, None, probe.probe_id)
        return IcmpError(errno.ENOBUFS, pmtud.ORIGIN_LOCAL, 0, 0, 0, None, probe.probe_id)

    def read_errors(self) -> list[IcmpError]:
        return errqueue.read(self.sock, self.sessions)

    def read_acks(self) -> list[int]:
        """The probe ids acknowledged by what is waiting on the socket."""
        out = []
        for _ in range(1024):
            try:
                data = self.sock.recv(256)
            except BlockingIOError:
                break
            except OSError:
                # a pending ICMP error surfaced on recv; the error queue holds it
                self.pending_errors.extend(self.read_errors())
                continue
            try:
                header = wire.parse(data)
            except wire.WireError:
                continue
            if header.kind != wire.Kind.PROBE_ACK or header.session not in self.sessions:
                continue
            size = self.sizes.get(header.seq)
            if size is None or len(data) < wire.PROBE_ACK_SIZE:
                continue
            rx_len = wire.PROBE_ACK_BODY.unpack_from(data, wire.HEADER_SIZE)[0]
            if rx_len != size - frag.header_overhead(self.v6):
                continue  # not what we sent: a middlebox changed it, do not count it
            out.append(header.seq)
        return out

    def wait(self, deadline: float) -> tuple[list[int], list[IcmpError]]:
        """Wait until something arrives or ``deadline`` (monotonic) passes; return what came."""
        if self.pending_errors:
            errors, self.pending_errors = self.pending_errors, []
            return [], errors
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return [], []
            events = self.poller.poll(max(1, int(left * 1000 + 0.999)))  # EINTR retried (PEP 475)
            if not events:
                continue
            mask = events[0][1]
            errors = self.read_errors() if mask & select.POLLERR else []
            acks = self.read_acks() if mask & select.POLLIN else []
            errors += self.pending_errors
            self.pending_errors = []
            if acks or errors:
                return acks, errors


def drive(search, prober: Prober, keepalive=None, stop=None):
    """Run ``search`` (an IcmpSearch or EchoSearch) over ``prober`` to its result.
    ``keepalive()`` is called before each burst of probes (an echo round, an ICMP try);
    ``stop`` (a threading.Event), once set, ends the search within STOP_POLL_S, unanswered."""
    sending = False
    while True:
        if stop is not None and stop.is_set() and search.done is None:
            search.stop(time.monotonic())
        action = search.next_action(time.monotonic())
        if isinstance(action, Done):
            return action.result
        if isinstance(action, Send):
            if keepalive is not None and not sending:
                keepalive()
            sending = True
            refused = prober.send(action)
            if refused is not None:
                search.on_refused(action.probe_id, refused, time.monotonic())
            continue
        sending = False
        acks, errors = prober.wait(action.until if stop is None else min(action.until, time.monotonic() + STOP_POLL_S))
        now = time.monotonic()
        for probe_id in acks:
            search.on_ack(probe_id, now)
        for e in errors:
            search.on_error(e, now)


class ProbeSession:
    """An echo session on a udpbench server: while it is open, the server acknowledges this
    client's PROBE datagrams. Renewed (STOP, START) before the server's control timeout."""

    def __init__(self, client, port: int | None = None):
        """``port``: the local port the probes leave from; the server then answers only there."""
        self.client = client
        self.port = port
        self.session = 0
        self.opened_at = 0.0

    def open(self) -> "ProbeSession":
        self.session = secrets.randbits(64)
        self.client.open_echo(self.session, client_port=self.port)
        self.opened_at = time.monotonic()
        return self

    def keepalive(self, prober: Prober) -> None:
        if time.monotonic() - self.opened_at > SESSION_REFRESH_S:
            self.close()
            self.open()
            prober.session = self.session
            prober.sessions.add(self.session)

    def close(self) -> None:
        if self.session:
            self.client.close_echo(self.session)
            self.session = 0
