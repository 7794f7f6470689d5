"""`udpbench mtu`: path-MTU discovery, by ICMP (classic PMTUD, like tracepath) and by echo
probing against a udpbench server (RFC 8899 DPLPMTUD), and the two compared.

All sizes here are IP packet sizes in bytes (IP header included), as MTUs are; the UDP payload
of a probe is the size less 28 (IPv4) or 48 (IPv6).

Both methods send with ``IP_PMTUDISC_PROBE`` (IPv6: ``IPV6_MTU_DISCOVER`` PROBE plus
``IPV6_DONTFRAG``): DF is set and the kernel checks sizes against the interface MTU only, so a
path MTU it learned earlier (cached for ``route/mtu_expires``, 10 minutes) neither blocks a probe
nor passes for a fresh finding. ``IP_RECVERR`` puts every ICMP error for the socket on its error
queue (signalled by POLLERR), with the MTU a router reported in ``sock_extended_err.ee_info``.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import json
import secrets
import select
import socket
import struct
import time
from dataclasses import dataclass, field

from udpbench.protocol import control
from udpbench.protocol import frag
from udpbench.linux import sockopts
from udpbench.protocol import wire
from udpbench.errors import MeasurementError, UserError, errno_name
from udpbench.protocol.units import port_number, seconds_between, whole_number_between

METHODS = ("icmp", "echo", "both")
MAX_PROBES = 3  # RFC 8899 MAX_PROBES: tries per size before it counts as too big
INITIAL_TIMER_S = 1.0  # the probe timer until the first answer gives an RTT
MIN_TIMER_S = 0.2  # floor of the adaptive timer: covers scheduling noise on a busy host
PROBES_PER_ROUND = 12  # sizes probed at once by the echo search
MAX_ROUNDS = 60
SEARCH_LIMIT_S = 60.0  # a search that has not settled by then reports what it has
SESSION_REFRESH_S = 5.0  # the server ends an echo session after 10 s of control silence
# Largest IP packets: IPv4's total length is 16 bits; IPv6's payload length excludes its header.
MAX_PACKET = {4: 65535, 6: 65535 + 40}
# Smallest probe the server acknowledges: the ack must not be larger than what it answers.
MIN_PROBE_PAYLOAD = wire.PROBE_ACK_SIZE
# Common MTUs in the order the echo search tries them (Ethernet and its tunnels first, then
# jumbo frames and the RFC 1191 plateaus); see shared/reference/pmtud.md.
COMMON_MTUS = (1500, 1280, 9000, 1492, 4470, 1480, 1476, 1472, 1460, 1450, 1440, 1420, 1400,
               1380, 1350, 2002, 4352, 8166, 17914, 32000, 1006, 576, 552, 508, 296)
# RFC 1191 plateaus: where to go next when a router reports no MTU (old routers send 0).
PLATEAUS = (65535, 32000, 17914, 8166, 4352, 2002, 1492, 1280, 1006, 508, 296, 68)


def floor_mtu(v6: bool) -> int:
    """The smallest MTU a path may have: 1280 for IPv6 (RFC 8200), 68 for IPv4 (RFC 791)."""
    return frag.MIN_MTU_IPV6 if v6 else frag.MIN_MTU_IPV4


def plateau_below(size: int) -> int:
    return next((p for p in PLATEAUS if p < size), PLATEAUS[-1])


# --- what the kernel knows about the route -------------------------------------------------

_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")
_RTM_NEWROUTE, _RTM_GETROUTE, _NLMSG_ERROR = 24, 26, 2
_RTA_DST, _RTA_OIF, _RTA_METRICS, _RTA_CACHEINFO = 1, 4, 8, 12
_RTAX_MTU = 2
_USER_HZ = 100  # rta_cacheinfo.rta_expires is in clock ticks
_SIOCGIFMTU = 0x8921


@dataclass
class Route:
    interface: str | None = None
    interface_mtu: int | None = None
    route_mtu: int | None = None  # the RTAX_MTU metric: learned from ICMP if it expires, else configured
    expires_s: float | None = None


def route_to(address: str) -> Route:
    """Ask the kernel (rtnetlink RTM_GETROUTE, as `ip route get` does) for the route to ``address``:
    the outgoing interface and its MTU, and any path MTU the route carries, learned or configured."""
    route = Route()
    ip = ipaddress.ip_address(address.split("%")[0])
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    dst = ip.packed
    body = _RTMSG.pack(family, 8 * len(dst), 0, 0, 0, 0, 0, 0, 0) + _RTA.pack(4 + len(dst), _RTA_DST) + dst
    request = _NLMSG.pack(_NLMSG.size + len(body), _RTM_GETROUTE, 1, 1, 0) + body  # NLM_F_REQUEST
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as nl:
            nl.settimeout(1.0)
            nl.send(request)
            reply = nl.recv(65536)
    except OSError:
        return route
    if len(reply) < _NLMSG.size + _RTMSG.size:
        return route
    length, kind = _NLMSG.unpack_from(reply)[:2]
    if kind != _RTM_NEWROUTE:
        return route
    oif = None
    offset = _NLMSG.size + _RTMSG.size
    while offset + _RTA.size <= min(length, len(reply)):
        alen, atype = _RTA.unpack_from(reply, offset)
        if alen < _RTA.size:
            break
        value = reply[offset + _RTA.size: offset + alen]
        if atype == _RTA_OIF and len(value) >= 4:
            oif = struct.unpack_from("=I", value)[0]
        elif atype == _RTA_METRICS:
            inner = 0
            while inner + _RTA.size <= len(value):
                mlen, mtype = _RTA.unpack_from(value, inner)
                if mlen < _RTA.size:
                    break
                if mtype == _RTAX_MTU and mlen >= 8:
                    route.route_mtu = struct.unpack_from("=I", value, inner + _RTA.size)[0]
                inner += (mlen + 3) & ~3
        elif atype == _RTA_CACHEINFO and len(value) >= 12:
            expires = struct.unpack_from("=i", value, 8)[0]
            route.expires_s = expires / _USER_HZ if expires > 0 else None
        offset += (alen + 3) & ~3
    if oif:
        with contextlib.suppress(OSError):
            route.interface = socket.if_indextoname(oif)
            route.interface_mtu = interface_mtu(route.interface)
    return route


def interface_mtu(name: str) -> int | None:
    """The MTU of a network interface (SIOCGIFMTU: right inside a network namespace, unlike /sys)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            raw = fcntl.ioctl(s.fileno(), _SIOCGIFMTU, struct.pack("16si", name.encode()[:15], 0))
        return struct.unpack_from("16si", raw)[1]
    except OSError:
        return None


