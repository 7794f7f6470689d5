"""This network namespace's interfaces and addresses, from rtnetlink dumps (pyroute2).

netlink rather than SIOCGIFCONF: it also lists secondary and IPv6 addresses, and each
interface's flags. pyroute2 is imported on first use: it costs a few hundred milliseconds, and
most commands never list interfaces.
"""
from __future__ import annotations

import ipaddress
import socket
import struct
from typing import NamedTuple

from udpbench.protocol.discovery import LIMITED_BROADCAST, subnet_broadcast

# <linux/if.h> net_device_flags
IFF_UP = 0x1
IFF_BROADCAST = 0x2
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000


class Interface(NamedTuple):
    index: int
    name: str
    flags: int  # IFF_*

    @property
    def up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def multicast(self) -> bool:
        return bool(self.flags & IFF_MULTICAST)


class InterfaceAddress(NamedTuple):
    ifindex: int
    ifname: str
    family: int  # 4 or 6
    address: str
    prefixlen: int
    broadcast: str | None  # IPv4 directed broadcast of the subnet, if it has one


def _iproute():
    from pyroute2 import IPRoute  # here, not at the top: slow to import (see above)

    return IPRoute()


def interfaces() -> list[Interface]:
    """Every interface, up or not, in index order."""
    with _iproute() as ipr:
        links = ipr.get_links()
    out = [Interface(link["index"], link.get("IFLA_IFNAME") or str(link["index"]), link["flags"])
           for link in links]
    return sorted(out, key=lambda i: i.index)


def interface_addresses() -> list[InterfaceAddress]:
    """Every address on this namespace's interfaces."""
    with _iproute() as ipr:
        names = {link["index"]: link.get("IFLA_IFNAME") for link in ipr.get_links()}
        messages = ipr.get_addr()
    out = []
    for msg in messages:
        family = msg["family"]
        # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on point-to-point links.
        address = msg.get("IFA_LOCAL") or msg.get("IFA_ADDRESS")
        if family not in (socket.AF_INET, socket.AF_INET6) or not address:
            continue
        index, prefixlen = msg["index"], msg["prefixlen"]
        broadcast = subnet_broadcast(address, prefixlen, msg.get("IFA_BROADCAST")) \
            if family == socket.AF_INET else None
        out.append(InterfaceAddress(index, names.get(index) or str(index), 4 if family == socket.AF_INET else 6,
                                    address, prefixlen, broadcast))
    return out


def owner_of(address: str) -> InterfaceAddress | None:
    """The interface address entry for a local address, or None."""
    try:
        want = ipaddress.ip_address(address.split("%")[0])
        entries = interface_addresses()
    except (ValueError, OSError):
        return None
    for entry in entries:
        if ipaddress.ip_address(entry.address) == want:
            return entry
    return None


def broadcast_targets(bind: str) -> tuple[InterfaceAddress, list[str]] | None:
    """For a server bound to one IPv4 address: its interface and the broadcast addresses to hear.

    A socket bound to a unicast address never receives broadcasts on Linux; a socket bound to
    the subnet's broadcast address (or 255.255.255.255) does. None for addresses that are not
    a local IPv4 interface address.
    """
    entry = owner_of(bind)
    if entry is None or entry.family != 4:
        return None
    targets = [entry.broadcast] if entry.broadcast else []
    targets.append(LIMITED_BROADCAST)
    return entry, targets


def join_group_v6(sock: socket.socket, group: str, links: list[Interface] | None = None) -> list[str]:
    """Join an IPv6 multicast group on every up interface that does multicast; their names.

    A link-local group is joined per interface (RFC 4291 section 2.7). An interface the kernel
    refuses (no IPv6 on it) is left out; interfaces that appear later are not joined.
    """
    joined = []
    for link in interfaces() if links is None else links:
        if not (link.up and link.multicast):
            continue
        try:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP,
                            socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", link.index))
        except OSError:
            continue
        joined.append(link.name)
    return joined
