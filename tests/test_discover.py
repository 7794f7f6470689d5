"""udpbench discover and serve --bind: broadcast discovery, its limits, and what a bound address serves."""
from __future__ import annotations

import json
import select
import shutil
import socket
import subprocess
import sys
import time

import pytest

from udpbench.transport import discover
from udpbench.transport import server as server_mod
from udpbench.protocol import wire
from udpbench.cli import main
from udpbench.transport.server import Server

LOOPBACK_BROADCAST = "127.255.255.255"


def test_default_port_agrees_with_the_server():
    assert discover.DEFAULT_PORT == server_mod.DEFAULT_PORT


def test_reply_is_never_larger_than_the_request():
    req = discover.request(0xABC, 2)
    assert len(req) == discover.DISCOVER_SIZE
    header = wire.parse(req)
    assert header.kind == wire.Kind.DISCOVER and header.session == 0xABC and header.seq == 2
    rep = discover.reply(header, len(req), 1060)
    assert rep is not None and len(rep) <= len(req)
    h, body = discover.parse_reply(rep, 0xABC)
    assert h.kind == wire.Kind.DISCOVER_REPLY and h.seq == 2 and h.tx_ns == header.tx_ns
    assert body["port"] == 1060 and body["protocol"] >= 1 and body["version"]
    assert discover.reply(header, len(rep) - 1, 1060) is None  # a shorter request gets nothing
    with pytest.raises(wire.WireError):
        discover.parse_reply(rep, 0xABD)  # another search's nonce


def test_token_bucket_limits_the_rate():
    now = [0.0]
    bucket = discover.TokenBucket(rate=10, burst=10, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(25)) == 10  # the burst, then nothing
    now[0] += 0.5  # half a second refills five
    assert sum(bucket.take() for _ in range(25)) == 5
    now[0] += 100  # never more than the burst saved up
    assert sum(bucket.take() for _ in range(25)) == 10


def test_interface_addresses_match_ip_addr():
    entries = discover.interface_addresses()
    lo = [e for e in entries if e.address == "127.0.0.1"]
    assert lo and lo[0].ifname == "lo" and lo[0].prefixlen == 8 and lo[0].broadcast == LOOPBACK_BROADCAST
    if shutil.which("ip"):  # the ground truth, by another route
        listing = json.loads(subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True,
                                            timeout=10).stdout)
        truth = {(a["local"], a["prefixlen"], i["ifname"]) for i in listing for a in i.get("addr_info", [])}
        assert {(e.address, e.prefixlen, e.ifname) for e in entries} == truth


def test_discover_finds_a_wildcard_server_on_loopback():
    with Server(None, 0) as server:
        found = discover.discover(LOOPBACK_BROADCAST, server.port, timeout=0.6)
    assert found["sent"] == discover.DEFAULT_SENDS
    hits = [s for s in found["servers"] if s["port"] == server.port]
    assert len(hits) == 1 and hits[0]["address"] == "127.0.0.1"
    assert hits[0]["control_port"] == server.port and hits[0]["protocol"] >= 1
    # the later datagrams' answers (the last may miss the timeout on a loaded host) are
    # duplicates of the server already found, not new servers
    assert 1 <= found["duplicates"] <= discover.DEFAULT_SENDS - 1
    assert server.discovery_answered >= found["duplicates"] + 1


def test_a_server_bound_to_127_0_0_1_still_hears_loopback_broadcasts():
    """Bound to a unicast address, a socket gets no broadcasts: the server adds broadcast-bound ones."""
    with Server("127.0.0.1", 0) as server:
        assert LOOPBACK_BROADCAST in server.discovery_addresses
        assert server.discovery_interface.ifname == "lo"
        found = discover.discover(LOOPBACK_BROADCAST, server.port, timeout=0.3)
        assert [s["address"] for s in found["servers"]] == ["127.0.0.1"]
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
            s.send(discover.request(7, seq))
        answers = 0
        try:
            while True:
                s.recv(2048)
                answers += 1
        except socket.timeout:
            pass
        elapsed = time.monotonic() - started
    assert answers == server.discovery_answered
    assert answers <= discover.REPLY_BURST + discover.REPLY_RATE * elapsed + 1
    assert server.discovery_limited == 40 - answers > 0


def test_discovery_is_ipv4_only_and_answers_nothing_else_without_a_session():
    with Server("::1", 0) as server, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(discover.request(7, 0), ("::1", server.port))
        with pytest.raises(socket.timeout):
            s.recv(2048)


@pytest.mark.parametrize("target, words", [
    ("::1", "IPv4 only"),
    ("224.0.0.1", "not a multicast"),
    ("0.0.0.0", "not a multicast"),
    ("lan", "not an IPv4 address"),
])
def test_discover_cli_refuses_bad_targets(capsys, target, words):
    assert main(["discover", "--broadcast", target, "--timeout", "0.05"]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def test_discover_cli_default_stays_on_this_machine(capsys):
    with Server(None, 0) as server:
        code = main(["discover", "--port", str(server.port), "--timeout", "0.2", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["broadcast"] == LOOPBACK_BROADCAST and out["sent"] == 3
    assert [s["port"] for s in out["servers"]] == [server.port]


def test_discover_cli_exits_1_when_nobody_answers(capsys):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # a port nobody serves
        port = s.getsockname()[1]
    assert main(["discover", "--port", str(port), "--timeout", "0.1"]) == 1
    assert "0 server(s) answered" in capsys.readouterr().err


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
    program = ("import json, sys; from udpbench.discover import discover; "
               "print(json.dumps([discover(b, p, 0.3, interface=i) for p, (b, i) in json.loads(sys.argv[1])]))")
    proc = lab.run("router", [sys.executable, "-c", program, json.dumps(searches)], capture_output=True,
                   text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    for (port, target), result in zip(searches, json.loads(proc.stdout)):
        assert result["sent"] == 3
        expect = [] if port == 1063 else [server_ip]
        assert [s["address"] for s in result["servers"] if s["port"] == port] == expect, (port, target)
    # and on its own machine the 127.0.0.1 server is found through loopback's broadcast
    proc = udpbench_in(lab, "server", "discover", "--port", 1063, "--timeout", "0.3", "--json")
    assert found_ports(proc) == {1063: ["127.0.0.1"]}


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
    # bound to its lab address, the server does not answer on its own loopback either
    self_lo = udpbench_in(lab, "server", "ping", "127.0.0.1", "--port", 1065, "-c", 1)
    assert self_lo.returncode == 2


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
