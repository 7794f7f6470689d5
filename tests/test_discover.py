"""Server discovery (`udpbench discover`, `udpbench.find_servers`) and what a bound server serves.

The sans-IO search and reply limit are tested with a hand-held clock; on this machine, searches
go to loopback only (``interface="lo"`` or 127.255.255.255); every search of real segments runs
inside lab namespaces, whose addresses and links are the ground truth.
"""
from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from udpbench.cli import main
from udpbench.linux import interfaces
from udpbench.measure import find_servers as find
from udpbench.protocol import discovery, wire
from udpbench.protocol.discovery import ReplyBucket, ServerSearch, Target
from udpbench.transport import server as server_mod
from udpbench.transport.server import Server

LOOPBACK_BROADCAST = "127.255.255.255"


def _ip_json(*argv: str) -> list:
    return json.loads(subprocess.run(["ip", "-j", *argv], capture_output=True, text=True, timeout=10).stdout)


needs_ip = pytest.mark.skipif(not shutil.which("ip"), reason="needs `ip` (iproute2) for the ground truth")


# --- the protocol, with a hand-held clock -----------------------------------------------------

def test_default_port_agrees_with_the_server():
    assert find.FindServersOptions().port == server_mod.DEFAULT_PORT == 1060


def test_reply_is_never_larger_than_the_request():
    req = discovery.request(0xABC, 2)
    assert len(req) == 128
    header = wire.parse(req)
    assert header.kind == wire.Kind.DISCOVER and header.session == 0xABC and header.seq == 2
    rep = discovery.reply(header, len(req), 1060)
    assert rep is not None and len(rep) <= len(req)
    h, body = discovery.parse_reply(rep, 0xABC)
    assert h.kind == wire.Kind.DISCOVER_REPLY and h.seq == 2 and h.tx_ns == header.tx_ns
    assert body["port"] == 1060 and body["protocol"] >= 1 and body["version"]
    assert discovery.reply(header, len(rep) - 1, 1060) is None  # a shorter request gets nothing
    with pytest.raises(wire.WireError):
        discovery.parse_reply(rep, 0xABD)  # another search's nonce


def test_reply_bucket_limits_the_rate():
    bucket = ReplyBucket(now=100.0, rate=10, burst=10)
    assert sum(bucket.take(100.0) for _ in range(25)) == 10  # the burst, then nothing
    assert sum(bucket.take(100.5) for _ in range(25)) == 5  # half a second refills five
    assert sum(bucket.take(100.55) for _ in range(25)) == 0  # 0.5 of a token is not a reply
    assert sum(bucket.take(100.65) for _ in range(25)) == 1  # 1.5 tokens by now: one reply
    assert sum(bucket.take(200.0) for _ in range(25)) == 10  # never more than the burst saved up
    assert not bucket.take(150.0)  # a clock that steps back gives nothing back


def test_subnet_broadcast_by_hand():
    assert discovery.subnet_broadcast("198.18.1.2", 24) == "198.18.1.255"
    assert discovery.subnet_broadcast("10.1.2.3", 8) == "10.255.255.255"
    assert discovery.subnet_broadcast("192.0.2.77", 26) == "192.0.2.127"
    assert discovery.subnet_broadcast("127.0.0.1", 8) == LOOPBACK_BROADCAST
    assert discovery.subnet_broadcast("192.0.2.1", 31) is None  # RFC 3021: no broadcast on /31
    assert discovery.subnet_broadcast("192.0.2.1", 32) is None
    assert discovery.subnet_broadcast("192.0.2.1", 24, "192.0.2.200") == "192.0.2.200"  # as configured


