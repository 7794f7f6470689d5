"""The exporter's rules without Prometheus: targets, limits, configuration, refusals that send
nothing, failures that answer quickly, the scrape timeout, and promtool's view of the output."""
from __future__ import annotations

import select
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest

pytest.importorskip("prometheus_client", reason="the exporter extra is not installed")

from udpbench.errors import UserError  # noqa: E402
from tests.exposition import samples  # noqa: E402
from udpbench.exporter import config  # noqa: E402
from udpbench.exporter.allow import AllowList, NotAllowed, parse_target  # noqa: E402
from udpbench.exporter.limits import ProbeLimits, TooMany  # noqa: E402
from udpbench.exporter.service import Exporter  # noqa: E402
from udpbench.cli.main import main  # noqa: E402


def get(url: str, headers: dict | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


@pytest.fixture
def exporter_factory():
    made = []

    def make(allow=("127.0.0.0/8",), modules=None, **limits):
        cfg = config.Config(modules or config.default_modules(), config.Limits(**limits))
        e = Exporter(cfg, AllowList(list(allow)), "127.0.0.1", 0).start()
        made.append(e)
        return e, f"http://127.0.0.1:{e.port}"

    yield make
    for e in made:
        e.close()


class Trap:
    """A TCP listener and a UDP socket on one loopback port: anything sent to it is seen."""

    def __init__(self, address: str = "127.0.0.1"):
        self.tcp = socket.create_server((address, 0))
        self.port = self.tcp.getsockname()[1]
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, self.port))

    def heard(self, wait: float = 0.3) -> bool:
        ready, _, _ = select.select([self.tcp, self.udp], [], [], wait)
        return bool(ready)

    def close(self) -> None:
        self.tcp.close()
        self.udp.close()


# --- targets and the allow-list -------------------------------------------------------------

def test_targets_parse_with_and_without_ports():
    assert parse_target("198.18.2.2") == parse_target("198.18.2.2")
    assert (parse_target("198.18.2.2:1061").host, parse_target("198.18.2.2:1061").port) == ("198.18.2.2", 1061)
    assert (parse_target("[::1]:7").host, parse_target("[::1]:7").port) == ("::1", 7)
    assert (parse_target("::1").host, parse_target("::1").port) == ("::1", None)
    assert parse_target("server.lab.example").port is None
    for bad in ("", "a b", "host:0", "host:99999", "[::1", "[::1]x", "bad_name!", "x" * 300):
        with pytest.raises(ValueError):
            parse_target(bad)


def test_allow_list_takes_networks_and_names_and_nothing_else():
    allow = AllowList(["198.18.0.0/15", "server.lab.example,::1"])
    assert allow.check("198.19.255.255") == ["198.19.255.255"]
    assert allow.check("::1") == ["::1"]
    with pytest.raises(NotAllowed):
        allow.check("198.20.0.1")  # just past the /15
    with pytest.raises(NotAllowed):
        allow.check("::2")
    fake = {"server.lab.example": "192.0.2.7", "inside.example": "198.18.1.1", "outside.example": "192.0.2.8"}

    def resolve(host, *_):
        return [(socket.AF_INET, socket.SOCK_DGRAM, 0, "", (fake[host], 0))]

    assert allow.check("server.lab.example", resolve) == ["192.0.2.7"]  # listed by name
    assert allow.check("inside.example", resolve) == ["198.18.1.1"]  # resolves into a network
    with pytest.raises(NotAllowed, match="192.0.2.8 is outside"):
        allow.check("outside.example", resolve)
    with pytest.raises(UserError, match="empty"):
        AllowList([])
    with pytest.raises(UserError, match="neither a CIDR"):
        AllowList(["10.0.0.0/33"])


# --- limits, with the time as an argument -------------------------------------------------

def test_per_target_limit_is_a_sliding_minute():
    limits = ProbeLimits(concurrency=10, per_target_per_minute=3)
    for t in (0.0, 10.0, 20.0):
        limits.admit("a", t)
        limits.release()
    with pytest.raises(TooMany) as refused:
        limits.admit("a", 59.9)
    assert refused.value.limit == "target_rate"
    limits.admit("b", 59.9)  # another target has its own minute
    limits.release()
    limits.admit("a", 60.0)  # the probe at 0 s has left the window
    limits.release()
    with pytest.raises(TooMany):
        limits.admit("a", 69.9)  # 10, 20 and 60 are still in it
    assert set(limits._recent) == {"a", "b"}
    limits.admit("c", 200.0)
    limits.release()
    assert set(limits._recent) == {"c"}  # idle targets are forgotten: memory stays flat


