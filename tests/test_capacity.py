"""The capacity search on loopback: the library call, its file, its plot, and the command line."""
import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from udpbench.cli.main import main
from udpbench.measure import capacity as measure
from udpbench.measure import embedded
from udpbench.output import capacity_plot
from udpbench.protocol.capacity import CapacityRow


def test_loopback_search_finds_a_knee_at_the_receiver_or_the_sender(loopback_server, tmp_path):
    seen = []
    result = measure.capacity(["127.0.0.1"], port=loopback_server.port, sizes=[1000], trial_s=0.2,
                              confirm=1, output=tmp_path / "cap", on_row=seen.append)
    (row,) = result.rows
    assert isinstance(row, CapacityRow) and seen == [row]
    assert row.found_bps > 0 and row.loss_at_found == 0
    # loopback loses nothing on a wire: the knee is the receiving socket or the sender
    assert row.cause in ("socket", "sender"), row
    if row.failed_bps is not None:
        assert row.failed_bps > row.found_bps and row.loss_above > 0
        assert row.loss_network == 0
    assert 0 < row.overhead_s < 0.2  # START, STOP and the server's 100 ms quiet drain
    with np.load(tmp_path / "cap.npz", allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        assert meta["schema"] == "udpbench.capacity"
        assert data["size"].tolist() == [1000] and data["found_bps"].tolist() == [row.found_bps]
    assert json.loads((tmp_path / "cap.json").read_text())["rows"][0]["trials"] == row.trials
    image = capacity_plot.render(result.meta, [r.as_dict() for r in result.rows], tmp_path / "knee.png")
    assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stop_keeps_the_finished_sizes(loopback_server):
    stop = threading.Event()
    result = measure.capacity(["127.0.0.1"], port=loopback_server.port, sizes=[500, 1000, 2000], trial_s=0.1,
                              confirm=0, resolution=0.2, on_row=lambda row: stop.set(), stop=stop)
    assert [r.size for r in result.rows] == [500]
    assert "stopped" in result.meta


def test_an_overflowed_far_reassembly_is_waited_for_or_warned(monkeypatch):
    monkeypatch.setattr(measure.fragment_memory, "expiry_s", lambda v6=False: 0)  # 1 s of waiting
    info = {"host": "far", "family": 4, "loopback": False, "address": "192.0.2.1", "path_mtu": 1500}
    overflowed = {"receiver_counters": {"Ip.ReasmFails": 12}}
    notices = []
    waiting = measure.HostSearch(None, info, measure.CapacityOptions(), notices.append, threading.Event())
    row = CapacityRow(host="far", size=8000, loss_threshold=0)
    assert 0.9 < waiting.settle(overflowed, row) < 2.0
    assert len(notices) == 1 and "ReasmFails" in notices[0]
    warning = measure.HostSearch(None, info, measure.CapacityOptions(reassembly_wait=False), notices.append,
                                 threading.Event())
    assert warning.settle(overflowed, row) == 0.0 and len(row.warnings) == 1
    assert warning.settle({"receiver_counters": {"Ip.ReasmFails": 0}}, row) == 0.0


@pytest.mark.parametrize("args, says", [
    (["--loss", "1"], "--loss '1' must be at least 0 and below 1"),
    (["--loss", "100%"], "--loss '100%' must be"),
    (["--loss=-0.1%"], "--loss '-0.1%' must be"),
    (["--loss", "abc"], "--loss 'abc' is not a number"),
    (["--resolution", "0"], "--resolution '0' must be above 0"),
    (["--resolution=-1%"], "--resolution '-1%' must be above 0"),
    (["--confirm", "x"], "--confirm"),
    (["--sizes", "10"], "payload"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, says):
    assert main(["capacity", "127.0.0.1", "--port", "9", *args]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err, err


def test_no_server_is_one_line_and_exit_2(capsys, monkeypatch):
    # Nothing listens on 127.0.0.1:9; treat it as a remote host so no embedded server starts.
    monkeypatch.setattr(embedded, "is_loopback", lambda address: False)
    assert main(["capacity", "127.0.0.1", "--port", "9", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "no udpbench server" in err, err


def test_ctrl_c_keeps_the_finished_sizes_and_exits_130(loopback_server, tmp_path):
    base = tmp_path / "cap"
    proc = subprocess.Popen([sys.executable, "-m", "udpbench", "capacity", "127.0.0.1", "--port",
                             str(loopback_server.port), "--sizes", "500,1000,2000,4000", "--trial", "0.2",
                             "--confirm", "0", "--resolution", "20%", "-o", str(base)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not base.with_suffix(".json").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    document = json.loads(base.with_suffix(".json").read_text())
    assert "interrupted" in document["meta"]
    assert 1 <= len(document["rows"]) < 4
    assert [r["size"] for r in document["rows"]] == [500, 1000, 2000][:len(document["rows"])]
