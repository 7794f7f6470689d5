"""Faults with real processes on loopback: killed and frozen clients, a killed server, Ctrl-C.

Every process here is started by the test, bounded in time, and killed by its pid at teardown.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import udpbench
from udpbench.protocol import control
from udpbench.output import results
from udpbench.transport.client import Client
from udpbench.errors import MeasurementError
from udpbench.transport.server import Server
from udpbench.measure.sweep import sweep

REPO = Path(udpbench.__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if k != control.TOKEN_ENV}
ENV["PYTHONPATH"] = str(REPO)


def _default_sigint():
    # A child of a shell job may inherit SIGINT ignored; Python then installs no
    # KeyboardInterrupt handler. Ctrl-C tests need the ordinary behaviour.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Proc:
    """A udpbench subprocess whose stdout and stderr lines are collected as they come."""

    def __init__(self, *args, cwd=None):
        self.popen = subprocess.Popen([sys.executable, "-m", "udpbench", *args], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=ENV, cwd=cwd,
                                      preexec_fn=_default_sigint)
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._read, args=(s, into), daemon=True)
                         for s, into in ((self.popen.stdout, self.out), (self.popen.stderr, self.err))]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append(line.rstrip("\n"))

    @property
    def pid(self):
        return self.popen.pid

    def wait(self, timeout):
        code = self.popen.wait(timeout)
        for t in self._readers:
            t.join(5)
        return code

    def kill(self):
        if self.popen.poll() is None:
            os.kill(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)


@pytest.fixture
def procs():
    started: list[Proc] = []

    def start(*args, **kwargs):
        p = Proc(*args, **kwargs)
        started.append(p)
        return p

    yield start
    for p in started:
        p.kill()



def serve(wait_for, procs, *args):
    """`udpbench serve` on 127.0.0.1, a free port; returns (process, port)."""
    server = procs("serve", "--bind", "127.0.0.1", "--port", "0", *args)
    assert wait_for(lambda: server.out or server.popen.poll() is not None, 30), "serve printed nothing"
    match = re.search(r"serving on 127\.0\.0\.1:(\d+)", server.out[0])
    assert match, server.out[0]
    return server, int(match.group(1))


def session_started(server: Proc, n=1):
    return lambda: sum("session " in line for line in server.err) >= n


def connect_when_free(port, timeout):
    """A Client as soon as the server has a free session slot; None if none came in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return Client("127.0.0.1", port, token="")
        except MeasurementError as exc:
            assert "busy" in str(exc)
            time.sleep(0.1)
    return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_client_frees_its_session_at_once(procs, wait_for):
    # The grace is long: only the TCP connection's EOF can free the one slot in time.
    server, port = serve(wait_for, procs, "--max-sessions", "1", "--session-grace", "60")
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--duration", "60", "--rate", "1M")
    assert wait_for(session_started(server), 30), server.err
    blaster.popen.send_signal(signal.SIGKILL)
    start = time.monotonic()
    client = connect_when_free(port, 5)
    assert client is not None, "the killed client's session still holds the only slot"
    assert time.monotonic() - start < 5  # at once: far below its 60 s duration + 60 s grace
    with client:
        row = client.blast(200, 0.1, 1e6)
    assert row["sent"] > 0 and row["received"] == row["sent"]
    assert server.popen.poll() is None


def test_a_frozen_client_is_ended_after_its_duration_plus_grace(procs, wait_for):
    server, port = serve(wait_for, procs, "--max-sessions", "1", "--session-grace", "1")
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--duration", "1", "--rate", "1M")
    assert wait_for(session_started(server), 30), server.err
    blaster.popen.send_signal(signal.SIGSTOP)  # its TCP connection stays open: no EOF
    try:
        client = connect_when_free(port, 25)
        assert client is not None, "a silent client held its session past duration + grace"
        assert blaster.popen.poll() is None  # the slot came free while the client still lived
        with client:
            assert client.blast(200, 0.1, 1e6)["received"] > 0
    finally:
        blaster.kill()


def rows_saved(json_file) -> int:
    """Rows in a result file a running sweep is writing (0 until its first save)."""
    try:
        return len(results.load(json_file)[1])
    except Exception:
        return 0


