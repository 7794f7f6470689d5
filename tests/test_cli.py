"""The command line as users run it: sweep files, JSON, and bad input as one line with exit 2."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from udpbench import cli
from udpbench.output import results


def run_cli(*argv, timeout=60):
    return subprocess.run([sys.executable, "-m", "udpbench", *argv], capture_output=True, text=True,
                          timeout=timeout)


def test_sweep_file_loads_back_with_the_same_numbers(tmp_path, capsys, free_port):
    base = tmp_path / "loop"
    code = cli.main(["sweep", "127.0.0.1", "--port", str(free_port), "--sizes", "64,1472,9000", "--duration", "0.2",
                     "--rate", "20M", "--json", "-o", str(base)])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["size"] for r in printed["rows"]] == [64, 1472, 9000]
    with np.load(base.with_suffix(".npz"), allow_pickle=False) as data:
        assert list(data["size"]) == [64, 1472, 9000]
        assert list(data["sent"]) == [r["sent"] for r in printed["rows"]]
        assert list(data["received"]) == [r["received"] for r in printed["rows"]]
        meta = json.loads(str(data["meta"]))
    assert meta["schema"] == results.SCHEMA and meta["hosts"][0]["host"] == "127.0.0.1"
    meta2, rows = results.load(base.with_suffix(".json"))
    assert [r["goodput_bps"] for r in rows] == [r["goodput_bps"] for r in printed["rows"]]
    for row in printed["rows"]:
        assert row["received"] == row["sent"] > 0


def test_sweep_prints_a_table_and_show_prints_it_again(tmp_path, free_port):
    base = tmp_path / "t"
    done = run_cli("sweep", "127.0.0.1", "--port", str(free_port), "--sizes", "100,2000", "--duration", "0.2", "--rate", "5M",
                   "-o", str(base))
    assert done.returncode == 0, done.stderr
    assert "2000" in done.stdout and "goodput" in done.stdout
    shown = run_cli("show", str(base) + ".npz")
    assert shown.returncode == 0 and "2000" in shown.stdout


def test_blast_json_row_has_the_stable_names(free_port):
    done = run_cli("blast", "127.0.0.1", "--port", str(free_port), "--size", "200", "--duration", "0.3", "--rate", "2M", "--json")
    assert done.returncode == 0, done.stderr
    row = json.loads(done.stdout)
    for key in ("host", "port", "size", "engine", "duration_s", "sent", "send_errors", "received",
                "duplicates", "reordered", "lost", "loss_ratio", "tx_pps", "rx_pps", "goodput_bps",
                "jitter_ms"):
        assert key in row
    # 2 Mbit/s of 200-byte payloads for 0.3 s is 375 datagrams by hand; a loaded sender may send
    # fewer (it skips missed slots), never more; loopback drops none of them at this rate.
    assert 0 < row["sent"] <= 375
    assert row["received"] == row["sent"] and row["lost"] == 0 and row["loss_ratio"] == 0


@pytest.mark.parametrize("argv, words", [
    (["sweep", "127.0.0.1", "--sizes", "16"], "smaller than the 32-byte"),
    (["sweep", "127.0.0.1", "--sizes", "70000"], "largest UDP payload"),
    (["sweep", "127.0.0.1", "--sizes", "64,abc"], "not a whole number"),
    (["blast", "127.0.0.1", "--rate", "fast"], "is not bits/s"),
    (["blast", "127.0.0.1", "--rate=-5M"], "is not bits/s"),
    (["blast", "127.0.0.1", "--duration", "0"], "--duration '0' must be more than 0"),
    (["blast", "127.0.0.1", "--interval", "0"], "--interval '0' must be more than 0"),
    (["serve", "--session-grace", "nan"], "--session-grace 'nan' must be more than 0"),
    (["blast", "127.0.0.1", "--size", "8"], "smaller than the 32-byte"),
    (["blast", "127.0.0.1", "--rate", "1", "--duration", "0.5"], "less than one 1472-byte datagram"),
    (["blast", "127.0.0.1", "--rate", "100MB"], "looks like bytes/s"),
    (["blast", "no-such-host.invalid"], "cannot resolve"),
    (["blast"], "required"),
    (["frobnicate"], "invalid choice"),
    (["show", "/nonexistent.npz"], "no result file"),
    (["serve", "--port", "70000"], "--port 70000 is outside 0..65535"),
    (["ping", "127.0.0.1", "--port", "70000"], "--port 70000 is outside 1..65535"),
    (["mtu", "127.0.0.1", "--port", "0"], "--port 0 is outside 1..65535"),
    (["discover", "--port", "x"], "--port 'x' is not a whole number"),
])
def test_bad_input_is_one_line_and_exit_2(argv, words, free_port):
    if "127.0.0.1" in argv and "--port" not in argv:  # refused before measuring, or not: never a user's server
        argv = [*argv, "--port", str(free_port)]
    done = run_cli(*argv)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert words in lines[0] and "Traceback" not in done.stderr


def test_no_server_at_a_remote_host_is_one_line_naming_host_and_port(monkeypatch, capsys):
    # Nothing listens on 127.0.0.1:9; treat it as a remote host so no embedded server starts.
    from udpbench.measure import embedded
    monkeypatch.setattr(embedded, "is_loopback", lambda address: False)
    code = cli.main(["blast", "127.0.0.1", "--port", "9"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "127.0.0.1:9" in err and "udpbench serve" in err


@pytest.mark.skipif(os.environ.get("UDPBENCH_TEST_INSTALLED") != "1",
                    reason="set by .ci/run, which tests the installed package")
def test_tests_run_against_the_installed_package():
    import udpbench

    source_tree = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    assert not os.path.abspath(udpbench.__file__).startswith(source_tree + os.sep)
