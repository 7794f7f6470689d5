"""The namespace lab: topology, MTU, ICMP, loss, rate, teardown, and its command line.

Tests marked ``lab`` build namespaces (root, ip, nft) and skip elsewhere; traffic stays
inside the lab (198.18.0.0/15, fdb0:1::/64, fdb0:2::/64). The rest run anywhere.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import udpbench
from udpbench import cli
from udpbench.lab import lab as labmod
from udpbench.lab import status as lab_status
from udpbench.errors import UserError
from udpbench.lab.lab import Impairments, Lab, parse_rate

PORT = 47000
V4_V6 = pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])


def ns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def within(count: int, n: int, p: float, sds: float = 5.0) -> bool:
    """count is a plausible Binomial(n, p) draw (five standard deviations either side)."""
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) <= sds * sd


# ---- the topology --------------------------------------------------------------------------

@pytest.mark.lab
def test_lab_is_up_with_the_planned_topology(lab):
    st = lab.status()
    assert st["up"]
    assert {n: st["namespaces"][n]["name"] for n in labmod.NODES} == lab.namespaces
    ifaces = {(node, i["name"]): i for node in labmod.NODES for i in st["namespaces"][node]["interfaces"]}
    assert ifaces[("client", "to-router")]["mtu"] == 1500
    assert ifaces[("router", "to-client")]["mtu"] == 1500
    assert ifaces[("router", "to-server")]["mtu"] == 1400
    assert ifaces[("server", "to-router")]["mtu"] == 1400
    assert ifaces[("server", "to-router")]["ipv4"] == ["198.18.1.2/24"]
    assert ifaces[("server", "to-router")]["ipv6"] == ["fdb0:2::2/64"]
    assert ifaces[("client", "to-router")]["ipv6"] == ["fdb0:1::2/64"]
    assert st["impairments"] == {"link": "router/to-server -> server", "mtu": 1400, "loss_percent": 0.0,
                                 "loss_method": None, "rate_bps": None, "block_icmp": False}
    assert lab.address("server") == "198.18.1.2"
    assert lab.address("router", v6=True, toward="server") == "fdb0:2::1"


@pytest.mark.lab
def test_no_default_route_anywhere(lab):
    for node in labmod.NODES:
        for family in ("-4", "-6"):
            routes = lab.run(node, ["ip", family, "route", "show"], capture_output=True, text=True,
                             check=True).stdout
            assert "default" not in routes, (node, routes)
            for line in routes.splitlines():  # every destination is inside the lab
                assert line.split()[0].startswith(("198.18.", "fdb0:", "fe80:")), (node, line)


@pytest.mark.lab
def test_router_forwards(lab):
    for path in ("net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding"):
        out = lab.run("router", ["cat", f"/proc/sys/{path}"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "1"


@pytest.mark.lab
@V4_V6
def test_client_reaches_server_through_the_router(lab, netns_script, v6):
    server = lab.address("server", v6=v6)
    sink = netns_script.start(lab, "server", "udp_sink.py", "--bind", server, "--port", PORT,
                              "--expect", 20, "--deadline", 5)
    sent = netns_script.run(lab, "client", "udp_send.py", "--to", server, "--port", PORT,
                            "--size", 100, "--count", 20)
    got = sink.result()
    assert sent["sent"] == 20
    assert got["count"] == 20 and set(got["sizes"]) == {100}


# ---- the MTU, and what the router says about it -------------------------------------------

@pytest.mark.lab
@V4_V6
def test_mtu_is_enforced_on_df_datagrams(lab, netns_script, v6):
    overhead = 48 if v6 else 28
    largest = 1400 - overhead
    server = lab.address("server", v6=v6)
    sink = netns_script.start(lab, "server", "udp_sink.py", "--bind", server, "--port", PORT,
                              "--idle", 0.5, "--deadline", 3)
    # PROBE mode: DF set, sized against the client's own 1500-byte link, so the router decides.
    # The fitting one goes first: the router's ICMP for the other one would fail the socket's
    # next send (sk_err).
    sent = netns_script.run(lab, "client", "udp_send.py", "--to", server, "--port", PORT,
                            "--sizes", f"{largest},{largest + 1}", "--pmtu-mode", 3)
    got = sink.result()
    assert sent["sent"] == 2
    assert got["sizes"] == [largest]


@pytest.mark.lab
@V4_V6
def test_router_reports_frag_needed_and_the_client_learns_the_mtu(lab, netns_script, v6):
    lab.forget_pmtu()
    server = lab.address("server", v6=v6)
    probe = netns_script.run(lab, "client", "pmtu_probe.py", "--to", server, "--size", 1500 - (48 if v6 else 28))
    assert probe["sent"]
    # ee_errno EMSGSIZE (90), origin ICMP (2) type 3 code 4 / origin ICMP6 (3) type 2 code 0; ee_info = MTU
    assert probe["icmp"] == ([90, 3, 2, 0, 1400] if v6 else [90, 2, 3, 4, 1400])
    assert probe["route_mtu"] == 1400
    lab.forget_pmtu()


@pytest.mark.lab
@V4_V6
def test_block_icmp_makes_a_black_hole(make_lab, netns_script, v6):
    black = make_lab(mtu=1400, block_icmp=True)
    server = black.address("server", v6=v6)
    overhead = 48 if v6 else 28
    sink = netns_script.start(black, "server", "udp_sink.py", "--bind", server, "--port", PORT,
                              "--idle", 0.5, "--deadline", 3)
    probe = netns_script.run(black, "client", "pmtu_probe.py", "--to", server, "--port", PORT,
                             "--size", 1500 - overhead, "--wait", 0.5)
    assert probe["sent"] and probe["icmp"] is None
    assert probe["route_mtu"] == 1500  # nothing learned
    netns_script.run(black, "client", "udp_send.py", "--to", server, "--port", PORT,
                     "--size", 1400 - overhead, "--pmtu-mode", 3)
    assert sink.result()["sizes"] == [1400 - overhead]  # only the one that fits got through

    # Lifting the block on the live lab brings the ICMP back.
    assert black.set_impairments(block_icmp=False).block_icmp is False
    probe = netns_script.run(black, "client", "pmtu_probe.py", "--to", server, "--size", 1500 - overhead)
    assert probe["icmp"] is not None and probe["icmp"][4] == 1400
    black.down()


# ---- loss and rate -----------------------------------------------------------------------

@pytest.mark.lab
def test_loss_drops_about_the_asked_share_of_packets(make_lab, netns_script):
    lossy = make_lab(mtu=1400, loss=50)
    imp = lossy.status()["impairments"]
    assert imp["loss_percent"] == 50.0 and imp["loss_method"] in ("nftables", "netem")
    server = lossy.address("server")
    sink = netns_script.start(lossy, "server", "udp_sink.py", "--bind", server, "--port", PORT,
                              "--idle", 0.5, "--deadline", 8)
    sent = netns_script.run(lossy, "client", "udp_send.py", "--to", server, "--port", PORT,
                            "--size", 64, "--count", 2000)
    got = sink.result()
    assert sent["sent"] == 2000
    assert within(got["count"], 2000, 0.5), got["count"]

    # Each fragment is dropped on its own: a datagram the router cuts in two arrives with
    # probability (1 - p)^2 = 1/4, not 1/2 (which a pre-fragmentation drop would give).
    sink = netns_script.start(lossy, "server", "udp_sink.py", "--bind", server, "--port", PORT + 1,
                              "--idle", 0.5, "--deadline", 8)
    netns_script.run(lossy, "client", "udp_send.py", "--to", server, "--port", PORT + 1,
                     "--size", 1400, "--count", 800, "--pmtu-mode", 0)
    got = sink.result()
    assert within(got["count"], 800, 0.25), got["count"]
    lossy.down()


@pytest.mark.lab
def test_rate_limit_holds_goodput_near_the_rate(make_lab, netns_script):
    rate = 8_000_000
    slow = make_lab(rate="8M")
    assert slow.impairments().rate == rate
    server = slow.address("server")
    sink = netns_script.start(slow, "server", "udp_sink.py", "--bind", server, "--port", PORT,
                              "--idle", 0.3, "--deadline", 5)
    # About twice the rate for about 0.25 s: the queue fills, then tbf sets the pace.
    netns_script.run(slow, "client", "udp_send.py", "--to", server, "--port", PORT,
                     "--size", 1000, "--count", 500, "--gap", 0.0005)
    got = sink.result()
    assert got["count"] > 50
    frame = 1000 + 8 + 20 + 14  # tbf counts the Ethernet header too
    measured = (got["count"] - 1) * frame * 8 / (got["last"] - got["first"])
    assert 0.75 * rate < measured < 1.3 * rate, measured
    slow.down()


@pytest.mark.lab
def test_set_impairments_changes_a_live_lab(make_lab):
    live = make_lab()
    now = live.set_impairments(mtu=1000, loss=1.5, rate="20M")
    assert now == Impairments(mtu=1000, loss=1.5, rate=20_000_000, block_icmp=False)
    server_if = live.status()["namespaces"]["server"]["interfaces"][0]
    assert server_if["mtu"] == 1000 and server_if["ipv6"] == []  # IPv6 needs 1280
    now = live.set_impairments(mtu=1400, loss=0, rate=None)
    assert now == Impairments(mtu=1400)
    server_if = live.status()["namespaces"]["server"]["interfaces"][0]
    assert server_if["ipv6"] == ["fdb0:2::2/64"]  # back, with its route
    assert "fdb0:1::/64 via fdb0:2::1" in live.run("server", ["ip", "-6", "route"], capture_output=True,
                                                   text=True).stdout
    live.down()


# ---- bringing it up and down ---------------------------------------------------------------

@pytest.mark.lab
def test_down_leaves_nothing_and_is_idempotent(make_lab):
    gone = make_lab()
    names = set(gone.namespaces.values())
    assert names <= ns_names()
    assert gone.down() is True
    assert not names & ns_names()
    assert gone.down() is False


@pytest.mark.lab
def test_up_twice_is_a_clear_error(lab):
    with pytest.raises(UserError, match=r"already up") as caught:
        Lab(lab.prefix).up()
    assert (caught.value.fix, caught.value.prefix) == ("down", lab.prefix)
    assert lab.status()["up"]  # and the running lab is untouched


@pytest.mark.lab
def test_context_manager_tears_down_on_error(make_lab):
    prefix = f"ubt{os.getpid()}xctx"
    with pytest.raises(RuntimeError):
        with Lab(prefix):
            assert f"{prefix}-router" in ns_names()
            raise RuntimeError("boom")
    assert f"{prefix}-router" not in ns_names()


@pytest.mark.lab
def test_command_line_up_status_exec_down(make_lab):
    prefix = f"ubt{os.getpid()}xcli"
    # The child runs the same udpbench this process imported, installed or not.
    package_root = str(Path(udpbench.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [package_root, os.environ.get("PYTHONPATH")] if p))

    def lab_cli(*argv):
        return subprocess.run([sys.executable, "-m", "udpbench", "lab", *argv], capture_output=True,
                              text=True, timeout=60, env=env)

    try:
        up = lab_cli("up", "--mtu", "1400", "--loss", "5", "--prefix", prefix)
        assert up.returncode == 0, up.stderr
        assert "mtu 1400" in up.stdout
        status = lab_cli("status", "--json", "--prefix", prefix)
        assert status.returncode == 0, status.stderr
        st = json.loads(status.stdout)
        assert st["up"] and {v["name"] for v in st["namespaces"].values()} == {
            f"{prefix}-client", f"{prefix}-router", f"{prefix}-server"}
        assert st["impairments"]["loss_percent"] == 5.0
        text = lab_cli("status", "--prefix", prefix)
        assert f"{prefix}-server" in text.stdout and "loss 5%" in text.stdout
        ran = lab_cli("exec", "--prefix", prefix, "server", "--", "ip", "-4", "-o", "addr", "show", "dev", "to-router")
        assert ran.returncode == 0 and "198.18.1.2/24" in ran.stdout
        assert lab_cli("exec", "--prefix", prefix, "client", "--", "sh", "-c", "exit 7").returncode == 7
        again = lab_cli("up", "--prefix", prefix)
        assert again.returncode == 2
        assert again.stderr.strip() == (f"udpbench: lab '{prefix}' is already up; "
                                        f"run `udpbench lab down --prefix {prefix}`")
        down = lab_cli("down", "--prefix", prefix)
        assert down.returncode == 0 and not {n for n in ns_names() if n.startswith(prefix + "-")}
        assert lab_cli("down", "--prefix", prefix).returncode == 0
        after = lab_cli("status", "--json", "--prefix", prefix)
        assert json.loads(after.stdout)["up"] is False
        missing = lab_cli("exec", "--prefix", prefix, "client", "--", "true")
        assert missing.returncode == 2 and "is up; run `udpbench lab up --prefix" in missing.stderr
    finally:
        Lab(prefix).down()


# ---- user errors, without root --------------------------------------------------------------

@pytest.mark.parametrize("argv", [["lab", "up"], ["lab", "down"], ["lab", "status"],
                                  ["lab", "set", "--loss", "1"], ["lab", "exec", "client", "--", "true"]])
def test_without_root_every_action_says_so(monkeypatch, capsys, argv):
    monkeypatch.setattr(labmod, "_is_root", lambda: False)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs root" in err and "Traceback" not in err


def test_block_icmp_without_nft_fails_before_building_anything(monkeypatch):
    real_which = labmod.shutil.which
    monkeypatch.setattr(labmod, "_is_root", lambda: True)
    monkeypatch.setattr(labmod.shutil, "which", lambda name: None if name == "nft" else real_which(name))
    monkeypatch.setattr(labmod.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    with pytest.raises(UserError, match=r"`nft` not found: install nftables"):
        Lab("ubnever", block_icmp=True).up()


def test_without_ip_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setattr(labmod, "_is_root", lambda: True)
    monkeypatch.setattr(labmod.shutil, "which", lambda name: None)
    assert cli.main(["lab", "up"]) == 2
    assert capsys.readouterr().err == "udpbench: `ip` not found: install iproute2 (apt-get install iproute2)\n"


@pytest.mark.parametrize("argv, message", [
    (["lab", "up", "--mtu", "40"], "MTU 40 is outside 68..65535"),
    (["lab", "up", "--loss", "120"], "loss 120.0% is outside 0..100"),
    (["lab", "up", "--rate", "fast"], "rate 'fast' is not bits/s like 100M"),
    (["lab", "up", "--prefix", "a/b"], "lab prefix 'a/b' must be"),
    (["lab", "exec", "client"], "give a command after the node"),
    (["lab", "set"], "nothing to change"),
])
def test_bad_input_is_one_line(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(labmod, "_is_root", lambda: True)
    monkeypatch.setattr(labmod.subprocess, "run", lambda *a, **k: pytest.fail(f"ran {a}"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("text, bps", [("10M", 10_000_000), ("500k", 500_000), ("1G", 10**9),
                                       ("1.5M", 1_500_000), ("64000", 64_000), ("10mbit", 10_000_000),
                                       ("0", None), ("max", None), (None, None), (2_000_000, 2_000_000),
                                       ("1e6", 1_000_000), ("10 Mbps", 10_000_000)])
def test_parse_rate(text, bps):
    assert parse_rate(text) == bps


@pytest.mark.parametrize("text", ["fast", "10MB", "-5M", "100", "7999"])
def test_parse_rate_rejects(text):
    with pytest.raises(UserError):
        parse_rate(text)


def test_loss_rule_is_stateless_and_per_packet():
    body = labmod._nft_loss_body(12.5, "to-server")
    assert "hook egress device \"to-server\"" in body  # after the router fragments
    assert "numgen random mod 1000000 < 125000 drop" in body
    assert " ct " not in body  # conntrack would reassemble fragments at the router
    assert " ct " not in labmod._nft_block_icmp_body()


def test_client_link_is_never_the_bottleneck():
    assert Impairments(mtu=1400).client_mtu == 1500
    assert Impairments(mtu=9000).client_mtu == 9000


# ---- netem, where the kernel has it (this one does not: exercised with a fake `tc`) ---------

def fake_tools(monkeypatch, netem_works: bool) -> list:
    """Record every ip/tc/nft call instead of running it; netem succeeds or not."""
    calls = []

    def fake_cmd(argv, *, what, check=True, input=None):
        calls.append((list(argv), input))
        failed = "netem" in argv and not netem_works
        return subprocess.CompletedProcess(argv, 2 if failed else 0, "",
                                           "Error: Specified qdisc kind is unknown." if failed else "")

    monkeypatch.setattr(labmod, "_cmd", fake_cmd)
    monkeypatch.setattr(labmod.shutil, "which", lambda name: f"/usr/sbin/{name}")
    return calls


@pytest.mark.parametrize("rate, parent", [(None, ["root"]), ("10M", ["parent", "1:1"])])
def test_netem_is_preferred_when_the_kernel_has_it(monkeypatch, rate, parent):
    calls = fake_tools(monkeypatch, netem_works=True)
    lab = Lab("ubfake")
    lab._apply(Impairments(mtu=1400, loss=2.5, rate=rate).validated())
    assert lab.loss_method == "netem"
    netem = [argv for argv, _ in calls if "netem" in argv]
    assert netem == [["tc", "-n", "ubfake-router", "qdisc", "add", "dev", "to-server", *parent,
                      "handle", "10:", "netem", "loss", "2.5%"]]
    assert not any(script and "numgen" in script for _, script in calls)


def test_nftables_loss_when_netem_is_missing(monkeypatch):
    calls = fake_tools(monkeypatch, netem_works=False)
    lab = Lab("ubfake")
    lab._apply(Impairments(mtu=1400, loss=2.5).validated())
    assert lab.loss_method == "nftables"
    scripts = [script for _, script in calls if script and "numgen" in script]
    assert len(scripts) == 1 and "table netdev udpbench_loss" in scripts[0]
    assert "numgen random mod 1000000 < 25000 drop" in scripts[0]


def test_status_reads_netem_and_tbf_back(monkeypatch):
    qdiscs = [{"kind": "tbf", "handle": "1:", "root": True, "options": {"rate": 1250000, "burst": 2828}},
              {"kind": "netem", "handle": "10:", "parent": "1:1",
               "options": {"limit": 1000, "loss-random": {"loss": 0.025, "correlation": 0}}}]

    def fake_cmd(argv, *, what, check=True, input=None):
        out = json.dumps(qdiscs) if argv[0] == "tc" else json.dumps([{"ifname": "to-server", "mtu": 1400}])
        return subprocess.CompletedProcess(argv, 0, out, "")

    monkeypatch.setattr(lab_status, "_cmd", fake_cmd)  # the kernel is read in lab/status.py
    monkeypatch.setattr(labmod.shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(Lab, "run", lambda self, node, argv, **kw: subprocess.CompletedProcess(argv, 0, '{"nftables": []}', ""))
    imp, method = Lab("ubfake")._read_impairments()
    assert imp == Impairments(mtu=1400, loss=2.5, rate=10_000_000, block_icmp=False)
    assert method == "netem"
