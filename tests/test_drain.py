"""The receiver reached through STOP while datagrams still queue behind the lab's token bucket:
what drains after the sender stops is counted, not called lost (docs/decisions.md, the drain)."""
import json
import sys

import pytest

SIZE = 1372  # 1400-byte IP packets: one per datagram through the lab's 1400-byte MTU


@pytest.mark.lab
def test_datagrams_queued_at_stop_are_drained_and_counted(make_lab):
    # By hand: 110 Mbit/s of payload is 113.4 Mbit/s of frames (1414 bytes a datagram, which tbf
    # counts) into a 100 Mbit/s bucket, so the queue grows by 13.4 Mbit/s: 0.5 MB after 0.3 s,
    # 40 ms of queue at STOP, below the bucket's 50 ms limit (0.625 MB): nothing need be dropped.
    lab = make_lab(mtu=1400, rate="100M")
    with lab.serving():
        done = lab.run("client", [sys.executable, "-m", "udpbench", "blast", lab.address("server"),
                                  "--size", str(SIZE), "--rate", "110M", "--duration", "0.3", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    # The premise: a queue stood when the sender stopped (its last datagrams waited ~40 ms).
    assert row["owd_max_us"] > 25_000, row["owd_max_us"]
    assert row["sent"] > 0.9 * 0.3 * 110e6 / (SIZE * 8)  # 3007 slots by hand: the sender kept up
    # Every queued datagram arrived after STOP and was counted.
    assert row["received"] == row["sent"] and row["lost"] == 0