def test_concurrency_limit_refuses_without_counting():
    limits = ProbeLimits(concurrency=2, per_target_per_minute=100)
    limits.admit("a", 0)
    limits.admit("b", 0)
    with pytest.raises(TooMany) as refused:
        limits.admit("c", 0)
    assert refused.value.limit == "concurrency"
    assert "c" not in limits._recent
    limits.release()
    limits.admit("c", 0)


# --- the configuration ----------------------------------------------------------------------

def test_configuration_uses_the_command_line_names_and_refuses_what_exceeds_caps(tmp_path):
    path = tmp_path / "udpbench.yml"
    path.write_text("limits: {concurrency: 1, probes_per_minute: 6}\n"
                    "modules:\n  ping: {count: 3, interval: 0.5, size: 100}\n"
                    "  slow_blast: {prober: blast, rate: 2M, duration: 3, max_rate: 5M}\n")
    cfg = config.load(str(path))
    assert (cfg.limits.concurrency, cfg.limits.probes_per_minute) == (1, 6)
    assert sorted(cfg.modules) == ["ping", "slow_blast"]
    assert (cfg.modules["ping"].count, cfg.modules["ping"].size) == (3, 100)
    assert (cfg.modules["slow_blast"].rate, cfg.modules["slow_blast"].duration) == (2e6, 3.0)
    refused = {
        "modules: {b: {prober: blast, rate: 20M}}": "over its max_rate of 10 Mbit/s",
        "modules: {b: {prober: blast, duration: 11}}": "over its max_duration of 10 s",
        "modules: {b: {prober: blast, rate: max}}": "not 'max'",
        "modules: {b: {prober: blast, max_rate: 2G}}": "at most 1000 Mbit/s",
        # 100 requests of 1000 bytes every 1 ms is 8 Mbit/s for 0.1 s: within both caps
        "modules: {p: {prober: ping, count: 2000}}": "count 2000",
        "modules: {p: {prober: ping, size: 2000, interval: 0.001}}": "16 Mbit/s, over its max_rate",
        "modules: {p: {prober: ping, rate: 1M}}": "unknown key 'rate'",
        "modules: {m: {prober: mtu, method: guess}}": "method 'guess'",
        "modules: {x: {prober: traceroute}}": "prober 'traceroute'",
        "limits: {concurrency: 0}": "limits.concurrency",
        "extra: 1": "unknown key 'extra'",
        "modules: [": "not valid YAML",
    }
    for text, reason in refused.items():
        path.write_text(text)
        with pytest.raises(UserError, match=reason):
            config.load(str(path))
    assert config.parse({"modules": {"p": {"prober": "ping", "count": 100, "size": 1000, "interval": 0.001}}})


def test_command_line_refusals_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["exporter", "--listen", "127.0.0.1:0"]) == 2  # --allow is required
    assert "--allow" in capsys.readouterr().err
    bad = tmp_path / "bad.yml"
    bad.write_text("modules: {b: {prober: blast, rate: 1G}}\n")
    assert main(["exporter", "--allow", "127.0.0.1/32", "--listen", "127.0.0.1:0", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_rate" in err and "Traceback" not in err
    assert main(["exporter", "--allow", "127.0.0.1/32", "--listen", "nonsense"]) == 2
    assert main(["exporter", "--allow", "not a network!", "--listen", "127.0.0.1:0"]) == 2


# --- refusals over HTTP: a 4xx, one line, and nothing sent -----------------------------------

def test_refused_requests_get_a_4xx_and_send_nothing(exporter_factory):
    trap = Trap("127.0.0.1")
    outside = Trap("127.0.0.2")
    try:
        exporter, url = exporter_factory(allow=("127.0.0.1/32",), probes_per_minute=1)
        where = f"127.0.0.1:{trap.port}"
        cases = [
            (f"target=127.0.0.2:{outside.port}&module=ping", 403, "not in the allow-list"),
            (f"target={where}&module=traceroute", 400, "unknown module"),
            (f"target={where}&module=ping&token=secret", 400, "never taken from the URL"),
            (f"target={where}&module=ping&rate=1G", 400, "unknown parameter"),
            (f"target={where}&target=127.0.0.1&module=ping", 400, "exactly one target"),
            (f"module=ping&target={where}&&", 400, "bad query string"),
            ("target=127.0.0.1:99999&module=ping", 400, "port must be"),
            ("module=ping", 400, "exactly one target"),
        ]
        for query, status, reason in cases:
            got, body = get(f"{url}/probe?{query}")
            assert (got, body.count("\n")) == (status, 1), (query, body)
            assert reason in body, (query, body)
        got, body = get(f"{url}/probe?target={where}&module=ping",
                        {"X-Prometheus-Scrape-Timeout-Seconds": "soon"})
        assert got == 400 and "not a positive number" in body
        assert not trap.heard() and not outside.heard()
        # The one probe this minute allows goes out (to nothing that answers: a failed probe);
        # the next is over the per-target cap: 429, and again nothing reaches the target.
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))
        free = closed.getsockname()[1]
        closed.close()
        got, body = get(f"{url}/probe?target=127.0.0.1:{free}&module=ping")
        assert got == 200 and samples(body)['udpbench_probe_failed{reason="no_server"}'] == 1
        got, body = get(f"{url}/probe?target={where}&module=ping")
        assert got == 429 and "probes in the last minute" in body and body.count("\n") == 1
        assert not trap.heard()
        own = samples(get(f"{url}/metrics")[1])
        assert own['udpbench_exporter_refused_probes_total{reason="target_rate"}'] == 1
        assert own['udpbench_exporter_refused_probes_total{reason="not_allowed"}'] == 1
        assert own['udpbench_exporter_refused_probes_total{reason="unknown_module"}'] == 1
        assert own['udpbench_exporter_refused_probes_total{reason="bad_request"}'] == 7  # six queries and one header
        assert own['udpbench_exporter_probes_total{module="ping",result="failure"}'] == 1
    finally:
        trap.close()
        outside.close()


