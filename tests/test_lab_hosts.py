"""The lab with N hosts: per-link settings parsed by hand, and a 3-host lab read back from the kernel."""
from __future__ import annotations

import pytest

from udpbench.errors import UserError
from udpbench.lab import topology
from udpbench.lab.lab import Lab


def test_parse_link_by_hand():
    assert topology.parse_link("h3:mtu=1400,loss=1%,rate=50M") == ("h3", {"mtu": 1400, "loss": 1.0,
                                                                         "rate": 50_000_000})


@pytest.mark.parametrize("text", ["h3", "h3:", "h3:speed=1", "x:mtu=1400", "h3:mtu=big", "h3:mtu"])
def test_parse_link_rejects(text):
    with pytest.raises(UserError):
        topology.parse_link(text)


def test_addresses_follow_the_subnet_plan():
    hosts = topology.host_names(3)
    assert hosts == ("h1", "h2", "h3")
    assert topology.host_address(hosts, "h3") == "198.18.2.2"
    assert topology.host_address(hosts, "h3", v6=True, router=True) == "fdb0:3::1"
    assert topology.host_names(2) == ("client", "server")  # the classic lab
    with pytest.raises(UserError, match="2..64 hosts"):
        topology.host_names(1)


@pytest.mark.lab
def test_three_hosts_each_link_its_own(make_lab, netns_script):
    lab = make_lab(hosts=3, links={"h2": {"mtu": 1400}, "h3": {"mtu": 1300, "loss": 2, "rate": "50M"}})
    st = lab.status()
    assert st["hosts"] == ["h1", "h2", "h3"]
    assert {h: (v["mtu"], v["loss_percent"], v["rate_bps"]) for h, v in st["links"].items()} == {
        "h1": (1500, 0.0, None), "h2": (1400, 0.0, None), "h3": (1300, 2.0, 50_000_000)}
    assert st["namespaces"]["h3"]["interfaces"][0]["ipv4"] == ["198.18.2.2/24"]
    # h1 reaches h3 through the router; the 1300 link answers with frag-needed.
    probe = netns_script.run(lab, "h1", "pmtu_probe.py", "--to", lab.address("h3"), "--size", 1400)
    assert probe["icmp"] is not None and probe["icmp"][4] == 1300
    # Another process sees the same lab, hosts and all.
    assert Lab(lab.prefix).links()["h3"].mtu == 1300
    lab.down()