def test_a_killed_server_mid_sweep_keeps_the_finished_rows(procs, tmp_path, wait_for):
    server, port = serve(wait_for, procs)
    out = tmp_path / "sweep"
    sweeper = procs("sweep", "127.0.0.1", "--port", str(port), "--sizes", "64,128,256,512",
                    "--duration", "1", "--rate", "2M", "-o", str(out))
    json_file = out.with_name("sweep.json")
    assert wait_for(lambda: rows_saved(json_file) >= 1, 60), sweeper.err
    server.kill()
    assert sweeper.wait(30) == 1
    kept = results.load(out.with_name("sweep.npz"))[1]
    assert len(kept) >= 1 and all(r["received"] == r["sent"] for r in kept)
    assert [r["size"] for r in kept] == [64, 128, 256, 512][:len(kept)]
    failed = len(kept) + 1
    assert len(sweeper.err) == 1, sweeper.err
    line = sweeper.err[0]
    assert line.startswith(f"udpbench: row {failed} (127.0.0.1, {[64, 128, 256, 512][failed - 1]} B) failed")
    assert f"{len(kept)} finished row(s) kept in {out.with_name('sweep.npz')}" in line
    assert "Traceback" not in "\n".join(sweeper.err)


def test_ctrl_c_in_a_sweep_saves_the_finished_rows(procs, tmp_path, wait_for):
    out = tmp_path / "sweep"
    # no server at this port: the sweep runs an embedded one, in the same process
    # 3 s rows: a loaded machine may be late to see the first row saved and late to deliver the
    # signal, and the second row must still be cut well short.
    sweeper = procs("sweep", "127.0.0.1", "--port", str(free_port()), "--sizes", "64,128,256",
                    "--duration", "3", "--rate", "2M", "-o", str(out))
    json_file = out.with_name("sweep.json")
    assert wait_for(lambda: rows_saved(json_file) >= 1, 60), sweeper.err
    time.sleep(0.5)  # so that the second row has begun
    sweeper.popen.send_signal(signal.SIGINT)
    assert sweeper.wait(30) == 130
    assert sweeper.err[-1].startswith("udpbench: sweep interrupted; 1 finished row(s) and the interrupted one "
                                      "saved in"), sweeper.err
    for path in (out.with_name("sweep.npz"), json_file):
        meta, rows = results.load(path)
        assert [r["size"] for r in rows] == [64, 128]
        assert not rows[0].get("interrupted") and rows[1]["interrupted"]
        assert rows[0]["received"] == rows[0]["sent"] > 0
        # cut short of its 3 s: 128-byte datagrams at 2 Mbit/s are 1953.125 a second, 5860
        # slots in a whole row (by hand); the row holds no more than its own duration's slots
        assert rows[1]["duration_s"] < 2.0 and 0 < rows[1]["sent"] < 2 / 3 * 5860
        assert rows[1]["sent"] <= rows[1]["duration_s"] * 1953.125 + 1
        assert "interrupted" in meta
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_ctrl_c_in_a_blast_prints_the_partial_numbers(procs, wait_for):
    server, port = serve(wait_for, procs)
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--duration", "30", "--rate", "2M",
                    "--size", "500")
    assert wait_for(session_started(server), 30), server.err
    time.sleep(0.3)
    start = time.monotonic()
    blaster.popen.send_signal(signal.SIGINT)
    assert blaster.wait(20) == 130
    assert time.monotonic() - start < 20
    text = "\n".join(blaster.out)
    assert "(interrupted: the numbers cover the part that ran)" in text
    sent = int(re.search(r"sent\s+(\d+)", text).group(1))
    received = int(re.search(r"received\s+(\d+)", text).group(1))
    assert 0 < sent < 2e6 / (8 * 500) * 30  # fewer than 30 s would have sent
    assert received == sent
    assert server.popen.poll() is None  # and the server serves on


