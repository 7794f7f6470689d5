"""Path-MTU discovery: the search logic on simulated paths, both methods on loopback, and both
methods in the lab against a router link of MTU 1400, with and without ICMP too-big."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time

import pytest

from udpbench.errors import MeasurementError

from udpbench import cli
from udpbench.cli import mtu as mtu_cli
from udpbench.linux import sockopts
from udpbench.measure import path_mtu as measure
from udpbench.protocol import pmtud
from udpbench.protocol.plpmtud import EchoResult, EchoSearch, plan_round
from udpbench.protocol.pmtud import Done, IcmpError, IcmpResult, IcmpSearch, Send
from udpbench.transport import prober as prober_mod
from udpbench.transport.client import Client
from udpbench.transport.server import Server


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, TCP or UDP (so no embedded server, and port unreachable)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as u:
        u.bind((host, 0))
        return u.getsockname()[1]


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def run_json(argv: list[str], capsys) -> tuple[int, dict]:
    code = cli.main(argv)
    out = capsys.readouterr().out
    return code, json.loads(out)


# --- the search, on simulated paths -------------------------------------------------------

class FakePath:
    """A path, on a fake clock, that silently drops packets above ``path_mtu`` (no ICMP: a black
    hole) and loses a fraction of the rest at random; what arrives is acked ``rtt`` later.
    ``run`` drives a search to its result with no sockets and no sleeps."""

    def __init__(self, path_mtu: int, loss: float = 0.0, seed: int = 1, rtt: float = 0.0001):
        self.path_mtu, self.loss, self.rng, self.rtt = path_mtu, loss, random.Random(seed), rtt
        self.now = 0.0
        self.sizes: list[int] = []  # every probe size sent, in order (companions excluded)
        self.acks: list[int] = []
        self.errors: list[IcmpError] = []

    def deliver(self, action: Send) -> None:
        if action.size <= self.path_mtu and self.rng.random() >= self.loss:
            self.acks.append(action.probe_id)

    def run(self, search):
        while True:
            action = search.next_action(self.now)
            if isinstance(action, Done):
                return action.result
            if isinstance(action, Send):
                if not action.companion:
                    self.sizes.append(action.size)
                self.deliver(action)
            elif self.acks or self.errors:
                self.now += self.rtt
                for pid in self.acks:
                    search.on_ack(pid, self.now)
                for e in self.errors:
                    search.on_error(e, self.now)
                self.acks, self.errors = [], []
            else:
                assert action.until > self.now  # a Wait always moves time forward
                self.now = action.until


def echo_search(path: FakePath, limit: int, floor: int, **kw) -> EchoResult:
    return path.run(EchoSearch(path.now, limit, floor, False, **kw))


def icmp_search(path: FakePath, limit: int, floor: int, target: str, **kw) -> IcmpResult:
    return path.run(IcmpSearch(path.now, limit, floor, target, False, **kw))


@pytest.mark.parametrize("path_mtu, limit", [(1500, 1500), (1400, 1500), (1337, 1500), (1280, 9000),
                                             (4470, 9000), (9000, 9000), (576, 1500), (296, 1500)])
def test_echo_search_is_exact_to_the_byte(path_mtu, limit):
    path = FakePath(path_mtu)
    result = echo_search(path, limit, 68)
    assert result.status == "confirmed"
    assert result.mtu == path_mtu
    if path_mtu < limit:
        assert result.too_big == path_mtu + 1
        assert path.sizes.count(path_mtu + 1) >= pmtud.MAX_PROBES  # failed every try before it counted
    else:
        assert result.too_big is None


def test_echo_search_ends_in_few_rounds_when_the_interface_mtu_passes():
    path = FakePath(1500)
    result = echo_search(path, 1500, 68)
    assert result.mtu == 1500 and result.rounds == 1
    assert path.sizes[0] == 1500  # the top is probed first: a LAN usually ends there


@pytest.mark.parametrize("seed", range(8))
def test_echo_search_stays_exact_under_random_loss(seed):
    # Loss can delay the answer but never moves it: an ack proves a size, and a failure only
    # counts when the companion beside it got through.
    result = echo_search(FakePath(1400, loss=0.05, seed=seed), 1500, 68)
    assert result.mtu == 1400 and result.too_big == 1401


def test_echo_search_gives_up_when_nothing_answers():
    path = FakePath(1400, loss=1.0)
    result = echo_search(path, 1500, 68)
    assert result.status == "silent" and result.mtu is None
    assert result.rounds == pmtud.MAX_PROBES


def test_echo_search_reports_a_path_below_the_floor():
    result = echo_search(FakePath(1000), 1500, 1280)
    assert result.status == "below-floor" and result.mtu is None


def test_echo_search_with_a_coarse_granularity_brackets_the_mtu():
    result = echo_search(FakePath(1413), 9000, 68, granularity=16)
    assert result.status == "confirmed"
    assert result.mtu <= 1413 < result.too_big
    assert result.too_big - result.mtu <= 16


def test_first_round_probes_the_top_then_common_mtus():
    sizes = plan_round(67, 1501, {}, 3, 1)
    assert sizes[0] == 1500
    assert {1280, 1492, 1400} <= set(sizes)
    assert len(sizes) == len(set(sizes)) <= pmtud.PROBES_PER_ROUND
    assert all(67 < s < 1501 for s in sizes)


def test_a_round_retries_the_smallest_suspect_and_searches_below_it():
    sizes = plan_round(1400, 1501, {1420: 1, 1500: 2}, 3, 1)
    assert sizes[0] == 1420
    assert all(1400 < s < 1420 for s in sizes[1:]) and len(sizes) > 1


def test_the_last_round_is_the_last_retry():
    assert plan_round(1400, 1501, {1401: 2}, 3, 1) == [1401]


class FakeIcmpPath(FakePath):
    """A path whose router answers too-big probes with ICMP (reporting ``reported``) and whose
    target answers the rest with port unreachable."""

    def __init__(self, path_mtu: int, reported: int | None = None, target: str = "192.0.2.9"):
        super().__init__(path_mtu)
        self.reported = path_mtu if reported is None else reported
        self.target = target

    def deliver(self, action: Send) -> None:
        if action.size > self.path_mtu:
            self.errors.append(IcmpError(errno.EMSGSIZE, sockopts.SO_EE_ORIGIN_ICMP, 3, 4,
                                         self.reported, "192.0.2.1", action.probe_id))
        else:
            self.errors.append(IcmpError(errno.ECONNREFUSED, sockopts.SO_EE_ORIGIN_ICMP, 3, 3, 0,
                                         self.target, action.probe_id))


def test_icmp_search_follows_the_mtu_a_router_reports():
    path = FakeIcmpPath(1400)
    result = icmp_search(path, 1500, 68, path.target)
    assert result.status == "confirmed" and result.mtu == 1400
    assert result.hops == [{"from": "192.0.2.1", "mtu": 1400}]
    assert path.sizes == [72, 1500, 1400]  # one small probe, then one per hop


def test_icmp_search_walks_the_plateaus_when_a_router_reports_no_mtu():
    path = FakeIcmpPath(1400, reported=0)  # an RFC 1191 "old" router
    result = icmp_search(path, 1500, 68, path.target)
    assert result.mtu == 1280  # the first plateau below 1500 and 1492 that passes: a lower bound
    assert path.sizes[1:] == [1500, 1492, 1280]


def test_icmp_search_does_not_take_a_port_unreachable_from_elsewhere_as_an_answer():
    path = FakeIcmpPath(1400, target="192.0.2.77")  # rejected by a firewall, not the target
    result = icmp_search(path, 1500, 68, "192.0.2.9")
    assert result.mtu is None and result.status == "unreachable"
    assert "192.0.2.77" in result.detail


def test_judge_calls_a_black_hole_only_when_icmp_stayed_silent():
    out = {"warnings": []}
    hole = measure.judge(out["warnings"], IcmpResult(status="no-answer", stalled_at=1500),
                     EchoResult(mtu=1400, status="confirmed"), 1500, False)
    assert hole["black_hole"] is True and hole["path_mtu"] == 1400 and hole["max_payload"] == 1372
    told = measure.judge([], IcmpResult(mtu=1400, status="confirmed"),
                     EchoResult(mtu=1400, status="confirmed"), 1500, False)
    assert told["black_hole"] is False
    seen = measure.judge([], None,
                     EchoResult(mtu=1400, status="confirmed", ptb=[{"from": "r", "mtu": 1400}]), 1500, True)
    assert seen["black_hole"] is False and seen["max_payload"] == 1352


def test_icmp_search_times_a_black_hole_by_the_timer_alone():
    """On a fake clock: a small probe answered in 0.1 ms sets the timer to its 0.2 s floor, then
    three 1500-byte probes vanish, 0.2 s each: 0.6001 s in all, and no sleep."""
    path = FakePath(1400)  # drops >1400 silently; what passes is acked, as a udpbench server does
    result = icmp_search(path, 1500, 68, "192.0.2.9")
    assert result.status == "no-answer" and result.stalled_at == 1500 and result.mtu is None
    assert path.sizes == [72, 1500, 1500, 1500]
    assert result.elapsed_s == pytest.approx(0.0001 + 3 * 0.2)


def test_echo_search_with_nothing_answering_waits_the_initial_timer_each_round():
    # No answer ever: no RTT sample, so each of the three silent rounds waits the 1 s initial timer.
    result = echo_search(FakePath(1400, loss=1.0), 1500, 68)
    assert result.status == "silent" and result.elapsed_s == pytest.approx(3 * pmtud.INITIAL_TIMER_S)
    assert result.timer_s == pmtud.INITIAL_TIMER_S and result.srtt_ms is None


def test_echo_search_timer_follows_three_rtts_above_its_floor():
    # 100 ms round trips: the timer becomes 3 x SRTT = 0.3 s, above the 0.2 s floor.
    result = echo_search(FakePath(1400, rtt=0.1), 1500, 68)
    assert result.mtu == 1400 and result.srtt_ms == pytest.approx(100.0)
    assert result.timer_s == pytest.approx(0.3)


def test_a_fixed_timer_is_kept_whatever_the_rtt():
    result = echo_search(FakePath(1500, rtt=0.01), 1500, 68, timer=1.5)
    assert result.mtu == 1500 and result.timer_s == 1.5


def test_a_refused_probe_counts_as_too_big_at_once():
    """The kernel refuses (EMSGSIZE, LOCAL) what exceeds the interface MTU: that size has failed
    every try, and it needs no companion."""
    search = EchoSearch(0.0, 1500, 1280, False)
    first = search.next_action(0.0)
    assert first == Send(1, 1500, False)  # the top of the range first
    search.on_refused(first.probe_id, IcmpError(errno.EMSGSIZE, pmtud.ORIGIN_LOCAL, 0, 0, 1400, None, None), 0.0)
    assert search.fails[1500] == pmtud.MAX_PROBES
    second = search.next_action(0.0)
    assert not second.companion and second.size != 1500  # no companion for a probe never sent
    assert search.sent == 1  # the second only: the refused probe is not counted as sent


# --- the sweep's path-MTU step: echo, then icmp, then the route ---------------------------------

class FakeClient:
    host = "192.0.2.7"
    server_addr = ("192.0.2.7", 1)

    def path_mtu(self):
        return 1444  # the kernel's IP_MTU: only the last resort may use it


def fake_path_mtu(answers: dict):
    """A stand-in for measure.path_mtu: each method's answer (an MTU, None, or an exception)."""
    asked = []

    def path_mtu(host, options, client=None):
        asked.append(options.method)
        answer = answers[options.method]
        if isinstance(answer, Exception):
            raise answer
        found = measure.PathMtu(host, host, 1, 4, options.method, path_mtu=answer, interface_mtu=1500,
                                warnings=[] if answer else [f"{options.method}: nothing"])
        return found
    return path_mtu, asked


