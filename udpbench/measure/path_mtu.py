"""The path MTU to a host, by ICMP (classic PMTUD, like tracepath) and by echo probing against a
udpbench server (RFC 8899 DPLPMTUD), and the two compared; and the path-MTU step of a sweep.
See docs/mtu.md. All sizes are IP packet sizes in bytes, IP header included, as MTUs are."""
from __future__ import annotations

import contextlib
import dataclasses
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field

from udpbench.errors import MeasurementError, UserError
from udpbench.linux import sockopts
from udpbench.linux.sockopts import format_hostport
from udpbench.linux.route import Route, route_to
from udpbench.measure.embedded import connect
from udpbench.protocol import frag
from udpbench.protocol.plpmtud import EchoResult, EchoSearch
from udpbench.protocol.pmtud import (MAX_PACKET, MAX_PROBES, IcmpResult, IcmpSearch,
                                     floor_mtu, smallest_probe)
from udpbench.transport.client import Client, ServerAbsent, resolve
from udpbench.transport.prober import ProbeSession, Prober, drive
from udpbench.protocol.control import DEFAULT_PORT

METHODS = ("icmp", "echo", "both")


@dataclass
class PathMtuOptions:
    """How to search. Sizes are IP packet bytes."""

    method: str = "both"
    """``icmp``, ``echo``, or ``both`` (run icmp, then echo, and compare: finds black holes)."""
    family: int | None = None
    """``socket.AF_INET`` or ``AF_INET6`` to use only that family; None: whichever resolves first."""
    port: int | None = None
    """The udpbench server's port (default 1060); with no server there, the icmp method's target."""
    min_mtu: int | None = None
    """The smallest MTU considered; None: 68 for IPv4 (RFC 791), 1280 for IPv6 (RFC 8200)."""
    max_mtu: int | None = None
    """The largest MTU considered; None: the outgoing interface's MTU."""
    timeout: float | None = None
    """A fixed probe timer in seconds; None: adaptive, max(0.2 s, 3 x smoothed RTT)."""
    max_probes: int = MAX_PROBES
    """Tries per size before it counts as too big (RFC 8899 MAX_PROBES)."""
    granularity: int = 1
    """Stop the echo search once the bracket is this narrow (1: exact)."""
    token: str | None = None
    """For a server that requires one; None: $UDPBENCH_TOKEN."""


Options = PathMtuOptions  # the name the sweep and older callers use


@dataclass
class PathMtu:
    """What path-MTU discovery found; ``as_dict()`` gives the JSON fields of docs/mtu.md."""

    host: str
    address: str
    port: int
    family: int  # 4 or 6
    method: str
    path_mtu: int | None = None  # the echo method's answer (proven by acks), else the icmp method's
    max_payload: int | None = None  # the largest unfragmented UDP payload at path_mtu
    icmp_mtu: int | None = None
    echo_mtu: int | None = None
    interface: str | None = None
    interface_mtu: int | None = None
    route_mtu_before: int | None = None  # IP_MTU before any probe: what the kernel believed
    cached_mtu: int | None = None  # route_mtu_before, when below the interface MTU
    black_hole: bool = False
    min_mtu: int = 0
    max_mtu: int = 0
    probes: int = 0
    elapsed_s: float = 0.0
    server: bool = False  # whether a udpbench server answered
    warnings: list[str] = field(default_factory=list)
    icmp: IcmpResult | None = None
    echo: EchoResult | None = None
    stopped: bool = False  # a caller's stop ended the search; only then in as_dict()

    def as_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("icmp", "echo", "stopped") or (f.name == "stopped" and self.stopped)}
        out["warnings"] = list(self.warnings)
        for name in ("icmp", "echo"):
            method = getattr(self, name)
            if method is not None:
                out[name] = method.as_dict()
        return out


def limits(v6: bool, route: Route, opts: PathMtuOptions, fallback_mtu: int | None) -> tuple[int, int, list[str]]:
    """(floor, limit, warnings): the smallest and largest sizes to search."""
    warnings = []
    iface = route.interface_mtu or fallback_mtu
    if route.interface_mtu is None:
        warnings.append("could not read the outgoing interface's MTU; searching up to the route's MTU")
    limit = min(x for x in (opts.max_mtu, iface, MAX_PACKET[6 if v6 else 4]) if x)
    floor = max(opts.min_mtu or floor_mtu(v6), smallest_probe(v6))
    if v6 and opts.min_mtu is not None and opts.min_mtu < frag.MIN_MTU_IPV6:
        raise UserError(f"minimum size {opts.min_mtu}: every IPv6 path carries {frag.MIN_MTU_IPV6}-byte packets")
    if floor > limit:
        raise UserError(f"nothing to search: the smallest size ({floor}) is above the largest ({limit})")
    return floor, limit, warnings