# --- failures answer quickly, and the exporter serves on -----------------------------------

def test_a_probe_of_no_server_fails_fast_and_the_next_succeeds(exporter_factory, loopback_server):
    exporter, url = exporter_factory()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        for module in ("ping", "mtu", "blast", "sweep_lite"):
            started = time.monotonic()
            got, body = get(f"{url}/probe?target=127.0.0.1:{closed.getsockname()[1]}&module={module}")
            assert time.monotonic() - started < 2.0
            s = samples(body)
            assert got == 200 and s["udpbench_probe_success"] == 0, module
            assert s['udpbench_probe_failed{reason="no_server"}'] == 1, (module, body)
            assert sum(v for k, v in s.items() if k.startswith("udpbench_probe_failed")) == 1
            assert "Traceback" not in body
    finally:
        closed.close()
    got, body = get(f"{url}/probe?target=127.0.0.1:{loopback_server.port}&module=ping")
    s = samples(body)
    assert s["udpbench_probe_success"] == 1
    # The histogram and the outcome count are two tallies of the same requests.
    assert s['udpbench_ping_requests{outcome="answered"}'] == s["udpbench_ping_rtt_seconds_count"] == 5
    assert s['udpbench_ping_rtt_seconds_bucket{le="+Inf"}'] == 5
    assert s["udpbench_ping_tries_sum"] == 5  # nothing lost on loopback: one try each


def test_scrape_timeout_header_bounds_a_probe(exporter_factory):
    """A peer that accepts the control connection and never greets: the probe would wait for
    the greeting far longer than the 1.5 s Prometheus allows, and answers in time instead."""
    exporter, url = exporter_factory()
    silent = socket.create_server(("127.0.0.1", 0))
    held = []
    threading.Thread(target=lambda: held.append(silent.accept()), daemon=True).start()
    try:
        started = time.monotonic()
        got, body = get(f"{url}/probe?target=127.0.0.1:{silent.getsockname()[1]}&module=ping",
                        {"X-Prometheus-Scrape-Timeout-Seconds": "1.5"})
        elapsed = time.monotonic() - started
        s = samples(body)
        assert got == 200 and s["udpbench_probe_success"] == 0
        assert s['udpbench_probe_failed{reason="timeout"}'] == 1
        assert 0.9 <= elapsed < 1.5  # 1.5 s less the 0.5 s offset
    finally:
        for conn, _ in held:
            conn.close()  # ends the probe still waiting in the background
        silent.close()


# --- promtool's view --------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (Debian: prometheus)")
def test_promtool_accepts_every_module_and_the_exporters_own_metrics(exporter_factory, loopback_server):
    exporter, url = exporter_factory()
    pages = [get(f"{url}/probe?target=127.0.0.1:{loopback_server.port}&module={m}")[1]
             for m in ("ping", "mtu", "blast", "sweep_lite")]
    pages.append(get(f"{url}/probe?target=127.0.0.1:1&module=ping")[1])  # a failure
    pages.append(get(f"{url}/metrics")[1])
    for page in pages:
        assert "udpbench_" in page
        check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True,
                               timeout=30)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def test_the_command_serves_until_ctrl_c_and_exits_130():
    import re
    import signal
    import sys

    p = subprocess.Popen([sys.executable, "-m", "udpbench", "exporter", "--listen", "127.0.0.1:0",
                          "--allow", "127.0.0.1/32"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        url = re.search(r"http://[^/]+", p.stdout.readline()).group(0)
        status, body = get(f"{url}/metrics")
        assert status == 200 and "udpbench_exporter_build_info" in body
        assert get(f"{url}/probe?target=192.0.2.1&module=ping")[0] == 403
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=10)
        assert (p.returncode, err) == (130, "udpbench: interrupted\n")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
