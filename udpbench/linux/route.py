"""What the kernel knows about the route to an address: the outgoing interface and its MTU,
and any path MTU the route carries (learned from ICMP or configured). Asked over rtnetlink
with RTM_GETROUTE, as ``ip route get`` does, through pyroute2."""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
from dataclasses import dataclass

_USER_HZ = 100  # rta_cacheinfo.rta_expires is in clock ticks
_SIOCGIFMTU = 0x8921


@dataclass
class Route:
    interface: str | None = None
    interface_mtu: int | None = None
    route_mtu: int | None = None  # the RTAX_MTU metric: learned from ICMP if it expires, else configured
    expires_s: float | None = None


def route_to(address: str) -> Route:
    """The route to ``address``; an empty Route when there is none or netlink cannot be asked
    (the caller then goes by IP_MTU on a connected socket)."""
    from pyroute2 import IPRoute  # imported here: only path-MTU discovery pays its import time

    route = Route()
    ip = ipaddress.ip_address(address.split("%")[0])
    try:
        with IPRoute() as netlink:
            answer = netlink.route("get", dst=str(ip), family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET)
    except Exception:  # pyroute2 raises NetlinkError (an OSError) and, on odd replies, others
        return route
    if not answer:
        return route
    message = answer[0]
    metrics = message.get_attr("RTA_METRICS")
    if metrics is not None:
        route.route_mtu = metrics.get_attr("RTAX_MTU")
    cacheinfo = message.get_attr("RTA_CACHEINFO")
    if cacheinfo is not None and cacheinfo.get("rta_expires", 0) > 0:
        route.expires_s = cacheinfo["rta_expires"] / _USER_HZ
    oif = message.get_attr("RTA_OIF")
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
