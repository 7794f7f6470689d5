"""The exporter as Prometheus sees it: a real Prometheus scrapes it, and a 1,000-probe soak."""
from __future__ import annotations

import gc
import json
import random
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client", reason="the exporter extra is not installed")
yaml = pytest.importorskip("yaml", reason="the exporter extra is not installed")

from udpbench.exporter import config  # noqa: E402
from udpbench.exporter.allow import AllowList  # noqa: E402
from udpbench.exporter.service import Exporter  # noqa: E402
from udpbench.transport.server import Server  # noqa: E402

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "prometheus.yml"
DROP, COUNT = 0.3, 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def expected_datagram_loss(seed: int) -> float:
    """Ping's round-trip loss before retries, counted from the server's seeded drops: each
    session draws from random.Random(seed), one draw per echo request, and a dropped request is
    sent again until one is answered (docs/ping.md)."""
    rng, transmissions = random.Random(seed), 0
    for _ in range(COUNT):
        transmissions += 1
        while rng.random() < DROP:
            transmissions += 1
    return 1 - COUNT / transmissions


def a_seed() -> int:
    """A seed whose first request is answered (the first timeout is RFC 6298's 1 s) and whose
    requests meet at least two drops, none twice in a row: quick, and far from zero."""
    for seed in range(1000):
        rng = random.Random(seed)
        draws = [rng.random() for _ in range(COUNT + 4)]
        drops = [d < DROP for d in draws]
        if not drops[0] and 2 <= sum(drops[:COUNT + 2]) and not any(a and b for a, b in zip(drops, drops[1:])):
            return seed
    raise AssertionError("no seed found")


def query(api: str, promql: str) -> list[dict]:
    url = f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=10) as r:
        answer = json.load(r)
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus is not installed (Debian: prometheus)")
def test_a_real_prometheus_scrapes_what_the_library_measures(tmp_path):
    seed = a_seed()
    expected = expected_datagram_loss(seed)
    assert expected > 0
    modules = {"ping": config.Module("ping", "ping", count=COUNT, interval=0.01),
               "mtu": config.Module("mtu", "mtu", method="echo")}
    cfg = config.Config(modules, config.Limits(probes_per_minute=1000))
    closed = free_port()  # nothing listens there: a probe that must fail
    with Server("127.0.0.1", 0, drop=DROP, seed=seed) as server, \
            Exporter(cfg, AllowList(["127.0.0.1/32"]), "127.0.0.1", 0) as exporter:
        # The example configuration, pointed at this exporter and these targets.
        prom = yaml.safe_load(EXAMPLE.read_text())
        prom["global"] = {"scrape_interval": "2s", "scrape_timeout": "2s"}
        address = f"127.0.0.1:{exporter.port}"
        for job in prom["scrape_configs"]:
            job.pop("scrape_interval", None)
            if job["job_name"] == "udpbench_exporter":
                job["static_configs"] = [{"targets": [address]}]
                continue
            job["relabel_configs"][-1]["replacement"] = address
            targets = [f"127.0.0.1:{server.port}"] + ([f"127.0.0.1:{closed}"] if job["job_name"] == "udpbench_ping"
                                                      else [])
            job["static_configs"] = [{"targets": targets}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prom))
        web = free_port()
        api = f"http://127.0.0.1:{web}"
        prometheus = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
             f"--web.listen-address=127.0.0.1:{web}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
        try:
            deadline = time.monotonic() + 60
            results = []
            while time.monotonic() < deadline:
                time.sleep(1)
                try:
                    results = query(api, "udpbench_probe_success")
                    # The exporter's own job is scraped on its own schedule: wait for it too.
                    exporter_scraped = bool(query(api, 'up{job="udpbench_exporter"}'))
                except OSError:
                    continue  # not listening yet
                if len(results) == 3 and exporter_scraped:
                    break
            assert len(results) == 3, (results, (tmp_path / "prometheus.log").read_text()[-2000:])
            success = {(r["metric"]["job"], r["metric"]["instance"]): float(r["value"][1]) for r in results}
            assert success == {("udpbench_ping", f"127.0.0.1:{server.port}"): 1.0,
                               ("udpbench_ping", f"127.0.0.1:{closed}"): 0.0,
                               ("udpbench_mtu", f"127.0.0.1:{server.port}"): 1.0}
            failed = query(api, f'udpbench_probe_failed{{instance="127.0.0.1:{closed}"}} == 1')
            assert [r["metric"]["reason"] for r in failed] == ["no_server"]
            loss = query(api, f'udpbench_ping_datagram_loss_ratio{{instance="127.0.0.1:{server.port}"}}')
            assert float(loss[0]["value"][1]) == pytest.approx(expected, abs=1e-9)
            answered = query(api, 'udpbench_ping_requests{outcome="answered"}')
            assert float(answered[0]["value"][1]) == COUNT
            mtu = query(api, "udpbench_path_mtu_bytes")
            assert float(mtu[0]["value"][1]) == 65535  # loopback's MTU 65536 is above an IP packet's 65535
            health = query(api, 'up{job="udpbench_exporter"}')
            assert float(health[0]["value"][1]) == 1
        finally:
            prometheus.terminate()
            try:
                prometheus.wait(20)
            except subprocess.TimeoutExpired:
                prometheus.kill()
                prometheus.wait(10)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_a_thousand_probes_leave_memory_flat():
    """1,000 probes on loopback (ping, one request each, a failure every tenth), bounded at
    240 s; the process's resident memory may grow by less than 5 MiB after a warm-up."""
    modules = {"ping": config.Module("ping", "ping", count=1, interval=0.01)}
    cfg = config.Config(modules, config.Limits(probes_per_minute=100_000))
    closed = free_port()
    with Server("127.0.0.1", 0) as server, Exporter(cfg, AllowList(["127.0.0.1/32"]), "127.0.0.1", 0) as exporter:
        base = f"http://127.0.0.1:{exporter.port}/probe?module=ping&target=127.0.0.1:"

        def probes(n: int) -> None:
            for i in range(n):
                failing = i % 10 == 9
                with urllib.request.urlopen(base + str(closed if failing else server.port), timeout=10) as r:
                    body = r.read().decode()
                assert f"udpbench_probe_success {0.0 if failing else 1.0}" in body
                assert time.monotonic() < deadline, f"soak too slow: {i} probes"

        deadline = time.monotonic() + 240
        probes(100)  # warm-up: imports, thread stacks, allocator pools
        gc.collect()
        before = rss_bytes()
        probes(1000)
        gc.collect()
        grown = rss_bytes() - before
        assert grown < 5 * 2**20, f"resident memory grew by {grown / 2**20:.2f} MiB over 1,000 probes"