@pytest.mark.parametrize("answers, method, mtu, asked", [
    ({"echo": 1400, "icmp": 1300}, "echo", 1400, ["echo"]),
    ({"echo": None, "icmp": 1300}, "icmp", 1300, ["echo", "icmp"]),
    ({"echo": MeasurementError("the server's UDP port is closed"), "icmp": 1300}, "icmp", 1300, ["echo", "icmp"]),
    ({"echo": None, "icmp": None}, "route", 1444, ["echo", "icmp"]),
    ({"echo": OSError(errno.EHOSTUNREACH, "No route to host"), "icmp": MeasurementError("gone")},
     "route", 1444, ["echo", "icmp"]),
])
def test_sweep_path_mtu_falls_back_from_echo_to_icmp_to_the_route(monkeypatch, answers, method, mtu, asked):
    fake, seen = fake_path_mtu(answers)
    monkeypatch.setattr(measure, "path_mtu", fake)
    info = measure.sweep_path_mtu(FakeClient(), loopback=False)
    assert (info["mtu_method"], info["path_mtu"]) == (method, mtu)
    assert seen == asked  # echo first, icmp only when echo found nothing, never past an answer
    if method == "route":
        assert any("kernel's route MTU" in w for w in info["mtu_warnings"])
    for name, answer in answers.items():
        if isinstance(answer, Exception) and name in asked:
            assert any(w.startswith(f"{name}: ") and str(answer) in w for w in info["mtu_warnings"])


