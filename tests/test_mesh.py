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


def delay_meta(bases=("same-host", "same-host")):
    """a<->b, each with a fragmented 3000-byte row (slow) beside the 1472-byte one that counts."""
    meta = {"hosts": [{"host": "a"}, {"host": "b"}], "schedule": [[["a", "b"]], [["b", "a"]]],
            "pairs": [{"src": s, "dst": d, "status": "ok", "path_mtu": 1500} for s, d in (("a", "b"), ("b", "a"))]}
    rows = []
    for (src, dst), basis, p99 in zip((("a", "b"), ("b", "a")), bases, (120.4, 87.6)):
        rows.append({"src": src, "dst": dst, "size": 1472, "fragments": 1, "goodput_bps": 5e7, "loss_ratio": 0.0,
                     "received": 4000, "owd_p99_us": p99, "owd_basis": basis})
        rows.append({"src": src, "dst": dst, "size": 3000, "fragments": 3, "goodput_bps": 9e7, "loss_ratio": 0.0,
                     "received": 4000, "owd_p99_us": 950.0, "owd_basis": basis})
    return meta, rows


def test_summary_shows_p99_one_way_delay_of_the_largest_unfragmented_size():
    from udpbench.cli.mesh import format_summary
    meta, rows = delay_meta()
    text = format_summary(meta, rows).splitlines()
    at = text.index("p99 one-way delay us (same-host)")
    # 120.4 and 87.6 round to 120 and 88; the 3000-byte rows' 950 is not the figure shown.
    assert text[at + 2:at + 4] == ["a" + " " * 9 + " " * 9 + "-" + " " * 7 + "120",
                                   "b" + " " * 9 + " " * 8 + "88" + " " * 9 + "-"]


def test_summary_says_each_cells_basis_when_they_differ():
    from udpbench.cli.mesh import format_summary
    text = format_summary(*delay_meta(("same-host", "relative"))).splitlines()
    at = text.index("p99 one-way delay us (r relative, s same-host)")
    assert text[at + 2].endswith("120 s") and text[at + 3].split()[1:] == ["88", "r", "-"]


def test_summary_has_no_delay_panel_without_delays_or_without_datagrams():
    from udpbench.cli.mesh import format_summary
    meta, rows = delay_meta()
    assert "one-way delay" not in format_summary(meta, [{k: v for k, v in r.items() if not k.startswith("owd")}
                                                        for r in rows])
    # No datagram arrived: its delay fields are zeros, not a delay (README field table).
    assert "one-way delay" not in format_summary(meta, [dict(r, received=0) for r in rows])


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