def test_search_schedule_and_answers_by_hand():
    """Two targets, three rounds over 0.9 s: datagrams at 0, 0.3 and 0.6, numbered per datagram."""
    targets = [Target("198.18.1.255", 3, "to-server"), Target(discovery.MULTICAST_GROUP_V6, 3, "to-server")]
    search = ServerSearch(nonce=77, targets=targets, port=1060, timeout=0.9, start=10.0, sends=3)
    due = search.datagrams_to_send(10.0)
    assert [(t.address, seq) for t, _, seq in due] == [("198.18.1.255", 0), ("ff12::1060", 1)]
    for t, data, seq in due:
        assert wire.parse(data).session == 77 and wire.parse(data).seq == seq and len(data) == 128
        search.sent(seq, 10.0)
    assert search.datagrams_to_send(10.1) == [] and search.get_timer() == pytest.approx(10.3)
    second = search.datagrams_to_send(10.3)
    assert [seq for _, _, seq in second] == [2, 3]
    search.sent(2, 10.3)  # seq 3 was never sent (say the interface went down)
    reply = discovery.reply(wire.parse(second[0][1]), 128, 1060)
    found = search.receive_datagram(reply, "198.18.1.2", 1060, 10.3125)
    assert found.address == "198.18.1.2" and found.interface == "to-server" and found.rtt_ms == 12.5
    assert found.control_port == 1060 and found.protocol >= 1
    assert search.receive_datagram(reply, "198.18.1.2", 1060, 10.4) is None  # the same server again
    other = wire.parse(discovery.request(77, 3))
    assert search.receive_datagram(discovery.reply(other, 128, 1060), "198.18.1.3", 1060, 10.4) is None
    stranger = wire.parse(discovery.request(78, 0))
    assert search.receive_datagram(discovery.reply(stranger, 128, 1060), "198.18.1.4", 1060, 10.4) is None
    assert search.receive_datagram(b"junk", "198.18.1.5", 1060, 10.4) is None
    assert [t for t, _, _ in search.datagrams_to_send(10.6)] == targets
    assert search.datagrams_to_send(10.85) == [] and search.get_timer() == pytest.approx(10.9)
    assert not search.done(10.89) and search.done(10.9)
    result = search.finish(10.9)
    assert (result.sent, result.duplicates, result.foreign, len(result.servers)) == (3, 1, 3, 1)
    assert result.elapsed_s == 0.9


@pytest.mark.parametrize("kwargs, words", [
    ({"targets": []}, "no address"),
    ({"sends": 0}, "outside 1-10"),
    ({"sends": 11}, "outside 1-10"),
    ({"port": 0}, "outside 1-65535"),
    ({"targets": [Target(f"10.0.{i}.255") for i in range(65)]}, "at most 64"),
])
def test_search_is_bounded(kwargs, words):
    args = {"nonce": 1, "targets": [Target(LOOPBACK_BROADCAST)], "port": 1060, "timeout": 1.0, "start": 0.0,
            **kwargs}
    with pytest.raises(ValueError, match=words):
        ServerSearch(**args)


# --- this machine's interfaces: pyroute2 against `ip` ---------------------------------------

@needs_ip
def test_interface_addresses_match_ip_addr():
    entries = interfaces.interface_addresses()
    lo = [e for e in entries if e.address == "127.0.0.1"]
    assert lo and lo[0].ifname == "lo" and lo[0].prefixlen == 8 and lo[0].broadcast == LOOPBACK_BROADCAST
    listing = _ip_json("addr")
    truth = {(a["local"], a["prefixlen"], i["ifname"]) for i in listing for a in i.get("addr_info", [])}
    assert {(e.address, e.prefixlen, e.ifname) for e in entries} == truth
    announced = {a["local"]: a["broadcast"] for i in listing for a in i.get("addr_info", []) if "broadcast" in a}
    for e in entries:
        if e.address in announced:
            assert e.broadcast == announced[e.address]


@needs_ip
def test_interfaces_match_ip_link():
    truth = {link["ifindex"]: (link["ifname"], "UP" in link["flags"], "MULTICAST" in link["flags"])
             for link in _ip_json("link")}
    assert {i.index: (i.name, i.up, i.multicast) for i in interfaces.interfaces()} == truth


