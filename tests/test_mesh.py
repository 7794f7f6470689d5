"""The mesh: the matrices by hand, the one-line errors, and `mesh --lab 3` against the lab's
known links (MTUs 1500/1400/1300, 2 % loss into h3), including a worker killed mid-mesh."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import udpbench
from udpbench import cli
from udpbench.output import matrix

LINK_MTU = {"h1": 1500, "h2": 1400, "h3": 1300}
PORT = 47100


def hand_meta():
    pairs = [("a", "b", 1500, 0.0), ("b", "a", 1500, 0.0), ("a", "c", 1400, 0.03), ("c", "a", 1400, 0.0),
             ("b", "c", 1400, 0.02), ("c", "b", 1400, 0.0)]
    meta = {"hosts": [{"host": h} for h in "abc"],
            "pairs": [{"src": s, "dst": d, "status": "ok", "path_mtu": m} for s, d, m, _ in pairs]}
    rows = [{"src": s, "dst": d, "size": m - 28, "fragments": 1, "goodput_bps": 1e8, "loss_ratio": loss}
            for s, d, m, loss in pairs]
    return meta, rows


def test_matrix_marks_the_smaller_mtu_and_the_loss_above_the_median():
    meta, rows = hand_meta()
    marks = matrix.outliers(matrix.cells(meta, rows))
    # Median loss is 0: the two lossy cells stand out; every cell below 1500 has "mtu".
    assert marks == {("a", "c"): ["mtu", "loss"], ("c", "a"): ["mtu"], ("b", "c"): ["mtu", "loss"],
                     ("c", "b"): ["mtu"]}


def test_matrix_points_out_the_asymmetric_pairs():
    meta, rows = hand_meta()
    assert matrix.asymmetric(matrix.cells(meta, rows)) == [("a", "c", "loss 3.00% vs 0.00%"),
                                                           ("b", "c", "loss 2.00% vs 0.00%")]


def test_without_distributed_one_line_and_exit_2(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    assert cli.main(["mesh", "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert capsys.readouterr().err == 'udpbench: the mesh needs Dask distributed: pip install "udpbench[mesh]"\n'


@pytest.mark.parametrize("address", ["nonsense://x", "tcp://host", "tcp://:80"])
def test_bad_scheduler_address_is_one_line(capsys, address):
    pytest.importorskip("distributed")
    assert cli.main(["mesh", "--scheduler", address]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not like tcp://HOST:PORT" in err


def test_unreachable_scheduler_is_one_line(capsys):
    pytest.importorskip("distributed")
    import socket
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert cli.main(["mesh", "--scheduler", f"tcp://127.0.0.1:{port}", "--connect-timeout", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("udpbench: cannot reach the Dask scheduler at")


# ---- in the lab ------------------------------------------------------------------------------

def ns_names() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def dask_processes() -> set[int]:
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"distributed.cli.dask_" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(int(pid))
        except OSError:
            pass
    return found


def child_env() -> dict:
    root = str(Path(udpbench.__file__).resolve().parent.parent)
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in [root, os.environ.get("PYTHONPATH")] if p))


def check_schedule(meta):
    for r in meta["schedule"]:
        ends = [h for pair in r for h in pair]
        assert len(ends) == len(set(ends)), r


@pytest.mark.lab
@pytest.mark.slow
def test_mesh_lab_3_finds_each_path_mtu_and_the_lossy_direction(make_lab, tmp_path):
    pytest.importorskip("distributed")
    before_ns, before_procs = ns_names(), dask_processes()
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "udpbench", "mesh", "--lab", "3", "--port", str(PORT),
                           "--duration", "1", "--rate", "20M", "--json", "-o", str(tmp_path / "m")],
                          capture_output=True, text=True, timeout=120, env=child_env())
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    assert took < 60, took
    result = json.loads(done.stdout.strip().splitlines()[-1])
    meta, rows = result["meta"], result["rows"]
    assert [h["host"] for h in meta["hosts"]] == ["h1", "h2", "h3"]
    assert sorted((p["src"], p["dst"]) for p in meta["pairs"]) == sorted(itertools.permutations(LINK_MTU, 2))
    check_schedule(meta)
    for p in meta["pairs"]:
        assert p["status"] == "ok" and p["path_mtu"] == min(LINK_MTU[p["src"]], LINK_MTU[p["dst"]]), p
    for row in rows:
        # 2 % of ~1900 datagrams is ~38 lost; the lossless directions lose none.
        if row["dst"] == "h3":
            assert 0.005 < row["loss_ratio"] < 0.05, row
        else:
            assert row["loss_ratio"] < 0.005, row
        assert row["size"] == min(LINK_MTU[row["src"]], LINK_MTU[row["dst"]]) - 28
    assert (tmp_path / "m.npz").exists() and (tmp_path / "m.json").exists()
    assert ns_names() <= before_ns and dask_processes() <= before_procs


@pytest.mark.lab
@pytest.mark.slow
def test_a_worker_killed_mid_mesh_leaves_a_partial_result(make_lab, tmp_path):
    pytest.importorskip("distributed")
    from udpbench.lab.cluster import LabCluster

    lab = make_lab(hosts=3, links={"h1": {"mtu": 1500}, "h2": {"mtu": 1400}, "h3": {"mtu": 1300}})
    try:
        with LabCluster(lab) as cluster:
            mesh = lab.popen("router", [sys.executable, "-m", "udpbench", "mesh", "--scheduler", cluster.scheduler,
                                        "--wait-workers", "3", "--port", str(PORT), "--mtu-only", "--progress",
                                        "--json", "-o", str(tmp_path / "m")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
            first = mesh.stdout.readline()
            assert first.startswith("pair ") and "h2 -> h3" in first, first  # round 0: h1 sits out
            cluster.kill_worker("h1")
            out, err = mesh.communicate(timeout=90)
    finally:
        lab.down()
    assert mesh.returncode == 1, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("udpbench: partial result: 4 of 6 pairs failed (h1->h3: worker h1 (tcp://198.18.0.2:")
    assert last.endswith(") left the cluster)")
    meta = json.loads(out.strip().splitlines()[-1])["meta"]
    by_pair = {(p["src"], p["dst"]): p for p in meta["pairs"]}
    assert {k for k, p in by_pair.items() if p["status"] == "ok"} == {("h2", "h3"), ("h3", "h2")}
    assert by_pair[("h2", "h3")]["path_mtu"] == 1300 and by_pair[("h3", "h2")]["path_mtu"] == 1300
    assert all("h1" in k and "left the cluster" in p["reason"] for k, p in by_pair.items() if p["status"] != "ok")
    saved = json.loads((tmp_path / "m.json").read_text())["meta"]
    assert len(saved["pairs"]) == 6  # on disk too