# --- probing: a DF socket, its answers and its error queue ---------------------------------

@dataclass
class IcmpError:
    """One entry of a socket's error queue (struct sock_extended_err and the offender)."""
    errno: int
    origin: int
    type: int
    code: int
    info: int
    offender: str | None
    probe_id: int | None  # from the quoted payload, when the ICMP quoted enough of it

    @property
    def too_big(self) -> bool:
        return self.errno == errno.EMSGSIZE

    @property
    def local(self) -> bool:
        return self.origin == sockopts.SO_EE_ORIGIN_LOCAL

    @property
    def port_unreachable(self) -> bool:
        return self.errno == errno.ECONNREFUSED

    def describe(self) -> str:
        name = errno_name(self.errno)
        by = f" from {self.offender}" if self.offender else ""
        if self.too_big:
            return f"too big{by} (mtu {self.info})" if not self.local else f"too big for the interface (mtu {self.info})"
        return f"{name}{by} (ICMP type {self.type} code {self.code})"


@dataclass
class Ack:
    probe_id: int
    size: int
    companion: bool
    rtt_s: float


@dataclass
class Probe:
    size: int
    sent_at: float
    companion: bool
    acked: bool = False


def _offender(data: bytes) -> str | None:
    """The sockaddr after sock_extended_err: who sent the ICMP."""
    if len(data) < 4:
        return None
    family = struct.unpack_from("=H", data)[0]
    if family == socket.AF_INET and len(data) >= 8:
        return socket.inet_ntop(socket.AF_INET, data[4:8])
    if family == socket.AF_INET6 and len(data) >= 24:
        return socket.inet_ntop(socket.AF_INET6, data[8:24])
    return None