# --- loopback ------------------------------------------------------------------------------

def test_echo_on_loopback_finds_the_largest_ipv4_packet(loopback_server, capsys):
    code, r = run_json(["mtu", "127.0.0.1", "--port", str(loopback_server.port), "--method", "echo",
                        "--json"], capsys)
    assert code == 0
    # lo's MTU is 65536, but IPv4's 16-bit total length caps a packet at 65535.
    assert r["interface"] == "lo" and r["interface_mtu"] == 65536
    assert r["echo_mtu"] == r["path_mtu"] == 65535
    assert r["max_payload"] == r["path_mtu"] - 28 == 65507
    assert r["echo"]["status"] == "confirmed" and r["probes"] >= 1
    assert r["icmp_mtu"] is None and r["black_hole"] is False


def test_both_methods_against_the_embedded_server_agree(capsys):
    port = free_udp_port()
    code, r = run_json(["mtu", "127.0.0.1", "--port", str(port), "--json"], capsys)
    assert code == 0 and r["server"] is True and r["port"] != port  # embedded, on its own port
    for key in ("path_mtu", "max_payload", "icmp_mtu", "echo_mtu", "interface_mtu", "black_hole",
                "probes", "elapsed_s", "method", "warnings", "family"):
        assert key in r
    assert r["method"] == "both" and r["family"] == 4
    assert r["icmp_mtu"] == r["echo_mtu"] == r["path_mtu"] == 65535
    assert r["probes"] == r["icmp"]["probes"] + r["echo"]["probes"]
    assert r["elapsed_s"] < 10  # milliseconds in fact; generous for a loaded machine


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on loopback")
def test_ipv6_loopback_is_the_interface_mtu(capsys):
    code, r = run_json(["mtu", "::1", "--port", str(free_udp_port("::1")), "--json"], capsys)
    assert code == 0 and r["family"] == 6
    # IPv6's payload length excludes its header, so lo's 65536 is reachable
    assert r["icmp_mtu"] == r["echo_mtu"] == r["path_mtu"] == r["interface_mtu"] == 65536
    assert r["max_payload"] == 65536 - 48


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_icmp_method_against_a_closed_port_ends_quickly_with_the_local_mtu(host, capsys):
    if ":" in host and not has_ipv6_loopback():
        pytest.skip("no IPv6 on loopback")
    port = free_udp_port(host)
    started = time.monotonic()
    code, r = run_json(["mtu", host, "--port", str(port), "--method", "icmp", "--json"], capsys)
    assert code == 0
    assert r["server"] is False and r["port"] == port  # the ICMP method needs no server
    assert r["icmp"]["status"] == "confirmed" and r["icmp"]["hops"] == []
    assert r["path_mtu"] == r["icmp_mtu"] == (65535 if r["family"] == 4 else 65536)
    assert r["echo_mtu"] is None and "echo" not in r
    assert time.monotonic() - started < 5


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on loopback")
def test_both_methods_find_a_socket_mtu_cap_on_ipv6_loopback():
    # IPV6_MTU caps one socket's MTU: the kernel refuses (EMSGSIZE) DF datagrams above it,
    # which both methods must read as "too big" and settle on exactly the cap.
    with Server("::1", 0) as server, Client("::1", server.port) as client:
        session = prober_mod.ProbeSession(client).open()
        try:
            found = {}
            for name in ("echo", "icmp"):
                with client.data_socket() as sock:
                    sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_MTU, 1400)
                    prober = prober_mod.Prober(sock, session.session)
                    search = (EchoSearch(time.monotonic(), 1500, 1280, True) if name == "echo"
                              else IcmpSearch(time.monotonic(), 1500, 1280, "::1", True))
                    found[name] = prober_mod.drive(search, prober)
        finally:
            session.close()
    assert found["echo"].mtu == 1400 and found["echo"].too_big == 1401
    assert found["icmp"].mtu == 1400 and found["icmp"].status == "confirmed"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 on loopback")
