"""The network-namespace lab: hosts behind one router on one machine (root only).

``PREFIX-router`` and one namespace per host (``PREFIX-client`` and ``PREFIX-server`` for two,
``PREFIX-h1`` … ``PREFIX-hN`` for more), each host on its own veth link and subnet in
198.18.0.0/15 (RFC 2544's benchmarking range) and an IPv6 ULA /64. There is no default route
anywhere, so nothing sent in the lab can leave it.

Each host's link has its own MTU (both ends), and loss and rate on the router's egress toward
the host. The lab keeps no state of its own: everything (namespaces, MTUs, addresses, qdiscs,
nftables rules) is read back from the kernel, so ``status`` and ``down`` work from any process.
See docs/lab.md.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import select
import shutil
import subprocess
import sys
from typing import Any

from udpbench.errors import LabState, UserError
from udpbench.lab import status, topology
from udpbench.lab.system import (NFT_ICMP_TABLE, cmd as _cmd, end_processes_in, loss_table,
                                 nft_block_icmp_body, nft_loss_body, stop_process, tool as _tool)
from udpbench.lab.topology import (DEFAULT_MTU, DEFAULT_PREFIX, HOST_INTERFACE, IPV6_MIN_MTU,  # noqa: F401
                                   Impairments, Link, format_rate, parse_rate)

NODES = ("client", "router", "server")  # the two-host lab
TBF_LATENCY = "50ms"  # the rate limiter's queue holds 50 ms of traffic, then drops
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]{0,23}$")
# Kept under their old names: tests and callers reach them here.
_nft_loss_body, _nft_block_icmp_body, stop_server = nft_loss_body, nft_block_icmp_body, stop_process


def _is_root() -> bool:
    return os.geteuid() == 0


def _require_root() -> None:
    if not _is_root():
        raise UserError("the lab needs root (it creates network namespaces): run it with sudo")


class Lab:
    """An emulated LAN in network namespaces. A context manager: ``with Lab(mtu=1400) as lab:``.

    ``hosts``: how many hosts sit behind the router (2: ``client`` and ``server``). ``mtu``,
    ``loss`` and ``rate`` set the server's link in a two-host lab and every link in a larger
    one; ``links`` ({host: {"mtu": …, "loss": …, "rate": …}}) sets single links. Every method
    reads the kernel, so a ``Lab(prefix)`` made in another process sees the same lab.
    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, *, mtu: int = DEFAULT_MTU, loss: float = 0.0,
                 rate: str | int | None = None, block_icmp: bool = False, hosts: int = topology.DEFAULT_HOSTS,
                 links: dict[str, dict] | None = None):
        if not _PREFIX_RE.match(prefix or ""):
            raise UserError(f"lab prefix {prefix!r} must be 1-24 letters, digits, '_' or '.', "
                            "starting with a letter or digit")
        self.prefix = prefix
        self.hosts = topology.host_names(hosts)
        self.requested = Impairments(mtu=mtu, loss=loss, rate=rate, block_icmp=block_icmp)
        self.link_overrides = dict(links or {})
        self.loss_method: str | None = None  # "netem" or "nftables", once loss has been set

    # ---- names and addresses -------------------------------------------------------------

    @property
    def nodes(self) -> tuple[str, ...]:
        return (*self.hosts[:1], "router", *self.hosts[1:])

    @property
    def namespaces(self) -> dict[str, str]:
        return {node: f"{self.prefix}-{node}" for node in self.nodes}

    def ns(self, node: str) -> str:
        """The namespace name of a node: ``ub-client``."""
        if node not in self.nodes:
            raise UserError(f"no lab node {node!r}: choose one of {', '.join(self.nodes)}")
        return f"{self.prefix}-{node}"

    def interface(self, node: str, toward: str | None = None) -> str:
        """The interface of ``node`` that faces ``toward`` (the router's default: the first host)."""
        if node not in self.nodes:
            raise UserError(f"no lab node {node!r}: choose one of {', '.join(self.nodes)}")
        if node != "router":
            if toward not in (None, "router"):
                raise UserError(f"{node} has no link toward {toward!r}")
            return HOST_INTERFACE
        toward = toward or self.hosts[0]
        if toward not in self.hosts:
            raise UserError(f"router has no link toward {toward!r}")
        return topology.router_interface(toward)

    def address(self, node: str, v6: bool = False, toward: str | None = None) -> str:
        """A node's address, e.g. ``address("server")`` -> ``198.18.1.2``. The router has one
        per host link: ``toward=HOST`` (default: the first host)."""
        if node == "router":
            return topology.host_address(self.hosts, toward or self.hosts[0], v6, router=True)
        self.interface(node, toward)
        return topology.host_address(self.hosts, node, v6)

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

    def serve(self, *extra: str, bind: str | None = ..., timeout: float = 20.0, node: str = "server",
              **popen) -> subprocess.Popen:
        """Start `udpbench serve` in a host (default: the server); returns once it listens.
        ``bind``: the address to serve (default: the host's IPv4 address; None: all). The caller
        terminates it (``stop_server``, or ``lab.down()``, which ends everything inside)."""
        address = self.address(node) if bind is ... else bind
        argv = [sys.executable, "-m", "udpbench", "serve", "--quiet", *extra]
        if address:
            argv[4:4] = ["--bind", address]
        server = self.popen(node, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
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

    def _present(self) -> set[str]:
        out = _cmd(["ip", "netns", "list"], what="list network namespaces").stdout
        return {line.split()[0] for line in out.splitlines() if line.strip()}

    def existing_namespaces(self) -> list[str]:
        """The lab's namespaces that exist now (a half-built lab has some but not all). Also
        learns from them how many hosts the lab has."""
        head = f"{self.prefix}-"
        mine = sorted((name for name in self._present() if name.startswith(head)
                       and (name[len(head):] == "router" or topology.is_host_name(name[len(head):]))),
                      key=lambda name: (len(name), name))
        numbered = [name for name in mine if re.fullmatch(r"h\d+", name[len(head):])]
        if numbered:
            self.hosts = topology.host_names(max(int(name[len(head) + 1:]) for name in numbered))
        return mine

    def is_up(self) -> bool:
        return bool(self.existing_namespaces())

    def _require_up(self) -> None:
        _require_root()
        _tool("ip")
        if sorted(self.existing_namespaces()) != sorted(self.namespaces.values()):
            raise LabState(f"no lab {self.prefix!r} is up", self.prefix, "up", self.prefix == DEFAULT_PREFIX)

    # ---- building and tearing down -------------------------------------------------------

    def wanted_links(self) -> dict[str, Link]:
        """Each host's link as asked for: the shared settings, then the per-host ones."""
        imp = self.requested.validated()
        return topology.apply_links(self.hosts, topology.default_links(self.hosts, imp), self.link_overrides)

    def up(self) -> Lab:
        """Build the lab with the settings given to the constructor. Tears down on failure."""
        _require_root()
        _tool("ip")
        wanted = self.requested.validated()
        links = self.wanted_links()
        if wanted.block_icmp:
            _tool("nft")
        asked = self.hosts
        if self.is_up():
            raise LabState(f"lab {self.prefix!r} is already up", self.prefix, "down",
                           self.prefix == DEFAULT_PREFIX)
        self.hosts = asked
        try:
            self._build()
            self._apply(links, wanted.block_icmp)
        except BaseException:
            try:
                self.down()
            except UserError:
                pass  # the first failure is the one worth reporting
            raise
        return self

    def _build(self) -> None:
        quiet_ipv6 = {
            # Addresses usable at once: no duplicate-address detection delay.
            "net/ipv6/conf/all/accept_dad": 0,
            "net/ipv6/conf/default/accept_dad": 0,
            # No router solicitations: fewer stray packets in captures.
            "net/ipv6/conf/default/router_solicitations": 0,
            "net/ipv6/conf/default/accept_ra": 0,
        }
        for node in self.nodes:
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
        for host in self.hosts:
            router_if = topology.router_interface(host)
            # Created straight inside the namespaces: no name ever exists in the root namespace.
            _cmd(["ip", "link", "add", "name", HOST_INTERFACE, "netns", self.ns(host), "type", "veth",
                  "peer", "name", router_if, "netns", self.ns("router")],
                 what=f"create veth pair {host}/{HOST_INTERFACE} - router/{router_if}")
            self._sysctl(host, {f"net/ipv6/conf/{HOST_INTERFACE}/accept_dad": 0})
            self._sysctl("router", {f"net/ipv6/conf/{router_if}/accept_dad": 0})

    def _sysctl(self, node: str, values: dict[str, int]) -> None:
        # Written through /proc/sys inside the namespace with sh, which every system has
        # (the sysctl binary is missing from slim images).
        script = " && ".join(f"echo {value} > /proc/sys/{key}" for key, value in values.items())
        _cmd(["ip", "netns", "exec", self.ns(node), "sh", "-c", script],
             what=f"set sysctls in {self.ns(node)}")

    def _configure_links(self, links: dict[str, Link]) -> None:
        """MTUs, addresses and routes; safe to repeat (every step is a replace)."""
        hosts = self.hosts
        for host, link in links.items():
            ends = ((host, HOST_INTERFACE, False), ("router", topology.router_interface(host), True))
            for node, ifname, is_router in ends:
                _cmd(["ip", "-n", self.ns(node), "link", "set", "dev", ifname, "mtu", str(link.mtu), "up"],
                     what=f"set MTU {link.mtu} on {node}/{ifname}")
                v4 = topology.host_address(hosts, host, False, is_router, with_length=True)
                _cmd(["ip", "-n", self.ns(node), "addr", "replace", v4, "dev", ifname],
                     what=f"add {v4} to {node}/{ifname}")
                if link.mtu >= IPV6_MIN_MTU:
                    v6 = topology.host_address(hosts, host, True, is_router, with_length=True)
                    _cmd(["ip", "-n", self.ns(node), "-6", "addr", "replace", v6, "dev", ifname, "nodad"],
                         what=f"add {v6} to {node}/{ifname}")
        # Each host: a route to every other host's subnets via its router, and nothing else.
        for host in hosts:
            for other in hosts:
                if other == host:
                    continue
                for v6 in (False, True):
                    if v6 and links[host].mtu < IPV6_MIN_MTU:
                        continue  # no IPv6 on this host's only link
                    dest = topology.subnet(hosts, other, v6)
                    via = topology.host_address(hosts, host, v6, router=True)
                    _cmd(["ip", "-n", self.ns(host), "-6" if v6 else "-4", "route", "replace", dest, "via", via],
                         what=f"add route {dest} via {via} in {self.ns(host)}")

    def down(self) -> bool:
        """Remove the lab: end what runs inside, delete the namespaces (their veths go with
        them). Idempotent. Returns whether there was anything to remove."""
        _require_root()
        _tool("ip")
        present = self.existing_namespaces()
        for name in present:
            end_processes_in(name)
        for name in present:
            _cmd(["ip", "netns", "del", name], what=f"delete network namespace {name}")
        return bool(present)

    def __enter__(self) -> Lab:
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # ---- impairments ---------------------------------------------------------------------

    _KEEP: Any = object()

    def set_impairments(self, *, loss=_KEEP, rate=_KEEP, block_icmp=_KEEP, mtu=_KEEP,
                        links: dict[str, dict] | None = None) -> Impairments:
        """Change a live lab; arguments left out stay as they are. ``loss=0`` and ``rate=None``
        remove them; ``mtu``, ``loss`` and ``rate`` act on the server's link in a two-host lab and
        on every link in a larger one; ``links`` on single hosts. A new MTU also clears the path
        MTUs the hosts had learned. Returns what is now in force on the server's (last) link."""
        self._require_up()
        now, block_now = self.links(), self.impairments().block_icmp
        changes = {name: value for name, value in (("loss", loss), ("rate", rate), ("mtu", mtu))
                   if value is not Lab._KEEP}
        shared = self.hosts[1:] if self.hosts == ("client", "server") else self.hosts
        wanted = {host: dataclasses.replace(now[host], **(changes if host in shared else {}))
                  for host in self.hosts}
        wanted = topology.apply_links(self.hosts, wanted, links or {})
        block = block_now if block_icmp is Lab._KEEP else bool(block_icmp)
        if "mtu" in changes and self.hosts == ("client", "server"):
            wanted["client"] = Link(max(DEFAULT_MTU, wanted["server"].mtu), now["client"].loss, now["client"].rate)
        if block:
            _tool("nft")
        self._apply(wanted, block)
        if any(wanted[h].mtu != now[h].mtu for h in self.hosts):
            # A path MTU learned under the old MTU would linger for 600 s (route/mtu_expires).
            self.forget_pmtu()
        return self.impairments()

    def _apply(self, links: dict[str, Link] | Impairments, block_icmp: bool = False) -> None:
        if isinstance(links, Impairments):  # the two-host lab's settings, as before
            links, block_icmp = topology.default_links(self.hosts, links), links.block_icmp
        self._configure_links(links)
        router = self.ns("router")
        have_tc = shutil.which("tc") is not None
        have_nft = shutil.which("nft") is not None
        self.loss_method = None
        for host, link in links.items():
            dev = topology.router_interface(host)
            if have_tc:
                # Start from a clean egress: the default qdisc comes back when root is deleted.
                _cmd(["tc", "-n", router, "qdisc", "del", "dev", dev, "root"], what="", check=False)
            if have_nft:
                self._nft_replace(loss_table(dev), "netdev", None)
            if link.rate:
                _tool("tc")
                # burst: at least two full frames, or tbf drops every packet bigger than it.
                burst = max(2 * (link.mtu + 14), link.rate // 8 // 500)  # or 2 ms of traffic
                _cmd(["tc", "-n", router, "qdisc", "add", "dev", dev, "root", "handle", "1:", "tbf",
                      "rate", f"{link.rate}bit", "burst", str(burst), "latency", TBF_LATENCY],
                     what=f"limit the rate toward {host} to {format_rate(link.rate)} (tbf)")
            if link.loss > 0:
                self.loss_method = self._set_loss(dev, link, have_tc, have_nft)
        if have_nft:
            self._nft_replace(NFT_ICMP_TABLE, "inet", None)
        if block_icmp:
            self._nft_replace(NFT_ICMP_TABLE, "inet", nft_block_icmp_body())

    def _set_loss(self, dev: str, link: Link, have_tc: bool, have_nft: bool) -> str:
        router = self.ns("router")
        if have_tc:
            parent = ["parent", "1:1"] if link.rate else ["root"]
            tried = _cmd(["tc", "-n", router, "qdisc", "add", "dev", dev, *parent, "handle", "10:",
                          "netem", "loss", f"{link.loss:g}%"], what="", check=False)
            if tried.returncode == 0:
                return "netem"
        if not have_nft:
            raise UserError("loss needs netem (sch_netem, absent from this kernel) or nftables: "
                            "install nftables (apt-get install nftables)")
        self._nft_replace(loss_table(dev), "netdev", nft_loss_body(link.loss, dev))
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
        """Drop the path MTUs the hosts learned from ICMP (kept 600 s otherwise)."""
        self._require_up()
        for node in self.hosts:
            for family in ("-4", "-6"):
                _cmd(["ip", "-n", self.ns(node), family, "route", "flush", "cache"],
                     what=f"flush the route cache in {self.ns(node)}")

    # ---- reading the kernel (lab/status.py) ------------------------------------------------

    def impairments(self) -> Impairments:
        """The impairments in force on the last host's link (the server's), read from the kernel."""
        self.existing_namespaces()  # learns how many hosts there are
        return self._read_impairments()[0]

    def links(self) -> dict[str, Link]:
        """Every host's link as the kernel has it."""
        self.existing_namespaces()
        return {host: self._read_link(host)[0] for host in self.hosts}

    def _read_impairments(self) -> tuple[Impairments, str | None]:
        return status.read_impairments(self)

    def _read_link(self, host: str) -> tuple[Link, str | None, bool]:
        return status.read_link(self, host)

    def status(self) -> dict:
        """Everything ``lab status`` shows, as plain data."""
        return status.status(self)