@needs_ip
def test_default_targets_are_every_up_segment_of_this_machine():
    """Worked out from `ip -j addr` (nothing is sent): each up IPv4 subnet's broadcast, and the
    IPv6 group on each up multicast interface that has IPv6."""
    expect = set()
    for link in _ip_json("addr"):
        if "UP" not in link["flags"]:
            continue
        for a in link.get("addr_info", []):
            if a["family"] == "inet" and a["prefixlen"] < 31:
                expect.add(f"{a.get('broadcast') or discovery.subnet_broadcast(a['local'], a['prefixlen'])}"
                           f"%{link['ifname']}")
            elif a["family"] == "inet6" and "MULTICAST" in link["flags"]:
                expect.add(f"{discovery.MULTICAST_GROUP_V6}%{link['ifname']}")
    got = [str(t) for t in find.targets(find.FindServersOptions())]
    assert sorted(got) == sorted(expect) and len(got) == len(set(got))
    assert f"{LOOPBACK_BROADCAST}%lo" in got
    assert [str(t) for t in find.targets(find.FindServersOptions(interface="lo", family=4))] \
        == [f"{LOOPBACK_BROADCAST}%lo"]


# --- on loopback --------------------------------------------------------------------------------

def test_find_servers_on_loopback_finds_a_wildcard_server():
    with Server(None, 0) as server:
        result = find.search_servers(interface="lo", port=server.port, timeout=0.6)
    assert [str(t) for t in result.targets] == [f"{LOOPBACK_BROADCAST}%lo"]  # lo does no multicast
    assert result.sent == discovery.DEFAULT_SENDS
    hits = [s for s in result.servers if s.port == server.port]
    assert len(hits) == 1 and hits[0].address == "127.0.0.1" and hits[0].interface == "lo"
    assert hits[0].control_port == server.port and hits[0].protocol >= 1
    # the later rounds' answers (the last may miss the timeout on a loaded host) are
    # duplicates of the server already found, not new servers
    assert 1 <= result.duplicates <= discovery.DEFAULT_SENDS - 1
    assert server.discovery_answered >= result.duplicates + 1


def test_find_servers_returns_typed_servers_and_calls_back():
    seen = []
    with Server("127.0.0.1", 0) as server:
        found = find.find_servers(broadcast=LOOPBACK_BROADCAST, port=server.port, timeout=0.3, on_found=seen.append)
    assert [(s.address, s.port) for s in found] == [("127.0.0.1", server.port)]
    assert seen == found and isinstance(found[0], discovery.FoundServer)


def test_a_search_can_be_stopped_from_another_thread():
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with Server("127.0.0.1", 0) as server:
        result = find.search_servers(interface="lo", port=server.port, timeout=30, stop=stop)
    assert time.monotonic() - started < 10 and result.sent == 1  # only the first of three rounds went out


def test_a_server_bound_to_127_0_0_1_still_hears_loopback_broadcasts():
    """Bound to a unicast address, a socket gets no broadcasts: the server adds broadcast-bound ones."""
    with Server("127.0.0.1", 0) as server:
        assert LOOPBACK_BROADCAST in server.discovery_addresses
        assert server.discovery_interface.ifname == "lo"
        found = find.find_servers(interface="lo", port=server.port, timeout=0.3)
        assert [s.address for s in found] == ["127.0.0.1"]
        # the broadcast sockets answer DISCOVER only
        before = server.foreign
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            s.settimeout(0.3)
            s.sendto(wire.datagram(wire.Kind.ECHO, 1, 1, 64), (LOOPBACK_BROADCAST, server.port))
            with pytest.raises(socket.timeout):
                s.recv(2048)
        deadline = time.monotonic() + 2
        while server.foreign == before and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.foreign == before + 1


def test_discovery_replies_are_rate_limited():
    with Server("127.0.0.1", 0) as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", server.port))
        s.settimeout(0.3)
        started = time.monotonic()
        for seq in range(40):
            s.send(discovery.request(7, seq))
        answers = 0
        try:
            while True:
                s.recv(2048)
                answers += 1
        except socket.timeout:
            pass
        elapsed = time.monotonic() - started
    assert answers == server.discovery_answered
    assert answers <= discovery.REPLY_BURST + discovery.REPLY_RATE * elapsed + 1
    assert server.discovery_limited == 40 - answers > 0