class Prober:
    """A UDP socket connected to the target that sends DF probes of exact IP sizes, and
    collects what comes back: PROBE_ACKs from a udpbench server and ICMP errors."""

    def __init__(self, sock: socket.socket, session: int, timeout: float | None = None):
        self.sock = sock
        self.v6 = sockopts.is_v6(sock)
        self.session = session
        self.sessions = {session}  # answers to a renewed session's older probes still count
        self.fixed_timer = timeout
        self.srtt: float | None = None
        self.probes: dict[int, Probe] = {}
        self.next_id = 1
        self.sent = 0  # probes, companions excluded
        self.companions = 0
        sockopts.set_pmtu_mode(sock, sockopts.PMTUDISC_PROBE)
        if self.v6:
            sock.setsockopt(sockopts.SOL_IPV6, sockopts.IPV6_RECVERR, 1)
        else:
            sock.setsockopt(sockopts.SOL_IP, sockopts.IP_RECVERR, 1)
        sock.setblocking(False)
        self.poller = select.poll()
        self.poller.register(sock, select.POLLIN | select.POLLERR)
        self.pending_errors: list[IcmpError] = []

    @property
    def timer(self) -> float:
        """How long to wait for a probe's answer: fixed if asked, else max(0.2 s, 3·SRTT)."""
        if self.fixed_timer is not None:
            return self.fixed_timer
        if self.srtt is None:
            return INITIAL_TIMER_S
        return max(MIN_TIMER_S, 3 * self.srtt)

    @property
    def smallest(self) -> int:
        return frag.header_overhead(self.v6) + MIN_PROBE_PAYLOAD

    def send(self, size: int, companion: bool = False) -> tuple[int, IcmpError | None]:
        """Send one probe of ``size`` IP bytes; returns its id and, if the kernel refused it
        locally (EMSGSIZE), that error."""
        probe_id = self.next_id
        self.next_id += 1
        payload = size - frag.header_overhead(self.v6)
        flags = wire.Flag.COMPANION if companion else 0
        data = wire.datagram(wire.Kind.PROBE, self.session, probe_id, payload, time.time_ns(), flags)
        self.probes[probe_id] = Probe(size, time.monotonic(), companion)
        refused = None
        for _ in range(4):
            try:
                self.sock.send(data)
                break
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
                    refused = local or IcmpError(errno.EMSGSIZE, sockopts.SO_EE_ORIGIN_LOCAL, 0, 0,
                                                 0, None, None)
                    break
        else:
            refused = IcmpError(errno.ENOBUFS, sockopts.SO_EE_ORIGIN_LOCAL, 0, 0, 0, None, probe_id)
        if refused is None:
            if companion:
                self.companions += 1
            else:
                self.sent += 1
        else:
            refused.probe_id = probe_id
        return probe_id, refused

    def read_errors(self) -> list[IcmpError]:
        """Drain the error queue (this also clears the socket's pending error)."""
        out = []
        for _ in range(256):
            try:
                data, ancillary, _flags, _addr = self.sock.recvmsg(512, 512, sockopts.MSG_ERRQUEUE)
            except OSError:  # drained (BlockingIOError) or gone
                break
            for level, kind, cdata in ancillary:
                if (level, kind) not in ((sockopts.SOL_IP, sockopts.IP_RECVERR),
                                         (sockopts.SOL_IPV6, sockopts.IPV6_RECVERR)):
                    continue
                if len(cdata) < sockopts.SOCK_EXTENDED_ERR.size:
                    continue
                ee_errno, origin, etype, code, _pad, info, _data = sockopts.SOCK_EXTENDED_ERR.unpack_from(cdata)
                probe_id = None
                with contextlib.suppress(wire.WireError):
                    header = wire.parse(data)  # the payload the ICMP quoted back
                    if header.session in self.sessions:
                        probe_id = header.seq
                out.append(IcmpError(ee_errno, origin, etype, code, info,
                                     _offender(cdata[sockopts.SOCK_EXTENDED_ERR.size:]), probe_id))
        return out

    def _read_acks(self) -> list[Ack]:
        out = []
        now = time.monotonic()
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
            probe = self.probes.get(header.seq)
            if probe is None or len(data) < wire.PROBE_ACK_SIZE:
                continue
            rx_len = wire.PROBE_ACK_BODY.unpack_from(data, wire.HEADER_SIZE)[0]
            if rx_len != probe.size - frag.header_overhead(self.v6):
                continue  # not what we sent: a middlebox changed it, do not count it
            rtt = now - probe.sent_at
            if not probe.acked:
                probe.acked = True
                self._sample(rtt)
            out.append(Ack(header.seq, probe.size, probe.companion, rtt))
        return out

    def _sample(self, rtt: float) -> None:
        # RFC 6298 smoothing; every probe id is sent once, so no retransmission ambiguity
        self.srtt = rtt if self.srtt is None else 0.875 * self.srtt + 0.125 * rtt

    def _sample_errors(self, errors: list[IcmpError]) -> None:
        """A port unreachable from the target answers a probe as an ack does: an RTT sample."""
        now = time.monotonic()
        for e in errors:
            probe = self.probes.get(e.probe_id)
            if e.port_unreachable and probe is not None and not probe.acked:
                probe.acked = True
                self._sample(now - probe.sent_at)

    def wait(self, deadline: float) -> tuple[list[Ack], list[IcmpError]]:
        """Wait until something arrives or ``deadline`` (monotonic) passes; return what came."""
        if self.pending_errors:
            errors, self.pending_errors = self.pending_errors, []
            self._sample_errors(errors)
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
            acks = self._read_acks() if mask & select.POLLIN else []
            errors += self.pending_errors
            self.pending_errors = []
            self._sample_errors(errors)
            if acks or errors:
                return acks, errors


class EchoSession:
    """An echo session on a udpbench server: while it is open, the server acknowledges this
    client's PROBE datagrams. Renewed (STOP, START) before the server's control timeout."""

    def __init__(self, client):
        self.client = client
        self.session = 0
        self.opened_at = 0.0

    def open(self) -> "EchoSession":
        self.session = secrets.randbits(64)
        self.client.open_echo(self.session)
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


# --- method A: ICMP ------------------------------------------------------------------------