def test_echo_session_renewed_mid_search_keeps_answering(monkeypatch):
    # The server ends an echo session after 10 s of control silence; long searches renew it.
    monkeypatch.setattr(prober_mod, "SESSION_REFRESH_S", 0.0)  # renew before every round
    with Server("::1", 0) as server, Client("::1", server.port) as client:
        session = prober_mod.ProbeSession(client).open()
        try:
            with client.data_socket() as sock:
                sock.setsockopt(socket.IPPROTO_IPV6, sockopts.IPV6_MTU, 1337)
                prober = prober_mod.Prober(sock, session.session)
                search = EchoSearch(time.monotonic(), 1500, 1280, True)
                result = prober_mod.drive(search, prober, keepalive=lambda: session.keepalive(prober))
        finally:
            session.close()
    assert result.mtu == 1337 and result.status == "confirmed"
    assert len(prober.sessions) == result.rounds + 1


def test_text_output_names_the_path_mtu_and_payload(capsys):
    code = cli.main(["mtu", "127.0.0.1", "--port", str(free_udp_port()), "--method", "icmp"])
    out = capsys.readouterr().out
    assert code == 0
    assert "path MTU 65535 bytes: largest UDP payload 65507" in out
    assert out.splitlines()[1].split()[:2] == ["icmp", "65535"]


