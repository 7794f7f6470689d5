"""Which targets the exporter may measure: the allow-list, and a target's host and port.

An exporter measures whatever its URL names, so the allow-list is required and holds only what
the operator wrote: networks (CIDRs) and host names. A name is allowed if it is listed, or if
every address it resolves to lies in a listed network. The probe then measures the address
that was checked, so a name that resolves elsewhere a moment later (DNS rebinding) cannot
redirect it.
"""
from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass

from udpbench.errors import UserError

_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.?)+$")


class NotAllowed(Exception):
    """The target is outside the allow-list (or cannot be checked against it)."""


@dataclass(frozen=True)
class Target:
    host: str  # as the URL gave it
    port: int | None  # None: the module's port


def parse_target(text: str) -> Target:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port``; ValueError with the reason otherwise."""
    if not text or len(text) > 255 or any(c.isspace() or ord(c) < 32 for c in text):
        raise ValueError("target must be a host name or address, optionally with :port")
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"target {text!r}: unclosed '['")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"target {text!r}: expected :port after ']'")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(f"target {text!r}: port must be 1 to 65535")
        port = int(port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _NAME.match(host):
            raise ValueError(f"target {text!r} is not a host name or IP address") from None
    return Target(host, port)


class AllowList:
    """Networks and host names the exporter may send to; nothing by default."""

    def __init__(self, entries: list[str]):
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for entry in entries:
            for item in filter(None, (e.strip() for e in entry.split(","))):
                try:
                    self.networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    if not _NAME.match(item) or item.replace(".", "").isdigit():
                        raise UserError(f"allow-list entry {item!r} is neither a CIDR nor a host name") from None
                    self.names.add(item.lower().rstrip("."))
        if not self.networks and not self.names:
            raise UserError("the allow-list is empty: name the networks or hosts the exporter may probe")

    def check(self, host: str, resolve=socket.getaddrinfo) -> list[str]:
        """The addresses of ``host`` to measure, all allowed; NotAllowed if any is not.

        An address literal is checked as it is; a name is resolved once, here."""
        try:
            addresses = [ipaddress.ip_address(host)]
            listed = False
        except ValueError:
            listed = host.lower().rstrip(".") in self.names
            try:
                infos = resolve(host, None, 0, socket.SOCK_DGRAM)
            except (socket.gaierror, UnicodeError) as exc:
                if listed:
                    return []  # allowed, but it names nothing now: a failed probe, not a refusal
                raise NotAllowed(f"target {host!r} is not in the allow-list (and does not resolve: "
                                 f"{getattr(exc, 'strerror', exc)})") from None
            addresses = list(dict.fromkeys(ipaddress.ip_address(i[4][0].split("%")[0]) for i in infos))
        if not listed:
            outside = [a for a in addresses if not any(a in n for n in self.networks)]
            if outside or not addresses:
                raise NotAllowed(f"target {host!r} is not in the allow-list"
                                 + (f" ({outside[0]} is outside every allowed network)" if outside and
                                    str(outside[0]) != host else ""))
        return [str(a) for a in addresses]