@dataclass
class IcmpResult:
    mtu: int | None = None
    status: str = "inconclusive"  # confirmed | no-answer | silent | unreachable | below-floor
    detail: str = ""
    hops: list = field(default_factory=list)  # [{"from": address, "mtu": reported}]
    stalled_at: int | None = None
    probes: int = 0
    kernel_mtu: int | None = None  # IP_MTU after probing: what the kernel now holds
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"mtu": self.mtu, "status": self.status, "detail": self.detail, "hops": self.hops,
                "stalled_at": self.stalled_at, "probes": self.probes, "kernel_mtu": self.kernel_mtu,
                "elapsed_s": round(self.elapsed_s, 4)}


def icmp_search(prober: Prober, limit: int, floor: int, target: str, max_probes: int = MAX_PROBES,
                keepalive=None) -> IcmpResult:
    """Classic PMTUD: send DF probes from the top down, follow what routers report in ICMP
    "fragmentation needed" / "packet too big", and stop at the first size the target answers
    (a PROBE_ACK from a udpbench server, or ICMP port unreachable from a closed port)."""
    result = IcmpResult()
    started = time.monotonic()
    target = ipaddress.ip_address(target.split("%")[0])

    def from_target(e: IcmpError) -> bool:
        with contextlib.suppress(ValueError, TypeError):
            return ipaddress.ip_address(e.offender) == target
        return False

    def attempt(size: int) -> tuple[str, IcmpError | None]:
        """One probe of ``size``: "answered", "too-big" (with the error), "fatal", or "timeout"."""
        probe_id, refused = prober.send(size)
        if refused is not None:
            return ("too-big", refused) if refused.too_big else ("fatal", refused)
        deadline = time.monotonic() + prober.timer
        while True:
            acks, errors = prober.wait(deadline)
            if not acks and not errors:
                return "timeout", None
            if any(a.probe_id == probe_id for a in acks):
                return "answered", None
            for e in errors:
                earlier = prober.probes.get(e.probe_id)
                if e.too_big and not e.local and (earlier is None or earlier.size >= size):
                    return "too-big", e  # a late too-big for an earlier try of this size counts too
                if e.probe_id not in (None, probe_id):
                    continue  # about an earlier probe: already decided
                if e.port_unreachable and from_target(e):
                    return "answered", None
                if not e.too_big:
                    return "fatal", e  # unreachable, or a firewall on the way rejected it

    # A small probe first: it shows that answers come back at all, and gives the RTT.
    small = prober.smallest
    for _ in range(max_probes):
        outcome, err = attempt(small)
        if outcome != "timeout":
            break
    result.probes = prober.sent
    if outcome == "fatal":
        result.status, result.detail = "unreachable", err.describe()
        result.elapsed_s = time.monotonic() - started
        return result
    if outcome != "answered":
        result.status = "silent"
        result.detail = (f"no answer to {max_probes} small probes: ICMP port unreachable is filtered, "
                         "or something listens on that UDP port")
        result.elapsed_s = time.monotonic() - started
        return result

    size, tries = limit, 0
    for _ in range(4 * MAX_ROUNDS):
        if keepalive:
            keepalive()
        outcome, err = attempt(size)
        if outcome == "answered":
            result.mtu, result.status = size, "confirmed"
            break
        if outcome == "too-big":
            reported = err.info
            nxt = reported if 0 < reported < size else plateau_below(size)
            if not err.local:
                result.hops.append({"from": err.offender, "mtu": reported})
            if nxt < floor:
                result.status = "below-floor"
                result.detail = f"{err.describe()}: below the smallest MTU searched ({floor})"
                result.stalled_at = size
                break
            size, tries = nxt, 0
            continue
        if outcome == "fatal":
            result.status, result.detail = "unreachable", err.describe()
            break
        tries += 1
        if tries >= max_probes:
            result.status, result.stalled_at = "no-answer", size
            result.detail = (f"{size}-byte probes vanished {tries} times with no ICMP too-big while "
                             f"small probes are answered: possible black hole at or below {size}")
            break
    result.probes = prober.sent
    result.elapsed_s = time.monotonic() - started
    return result


# --- method B: echo probing (DPLPMTUD) ------------------------------------------------------

@dataclass
class EchoResult:
    mtu: int | None = None
    status: str = "inconclusive"  # confirmed | silent | below-floor | unsettled
    detail: str = ""
    too_big: int | None = None  # the smallest size that failed MAX_PROBES times (None: none)
    probes: int = 0
    companions: int = 0
    rounds: int = 0
    ptb: list = field(default_factory=list)  # ICMP too-big seen meanwhile: [{"from", "mtu"}]
    inconsistent: bool = False
    timer_s: float | None = None
    srtt_ms: float | None = None
    elapsed_s: float = 0.0

    def as_dict(self) -> dict:
        return {"mtu": self.mtu, "status": self.status, "detail": self.detail, "too_big": self.too_big,
                "probes": self.probes, "companions": self.companions, "rounds": self.rounds,
                "ptb": self.ptb, "inconsistent": self.inconsistent,
                "timer_s": None if self.timer_s is None else round(self.timer_s, 4),
                "srtt_ms": None if self.srtt_ms is None else round(self.srtt_ms, 3),
                "elapsed_s": round(self.elapsed_s, 4)}


