"""Latency under load: goodput and one-way delay behind a token bucket, and a stalled sender."""
import json
import signal
import subprocess
import sys
import time

import pytest

RATE = 100_000_000
SIZE = 1372  # 1400-byte IP packets: one per datagram through the lab's 1400-byte MTU
ETHERNET = 14  # tbf counts the Ethernet header, not preamble or gap


@pytest.mark.lab
def test_goodput_behind_a_token_bucket_is_its_payload_capacity(make_lab):
    """Offered at twice the bucket's rate, the queue stands full; what drains after the sender
    stops must not inflate goodput (issue 11, section 1)."""
    lab = make_lab(mtu=1400, rate="100M")
    address = lab.address("server")
    with lab.serving():
        done = lab.run("client", [sys.executable, "-m", "udpbench", "blast", address, "--size", str(SIZE),
                                  "--rate", "200M", "--duration", "1", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    capacity = RATE * SIZE / (SIZE + 28 + ETHERNET)  # 97.03 Mbit/s of payload
    assert row["goodput_bps"] == pytest.approx(capacity, rel=0.01)
    # The old definition, over the sending interval, counted the drained queue as rate.
    over_sending = row["received"] * SIZE * 8 / row["duration_s"]
    assert over_sending > 1.03 * capacity, over_sending / capacity
    # The queue holds 50 ms (tbf latency) plus the 25000-byte burst (2 ms at 100 Mbit/s):
    # once it stands, every datagram waits that long.
    assert row["owd_basis"] == "same-host" and row["clock_error_us"] == 0
    assert 47_000 < row["owd_p50_us"] < 56_000, row["owd_p50_us"]
    assert row["owd_min_us"] < 5_000  # the first datagrams found the queue empty


def test_a_stalled_sender_shows_in_the_scheduled_delay_only(loopback_server):
    """SIGSTOP the sending process for 200 ms: its datagrams leave late but cross loopback as
    fast as ever, so only the delay from the scheduled send time shows the stall."""
    blast = subprocess.Popen(
        [sys.executable, "-m", "udpbench", "blast", "127.0.0.1", "--port", str(loopback_server.port),
         "--size", "1000", "--rate", "20M", "--duration", "1.5", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.8)  # interpreter start-up, connection, then well into the run
        blast.send_signal(signal.SIGSTOP)
        time.sleep(0.2)
        blast.send_signal(signal.SIGCONT)
        out, err = blast.communicate(timeout=30)
    finally:
        if blast.poll() is None:
            blast.send_signal(signal.SIGCONT)
            blast.kill()
            blast.wait()
    assert blast.returncode == 0, err
    row = json.loads(out)
    assert row["received"] == row["sent"] > 1000
    assert row["schedule_resets"] == 0  # 200 ms is not given up: the sender catches up
    # Datagrams due during the stall leave up to 200 ms late, and catching up at twice the
    # rate takes as long again: over a quarter of the run is late, so p99 sits near 200 ms.
    assert row["sched_owd_p99_us"] > 150_000, row["sched_owd_p99_us"]
    assert row["sched_owd_max_us"] > 180_000
    assert row["owd_p99_us"] < 30_000, row["owd_p99_us"]
