"""The lab's shape, as plain data: hosts behind one router, their subnets, links and settings.

Host ``i`` (1-based) sits in its own subnet: 198.18.(i-1).0/24 and fdb0:i::/64, the router at
``.1``/``::1`` and the host at ``.2``/``::2``. Two hosts are named ``client`` and ``server``
(the lab as it always was); more are ``h1`` … ``hN``. Every host's interface is ``to-router``
and the router's toward it is ``to-<host>``. Addresses lie in 198.18.0.0/15, the range RFC 2544
sets aside for benchmarking. No I/O here: see docs/lab.md.
"""
from __future__ import annotations

import dataclasses
import re

from udpbench.errors import UserError
from udpbench.protocol import units

DEFAULT_PREFIX = "ub"
DEFAULT_MTU = 1500
DEFAULT_HOSTS = 2
MAX_HOSTS = 64  # one /24 each within 198.18.0.0/15; far more namespaces than a test machine wants
# veth's largest MTU is ETH_MAX_MTU (65535); below 68 IPv4 itself stops working.
MIN_MTU, MAX_MTU = 68, 65535
IPV6_MIN_MTU = 1280  # below it the kernel removes IPv6 from the interface
HOST_INTERFACE = "to-router"
_HOST_RE = re.compile(r"^(client|server|h[1-9][0-9]*)$")


def parse_rate(text: str | int | None) -> int | None:
    """Bits per second, in the grammar every ``--rate`` takes (``units.parse_rate``: 10M, 500k,
    1.5G, 64000); 0, ``max`` or None mean no limit. Below 8 kbit/s tbf cannot carry a datagram."""
    if text is None:
        return None
    bps = text if isinstance(text, int) else units.parse_rate(text)
    if bps < 0:
        raise UserError(f"rate {text!r} is negative")
    if 0 < bps < 8000:
        raise UserError(f"rate {text!r} is below 8 kbit/s, too slow to carry one datagram a second")
    return round(bps) or None


def format_rate(bps: int | None) -> str:
    return units.format_rate(bps) if bps else "unlimited"


def host_names(count: int) -> tuple[str, ...]:
    """``client``, ``server`` for two hosts (the classic lab); ``h1`` … ``hN`` for more."""
    if not isinstance(count, int) or not DEFAULT_HOSTS <= count <= MAX_HOSTS:
        raise UserError(f"a lab has {DEFAULT_HOSTS}..{MAX_HOSTS} hosts, not {count}")
    return ("client", "server") if count == 2 else tuple(f"h{i}" for i in range(1, count + 1))


def is_host_name(name: str) -> bool:
    return bool(_HOST_RE.match(name))


def router_interface(host: str) -> str:
    return f"to-{host}"


def subnet_index(hosts: tuple[str, ...], host: str) -> int:
    """1-based: host i's subnets are 198.18.(i-1).0/24 and fdb0:i::/64."""
    return hosts.index(host) + 1


def host_address(hosts: tuple[str, ...], host: str, v6: bool = False, router: bool = False,
                 with_length: bool = False) -> str:
    """The address of ``host`` on its link, or of the router on that link (``router=True``)."""
    i = subnet_index(hosts, host)
    last = 1 if router else 2
    address = f"fdb0:{i:x}::{last}" if v6 else f"198.18.{i - 1}.{last}"
    return f"{address}/{64 if v6 else 24}" if with_length else address


def subnet(hosts: tuple[str, ...], host: str, v6: bool) -> str:
    i = subnet_index(hosts, host)
    return f"fdb0:{i:x}::/64" if v6 else f"198.18.{i - 1}.0/24"


@dataclasses.dataclass(frozen=True)
class Link:
    """One host's link to the router. The MTU holds on both ends; loss and rate sit on the
    router's egress toward the host, so they act on traffic *into* that host only."""

    mtu: int = DEFAULT_MTU
    loss: float = 0.0  # percent of IP packets (each fragment on its own) dropped toward the host
    rate: int | None = None  # bits/s on the router's egress toward the host (tbf); None = unlimited

    def validated(self) -> Link:
        if isinstance(self.mtu, bool) or not isinstance(self.mtu, int) or not MIN_MTU <= self.mtu <= MAX_MTU:
            raise UserError(f"MTU {self.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if not 0.0 <= float(self.loss) <= 100.0:
            raise UserError(f"loss {self.loss}% is outside 0..100")
        return dataclasses.replace(self, loss=float(self.loss), rate=parse_rate(self.rate))


@dataclasses.dataclass(frozen=True)
class Impairments:
    """What the router does to traffic toward the server (the two-host lab's bottleneck)."""

    mtu: int = DEFAULT_MTU  # of the router-server link; the client link gets max(1500, mtu)
    loss: float = 0.0  # percent of IP packets (each fragment on its own) dropped toward the server
    rate: int | None = None  # bits/s on the router's egress toward the server (tbf); None = unlimited
    block_icmp: bool = False  # the router swallows ICMP frag-needed and ICMPv6 packet-too-big

    def validated(self) -> Impairments:
        link = Link(self.mtu, self.loss, self.rate).validated()
        return dataclasses.replace(self, loss=link.loss, rate=link.rate, block_icmp=bool(self.block_icmp))

    @property
    def client_mtu(self) -> int:
        # The client may send anything its link carries, so the router is the one that must
        # fragment or answer frag-needed / packet-too-big.
        return max(DEFAULT_MTU, self.mtu)

    @property
    def link(self) -> Link:
        return Link(self.mtu, self.loss, self.rate)


def default_links(hosts: tuple[str, ...], imp: Impairments) -> dict[str, Link]:
    """Every host's link before ``--link`` overrides: in the two-host lab the impairments sit on
    the server's link and the client's is never the bottleneck; with more hosts every link
    starts from the same settings."""
    if hosts == ("client", "server"):
        return {"client": Link(imp.client_mtu), "server": imp.link}
    return {host: imp.link for host in hosts}


_LINK_KEYS = ("mtu", "loss", "rate")


def parse_link(text: str) -> tuple[str, dict]:
    """``h3:mtu=1400,loss=1%,rate=50M`` -> ("h3", {"mtu": 1400, "loss": 1.0, "rate": 50000000})."""
    host, sep, rest = text.partition(":")
    if not sep or not is_host_name(host) or not rest:
        raise UserError(f"link {text!r} is not HOST:key=value,... like h3:mtu=1400,loss=1%,rate=50M")
    settings: dict = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or key not in _LINK_KEYS or not value:
            raise UserError(f"link {text!r}: {item!r} is not one of mtu=, loss=, rate=")
        try:
            if key == "mtu":
                settings[key] = int(value)
            elif key == "loss":
                settings[key] = float(value.removesuffix("%"))
            else:
                settings[key] = parse_rate(value)
        except ValueError:
            raise UserError(f"link {text!r}: {key} {value!r} is not a number") from None
    return host, settings


def apply_links(hosts: tuple[str, ...], links: dict[str, Link], overrides: dict[str, dict]) -> dict[str, Link]:
    """``links`` with each host's overrides applied and every link checked."""
    out = dict(links)
    for host, settings in overrides.items():
        if host not in hosts:
            raise UserError(f"no lab host {host!r}: this lab has {', '.join(hosts)}")
        out[host] = dataclasses.replace(out[host], **settings)
    return {host: link.validated() for host, link in out.items()}