def plan_round(lo: int, hi: int, fails: dict[int, int], max_probes: int, granularity: int,
               hints: tuple[int, ...] = (), width: int = PROBES_PER_ROUND) -> list[int]:
    """The sizes to probe next, given ``lo`` (largest size acknowledged) and ``hi`` (smallest
    size that failed ``max_probes`` times): the top candidate, or the smallest size under
    suspicion, then common MTUs and hints inside the bracket, then evenly spaced sizes."""
    suspects = sorted(s for s, n in fails.items() if lo < s < hi and 0 < n < max_probes)
    ceiling = suspects[0] if suspects else hi
    sizes = [ceiling if suspects else hi - 1]
    for s in (*hints, *COMMON_MTUS):
        if len(sizes) >= width:
            break
        if lo < s < ceiling and s not in sizes:
            sizes.append(s)
    room = width - len(sizes)
    if room > 0 and ceiling - lo > 1:
        step = max(granularity, (ceiling - lo) / (room + 1))
        k = 1
        while len(sizes) < width:
            s = lo + int(round(k * step))
            if s >= ceiling:
                break
            if s not in sizes:
                sizes.append(s)
            k += 1
    return sizes


def echo_search(prober: Prober, limit: int, floor: int, max_probes: int = MAX_PROBES,
                granularity: int = 1, hints: tuple[int, ...] = (), keepalive=None) -> EchoResult:
    """DPLPMTUD against a udpbench server: rounds of DF PROBE datagrams of several sizes, each
    followed by a small companion. An ack proves a size passes; a size fails once for each
    try that went unanswered while its companion was answered (a lost companion means plain
    loss, and that try does not count). Exact: reports P only when P was acknowledged and
    P + granularity failed ``max_probes`` times (or P is the interface's limit)."""
    result = EchoResult()
    started = time.monotonic()
    lo, hi = floor - 1, limit + 1
    fails: dict[int, int] = {}
    silent_rounds = 0
    companion_size = prober.smallest

    while hi - lo > granularity:
        if result.rounds >= MAX_ROUNDS or time.monotonic() - started > SEARCH_LIMIT_S:
            result.status = "unsettled"
            result.detail = f"stopped after {result.rounds} rounds between {lo} and {hi}"
            break
        if keepalive:
            keepalive()
        result.rounds += 1
        sizes = plan_round(lo, hi, fails, max_probes, granularity, hints)
        pairs = []  # (probe id, companion id, size)
        for size in sizes:
            pid, refused = prober.send(size)
            if refused is not None:
                if refused.too_big:  # above the interface MTU after all: the kernel said so
                    fails[size] = max_probes
                continue
            cid, _ = prober.send(companion_size, companion=True)
            pairs.append((pid, cid, size))
        last_sent = time.monotonic()
        answered = 0
        while pairs:
            acks, errors = prober.wait(last_sent + prober.timer)  # the timer adapts as acks come
            for a in acks:
                answered += 1
                if not a.companion and a.size > lo:
                    lo = a.size
            for e in errors:
                if e.too_big and not e.local:
                    seen = next((p for p in result.ptb if (p["from"], p["mtu"]) == (e.offender, e.info)), None)
                    if seen is None:
                        result.ptb.append({"from": e.offender, "mtu": e.info, "count": 1})
                    else:
                        seen["count"] += 1
                elif e.port_unreachable:
                    raise MeasurementError("the server's UDP port is closed (ICMP port unreachable): "
                                           "is the udpbench server still running?")
            if all(size <= lo or prober.probes[pid].acked for pid, _, size in pairs):
                break  # nothing left that could still raise lo
            if time.monotonic() >= last_sent + prober.timer:
                break
        for pid, cid, size in pairs:
            if size <= lo or prober.probes[pid].acked:
                continue
            if prober.probes[cid].acked:
                fails[size] = fails.get(size, 0) + 1
        if pairs and answered == 0:  # (a round the kernel refused whole says nothing of the path)
            silent_rounds += 1
            if silent_rounds >= max_probes:
                result.status = "silent"
                result.detail = (f"the server answered none of {prober.sent} probes and "
                                 f"{prober.companions} companions: UDP to it is filtered or lost")
                break
        elif answered:
            silent_rounds = 0
        if any(n >= max_probes and s <= lo for s, n in fails.items()):
            # a size failed every try, yet a larger one passed: paths of different MTUs (ECMP)
            # or heavy loss. The ack is proof; forget failures it contradicts.
            result.inconsistent = True
            for s in [s for s in fails if s <= lo]:
                del fails[s]
        hi = min((s for s, n in fails.items() if n >= max_probes and s > lo), default=limit + 1)
    else:
        result.status = "confirmed"

    if result.status == "confirmed" and lo < floor:
        result.status = "below-floor"
        result.detail = f"even {floor}-byte probes failed: the path MTU is below the smallest size searched"
    if lo >= floor:
        result.mtu = lo
    result.too_big = hi if hi <= limit else None
    result.probes, result.companions = prober.sent, prober.companions
    result.timer_s = prober.timer
    result.srtt_ms = None if prober.srtt is None else prober.srtt * 1e3
    result.elapsed_s = time.monotonic() - started
    return result