@pytest.mark.parametrize("argv, words", [
    (["mtu", "nonexistent.invalid"], "cannot resolve"),
    (["mtu", "127.0.0.1", "--min", "1500", "--max", "1400"], "--min 1500 is above --max 1400"),
    (["mtu", "127.0.0.1", "--max", "40"], "outside 68"),
    (["mtu", "127.0.0.1", "--method", "smoke"], "invalid choice"),
    (["mtu", "127.0.0.1", "--max-probes", "0"], "--max-probes 0 is outside 1..10"),
    (["mtu", "127.0.0.1", "--timeout", "-1"], "timeout"),
    (["mtu", "127.0.0.1", "--port", "0"], "port 0"),
    (["mtu", "::1", "-6", "--min", "600"], "1280"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, capsys):
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("udpbench: ")
    assert words in err


def test_echo_method_with_no_server_at_a_remote_host_is_a_user_error(monkeypatch, capsys):
    from udpbench.measure import embedded
    monkeypatch.setattr(embedded, "is_loopback", lambda address: False)  # no embedded server
    code = cli.main(["mtu", "127.0.0.1", "--port", str(free_udp_port()), "--method", "echo"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "udpbench serve" in err and err.count("\n") == 0


def test_the_command_runs_as_a_program():
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(mtu_cli.__file__)))))
    proc = subprocess.run([sys.executable, "-m", "udpbench", "mtu", "127.0.0.1", "--json"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["path_mtu"] == 65535


def test_sweep_reads_the_loopback_mtu_without_probing(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        found = measure.sweep_path_mtu(client, loopback=True)
    assert found["path_mtu"] == 65535 and found["mtu_method"] == "route"
    assert found["black_hole"] is False and found["interface_mtu"] == 65536


def test_df_blast_on_loopback_sends_and_marks_rows_sendable(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        row = client.blast(1473, 0.2, 10e6, df=True)
    assert row["df"] is True and row["sendable"] is True and row["send_error"] == ""
    assert row["received"] == row["sent"] > 0


# --- the lab: a router link of MTU 1400 -----------------------------------------------------

LAB_PORT = 1060


def _env() -> dict:
    # The namespaces run the same udpbench this test imported (installed, or this tree).
    return dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(mtu_cli.__file__)))))


