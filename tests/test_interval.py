"""Interim reports: STATUS in the control state machine, sliced sending, and `blast --interval`."""
import json
import re
import socket
import subprocess
import sys

import pytest

from udpbench import cli
from udpbench.protocol import control, conversation
from udpbench.transport.client import Client
from udpbench.transport.interval import IntervalReports, merge_tx






def run_cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "udpbench", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_status_is_schema_checked_and_keeps_the_session_running():
    S = conversation.ServerState
    assert conversation.next_server_state(S.RUNNING, {"type": "STATUS"}) is S.RUNNING
    for state in (S.AWAIT_HELLO, S.READY, S.CLOSED):
        with pytest.raises(control.ProtocolError, match="out of order"):
            conversation.next_server_state(state, {"type": "STATUS"})
    with pytest.raises(control.ProtocolError, match="lacks 'session'"):
        control.decode(b'{"type": "STATUS"}')
    assert control.decode(b'{"type": "STATUS", "session": 7}')["session"] == 7


def _hello(server, raw_control):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(control.encode({"type": "HELLO", "version": control.PROTOCOL_VERSION}))
    assert raw_control.read_frame(sock)["type"] == "HELLO"
    return sock


def test_status_before_start_is_a_protocol_error(loopback_server, raw_control):
    sock = _hello(loopback_server, raw_control)
    sock.sendall(control.encode({"type": "STATUS", "session": 3}))
    raw_control.assert_error_then_close(sock, "out of order")
    raw_control.assert_still_serving(loopback_server)


def test_status_for_another_session_is_a_protocol_error(loopback_server, raw_control):
    sock = _hello(loopback_server, raw_control)
    data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data.bind(("127.0.0.1", 0))
    try:
        sock.sendall(control.encode({"type": "START", "session": 5, "mode": "blast", "size": 100,
                                     "duration_s": 1.0, "rate_bps": 0,
                                     "client_port": data.getsockname()[1]}))
        assert raw_control.read_frame(sock)["type"] == "STARTED"
        sock.sendall(control.encode({"type": "STATUS", "session": 6}))
        raw_control.assert_error_then_close(sock, "not a running blast")
    finally:
        data.close()
    raw_control.assert_still_serving(loopback_server)


@pytest.mark.parametrize("df", [False, True])  # with DF the first datagram goes out from Python
def test_intervals_add_up_to_the_exact_final_row(loopback_server, df):
    seen = []
    with Client("127.0.0.1", loopback_server.port) as client:
        row = client.blast(500, 0.8, 8e6, df=df, interval=0.2, on_interval=seen.append)
        again = client.blast(500, 0.2, 8e6)  # the connection is back in READY and serves on
    intervals = row["intervals"]
    assert seen == intervals
    assert 3 <= len(intervals) <= 5 and intervals[-1]["final"] and not any(i["final"] for i in intervals[:-1])
    assert sum(i["sent"] for i in intervals) == row["sent"]
    assert sum(i["received"] for i in intervals) == row["received"] > 0
    assert sum(i["lost"] for i in intervals) == row["lost"] == 0  # loopback at 8 Mbit/s loses none
    assert row["received"] == row["sent"]
    assert sum(i["expected"] for i in intervals) == row["sent"]
    for i in intervals:  # 8 Mbit/s of 500-byte payloads: 2000 datagrams/s, 400 a slice
        assert i["sent"] > 0 and i["end_s"] > i["start_s"]
    assert [i["start_s"] for i in intervals[:3]] == pytest.approx([0.0, 0.2, 0.4])
    # Slicing must not send faster than asked (each slice adds at most one datagram's rounding);
    # a loaded machine may fall behind, so the lower bound is generous.
    assert 0.5 * 8e6 < row["tx_bps"] <= 1.03 * 8e6
    assert again["sent"] > 0 and "intervals" not in again


