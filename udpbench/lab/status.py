"""Reading a lab back from the kernel: each host's link (MTU, rate, loss and how it is made),
whether ICMP is blocked, and everything ``lab status`` shows. The lab keeps no state of its
own, so this is how any process learns what a lab is (docs/lab.md). Each function takes the
``Lab`` (lab/lab.py) whose namespaces it reads."""
from __future__ import annotations

import shutil
from typing import Any

from udpbench.lab import topology
from udpbench.lab.system import BLOCK_ICMP_COMMENT, LOSS_COMMENT, cmd as _cmd, loads as _loads, loss_table
from udpbench.lab.topology import DEFAULT_MTU, Impairments, Link


def _ip_json(argv: list[str]) -> list:
    return _loads(_cmd(argv, what=f"read {' '.join(argv[3:])}").stdout, [])


def read_impairments(lab) -> tuple[Impairments, str | None]:
    """The last host's (the server's) link as Impairments, and how its loss is made."""
    link, method, block = read_link(lab, lab.hosts[-1])
    return Impairments(mtu=link.mtu, loss=link.loss, rate=link.rate, block_icmp=block), method


def read_link(lab, host: str) -> tuple[Link, str | None, bool]:
    """(link, loss method, ICMP blocked) of one host, from the router's side of its link."""
    router, dev = lab.ns("router"), topology.router_interface(host)
    found = _ip_json(["ip", "-n", router, "-j", "link", "show", "dev", dev])
    mtu = int(found[0]["mtu"]) if found else DEFAULT_MTU
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
        out = lab.run("router", ["nft", "-j", "list", "ruleset"], capture_output=True, text=True, timeout=20)
        for item in _loads(out.stdout, {}).get("nftables", []):
            rule = item.get("rule") or {}
            comment = rule.get("comment", "")
            if comment.startswith(LOSS_COMMENT) and rule.get("table") in (loss_table(dev), None):
                loss, method = float(comment[len(LOSS_COMMENT):]), "nftables"
            elif comment == BLOCK_ICMP_COMMENT:
                block = True
    return Link(mtu=mtu, loss=round(loss, 6), rate=rate), method, block


def status(lab) -> dict:
    """Everything ``lab status`` shows, as plain data."""
    present = lab.existing_namespaces()
    result: dict[str, Any] = {"prefix": lab.prefix, "up": sorted(present) == sorted(lab.namespaces.values()),
                              "hosts": list(lab.hosts), "namespaces": {}}
    if present and not result["up"]:
        result["partial"] = present
    if not result["up"]:
        return result
    peers = {topology.router_interface(h): h for h in lab.hosts}
    for node in lab.nodes:
        interfaces = []
        for entry in _ip_json(["ip", "-n", lab.ns(node), "-j", "addr", "show"]):
            if entry.get("ifname") == "lo":
                continue
            addresses = [a for a in entry.get("addr_info", []) if a.get("scope") == "global"]
            peer = "router" if node != "router" else peers.get(entry["ifname"])
            interfaces.append({
                "name": entry["ifname"],
                "peer": peer,
                "mtu": entry.get("mtu"),
                "state": entry.get("operstate"),
                "ipv4": [f"{a['local']}/{a['prefixlen']}" for a in addresses if a.get("family") == "inet"],
                "ipv6": [f"{a['local']}/{a['prefixlen']}" for a in addresses if a.get("family") == "inet6"],
            })
        interfaces.sort(key=lambda i: lab.nodes.index(i["peer"]) if i["peer"] in lab.nodes else 0)
        result["namespaces"][node] = {"name": lab.ns(node), "interfaces": interfaces}
    result["links"] = {}
    block = False
    for host in lab.hosts:
        link, method, block = read_link(lab, host)
        result["links"][host] = {"mtu": link.mtu, "loss_percent": link.loss, "loss_method": method,
                                 "rate_bps": link.rate}
    last = lab.hosts[-1]
    result["impairments"] = {
        "link": f"router/{topology.router_interface(last)} -> {last}",
        **result["links"][last],
        "block_icmp": block,
    }
    return result