def lab_namespaces(pid: int) -> set[str]:
    """The namespaces of the lab that `mesh --lab` run as ``pid`` made (cli/mesh.py names its
    prefix after the pid); other engineers' labs come and go meanwhile."""
    return {name for name in ns_names() if name.startswith(f"ubmesh{pid}-")}


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
    before_procs = dask_processes()
    started = time.monotonic()
    done = subprocess.Popen([sys.executable, "-m", "udpbench", "mesh", "--lab", "3", "--port", str(PORT),
                             "--duration", "1", "--rate", "20M", "--json", "-o", str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        done.stdout, done.stderr = done.communicate(timeout=120)
    finally:
        if done.poll() is None:
            done.kill()
            done.communicate()
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
        # The blast was told the pair's path MTU: its largest unfragmented payload is one packet there.
        assert row["path_mtu"] == min(LINK_MTU[row["src"]], LINK_MTU[row["dst"]]) and row["fragments"] == 1
    assert (tmp_path / "m.npz").exists() and (tmp_path / "m.json").exists()
    assert lab_namespaces(done.pid) == set() and dask_processes() <= before_procs


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


def listeners(lab, port: int) -> dict[str, str]:
    """What listens on ``port`` (TCP or UDP) in each host of the lab, by ss's own account."""
    found = {}
    for host in lab.hosts:
        out = lab.run(host, ["ss", "-Hlntu", f"sport = :{port}"], capture_output=True, text=True, timeout=10)
        if out.stdout.strip():
            found[host] = out.stdout.strip()
    return found


@pytest.mark.lab
@pytest.mark.slow
def test_ctrl_c_mid_mesh_stops_the_servers_keeps_the_finished_rows_and_exits_130(make_lab, tmp_path):
    pytest.importorskip("distributed")
    import signal
    from udpbench.lab.cluster import LabCluster

    port = PORT + 1
    lab = make_lab(hosts=3, links={"h1": {"mtu": 1500}, "h2": {"mtu": 1400}, "h3": {"mtu": 1300}})
    try:
        with LabCluster(lab) as cluster:
            mesh = lab.popen("router", [sys.executable, "-m", "udpbench", "mesh", "--scheduler", cluster.scheduler,
                                        "--wait-workers", "3", "--port", str(port), "--duration", "1",
                                        "--rate", "20M", "--progress", "--json", "-o", str(tmp_path / "m")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
            try:
                first = mesh.stdout.readline()
                assert first.startswith("pair ") and "h2 -> h3" in first, first
                assert set(listeners(lab, port)) == {"h1", "h2", "h3"}  # the servers the mesh started
                mesh.send_signal(signal.SIGINT)
                out, err = mesh.communicate(timeout=60)
            finally:
                if mesh.poll() is None:
                    mesh.kill()
                    mesh.communicate()
            assert all(w.poll() is None for w in cluster.workers.values())  # the workers live on...
            assert listeners(lab, port) == {}  # ...but the servers in them are gone
    finally:
        lab.down()
    assert mesh.returncode == 130, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("udpbench: mesh interrupted: ") and " of 6 pairs finished, saved in " in last, err
    assert "Traceback" not in err
    saved = json.loads((tmp_path / "m.json").read_text())
    meta = saved["meta"]
    assert "interrupted" in meta and 1 <= len(meta["pairs"]) < 6
    assert meta["pairs"][0]["src"] == "h2" and meta["pairs"][0]["dst"] == "h3"
    done = {(p["src"], p["dst"]) for p in meta["pairs"] if p["status"] == "ok"}
    assert ("h2", "h3") in done
    # Each finished pair's row is on disk, with the size its path MTU allows (1300 - 28).
    on_disk = {(r["src"], r["dst"]): r for r in saved["rows"]}
    assert set(on_disk) == done and len(saved["rows"]) == len(done) and on_disk[("h2", "h3")]["size"] == 1272
    printed = json.loads(out.strip().splitlines()[-1])["meta"]  # and the partial result was printed
    assert printed["pairs"] == meta["pairs"]


@pytest.mark.lab
@pytest.mark.slow
def test_ctrl_c_on_mesh_lab_is_passed_on_and_leaves_nothing_behind(make_lab, tmp_path):
    pytest.importorskip("distributed")
    import signal

    before_procs = dask_processes()
    mesh = subprocess.Popen([sys.executable, "-m", "udpbench", "mesh", "--lab", "3", "--port", str(PORT + 2),
                             "--duration", "1", "--rate", "20M", "--progress", "-o", str(tmp_path / "m")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        first = mesh.stdout.readline()
        assert first.startswith("pair ") and "h2 -> h3" in first, first
        mesh.send_signal(signal.SIGINT)  # to the outer process only, as a terminal's Ctrl-C would
        out, err = mesh.communicate(timeout=60)
    finally:
        if mesh.poll() is None:
            mesh.kill()
            mesh.communicate()
    assert mesh.returncode == 130, err
    assert err.strip().splitlines()[-1].startswith("udpbench: mesh interrupted: "), err
    assert "interrupted" in json.loads((tmp_path / "m.json").read_text())["meta"]
    assert lab_namespaces(mesh.pid) == set() and dask_processes() <= before_procs


def test_worker_presence_is_asked_of_the_scheduler_not_the_clients_cache():
    """The client's cached scheduler_info, which its 2 s refresh leaves with no workers, once
    made healthy workers look gone: the mesh must ask the scheduler itself."""
    pytest.importorskip("distributed")
    from udpbench.measure import mesh as mesh_module

    workers = {"tcp://198.18.0.2:4000": {"name": "h1"}, "tcp://198.18.1.2:4000": {"name": "h2"}}

    class Scheduler:
        def identity(self, n_workers=0):
            return {"workers": dict(itertools.islice(workers.items(), len(workers) if n_workers == -1 else n_workers))}

    class Client:
        scheduler = Scheduler()

        def scheduler_info(self, n_workers=-1):
            return {"workers": {}}  # what the refresh left in the cache

        def sync(self, function, **kwargs):
            return function(**kwargs)

    lost = {}
    hosts = [{"host": "h1", "worker": "tcp://198.18.0.2:4000"}, {"host": "h2", "worker": "tcp://198.18.1.2:4000"}]
    mesh_module._check_workers(Client(), hosts, lost)
    assert lost == {}
    del workers["tcp://198.18.1.2:4000"]
    mesh_module._check_workers(Client(), hosts, lost)
    assert lost == {"tcp://198.18.1.2:4000": "worker h2 (tcp://198.18.1.2:4000) left the cluster"}