@pytest.fixture(scope="module")
def served_lab(lab):
    """The module's lab (MTU 1400) with `udpbench serve` running in the server namespace."""
    with lab.serving("--port", str(LAB_PORT), bind=None, env=_env()):  # all interfaces: IPv4 and IPv6
        yield lab


def lab_udpbench(lab, *argv: str, timeout: float = 60) -> tuple[int, dict, str]:
    proc = lab.run("client", [sys.executable, "-m", "udpbench", *argv, "--json"], capture_output=True,
                   text=True, timeout=timeout, env=_env())
    out = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, out, proc.stderr


@pytest.mark.lab
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_both_methods_find_the_router_link_mtu_exactly(served_lab, v6):
    lab = served_lab
    lab.forget_pmtu()
    server = lab.address("server", v6=v6)
    code, r, err = lab_udpbench(lab, "mtu", server, "--port", str(LAB_PORT))
    assert code == 0, err
    assert r["interface_mtu"] == 1500 and r["cached_mtu"] is None
    assert r["icmp_mtu"] == r["echo_mtu"] == r["path_mtu"] == 1400
    assert r["max_payload"] == 1400 - (48 if v6 else 28)
    assert r["icmp"]["hops"][0] == {"from": lab.address("router", v6=v6), "mtu": 1400}
    assert r["echo"]["too_big"] == 1401
    assert r["black_hole"] is False
    assert r["elapsed_s"] < 5  # a LAN path answers in under 5 s


@pytest.mark.lab
def test_a_second_run_says_the_kernel_had_the_path_mtu_cached(served_lab):
    lab = served_lab
    lab.forget_pmtu()
    server = lab.address("server")
    assert lab_udpbench(lab, "mtu", server, "--port", str(LAB_PORT), "--method", "icmp")[0] == 0
    code, r, err = lab_udpbench(lab, "mtu", server, "--port", str(LAB_PORT), "--method", "icmp")
    assert code == 0, err
    assert r["cached_mtu"] == 1400
    assert any("already held a path MTU of 1400" in w for w in r["warnings"])
    assert r["icmp_mtu"] == 1400  # found again by probing, not read from the cache
    assert r["icmp"]["hops"]


@pytest.mark.lab
def test_icmp_method_needs_no_server(served_lab):
    lab = served_lab
    lab.forget_pmtu()
    code, r, err = lab_udpbench(lab, "mtu", lab.address("server"), "--port", str(LAB_PORT + 1),
                                "--method", "icmp")
    assert code == 0, err
    assert r["server"] is False and r["icmp"]["status"] == "confirmed"
    assert r["path_mtu"] == 1400


