"""udpbench's mean one-way delay against iperf2's ``--trip-times`` through the same token
bucket in the lab (one clock for both namespaces, so both tools' delays are absolute)."""
import json
import random
import re
import shutil
import subprocess
import sys
import time

import pytest

RATE = "100M"  # the bucket on the router's egress toward the server
OFFERED = 200_000_000
SIZE = 1372  # 1400-byte IP packets through the lab's 1400-byte MTU
DURATION = 1
ATTEMPTS = 3
QUEUE_US = 52_000  # tbf's 50 ms latency plus its 25000-byte burst at 100 Mbit/s
# iperf 2.1.8's server report: "... Latency avg/min/max/stdev ..." then "48.125/0.003/52.702/10.370 ms"
LATENCY = re.compile(r"(\d+\.\d+)/(\d+\.\d+)/(\d+\.\d+)/(\d+\.\d+) ms")
SENT = re.compile(r"Sent (\d+) datagrams")


def _iperf2(lab, address: str) -> tuple[float, int]:
    """iperf2's mean one-way delay in us and the datagrams its client sent, one run."""
    port = random.randrange(20_000, 60_000)
    server = lab.popen("server", ["iperf", "-s", "-u", "-e", "-B", address, "-p", str(port)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.5)  # iperf2 says nothing a client could wait for before it listens
        client = lab.run("client", ["iperf", "-c", address, "-p", str(port), "-u", "--trip-times", "-e",
                                    "-b", str(OFFERED), "-l", str(SIZE), "-t", str(DURATION)],
                         capture_output=True, text=True, timeout=30)
        time.sleep(0.5)  # the server prints its report once the last datagram is in
    finally:
        server.terminate()
        try:
            out, _ = server.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            out, _ = server.communicate()
    assert client.returncode == 0, client.stdout + client.stderr
    found = LATENCY.search(out) or LATENCY.search(client.stdout)
    sent = SENT.search(client.stdout)
    assert found and sent, (out, client.stdout)
    return float(found.group(1)) * 1000, int(sent.group(1))


def _udpbench(lab, address: str) -> dict:
    with lab.serving():
        done = lab.run("client", [sys.executable, "-m", "udpbench", "blast", address, "--size", str(SIZE),
                                  "--rate", str(OFFERED), "--duration", str(DURATION), "--json"],
                       capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.lab
@pytest.mark.skipif(not shutil.which("iperf"), reason="needs iperf (iperf2) for --trip-times")
def test_the_mean_one_way_delay_agrees_with_iperf2_trip_times(make_lab):
    """Both offer twice the bucket's rate; the queue stands at 52 ms after its first 52 ms, so
    both means sit a little under 52 ms. They must agree within 10 % or 20 us (issue 12).
    A pair counts only when both senders kept up: udpbench's row shows its lateness, and
    iperf2 must have sent 90 % of what was due. A sender that pauses longer than the queue
    holds lets it drain, and the mean then measures the loaded machine, not the path."""
    lab = make_lab(mtu=1400, rate=RATE)
    address = lab.address("server")
    due = OFFERED * DURATION / (8 * SIZE)
    seen = []
    for _ in range(ATTEMPTS):
        iperf_us, iperf_sent = _iperf2(lab, address)
        row = _udpbench(lab, address)
        seen.append(f"iperf2 {iperf_us:,.0f} us ({iperf_sent} sent), udpbench {row['owd_mean_us']:,.0f} us "
                    f"(late max {row['late_max_us']:,.0f} us)")
        if (iperf_sent >= 0.9 * due and row["tx_bps"] >= 0.9 * OFFERED and row["late_p50_us"] < 1_000
                and row["late_max_us"] < QUEUE_US - 7_000):
            break
    else:
        pytest.skip(f"a sender fell behind on this loaded machine in every try: {'; '.join(seen)}")
    assert row["owd_basis"] == "same-host"
    assert 0.8 * QUEUE_US < iperf_us < 1.05 * QUEUE_US, seen  # iperf2 itself saw the standing queue
    assert abs(row["owd_mean_us"] - iperf_us) <= max(0.10 * iperf_us, 20), seen