# --- the whole discovery ------------------------------------------------------------------

@dataclass
class Options:
    method: str = "both"
    family: int | None = None
    port: int | None = None
    min_mtu: int | None = None
    max_mtu: int | None = None
    timeout: float | None = None
    max_probes: int = MAX_PROBES
    granularity: int = 1
    token: str | None = None  # for a server that requires one; None: $UDPBENCH_TOKEN


def _limits(v6: bool, route: Route, opts: Options, fallback_mtu: int | None) -> tuple[int, int, list[str]]:
    """(floor, limit, warnings): the smallest and largest sizes to search."""
    warnings = []
    iface = route.interface_mtu or fallback_mtu
    if route.interface_mtu is None:
        warnings.append("could not read the outgoing interface's MTU; searching up to the route's MTU")
    limit = min(x for x in (opts.max_mtu, iface, MAX_PACKET[6 if v6 else 4]) if x)
    smallest_probe = frag.header_overhead(v6) + MIN_PROBE_PAYLOAD
    floor = max(opts.min_mtu or floor_mtu(v6), smallest_probe)
    if v6 and opts.min_mtu is not None and opts.min_mtu < frag.MIN_MTU_IPV6:
        raise UserError(f"--min {opts.min_mtu}: every IPv6 path carries {frag.MIN_MTU_IPV6}-byte packets")
    if floor > limit:
        raise UserError(f"nothing to search: the smallest size ({floor}) is above the largest ({limit})")
    return floor, limit, warnings


def discover(host: str, opts: Options, client=None) -> dict:
    """Find the path MTU to ``host``. With ``client`` (an open udpbench Client), probe through
    it; otherwise connect (an embedded server for a loopback host when the echo method needs one)."""
    from udpbench.measure.embedded import connect
    from udpbench.transport.client import Client, ServerAbsent, resolve
    from udpbench.protocol.control import DEFAULT_PORT

    port = opts.port or DEFAULT_PORT
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        warnings: list[str] = []
        if client is None and opts.method in ("echo", "both"):
            try:
                client = stack.enter_context(connect(host, port, opts.family, token=opts.token))
            except ServerAbsent as exc:
                if opts.method == "echo":
                    raise
                warnings.append(f"{exc}; the echo method was skipped")
        elif client is None:
            with contextlib.suppress(ServerAbsent):
                client = stack.enter_context(contextlib.closing(Client(host, port, opts.family,
                                                                       token=opts.token)))
        if client is not None:
            family, address, port, v6 = client.family, client.server_addr[0], client.port, client.v6
        else:
            family, sockaddr = resolve(host, port, opts.family)
            address, v6 = sockaddr[0], family == socket.AF_INET6

        def target_socket() -> socket.socket:
            if client is not None:
                return client.data_socket()
            s = socket.socket(family, socket.SOCK_DGRAM)
            s.connect((address, port))
            return s

        # Phase 0: what the kernel already believes about this path, before any probe.
        route = route_to(address)
        with target_socket() as s:
            before = sockopts.route_mtu(s)
        floor, limit, more = _limits(v6, route, opts, before)
        warnings += more
        cached = None
        if before is not None and route.interface_mtu and before < min(route.interface_mtu, MAX_PACKET[6 if v6 else 4]):
            cached = before
            if route.expires_s:
                warnings.append(f"the kernel already held a path MTU of {before} for {address}, learned "
                                f"earlier (expires in {route.expires_s:.0f} s); the probes ignore it")
            else:
                warnings.append(f"the route to {address} carries MTU {before} (configured, not learned); "
                                "the probes ignore it")

        session = stack.enter_context(contextlib.closing(EchoSession(client).open())) if client else None
        session_id = session.session if session else secrets.randbits(64)

        out = {
            "host": host, "address": address, "port": port, "family": 6 if v6 else 4,
            "method": opts.method, "path_mtu": None, "max_payload": None,
            "icmp_mtu": None, "echo_mtu": None,
            "interface": route.interface, "interface_mtu": route.interface_mtu,
            "route_mtu_before": before, "cached_mtu": cached, "black_hole": False,
            "min_mtu": floor, "max_mtu": limit, "probes": 0, "elapsed_s": 0.0,
            "server": client is not None, "warnings": warnings,
        }
        icmp = echo = None
        if opts.method in ("icmp", "both"):
            with target_socket() as s:
                prober = Prober(s, session_id, opts.timeout)
                keep = (lambda: session.keepalive(prober)) if session else None
                icmp = icmp_search(prober, limit, floor, address, opts.max_probes, keep)
                icmp.kernel_mtu = sockopts.route_mtu(s)  # what the kernel learned meanwhile
            out["icmp"] = icmp.as_dict()
            out["icmp_mtu"] = icmp.mtu
            out["probes"] += icmp.probes
            if icmp.mtu is None and icmp.detail:
                warnings.append(f"icmp: {icmp.detail}")
        if opts.method in ("echo", "both") and client is not None:
            with target_socket() as s:
                prober = Prober(s, session.session, opts.timeout)
                hints = (icmp.mtu, icmp.mtu + 1) if icmp and icmp.mtu and icmp.mtu < limit else ()
                echo = echo_search(prober, limit, floor, opts.max_probes, opts.granularity, hints,
                                   lambda: session.keepalive(prober))
            out["echo"] = echo.as_dict()
            out["echo_mtu"] = echo.mtu
            out["probes"] += echo.probes
            if echo.mtu is None or echo.status != "confirmed":
                warnings.append(f"echo: {echo.detail}" if echo.detail else f"echo: {echo.status}")
            if echo.inconsistent:
                warnings.append("echo: a size failed every try yet a larger one passed: the path's MTU "
                                "varies (ECMP over links of different MTUs?) or loss is heavy")
    out.update(judge(out, icmp, echo, limit, v6))
    out["elapsed_s"] = round(time.monotonic() - started, 4)
    return out