def path_mtu(host: str, options: PathMtuOptions | None = None, *, client: Client | None = None,
             stop: threading.Event | None = None, **fields) -> PathMtu:
    """Find the path MTU to ``host``. Options as a PathMtuOptions or as its fields by keyword.

    With ``client`` (an open udpbench Client), probe through it; otherwise connect, starting an
    embedded server for a loopback host when the echo method needs one. ``stop``, set from
    another thread, ends the search within a twentieth of a second: the result then has
    ``stopped`` true and no ``path_mtu``.
    """
    opts = dataclasses.replace(options or PathMtuOptions(), **fields)
    if opts.method not in METHODS:
        raise UserError(f"method {opts.method!r}: choose one of {', '.join(METHODS)}")
    if opts.min_mtu and opts.max_mtu and opts.min_mtu > opts.max_mtu:
        raise UserError(f"minimum size {opts.min_mtu} is above maximum size {opts.max_mtu}")
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
                client = stack.enter_context(contextlib.closing(Client(host, port, opts.family, token=opts.token)))
        if client is not None:
            family, address, port, v6 = client.family, client.server_addr[0], client.port, client.v6
        else:
            family, sockaddr = resolve(host, port, opts.family)
            address, v6 = sockaddr[0], family == socket.AF_INET6

        def target_socket() -> socket.socket:
            if client is not None:
                return client.data_socket()
            s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.connect((address, port))
            except OSError as exc:  # no route (ENETUNREACH): one line, as the other measurements say it
                s.close()
                where = format_hostport(address, port)
                raise ServerAbsent(f"cannot reach {where}: {exc.strerror}", where, port) from None
            return s

        # Phase 0: what the kernel already believes about this path, before any probe.
        route = route_to(address)
        with target_socket() as s:
            before = sockopts.route_mtu(s)
        floor, limit, more = limits(v6, route, opts, before)
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

        def probe_session(s):
            """An echo session bound to this socket's port (each phase probes from a socket of its own)."""
            return contextlib.closing(ProbeSession(client, s.getsockname()[1]).open()) if client \
                else contextlib.nullcontext()

        found = PathMtu(host, address, port, 6 if v6 else 4, opts.method, interface=route.interface,
                        interface_mtu=route.interface_mtu, route_mtu_before=before, cached_mtu=cached,
                        min_mtu=floor, max_mtu=limit, server=client is not None, warnings=warnings)
        if opts.method in ("icmp", "both"):
            with target_socket() as s, probe_session(s) as session:
                prober = Prober(s, session.session if session else secrets.randbits(64))
                search = IcmpSearch(time.monotonic(), limit, floor, address, v6, opts.max_probes, opts.timeout)
                keep = (lambda: session.keepalive(prober)) if session else None
                found.icmp = drive(search, prober, keep, stop)
                found.icmp.kernel_mtu = sockopts.route_mtu(s)  # what the kernel learned meanwhile
            found.icmp_mtu = found.icmp.mtu
            found.probes += found.icmp.probes
            if found.icmp.mtu is None and found.icmp.detail:
                warnings.append(f"icmp: {found.icmp.detail}")
        if opts.method in ("echo", "both") and client is not None and not (stop and stop.is_set()):
            icmp = found.icmp
            with target_socket() as s, probe_session(s) as session:
                prober = Prober(s, session.session)
                hints = (icmp.mtu, icmp.mtu + 1) if icmp and icmp.mtu and icmp.mtu < limit else ()
                search = EchoSearch(time.monotonic(), limit, floor, v6, opts.max_probes, opts.granularity,
                                    hints, opts.timeout)
                found.echo = echo = drive(search, prober, lambda: session.keepalive(prober), stop)
            found.echo_mtu = echo.mtu
            found.probes += echo.probes
            if echo.mtu is None or echo.status != "confirmed":
                warnings.append(f"echo: {echo.detail}" if echo.detail else f"echo: {echo.status}")
            if echo.inconsistent:
                warnings.append("echo: a size failed every try yet a larger one passed: the path's MTU "
                                "varies (ECMP over links of different MTUs?) or loss is heavy")
    found.stopped = bool(stop and stop.is_set())
    if found.stopped:  # a search cut short proves nothing about the path
        found.warnings.append("stopped before the search ended")
        verdict = {"path_mtu": None, "black_hole": False, "max_payload": None}
    else:
        verdict = judge(found.warnings, found.icmp, found.echo, limit, v6)
    found.path_mtu, found.black_hole, found.max_payload = (verdict["path_mtu"], verdict["black_hole"],
                                                           verdict["max_payload"])
    found.elapsed_s = round(time.monotonic() - started, 4)
    return found


def judge(warnings: list[str], icmp: IcmpResult | None, echo: EchoResult | None, limit: int, v6: bool) -> dict:
    """The verdict: the path MTU (the echo method's, proven by acks, else ICMP's), the largest UDP
    payload, and whether big DF datagrams vanish without the ICMP that PMTUD relies on."""
    icmp_mtu = icmp.mtu if icmp else None
    echo_mtu = echo.mtu if echo else None
    found = echo_mtu if echo_mtu is not None else icmp_mtu
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
    return {"path_mtu": found, "black_hole": black_hole,
            "max_payload": frag.max_unfragmented_payload(found, v6) if found else None}


# --- for sweeps -----------------------------------------------------------------------------

def sweep_path_mtu(client: Client, loopback: bool, timeout: float | None = None) -> dict:
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
            found = path_mtu(client.host, PathMtuOptions(method=method, timeout=timeout), client=client)
        except (MeasurementError, OSError) as exc:
            info["mtu_warnings"].append(f"{method}: {exc}")
            continue
        info["interface_mtu"] = found.interface_mtu
        info["mtu_warnings"] += found.warnings
        if found.path_mtu:
            info.update(path_mtu=found.path_mtu, mtu_method=method, black_hole=found.black_hole)
            return info
    info.update(path_mtu=client.path_mtu(), mtu_method="route")
    info["mtu_warnings"].append("no probe found the path MTU: using the kernel's route MTU, which may "
                                "be a cached value or just the interface's")
    return info