def test_interval_longer_than_the_blast_gives_one_final_interval(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        row = client.blast(200, 0.2, 2e6, interval=5.0)
    [only] = row["intervals"]
    assert only["final"] and only["sent"] == row["sent"] and only["received"] == row["received"]


def test_merge_tx_adds_counts_and_pools_gap_statistics():
    a = {"sent": 10, "next_seq": 10, "errors": {105: 2}, "elapsed_ns": 100, "syscalls": 11, "batch": 1,
         "gap_min_ns": 5, "gap_max_ns": 20, "gap_mean_ns": 10.0, "gap_std_ns": 0.0, "target_gap_ns": 10.0,
         "schedule_resets": 0, "interrupt": None}
    b = dict(a, sent=5, next_seq=15, errors={105: 1, 11: 4}, syscalls=6, gap_min_ns=3, gap_max_ns=40,
             gap_mean_ns=20.0, gap_std_ns=0.0, schedule_resets=1)
    a["gso_refused"], b["gso_refused"] = 0, 95  # a key merge_tx does not know: the slice that says something
    m = merge_tx([a, b])
    assert m["gso_refused"] == 95
    assert m["sent"] == 15 and m["next_seq"] == 15 and m["errors"] == {105: 3, 11: 4}
    assert m["syscalls"] == 17 and m["schedule_resets"] == 1
    assert m["gap_min_ns"] == 3 and m["gap_max_ns"] == 40
    # 10 gaps of 10 ns and 5 of 20 ns
    assert m["gap_mean_ns"] == pytest.approx(200 / 15)
    assert m["gap_std_ns"] == pytest.approx((sum([(10 - 200 / 15) ** 2] * 10 + [(20 - 200 / 15) ** 2] * 5) / 15) ** 0.5)


LINE = re.compile(r"^\s*(\d+\.\d\d)-(\d+\.\d\d) s\s+(\d+)\s+(\d+)\s+(-?\d+)\s+\S+%\s+.*bit/s\s+[\d.]+ ms")


def test_blast_interval_prints_a_line_per_interval_and_the_summary(free_port):
    done = run_cli("blast", "127.0.0.1", "--port", str(free_port), "--size", "300", "--duration", "1", "--rate", "4M",
                   "--interval", "0.2")
    assert done.returncode == 0, done.stderr
    lines = [m for m in map(LINE.match, done.stdout.splitlines()) if m]
    assert 4 <= len(lines) <= 6, done.stdout  # ~5 on a quiet machine
    assert float(lines[0].group(1)) == 0.0 and float(lines[-1].group(2)) == pytest.approx(1.0, abs=0.01)
    sent = int(re.search(r"^\s*sent\s+(\d+)", done.stdout, re.M).group(1))
    assert sum(int(m.group(3)) for m in lines) == sent > 0
    received = int(re.search(r"^\s*received\s+(\d+)", done.stdout, re.M).group(1))
    assert sum(int(m.group(4)) for m in lines) == received


def test_blast_interval_json_has_the_intervals(free_port):
    done = run_cli("blast", "127.0.0.1", "--port", str(free_port), "--size", "300", "--duration", "0.6", "--rate", "4M",
                   "--interval", "0.2", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)  # nothing but the JSON document on stdout
    intervals = row["intervals"]
    assert 2 <= len(intervals) <= 4
    assert sum(i["sent"] for i in intervals) == row["sent"]
    assert sum(i["lost"] for i in intervals) == row["lost"]
    for key in ("start_s", "end_s", "sent", "received", "expected", "lost", "loss_ratio", "goodput_bps",
                "jitter_ms"):
        assert key in intervals[0]


def test_blast_without_interval_has_no_intervals(capsys, free_port):
    assert cli.main(["blast", "127.0.0.1", "--port", str(free_port), "--size", "300", "--duration", "0.2", "--rate", "2M", "--json"]) == 0
    assert "intervals" not in json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("value", ["0", "-1", "soon"])
def test_bad_interval_is_one_line_and_exit_2(capsys, value):
    assert cli.main(["blast", "127.0.0.1", f"--interval={value}"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--interval" in err


def test_intervals_add_up_when_datagrams_are_lost(loopback_server):
    # As fast as loopback goes into a small receive buffer: the receiving socket overflows.
    with Client("127.0.0.1", loopback_server.port) as client:
        # mmsg: one datagram a buffer, so the kernel's drop count is in datagrams (GSO drops 7 at once)
        row = client.blast(9000, 0.4, 0, "mmsg", rcvbuf=64 << 10, interval=0.1)
    intervals = row["intervals"]
    assert row["lost"] > 0  # the premise: a 64 KiB buffer cannot take loopback at full speed
    assert sum(i["sent"] for i in intervals) == row["sent"]
    assert sum(i["received"] for i in intervals) == row["received"]
    # A second count of the loss: loopback drops only at the receiving socket, and the kernel
    # counts those drops itself (SO_MEMINFO), apart from the sequence numbers.
    assert sum(i["lost"] for i in intervals) == row["lost"] == row["socket_drops"]
    assert sum(i.get("socket_drops", 0) for i in intervals) == row["socket_drops"]


class _FakeClient:
    """Answers STATUS with the snapshots given, in order."""

    def __init__(self, snapshots):
        self.snapshots = list(snapshots)

    def status(self, session):
        return self.snapshots.pop(0)


def _tx(sent):
    return {"sent": sent, "errors": {}}


def test_interval_loss_counts_sequence_gaps_not_datagrams_in_flight():
    reports = IntervalReports(_FakeClient([]), session=1, size=100, interval=1.0)
    # 1000 sent; 990 arrived, the highest sequence number seen 994: 5 gaps, 5 still in flight
    first = reports._add(((0, 1), (0, 1), _tx(1000)), {"received": 990, "highest_seq": 994}, final=False)
    assert (first["expected"], first["received"], first["lost"]) == (995, 990, 5)
    # one of those gaps fills late (reordered across the snapshot): this interval shows -1
    second = reports._add(((1, 2), (1, 2), _tx(1000)), {"received": 1991, "highest_seq": 1994}, final=False)
    assert (second["expected"], second["received"], second["lost"]) == (1000, 1001, -1)
    # the final REPORT: everything sent counts, so losses at the very end are not missed
    last = reports._add(((2, 3), (2, 3), _tx(1000)), {"received": 2980, "highest_seq": 2979}, final=True,
                        sent_total=3000)
    assert (last["expected"], last["received"], last["lost"]) == (1005, 989, 16)
    assert sum(i["lost"] for i in reports.intervals) == 3000 - 2980
    assert last["goodput_bps"] == pytest.approx(989 * 100 * 8)
