"""find_servers: which udpbench servers answer on the directly connected segments.

By default a search goes to the directed broadcast address of every up IPv4 interface that has
one (loopback's 127.255.255.255 among them) and to the IPv6 link-local group on every up
interface that does multicast. A search is a few rounds of 128-byte datagrams, bounded in count
and time, like the mDNS and SSDP queries every LAN carries. See docs/ping.md.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable

from udpbench.errors import UserError
from udpbench.linux import interfaces as ifaces
from udpbench.protocol import discovery
from udpbench.protocol.discovery import FoundServer, SearchResult, Target
from udpbench.transport import finder
from udpbench.protocol.control import DEFAULT_PORT


@dataclasses.dataclass
class FindServersOptions:
    """Where to search for udpbench servers, and for how long."""

    broadcast: str | None = None
    """One IPv4 address to search (a broadcast address, or one host's); None: every segment."""
    interface: str | None = None
    """Search only on this interface (with ``broadcast``: send it out of this interface)."""
    family: int | None = None
    """4 or 6 to search one family only; None: both."""
    port: int = DEFAULT_PORT
    """The servers' port."""
    timeout: float = discovery.DEFAULT_TIMEOUT_S
    """Seconds to listen for answers; every round is sent within it."""
    sends: int = discovery.DEFAULT_SENDS
    """Rounds of DISCOVER datagrams, one to each target a round, spread over the timeout."""
    on_found: Callable[[FoundServer], None] | None = None
    """Called with each server as it answers."""
    stop: threading.Event | None = None
    """Set it from another thread to end the search early."""


def search_servers(options: FindServersOptions | None = None, **fields) -> SearchResult:
    """Search once, and say where it looked and what else arrived besides the servers."""
    opts = dataclasses.replace(options or FindServersOptions(), **fields)
    if not 0 < opts.timeout <= 600:
        raise UserError(f"timeout {opts.timeout!r} s is outside 0-600 s")
    if opts.family not in (None, 4, 6):
        raise UserError(f"family {opts.family!r} is not 4 or 6")
    try:
        return finder.search(targets(opts), opts.port, opts.timeout, opts.sends, opts.on_found, opts.stop)
    except ValueError as exc:  # port, sends or the number of targets out of range
        raise UserError(str(exc)) from None


def find_servers(options: FindServersOptions | None = None, **fields) -> list[FoundServer]:
    """The udpbench servers that answer a search, in the order they answered.

    ``find_servers()`` searches every directly connected segment; ``find_servers(interface="lo")``
    this machine only. Fields as in :class:`FindServersOptions`.
    """
    return search_servers(options, **fields).servers


def targets(opts: FindServersOptions) -> list[Target]:
    """Where the search goes: the one address asked for, or every segment's broadcast and group."""
    ifindex = 0
    links = ifaces.interfaces()
    if opts.interface is not None:
        chosen = [i for i in links if i.name == opts.interface]
        if not chosen:
            raise UserError(f"no interface named {opts.interface!r} here")
        if not chosen[0].up:
            raise UserError(f"interface {opts.interface} is down")
        links, ifindex = chosen, chosen[0].index
    if opts.broadcast is not None:
        try:
            address = discovery.check_broadcast(opts.broadcast)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if opts.family == 6:
            raise UserError(f"{address} is an IPv4 address, and the search is IPv6 only")
        return [Target(address, ifindex, opts.interface)]
    up = {i.index: i for i in links if i.up}
    found: list[Target] = []
    for entry in ifaces.interface_addresses():
        link = up.get(entry.ifindex)
        if link is None or (opts.family and entry.family != opts.family):
            continue
        if entry.family == 4 and entry.broadcast:
            target = Target(entry.broadcast, link.index, link.name)
        elif entry.family == 6 and link.multicast:
            target = Target(discovery.MULTICAST_GROUP_V6, link.index, link.name)
        else:
            continue
        if target not in found:  # two addresses of one subnet share its broadcast
            found.append(target)
    if not found:
        what = {4: "an IPv4 broadcast address", 6: "IPv6 multicast"}.get(
            opts.family, "an IPv4 broadcast address or IPv6 multicast")
        where = f"interface {opts.interface} has no" if opts.interface else "no up interface has"
        raise UserError(f"{where} {what}: nowhere to search")
    return sorted(found, key=lambda t: (t.family, t.ifindex, t.address))