def judge(out: dict, icmp: IcmpResult | None, echo: EchoResult | None, limit: int, v6: bool) -> dict:
    """The verdict: the path MTU (the echo method's, proven by acks, else ICMP's), the largest UDP
    payload, and whether big DF datagrams vanish without the ICMP that PMTUD relies on."""
    warnings = out["warnings"]
    icmp_mtu = icmp.mtu if icmp else None
    echo_mtu = echo.mtu if echo else None
    path_mtu = echo_mtu if echo_mtu is not None else icmp_mtu
    black_hole = False
    if echo_mtu is not None:
        # What ICMP told us: the ICMP method's answer, else any too-big seen meanwhile, else
        # nothing, and then the interface is all a sender would go by.
        told = [m for m in ([icmp_mtu] if icmp_mtu else []) + [p["mtu"] for p in echo.ptb] if m]
        if icmp and icmp.hops and icmp_mtu is None:
            told += [h["mtu"] for h in icmp.hops if h["mtu"]]
        suggested = min(told) if told else limit
        black_hole = echo_mtu < suggested
        if black_hole:
            warnings.append(f"PMTU black hole: DF packets above {echo_mtu} bytes vanish, yet "
                            + (f"ICMP said {suggested}" if told else "no ICMP too-big came back")
                            + ": a router or firewall on the path drops them or the ICMP")
        elif icmp_mtu is not None and echo_mtu > icmp_mtu:
            warnings.append(f"ICMP said {icmp_mtu} but {echo_mtu}-byte probes arrive: an ICMP too-big "
                            "was wrong, or the path changed")
    verdict = {"path_mtu": path_mtu, "black_hole": black_hole,
               "max_payload": frag.max_unfragmented_payload(path_mtu, v6) if path_mtu else None}
    return verdict


# --- for sweeps -----------------------------------------------------------------------------

def sweep_path_mtu(client, loopback: bool, timeout: float | None = None) -> dict:
    """The path MTU a sweep plans around, for a connected Client: on loopback the route's
    (instant, and loopback drops nothing); elsewhere the echo method through the client (exact,
    and black-hole proof), then the ICMP method, then the kernel's route MTU as a last resort.
    Returns {path_mtu, mtu_method, black_hole, interface_mtu, mtu_warnings}."""
    if loopback:
        return {"path_mtu": client.path_mtu(), "mtu_method": "route", "black_hole": False,
                "interface_mtu": route_to(client.server_addr[0]).interface_mtu, "mtu_warnings": []}
    info = {"path_mtu": None, "mtu_method": None, "black_hole": False, "interface_mtu": None,
            "mtu_warnings": []}
    for method in ("echo", "icmp"):
        try:
            found = discover(client.host, Options(method=method, timeout=timeout), client=client)
        except (MeasurementError, OSError) as exc:
            info["mtu_warnings"].append(f"{method}: {exc}")
            continue
        info["interface_mtu"] = found["interface_mtu"]
        info["mtu_warnings"] += found["warnings"]
        if found["path_mtu"]:
            info.update(path_mtu=found["path_mtu"], mtu_method=method, black_hole=found["black_hole"])
            return info
    info.update(path_mtu=client.path_mtu(), mtu_method="route")
    info["mtu_warnings"].append("no probe found the path MTU: using the kernel's route MTU, which may "
                                "be a cached value or just the interface's")
    return info


# --- command line ---------------------------------------------------------------------------