def test_ctrl_c_stops_the_sending_within_half_a_second(procs, wait_for):
    """The send loop looks for signals every 50 ms: it stops within half a second of Ctrl-C,
    however fast it is sending, and the row still covers what was sent."""
    server, port = serve(wait_for, procs)
    spawned = time.monotonic()
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--duration", "30", "--rate", "max",
                    "--engine", "gso", "--json")
    assert wait_for(session_started(server), 30), server.err
    time.sleep(0.5)
    blaster.popen.send_signal(signal.SIGINT)
    signalled = time.monotonic() - spawned
    assert blaster.wait(20) == 130
    row = json.loads("\n".join(blaster.out))
    assert row["interrupted"] is True
    # sending began after the process started, so its duration is at most this
    assert row["duration_s"] < signalled + 0.5
    assert row["sent"] > 0 and row["received"] <= row["sent"]


def test_sweep_reconnects_to_a_host_that_ended_an_idle_connection(monkeypatch):
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)
    a = Server("127.0.0.1", 0).start()
    try:
        b = Server("127.0.0.2", a.port).start()  # 127/8 is all this machine: a second host, same port
    except Exception as exc:
        a.close()
        pytest.skip(f"cannot serve on 127.0.0.2 port {a.port}: {exc}")
    try:
        b.idle_timeout = 0.3  # shorter than host a's rows: b drops any connection left waiting
        rows = sweep(["127.0.0.1", "127.0.0.2"], sizes=[100, 200], duration=0.3, rate=1e6, engine="send",
                     port=a.port).rows
    finally:
        a.close()
        b.close()
    assert [(r["host"], r["size"]) for r in rows] == [("127.0.0.1", 100), ("127.0.0.1", 200),
                                                      ("127.0.0.2", 100), ("127.0.0.2", 200)]
    assert all(r["received"] == r["sent"] > 0 for r in rows)


def _streams_interrupted(procs, wait_for, settle: float):
    server, port = serve(wait_for, procs)
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--streams", "3", "--duration", "30",
                    "--rate", "6M", "--size", "500", "--json")
    assert wait_for(session_started(server, 3), 30), server.err
    time.sleep(settle)
    blaster.popen.send_signal(signal.SIGINT)
    return blaster, port


def test_ctrl_c_as_the_streams_start_still_prints_their_numbers(procs, wait_for):
    blaster, _ = _streams_interrupted(procs, wait_for, 0.0)
    assert blaster.wait(20) == 130, blaster.err
    assert blaster.out, f"no row printed; stderr: {blaster.err}"
    assert json.loads("\n".join(blaster.out))["interrupted"] is True


def test_ctrl_c_in_a_blast_of_streams_ends_every_stream_and_prints_their_numbers(procs, wait_for):
    blaster, port = _streams_interrupted(procs, wait_for, 0.5)  # the streams are sending
    assert blaster.wait(20) == 130, blaster.err
    assert blaster.out, f"no row printed; stderr: {blaster.err}"
    row = json.loads("\n".join(blaster.out))
    assert row["interrupted"] is True and row["streams"] == 3
    per = row["per_stream"]
    assert len(per) == 3 and sum(s["sent"] for s in per) == row["sent"]
    for s in per:  # each stream's share is 2 Mbit/s of 4000-bit payloads: 500 a second, by hand
        assert 0 < s["received"] == s["sent"] < 500 * 30
    assert "Traceback" not in "\n".join(blaster.err)
    # the server serves on after the three sessions ended
    with Client("127.0.0.1", port, token="") as client:
        assert client.blast(200, 0.1, 1e6)["received"] > 0


def test_a_failing_interim_report_is_one_line_and_exit_1(procs, wait_for):
    """The server dies between two STATUS exchanges: the blast ends at once with one line."""
    server, port = serve(wait_for, procs)
    blaster = procs("blast", "127.0.0.1", "--port", str(port), "--duration", "20", "--rate", "2M",
                    "--size", "500", "--interval", "0.2")
    assert wait_for(lambda: any(re.match(r"^\s*0\.00-0\.20 s", line) for line in blaster.out), 30), blaster.out
    server.kill()
    assert blaster.wait(20) == 1, (blaster.out, blaster.err)
    assert len(blaster.err) == 1 and blaster.err[0].startswith("udpbench: "), blaster.err
    assert "Traceback" not in blaster.err[0] and str(port) in blaster.err[0], blaster.err
