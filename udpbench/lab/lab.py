"""The network-namespace lab: client ─ router ─ server on one machine (root only).

Three namespaces, ``PREFIX-client``, ``PREFIX-router`` and ``PREFIX-server``, joined by two
veth pairs, with addresses in 198.18.0.0/15 (RFC 2544's benchmarking range) and two IPv6
ULA /64s. There is no default route anywhere, so nothing sent in the lab can leave it.

The router's server-side link is the bottleneck: it carries the chosen MTU, and the loss and
rate limit sit on the router's egress toward the server. The lab keeps no state of its own:
everything (namespaces, MTUs, addresses, qdiscs, nftables rules) is read back from the
kernel, so ``lab status`` and ``lab down`` work from any process. See docs/lab.md.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from udpbench.protocol import units
from udpbench.errors import UserError

NODES = ("client", "router", "server")
DEFAULT_PREFIX = "ub"
DEFAULT_MTU = 1500
# veth's largest MTU is ETH_MAX_MTU (65535); below 68 IPv4 itself stops working.
MIN_MTU, MAX_MTU = 68, 65535
IPV6_MIN_MTU = 1280  # below it the kernel removes IPv6 from the interface

# Interface names live inside the namespaces, so they can be the same in every lab.
# node -> {interface: (IPv4 address/len, IPv6 address/len, node at the other end)}
INTERFACES: dict[str, dict[str, tuple[str, str, str]]] = {
    "client": {"to-router": ("198.18.0.2/24", "fdb0:1::2/64", "router")},
    "router": {"to-client": ("198.18.0.1/24", "fdb0:1::1/64", "client"),
               "to-server": ("198.18.1.1/24", "fdb0:2::1/64", "server")},
    "server": {"to-router": ("198.18.1.2/24", "fdb0:2::2/64", "router")},
}
# The veth pairs: (node, interface) <-> (node, interface). The second is the bottleneck.
CLIENT_LINK = (("client", "to-router"), ("router", "to-client"))
SERVER_LINK = (("router", "to-server"), ("server", "to-router"))
BOTTLENECK = SERVER_LINK[0]  # where MTU, loss and rate are imposed: router -> server
# Only the two remote subnets, via the router: no default route, so no way out.
ROUTES = {
    "client": (("198.18.1.0/24", "198.18.0.1"), ("fdb0:2::/64", "fdb0:1::1")),
    "server": (("198.18.0.0/24", "198.18.1.1"), ("fdb0:1::/64", "fdb0:2::1")),
}

# nftables: one stateless table per job, so each can be replaced without touching the other.
# No ct expression anywhere: that would load nf_defrag and reassemble fragments at the router.
NFT_LOSS_TABLE = "udpbench_loss"  # netdev family, egress hook of the bottleneck: sees every fragment
NFT_ICMP_TABLE = "udpbench_icmp"  # inet family, output + forward of the router
NFT_LOSS_RANGE = 1_000_000  # numgen modulus: loss settable to 0.0001 %
LOSS_COMMENT = "udpbench:loss="
BLOCK_ICMP_COMMENT = "udpbench:block-icmp"
TBF_LATENCY = "50ms"  # the rate limiter's queue holds 50 ms of traffic, then drops
COMMAND_TIMEOUT = 20.0  # seconds for any one ip/tc/nft call
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,23}$")


def _is_root() -> bool:
    return os.geteuid() == 0


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


@dataclasses.dataclass(frozen=True)
class Impairments:
    """What the router does to traffic toward the server."""

    mtu: int = DEFAULT_MTU  # of the router-server link; the client link gets max(1500, mtu)
    loss: float = 0.0  # percent of IP packets (each fragment on its own) dropped toward the server
    rate: int | None = None  # bits/s on the router's egress toward the server (tbf); None = unlimited
    block_icmp: bool = False  # the router swallows ICMP frag-needed and ICMPv6 packet-too-big

    def validated(self) -> Impairments:
        if not isinstance(self.mtu, int) or not MIN_MTU <= self.mtu <= MAX_MTU:
            raise UserError(f"MTU {self.mtu} is outside {MIN_MTU}..{MAX_MTU}")
        if not 0.0 <= float(self.loss) <= 100.0:
            raise UserError(f"loss {self.loss}% is outside 0..100")
        return dataclasses.replace(self, loss=float(self.loss), rate=parse_rate(self.rate),
                                   block_icmp=bool(self.block_icmp))

    @property
    def client_mtu(self) -> int:
        # The client may send anything its link carries, so the router is the one that must
        # fragment or answer frag-needed / packet-too-big.
        return max(DEFAULT_MTU, self.mtu)


def _first_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[0] if lines else "no message"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables"}[name]
        raise UserError(f"`{name}` not found: install {package} (apt-get install {package})")
    return path


class Lab:
    """An emulated LAN in three network namespaces. A context manager: ``with Lab(mtu=1400) as lab:``.

    Every method reads the kernel, not this object, so a ``Lab(prefix)`` made in another
    process sees and controls the same lab.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, mtu: int = DEFAULT_MTU, loss: float = 0.0,
                 rate: str | int | None = None, block_icmp: bool = False):
        if not _PREFIX_RE.match(prefix or ""):
            raise UserError(f"lab prefix {prefix!r} must be 1-24 letters, digits, '_' or '.', "
                            "starting with a letter or digit")
        self.prefix = prefix
        self.namespaces = {node: f"{prefix}-{node}" for node in NODES}
        self.requested = Impairments(mtu=mtu, loss=loss, rate=rate, block_icmp=block_icmp)
        self.loss_method: str | None = None  # "netem" or "nftables", once loss has been set

    # ---- names and addresses -------------------------------------------------------------

    def ns(self, node: str) -> str:
        """The namespace name of a node: ``ub-client``."""
        try:
            return self.namespaces[node]
        except KeyError:
            raise UserError(f"no lab node {node!r}: choose one of {', '.join(NODES)}") from None

    @staticmethod
    def interface(node: str, toward: str | None = None) -> str:
        """The interface of ``node`` that faces ``toward`` (the router's default: the client)."""
        if node not in INTERFACES:
            raise UserError(f"no lab node {node!r}: choose one of {', '.join(NODES)}")
        for name, (_v4, _v6, peer) in INTERFACES[node].items():
            if toward is None or peer == toward:
                return name
        raise UserError(f"{node} has no link toward {toward!r}")

    @classmethod
    def address(cls, node: str, v6: bool = False, toward: str | None = None) -> str:
        """A node's address without prefix length, e.g. ``address("server")`` -> ``198.18.1.2``.

        The router has one per side: ``toward="client"`` (the default) or ``toward="server"``.
        """
        v4, v6addr, _peer = INTERFACES[node][cls.interface(node, toward)]
        return (v6addr if v6 else v4).split("/")[0]

    # ---- running things inside -----------------------------------------------------------

    def _netns_argv(self, node: str, argv: list[str] | tuple[str, ...]) -> list[str]:
        if isinstance(argv, str):
            raise TypeError("argv must be a list of strings, not one string")
        return ["ip", "netns", "exec", self.ns(node), *argv]

    def run(self, node: str, argv, **kwargs) -> subprocess.CompletedProcess:
        """``subprocess.run`` inside a node's namespace."""
        return subprocess.run(self._netns_argv(node, argv), **kwargs)

    def popen(self, node: str, argv, **kwargs) -> subprocess.Popen:
        """``subprocess.Popen`` inside a node's namespace. The caller waits for it or kills it."""
        return subprocess.Popen(self._netns_argv(node, argv), **kwargs)

    def serve(self, *extra: str, bind: str | None = ..., timeout: float = 20.0, **popen) -> subprocess.Popen:
        """Start `udpbench serve` in the server node; returns once it listens. ``bind`` is the
        address to serve (default: the server's IPv4 address; None: all interfaces). The caller
        terminates it (``stop_server``, or ``lab.down()``, which ends everything inside)."""
        address = self.address("server") if bind is ... else bind
        argv = [sys.executable, "-m", "udpbench", "serve", "--quiet", *extra]
        if address:
            argv[4:4] = ["--bind", address]
        server = self.popen("server", argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
        ready, _, _ = select.select([server.stdout], [], [], timeout)
        line = server.stdout.readline() if ready else ""
        if "serving on" not in line:
            server.kill()
            _, err = server.communicate()
            raise UserError(f"the lab's server did not start: {line.strip() or err.strip()}")
        return server

    @contextlib.contextmanager
    def serving(self, *extra: str, **kwargs):
        """``with lab.serving(): ...`` — `udpbench serve` in the server node for the block."""
        server = self.serve(*extra, **kwargs)
        try:
            yield server
        finally:
            stop_server(server)

    # ---- state ---------------------------------------------------------------------------

    def existing_namespaces(self) -> list[str]:
        """The lab's namespaces that exist now (a half-built lab has some but not all)."""
        out = _cmd(["ip", "netns", "list"], what="list network namespaces").stdout
        present = {line.split()[0] for line in out.splitlines() if line.strip()}
        return [name for name in self.namespaces.values() if name in present]

    def is_up(self) -> bool:
        return bool(self.existing_namespaces())

    def _require_up(self) -> None:
        _require_root()
        _tool("ip")
        if len(self.existing_namespaces()) != len(NODES):
            flag = "" if self.prefix == DEFAULT_PREFIX else f" --prefix {self.prefix}"
            raise UserError(f"no lab {self.prefix!r} is up; run `udpbench lab up{flag}`")

    # ---- building and tearing down -------------------------------------------------------

    def up(self) -> Lab:
        """Build the lab with the impairments given to the constructor. Tears down on failure."""
        _require_root()
        _tool("ip")
        wanted = self.requested.validated()
        if wanted.block_icmp:
            _tool("nft")
        if self.is_up():
            flag = "" if self.prefix == DEFAULT_PREFIX else f" --prefix {self.prefix}"
            raise UserError(f"lab {self.prefix!r} is already up; run `udpbench lab down{flag}`")
        try:
            self._build(wanted)
            self._apply(wanted)
        except BaseException:
            try:
                self.down()
            except UserError:
                pass  # the first failure is the one worth reporting
            raise
        return self

    def _build(self, imp: Impairments) -> None:
        quiet_ipv6 = {
            # Addresses usable at once: no duplicate-address detection delay.
            "net/ipv6/conf/all/accept_dad": 0,
            "net/ipv6/conf/default/accept_dad": 0,
            # No router solicitations: fewer stray packets in captures.
            "net/ipv6/conf/default/router_solicitations": 0,
            "net/ipv6/conf/default/accept_ra": 0,
        }
        for node in NODES:
            _cmd(["ip", "netns", "add", self.ns(node)], what=f"create network namespace {self.ns(node)}")
            self._sysctl(node, quiet_ipv6)
            _cmd(["ip", "-n", self.ns(node), "link", "set", "lo", "up"], what=f"bring up lo in {self.ns(node)}")
        self._sysctl("router", {
            "net/ipv4/ip_forward": 1,
            "net/ipv6/conf/all/forwarding": 1,
            # Answer every oversize packet: ICMP rate limits would make PMTUD tests flaky.
            "net/ipv4/icmp_ratelimit": 0,
            "net/ipv6/icmp/ratelimit": 0,
        })
        for (a_node, a_if), (b_node, b_if) in (CLIENT_LINK, SERVER_LINK):
            # Created straight inside the namespaces: no name ever exists in the root namespace.
            _cmd(["ip", "link", "add", "name", a_if, "netns", self.ns(a_node), "type", "veth",
                  "peer", "name", b_if, "netns", self.ns(b_node)],
                 what=f"create veth pair {a_node}/{a_if} - {b_node}/{b_if}")
        for node in NODES:
            for ifname in INTERFACES[node]:
                self._sysctl(node, {f"net/ipv6/conf/{ifname}/accept_dad": 0})

    def _sysctl(self, node: str, values: dict[str, int]) -> None:
        # Written through /proc/sys inside the namespace with sh, which every system has
        # (the sysctl binary is missing from slim images).
        script = " && ".join(f"echo {value} > /proc/sys/{key}" for key, value in values.items())
        _cmd(["ip", "netns", "exec", self.ns(node), "sh", "-c", script],
             what=f"set sysctls in {self.ns(node)}")

    def _configure_links(self, imp: Impairments) -> None:
        """MTUs, addresses and routes; safe to repeat (every step is a replace)."""
        mtus = {CLIENT_LINK: imp.client_mtu, SERVER_LINK: imp.mtu}
        for link, mtu in mtus.items():
            for node, ifname in link:
                _cmd(["ip", "-n", self.ns(node), "link", "set", "dev", ifname, "mtu", str(mtu), "up"],
                     what=f"set MTU {mtu} on {node}/{ifname}")
        for node in NODES:
            for ifname, (v4, v6, _peer) in INTERFACES[node].items():
                _cmd(["ip", "-n", self.ns(node), "addr", "replace", v4, "dev", ifname],
                     what=f"add {v4} to {node}/{ifname}")
                if self._link_mtu(node, ifname, mtus) >= IPV6_MIN_MTU:
                    _cmd(["ip", "-n", self.ns(node), "-6", "addr", "replace", v6, "dev", ifname, "nodad"],
                         what=f"add {v6} to {node}/{ifname}")
        for node, routes in ROUTES.items():
            for dest, via in routes:
                v6 = ":" in dest
                if v6 and self._link_mtu(node, self.interface(node), mtus) < IPV6_MIN_MTU:
                    continue  # no IPv6 on this node's only link
                _cmd(["ip", "-n", self.ns(node), "-6" if v6 else "-4", "route", "replace", dest, "via", via],
                     what=f"add route {dest} via {via} in {self.ns(node)}")

    @staticmethod
    def _link_mtu(node: str, ifname: str, mtus: dict) -> int:
        return next(mtu for link, mtu in mtus.items() if (node, ifname) in link)

    def down(self) -> bool:
        """Remove the lab: end what runs inside, delete the namespaces (their veths go with
        them). Idempotent. Returns whether there was anything to remove."""
        _require_root()
        _tool("ip")
        present = self.existing_namespaces()
        for name in present:
            _end_processes_in(name)
        for name in present:
            _cmd(["ip", "netns", "del", name], what=f"delete network namespace {name}")
        return bool(present)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # ---- impairments ---------------------------------------------------------------------

    _KEEP: Any = object()

    def set_impairments(self, *, loss=_KEEP, rate=_KEEP, block_icmp=_KEEP, mtu=_KEEP) -> Impairments:
        """Change impairments on a live lab; arguments left out stay as they are.
        ``loss=0`` and ``rate=None`` remove them; a new MTU also clears the path MTUs the
        client and server had learned. Returns what is now in force."""
        self._require_up()
        now = self.impairments()
        changes = {name: value for name, value in
                   (("loss", loss), ("rate", rate), ("block_icmp", block_icmp), ("mtu", mtu))
                   if value is not Lab._KEEP}
        wanted = dataclasses.replace(now, **changes).validated()
        if wanted.block_icmp:
            _tool("nft")
        self._apply(wanted)
        if wanted.mtu != now.mtu:
            # A path MTU learned under the old MTU would linger for 600 s (route/mtu_expires).
            self.forget_pmtu()
        return self.impairments()

    def _apply(self, imp: Impairments) -> None:
        self._configure_links(imp)
        router = self.ns("router")
        dev = BOTTLENECK[1]
        have_tc = shutil.which("tc") is not None
        have_nft = shutil.which("nft") is not None
        if have_tc:
            # Start from a clean egress: the default qdisc comes back when root is deleted.
            _cmd(["tc", "-n", router, "qdisc", "del", "dev", dev, "root"], what="", check=False)
        if have_nft:
            self._nft_replace(NFT_LOSS_TABLE, "netdev", None)
            self._nft_replace(NFT_ICMP_TABLE, "inet", None)
        if imp.rate:
            _tool("tc")
            # burst: at least two full frames, or tbf drops every packet bigger than it.
            burst = max(2 * (imp.mtu + 14), imp.rate // 8 // 500)  # or 2 ms of traffic
            _cmd(["tc", "-n", router, "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
                  "rate", f"{imp.rate}bit", "burst", str(burst), "latency", TBF_LATENCY],
                 what=f"limit the rate to {format_rate(imp.rate)} (tbf)")
        self.loss_method = None
        if imp.loss > 0:
            self.loss_method = self._set_loss(imp, have_tc, have_nft)
        if imp.block_icmp:
            self._nft_replace(NFT_ICMP_TABLE, "inet", _nft_block_icmp_body())

    def _set_loss(self, imp: Impairments, have_tc: bool, have_nft: bool) -> str:
        router, dev = self.ns("router"), BOTTLENECK[1]
        if have_tc:
            parent = ["parent", "1:1"] if imp.rate else ["root"]
            tried = _cmd(["tc", "-n", router, "qdisc", "add", "dev", dev, *parent, "handle", "10:",
                          "netem", "loss", f"{imp.loss:g}%"], what="", check=False)
            if tried.returncode == 0:
                return "netem"
        if not have_nft:
            raise UserError("loss needs netem (sch_netem, absent from this kernel) or nftables: "
                            "install nftables (apt-get install nftables)")
        self._nft_replace(NFT_LOSS_TABLE, "netdev", _nft_loss_body(imp.loss, dev))
        return "nftables"

    def _nft_replace(self, table: str, family: str, body: str | None) -> None:
        """Replace (body) or remove (None) one of the lab's nftables tables, atomically."""
        # "add" then "delete" makes the delete succeed whether or not the table existed.
        script = f"add table {family} {table}\ndelete table {family} {table}\n"
        if body is not None:
            script += f"table {family} {table} {{\n{body}}}\n"
        _cmd(["ip", "netns", "exec", self.ns("router"), "nft", "-f", "-"], input=script,
             what=f"load nftables table {family} {table} in {self.ns('router')}")

    def forget_pmtu(self) -> None:
        """Drop the path MTUs the client and server learned from ICMP (kept 600 s otherwise)."""
        self._require_up()
        for node in ("client", "server"):
            for family in ("-4", "-6"):
                _cmd(["ip", "-n", self.ns(node), family, "route", "flush", "cache"],
                     what=f"flush the route cache in {self.ns(node)}")

    # ---- reading the kernel --------------------------------------------------------------

    def impairments(self) -> Impairments:
        """The impairments in force, read from the kernel."""
        return self._read_impairments()[0]

    def _read_impairments(self) -> tuple[Impairments, str | None]:
        router, dev = self.ns("router"), BOTTLENECK[1]
        links = _ip_json(["ip", "-n", router, "-j", "link", "show", "dev", dev])
        mtu = int(links[0]["mtu"]) if links else DEFAULT_MTU
        rate, loss, method = None, 0.0, None
        if shutil.which("tc"):
            out = _cmd(["tc", "-n", router, "-j", "qdisc", "show", "dev", dev], what="", check=False)
            for qdisc in _loads(out.stdout, []):
                options = qdisc.get("options") or {}
                if qdisc.get("kind") == "tbf" and options.get("rate"):
                    rate = int(options["rate"]) * 8  # tc reports bytes/s
                if qdisc.get("kind") == "netem" and options.get("loss-random"):
                    loss, method = float(options["loss-random"].get("loss", 0)) * 100, "netem"
        block = False
        if shutil.which("nft"):
            out = self.run("router", ["nft", "-j", "list", "ruleset"], capture_output=True, text=True,
                           timeout=COMMAND_TIMEOUT)
            for item in _loads(out.stdout, {}).get("nftables", []):
                comment = (item.get("rule") or {}).get("comment", "")
                if comment.startswith(LOSS_COMMENT):
                    loss, method = float(comment[len(LOSS_COMMENT):]), "nftables"
                elif comment == BLOCK_ICMP_COMMENT:
                    block = True
        return Impairments(mtu=mtu, loss=round(loss, 6), rate=rate, block_icmp=block), method

    def status(self) -> dict:
        """Everything ``lab status`` shows, as plain data."""
        present = self.existing_namespaces()
        result: dict[str, Any] = {"prefix": self.prefix, "up": len(present) == len(NODES),
                                  "namespaces": {}}
        if present and len(present) != len(NODES):
            result["partial"] = present
        if not result["up"]:
            return result
        for node in NODES:
            interfaces = []
            for entry in _ip_json(["ip", "-n", self.ns(node), "-j", "addr", "show"]):
                if entry.get("ifname") == "lo":
                    continue
                addresses = [a for a in entry.get("addr_info", []) if a.get("scope") == "global"]
                peer = INTERFACES[node].get(entry["ifname"], (None, None, None))[2]
                interfaces.append({
                    "name": entry["ifname"],
                    "peer": peer,
                    "mtu": entry.get("mtu"),
                    "state": entry.get("operstate"),
                    "ipv4": [f"{a['local']}/{a['prefixlen']}" for a in addresses if a.get("family") == "inet"],
                    "ipv6": [f"{a['local']}/{a['prefixlen']}" for a in addresses if a.get("family") == "inet6"],
                })
            result["namespaces"][node] = {"name": self.ns(node), "interfaces": interfaces}
        imp, method = self._read_impairments()
        result["impairments"] = {
            "link": f"{BOTTLENECK[0]}/{BOTTLENECK[1]} -> server",
            "mtu": imp.mtu,
            "loss_percent": imp.loss,
            "loss_method": method,
            "rate_bps": imp.rate,
            "block_icmp": imp.block_icmp,
        }
        return result


def _nft_loss_body(loss: float, dev: str) -> str:
    threshold = round(loss / 100 * NFT_LOSS_RANGE)
    # The netdev egress hook runs per packet as it reaches the device, after the router has
    # fragmented: each fragment is dropped on its own, like netem would. Neighbour discovery
    # and ARP are spared so the link itself keeps working.
    return (f"  chain egress {{\n"
            f"    type filter hook egress device \"{dev}\" priority 0; policy accept;\n"
            f"    icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, "
            f"nd-router-advert, nd-redirect }} accept\n"
            f"    meta protocol {{ ip, ip6 }} numgen random mod {NFT_LOSS_RANGE} < {threshold} drop "
            f"comment \"{LOSS_COMMENT}{loss:g}\"\n"
            f"  }}\n")


def _nft_block_icmp_body() -> str:
    rules = (f"    icmp type destination-unreachable icmp code frag-needed drop comment \"{BLOCK_ICMP_COMMENT}\"\n"
             f"    icmpv6 type packet-too-big drop comment \"{BLOCK_ICMP_COMMENT}\"\n")
    # output: what the router itself sends; forward: what it would pass on from further away.
    return (f"  chain output {{\n    type filter hook output priority 0; policy accept;\n{rules}  }}\n"
            f"  chain forward {{\n    type filter hook forward priority 0; policy accept;\n{rules}  }}\n")


def stop_server(server: subprocess.Popen, grace: float = 10.0) -> None:
    """End a server started with ``Lab.serve``: SIGTERM, then SIGKILL after ``grace`` seconds."""
    server.terminate()
    try:
        server.communicate(timeout=grace)  # also drains and closes its pipes
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()


def _require_root() -> None:
    if not _is_root():
        raise UserError("the lab needs root (it creates network namespaces): run it with sudo")


def _cmd(argv: list[str], *, what: str, check: bool = True, input: str | None = None
         ) -> subprocess.CompletedProcess:
    """Run ip/tc/nft; on failure (check) raise a one-line UserError saying what failed and why."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, input=input, timeout=COMMAND_TIMEOUT)
    except FileNotFoundError:
        _tool(argv[0])
        raise
    except subprocess.TimeoutExpired:
        raise UserError(f"could not {what}: `{' '.join(argv[:4])} ...` took over {COMMAND_TIMEOUT:g} s") from None
    if check and proc.returncode != 0:
        raise UserError(f"could not {what}: {_first_line(proc.stderr or proc.stdout)}")
    return proc


def _loads(text: str, default):
    try:
        return json.loads(text) if text and text.strip() else default
    except json.JSONDecodeError:
        return default


def _ip_json(argv: list[str]) -> list:
    return _loads(_cmd(argv, what=f"read {' '.join(argv[3:])}").stdout, [])


def _end_processes_in(netns: str, grace: float = 1.0) -> None:
    """SIGTERM, then SIGKILL, whatever still runs in the namespace: a live process would keep
    it (and its veths) alive after its name is gone."""
    pids = _netns_pids(netns)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            pids = [pid for pid in pids if _alive(pid)]
        if not pids:
            return


def _netns_pids(netns: str) -> list[int]:
    out = _cmd(["ip", "netns", "pids", netns], what="", check=False).stdout
    return [int(word) for word in out.split() if word.isdigit() and int(word) != os.getpid()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of ours still answers kill(0): reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


# ---- command line -------------------------------------------------------------------------

def format_status(st: dict) -> str:
    if not st["up"]:
        if st.get("partial"):
            return (f"lab {st['prefix']!r} is half built ({', '.join(st['partial'])}); "
                    f"run `udpbench lab down`")
        return f"lab {st['prefix']!r} is down"
    lines = [f"lab {st['prefix']!r} is up"]
    for node in NODES:
        info = st["namespaces"][node]
        for i, iface in enumerate(info["interfaces"]):
            head = f"{info['name']:<16}" if i == 0 else " " * 16
            addrs = "  ".join(iface["ipv4"] + iface["ipv6"]) or "no address"
            lines.append(f"  {head} {iface['name']:<10} -> {iface['peer'] or '?':<7} "
                         f"mtu {iface['mtu']:<6} {addrs}")
    imp = st["impairments"]
    loss = (f"{imp['loss_percent']:g}% per packet ({imp['loss_method']})" if imp["loss_percent"] else "none")
    icmp = "blocked (PMTUD black hole)" if imp["block_icmp"] else "sent"
    lines.append(f"  router -> server: mtu {imp['mtu']}, loss {loss}, rate {format_rate(imp['rate_bps'])}, "
                 f"ICMP frag-needed/packet-too-big {icmp}")
    return "\n".join(lines)


def _impairment_options(parser: argparse.ArgumentParser, defaults: bool) -> None:
    keep = argparse.SUPPRESS
    parser.add_argument("--mtu", type=int, default=DEFAULT_MTU if defaults else keep,
                        help=f"MTU of the router-server link (default {DEFAULT_MTU})")
    parser.add_argument("--loss", type=float, default=0.0 if defaults else keep, metavar="PCT",
                        help="percent of packets (each fragment on its own) dropped toward the server")
    parser.add_argument("--rate", default=None if defaults else keep, metavar="R",
                        help="rate limit toward the server in bits/s: 10M, 500k, 1G (0 = none)")
    if defaults:
        parser.add_argument("--block-icmp", action="store_true",
                            help="the router drops the ICMP frag-needed / packet-too-big it would send")
    else:
        parser.add_argument("--block-icmp", dest="block_icmp", action="store_const", const=True, default=keep,
                            help="start blocking ICMP frag-needed / packet-too-big")
        parser.add_argument("--allow-icmp", dest="block_icmp", action="store_const", const=False, default=keep,
                            help="stop blocking them")


def add_parser(commands):
    parser = commands.add_parser("lab", help="build an emulated LAN in network namespaces (root)",
                                 description="client - router - server in network namespaces, "
                                             "addresses in 198.18.0.0/15, no default route.")
    actions = parser.add_subparsers(dest="lab_command", required=True, metavar="ACTION",
                                    parser_class=type(parser))
    prefix = argparse.ArgumentParser(add_help=False)
    prefix.add_argument("--prefix", default=DEFAULT_PREFIX, metavar="NAME",
                        help=f"namespace names are NAME-client, NAME-router, NAME-server (default {DEFAULT_PREFIX})")

    up = actions.add_parser("up", parents=[prefix], help="build the lab")
    _impairment_options(up, defaults=True)
    up.set_defaults(lab_func=_run_up)

    change = actions.add_parser("set", parents=[prefix], help="change impairments on a running lab")
    _impairment_options(change, defaults=False)
    change.set_defaults(lab_func=_run_set)

    status = actions.add_parser("status", parents=[prefix], help="namespaces, addresses, MTUs, impairments")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(lab_func=_run_status)

    execute = actions.add_parser("exec", parents=[prefix], help="run a command in a node: exec client -- CMD",
                                 usage="udpbench lab exec [--prefix NAME] {client,router,server} -- CMD...")
    execute.add_argument("node", choices=NODES)
    execute.add_argument("argv", nargs=argparse.REMAINDER, metavar="CMD")
    execute.set_defaults(lab_func=_run_exec)

    down = actions.add_parser("down", parents=[prefix], help="remove the lab (idempotent)")
    down.set_defaults(lab_func=_run_down)

    from udpbench.lab import demo  # the demo builds its own lab (prefix ubdemo)
    demo.add_action(actions, parents=[])
    parser.set_defaults(func=run)


def run(args) -> int:
    return args.lab_func(args)


def _run_up(args) -> int:
    lab = Lab(args.prefix, mtu=args.mtu, loss=args.loss, rate=args.rate, block_icmp=args.block_icmp)
    lab.up()
    print(format_status(lab.status()))
    return 0


def _run_set(args) -> int:
    changes = {k: getattr(args, k) for k in ("mtu", "loss", "rate", "block_icmp") if hasattr(args, k)}
    if not changes:
        raise UserError("lab set: nothing to change (give --mtu, --loss, --rate, --block-icmp or --allow-icmp)")
    lab = Lab(args.prefix)
    lab.set_impairments(**changes)
    print(format_status(lab.status()))
    return 0


def _run_status(args) -> int:
    _require_root()
    _tool("ip")
    st = Lab(args.prefix).status()
    print(json.dumps(st, indent=2) if args.json else format_status(st))
    return 0


def _run_exec(args) -> int:
    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise UserError("lab exec: give a command after the node, e.g. `lab exec client -- ip addr`")
    lab = Lab(args.prefix)
    lab._require_up()
    sys.stdout.flush()
    proc = lab.run(args.node, argv)
    return proc.returncode if proc.returncode >= 0 else 128 - proc.returncode


def _run_down(args) -> int:
    lab = Lab(args.prefix)
    removed = lab.down()
    print(f"lab {args.prefix!r} removed" if removed else f"lab {args.prefix!r} was not up; nothing to remove")
    return 0