def add_parser(commands) -> None:
    from udpbench.protocol.control import DEFAULT_PORT

    p = commands.add_parser(
        "mtu", help="find the path MTU: by ICMP (like tracepath) and by echo probing a udpbench server",
        description="Find the largest IP packet that crosses the path to HOST unfragmented. The ICMP "
                    "method follows routers' 'fragmentation needed' / 'packet too big' messages and works "
                    "against any host (a closed UDP port answers with port unreachable); the echo method "
                    "probes a udpbench server with DF datagrams it acknowledges (RFC 8899), exact to the "
                    "byte and immune to filtered ICMP. Sizes are IP packet bytes.")
    p.add_argument("host", metavar="HOST")
    p.add_argument("--method", choices=METHODS, default="both",
                   help="icmp, echo, or both and compare (default): both also detects PMTU black holes")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=socket.AF_INET, help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=socket.AF_INET6, help="IPv6 only")
    p.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                   help=f"the udpbench server's port; with no server there, the ICMP method's target "
                        f"port, which should be closed (default {DEFAULT_PORT})")
    p.add_argument("--min", dest="min_mtu", type=whole_number_between("--min", 68, MAX_PACKET[6], "bytes (IP packet sizes)"),
                   metavar="B",
                   help="smallest MTU to consider (default 68 for IPv4, 1280 for IPv6)")
    p.add_argument("--max", dest="max_mtu", type=whole_number_between("--max", 68, MAX_PACKET[6], "bytes (IP packet sizes)"),
                   metavar="B",
                   help="largest MTU to consider (default: the outgoing interface's MTU)")
    p.add_argument("--timeout", type=seconds_between("--timeout", 0.001, 10), metavar="S",
                   help="fixed probe timer in seconds (default adaptive: 1 s until the first answer, "
                        "then max(0.2 s, 3 x smoothed RTT))")
    p.add_argument("--max-probes", type=whole_number_between("--max-probes", 1, 10), default=MAX_PROBES, metavar="N",
                   help=f"tries per size before it counts as too big (default {MAX_PROBES})")
    p.add_argument("--granularity", type=whole_number_between("--granularity", 1, 1024, "bytes"), default=1, metavar="B",
                   help="stop the echo search when the bracket is this narrow (default 1: exact)")
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of text")
    control.add_token_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:

    if args.min_mtu and args.max_mtu and args.min_mtu > args.max_mtu:
        raise UserError(f"--min {args.min_mtu} is above --max {args.max_mtu}")
    opts = Options(method=args.method, family=args.family, port=args.port, min_mtu=args.min_mtu,
                   max_mtu=args.max_mtu, timeout=args.timeout, max_probes=args.max_probes,
                   granularity=args.granularity, token=control.token_of(args))
    result = discover(args.host, opts)
    if args.json:
        print(json.dumps(result))
    else:
        print(format_text(result))
    return 0 if result["path_mtu"] else 1


def format_text(r: dict) -> str:
    """The result as a person reads it, tracepath-style."""
    fam = f"IPv{r['family']}"
    via = f" via {r['interface']} (MTU {r['interface_mtu']})" if r["interface"] else ""
    lines = [f"udpbench mtu {r['host']} [{r['address']}] port {r['port']}, {fam}{via}"]
    if r.get("icmp"):
        i = r["icmp"]
        hops = "; ".join(f"too big from {h['from']} (mtu {h['mtu']})" for h in i["hops"])
        what = (f"{i['mtu']}" if i["mtu"] else "-").rjust(6)
        how = {"confirmed": "answered" + (f" after {hops}" if hops else ", no router objected"),
               }.get(i["status"], i["detail"] or i["status"])
        lines.append(f"  icmp {what}  {how}  [{i['probes']} probes, {i['elapsed_s']:.2f} s]")
    if r.get("echo"):
        e = r["echo"]
        what = (f"{e['mtu']}" if e["mtu"] else "-").rjust(6)
        if e["status"] == "confirmed" and e["mtu"]:
            how = (f"{e['mtu']} acked, {e['too_big']} lost every try" if e["too_big"]
                   else f"{e['mtu']} acked, the top of the range")
        else:
            how = e["detail"] or e["status"]
        timer = f", timer {e['timer_s'] * 1e3:.0f} ms" if e["timer_s"] is not None else ""
        lines.append(f"  echo {what}  {how}  [{e['probes']} probes + {e['companions']} companions in "
                     f"{e['rounds']} rounds{timer}, {e['elapsed_s']:.2f} s]")
    if r["path_mtu"]:
        lines.append(f"path MTU {r['path_mtu']} bytes: largest UDP payload {r['max_payload']} unfragmented "
                     f"({fam}){'  BLACK HOLE' if r['black_hole'] else ''}  [{r['elapsed_s']:.2f} s]")
    else:
        lines.append(f"path MTU not found  [{r['elapsed_s']:.2f} s]")
    # a method's own verdict is already on its line above
    shown = tuple(f"{m}: " for m in ("icmp", "echo") if r.get(m))
    lines += [f"warning: {w}" for w in r["warnings"] if not w.startswith(shown or ("\0",))]
    return "\n".join(lines)