@pytest.mark.lab
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_echo_finds_a_black_hole_when_the_router_swallows_icmp(served_lab, v6):
    lab = served_lab
    lab.set_impairments(block_icmp=True)
    try:
        lab.forget_pmtu()
        code, r, err = lab_udpbench(lab, "mtu", lab.address("server", v6=v6), "--port", str(LAB_PORT))
    finally:
        lab.set_impairments(block_icmp=False)
    assert code == 0, err
    assert r["echo_mtu"] == r["path_mtu"] == 1400
    assert r["icmp_mtu"] is None and r["icmp"]["status"] == "no-answer" and r["icmp"]["stalled_at"] == 1500
    assert r["black_hole"] is True
    assert any("black hole" in w for w in r["warnings"])


@pytest.mark.lab
def test_sweep_through_1400_shows_fragment_boundaries_where_the_arithmetic_says(served_lab):
    lab = served_lab
    lab.forget_pmtu()
    sizes = "1372,1373,2748,2749"
    code, r, err = lab_udpbench(lab, "sweep", lab.address("server"), "--port", str(LAB_PORT),
                                "--sizes", sizes, "--duration", "0.2", "--rate", "20M", "--no-save")
    assert code == 0, err
    host = r["meta"]["hosts"][0]
    assert host["path_mtu"] == 1400 and host["mtu_method"] == "echo" and host["black_hole"] is False
    assert [row["fragments"] for row in r["rows"]] == [1, 2, 2, 3]
    # Ethernet bytes per datagram at the path MTU, worked by hand: 1373 B is an IP packet of 1396
    # and one of 25, padded to the 64-byte minimum frame (46 + 38). At 1500 they would be 1439, 2873.
    wire = {1372: 1400 + 38, 1373: (1396 + 38) + (46 + 38), 2748: (1396 + 38) + (1400 + 38),
            2749: 2 * (1396 + 38) + (46 + 38)}
    for row in r["rows"]:
        assert row["received"] > 0 and row["sendable"] is True
        assert row["wire_bps"] == pytest.approx(row["goodput_bps"] * wire[row["size"]] / row["size"])


@pytest.mark.lab
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_df_sweep_marks_sizes_above_the_path_mtu_not_sendable(served_lab, v6):
    lab = served_lab
    lab.forget_pmtu()
    largest = 1400 - (48 if v6 else 28)
    sizes = f"{largest - 1},{largest},{largest + 1},{2 * largest}"
    code, r, err = lab_udpbench(lab, "sweep", lab.address("server", v6=v6), "--port", str(LAB_PORT),
                                "--sizes", sizes, "--duration", "0.2", "--rate", "20M", "--no-save", "--df")
    assert code == 0, err
    assert r["meta"]["df"] is True
    rows = {row["size"]: row for row in r["rows"]}
    for size in (largest - 1, largest):
        assert rows[size]["sendable"] is True and rows[size]["received"] > 0
    for size in (largest + 1, 2 * largest):
        assert rows[size]["sendable"] is False and rows[size]["send_error"] == "EMSGSIZE"
        assert rows[size]["sent"] == 0 and rows[size]["send_errors_by_errno"] == {"EMSGSIZE": 1}


@pytest.mark.lab
@pytest.mark.parametrize("method", ["both", "icmp"])
def test_mtu_to_an_unreachable_network_is_one_line(method):
    """A namespace with only lo up has no route to 10.99.0.1: one line and the exit status that
    blast and sweep give there, never a traceback. The datagram cannot leave the namespace."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and `ip` for a network namespace")
    ns = f"ubt{os.getpid()}xnoroute{method}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True, timeout=10)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=10)
        proc = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "udpbench", "mtu", "10.99.0.1",
                               "--method", method], capture_output=True, text=True, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == "udpbench: cannot reach 10.99.0.1:1060: Network is unreachable"
    assert proc.stdout == ""