@pytest.mark.ipv6
def test_ipv6_discovery_keeps_the_answer_rules_and_answers_nothing_else_without_a_session():
    with Server("::1", 0) as server, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(0.5)
        req = discovery.request(7, 0)
        s.sendto(req, ("::1", server.port))
        rep, addr = s.recvfrom(2048)
        assert addr[0] == "::1" and len(rep) <= len(req)
        assert discovery.parse_reply(rep, 7)[1]["port"] == server.port
        s.sendto(wire.datagram(wire.Kind.DISCOVER, 7, 1, wire.HEADER_SIZE + 8), ("::1", server.port))
        s.sendto(wire.datagram(wire.Kind.ECHO, 7, 2, 64), ("::1", server.port))  # no session
        with pytest.raises(socket.timeout):
            s.recv(2048)  # neither a too-small DISCOVER nor an ECHO gets an answer


# --- the command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    (["--broadcast", "::1"], "IPv4 only"),
    (["--broadcast", "224.0.0.1"], "not a multicast"),
    (["--broadcast", "0.0.0.0"], "not a multicast"),
    (["--broadcast", "lan"], "not an IPv4 address"),
    (["--interface", "no-such-if0"], "no interface named 'no-such-if0'"),
    (["--interface", "lo", "-6"], "interface lo has no IPv6 multicast"),
    (["--broadcast", LOOPBACK_BROADCAST, "-6"], "IPv6 only"),
    (["-4", "-6"], "not allowed with"),
])
def test_discover_cli_refuses_bad_input(capsys, argv, words):
    assert main(["discover", *argv, "--timeout", "0.05"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_discover_cli_on_loopback(capsys):
    with Server(None, 0) as server:
        code = main(["discover", "--interface", "lo", "--port", str(server.port), "--timeout", "0.2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["targets"] == [f"{LOOPBACK_BROADCAST}%lo"] and out["sent"] == 3
    assert [(s["address"], s["port"]) for s in out["servers"]] == [("127.0.0.1", server.port)]


def test_discover_cli_exits_1_when_nobody_answers(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port nobody serves
        port = s.getsockname()[1]
    assert main(["discover", "--interface", "lo", "--port", str(port), "--timeout", "0.1"]) == 1
    assert "0 server(s) answered 3 discovery datagram(s) to 127.255.255.255%lo" in capsys.readouterr().err


def test_serve_says_where_it_listens():
    proc = subprocess.Popen([sys.executable, "-m", "udpbench", "serve", "--bind", "127.0.0.1", "--port", "0",
                             "--drop", "0.25", "--seed", "9"], stdout=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()  # the banner is printed in one go, once listening
    finally:
        proc.terminate()
        rest = proc.stdout.read()  # not communicate(): it would skip what readline buffered
        proc.wait(10)
    text = first + rest
    assert "serving on 127.0.0.1:" in text and "this machine only" in text
    assert "answers discovery broadcasts" in text and LOOPBACK_BROADCAST in text
    assert "--drop 0.25 --seed 9" in text


# --- in the lab: a real segment, real broadcasts, addresses that mean something --------------------

class Served:
    """`udpbench serve` running in a lab node, until the test ends."""

    def __init__(self, lab, node: str, *args: str):
        self.proc = lab.popen(node, [sys.executable, "-m", "udpbench", "serve", "--quiet", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = ""

    def ready(self, timeout: float = 20.0) -> "Served":
        readable, _, _ = select.select([self.proc.stdout], [], [], timeout)
        self.banner = self.proc.stdout.readline() if readable else ""
        if "serving on" not in self.banner:
            self.stop()
            raise AssertionError(f"serve did not start: {self.banner!r} {self.proc.stderr.read()!r}")
        return self

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def serve_in():
    started: list[Served] = []

    def start(lab, node, *many):
        """start(lab, node, [args], [args]...): start them all, then wait for each to listen."""
        batch = [Served(lab, node, *map(str, args)) for args in many]
        started.extend(batch)
        return [served.ready() for served in batch]

    try:
        yield start
    finally:
        for served in started:
            served.stop()


def udpbench_in(lab, node: str, *args, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return lab.run(node, [sys.executable, "-m", "udpbench", *map(str, args)], capture_output=True,
                   text=True, timeout=timeout)


def found_ports(proc: subprocess.CompletedProcess) -> dict[int, list[str]]:
    out = json.loads(proc.stdout) if proc.stdout.strip() else {"servers": []}
    ports: dict[int, list[str]] = {}
    for s in out["servers"]:
        ports.setdefault(s["port"], []).append(s["address"])
    return ports


@pytest.mark.lab
def test_lab_discover_finds_servers_on_the_segment_by_their_binding(lab, serve_in):
    """From the router, the server's segment: a wildcard server and one bound to its lab address
    answer; one bound to 127.0.0.1 does not (it hears only loopback broadcasts)."""
    server_ip = lab.address("server")
    segment_broadcast = server_ip.rsplit(".", 1)[0] + ".255"
    serve_in(lab, "server", ["--port", 1061], ["--port", 1062, "--bind", server_ip],
             ["--port", 1063, "--bind", "127.0.0.1"])
    router_side = lab.interface("router", toward="server")
    # one process in the router runs every search (interpreter start-up is the slow part)
    searches = [(port, target) for port in (1061, 1062, 1063)
                for target in ((segment_broadcast, None), ("255.255.255.255", router_side))]
    program = ("import json, sys; from udpbench.measure.find_servers import search_servers as s; "
               "print(json.dumps([[f.address for f in s(broadcast=b, interface=i, port=p, timeout=0.3).servers] "
               "for p, (b, i) in json.loads(sys.argv[1])]))")
    proc = lab.run("router", [sys.executable, "-c", program, json.dumps(searches)], capture_output=True,
                   text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for (port, target), addresses in zip(searches, json.loads(proc.stdout)):
        assert addresses == ([] if port == 1063 else [server_ip]), (port, target)
    # and on its own machine the 127.0.0.1 server is found through loopback's broadcast
    proc = udpbench_in(lab, "server", "discover", "--interface", "lo", "--port", 1063, "--timeout", "0.3", "--json")
    assert found_ports(proc) == {1063: ["127.0.0.1"]}


def link_local(lab, node: str, ifname: str) -> str:
    """The node's IPv6 link-local address on ``ifname``, read with `ip` (the ground truth)."""
    listing = json.loads(lab.run(node, ["ip", "-j", "-6", "addr", "show", "dev", ifname, "scope", "link"],
                                 capture_output=True, text=True, timeout=10).stdout)
    return next(a["local"] for i in listing for a in i["addr_info"] if "local" in a)


@pytest.mark.lab
def test_lab_discover_with_no_options_searches_every_segment(lab, serve_in):
    """From the router with no options: both segments' broadcasts, loopback's, and the IPv6
    group on both links; the wildcard server answers by IPv4 and by IPv6 multicast."""
    serve_in(lab, "server", ["--port", 1067])
    proc = udpbench_in(lab, "router", "discover", "--port", 1067, "--timeout", "0.5", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["targets"]) == sorted([
        "127.255.255.255%lo", "198.18.0.255%to-client", "198.18.1.255%to-server",
        "ff12::1060%to-client", "ff12::1060%to-server"])  # from the lab's addresses, by hand
    assert out["sent"] == 3 * 5 and out["send_errors"] == {}
    server_v6 = link_local(lab, "server", "to-router")
    assert sorted((s["address"], s["interface"]) for s in out["servers"]) == sorted([
        (lab.address("server"), "to-server"), (f"{server_v6}%to-server", "to-server")])
    assert {s["control_port"] for s in out["servers"]} == {1067}


@pytest.mark.lab
def test_lab_discover_interface_limits_where_it_looks(lab, serve_in):
    serve_in(lab, "server", ["--port", 1068])
    away = udpbench_in(lab, "router", "discover", "--interface", "to-client", "--port", 1068,
                       "--timeout", "0.3", "--json")
    assert away.returncode == 1 and found_ports(away) == {}
    assert sorted(json.loads(away.stdout)["targets"]) == ["198.18.0.255%to-client", "ff12::1060%to-client"]
    toward = udpbench_in(lab, "router", "discover", "--interface", "to-server", "--port", 1068,
                         "--timeout", "0.3", "--json")
    assert toward.returncode == 0, toward.stderr
    assert sorted(json.loads(toward.stdout)["targets"]) == ["198.18.1.255%to-server", "ff12::1060%to-server"]
    server_addresses = sorted([lab.address("server"), f"{link_local(lab, 'server', 'to-router')}%to-server"])
    assert {port: sorted(found) for port, found in found_ports(toward).items()} == {1068: server_addresses}
    # the client's only segment is the router's: the server, one hop away, is not on it
    client = udpbench_in(lab, "client", "discover", "--port", 1068, "--timeout", "0.3", "--json")
    assert client.returncode == 1 and found_ports(client) == {}


@pytest.mark.lab
def test_lab_ipv6_multicast_finds_the_server(lab, serve_in):
    serve_in(lab, "server", ["--port", 1069])
    proc = udpbench_in(lab, "router", "discover", "-6", "--port", 1069, "--timeout", "0.3", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["targets"]) == ["ff12::1060%to-client", "ff12::1060%to-server"]
    assert [s["address"] for s in out["servers"]] == [f"{link_local(lab, 'server', 'to-router')}%to-server"]
    # the address found is one a measurement can use
    ping = udpbench_in(lab, "router", "ping", out["servers"][0]["address"], "--port", 1069, "-c", 1, "--json")
    assert ping.returncode == 0, ping.stderr


@pytest.mark.lab
def test_lab_limited_broadcast_needs_an_interface_without_a_default_route(lab):
    proc = udpbench_in(lab, "router", "discover", "--broadcast", "255.255.255.255", "--timeout", "0.1")
    assert proc.returncode == 1 and "--interface" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.lab
def test_lab_bound_address_decides_who_can_reach_the_server(lab, serve_in):
    """127.0.0.1 serves its own machine only; the lab address serves the lab."""
    server_ip = lab.address("server")
    serve_in(lab, "server", ["--port", 1064, "--bind", "127.0.0.1"], ["--port", 1065, "--bind", server_ip])
    far = udpbench_in(lab, "client", "ping", server_ip, "--port", 1064, "-c", 1, "--json")
    assert far.returncode == 2 and "no udpbench server" in far.stderr
    near = udpbench_in(lab, "server", "ping", "127.0.0.1", "--port", 1064, "-c", 2, "-i", "0.01", "--json")
    assert near.returncode == 0 and json.loads(near.stdout)["received"] == 2
    lab_side = udpbench_in(lab, "client", "ping", server_ip, "--port", 1065, "-c", 2, "-i", "0.01", "--json")
    assert lab_side.returncode == 0, lab_side.stderr
    result = json.loads(lab_side.stdout)
    assert result["received"] == 2 and result["address"] == server_ip
    # bound to its lab address, the server does not answer on its own loopback either (asked with a
    # bare connect: `ping 127.0.0.1` would start an embedded server where none listens)
    probe = ("import socket, sys\ntry:\n    socket.create_connection(('127.0.0.1', 1065), timeout=5)\n"
             "except ConnectionRefusedError:\n    sys.exit(3)")
    assert lab.run("server", [sys.executable, "-c", probe], timeout=30).returncode == 3


@pytest.mark.lab
def test_lab_ping_through_the_router_against_drop(lab):
    server = lab.serve("--port", "1066", "--drop", "0.5", "--seed", "11")
    try:
        proc = udpbench_in(lab, "client", "ping", lab.address("server"), "--port", 1066, "-c", 12, "-i", "0.001",
                           "--rto-initial", "0.05", "--rto-min", "0.05", "--rto-max", "0.8", "--json")
    finally:
        server.terminate()
        server.communicate(timeout=10)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["received"] + r["lost"] == r["sent"] == 12 and max(r["attempts"]) > 1
    # no loss in the lab itself: the server's own counts close the books
    assert r["server"]["echo_requests"] == r["transmissions"]
    assert r["server"]["echo_answered"] == r["replies"]
