"""`sweep [-R] --trace DIR_OR_PREFIX`: one trace file per row, named by host, size and direction."""
import json

import pytest

from udpbench.cli.main import main
from udpbench.output import trace

SIZES = (500, 1000)


def _sweep(server, target, capsys, *extra, direction=("-R",)):
    code = main(["sweep", "127.0.0.1", "--port", str(server.port), *direction, "--sizes", ",".join(map(str, SIZES)),
                 "--duration", "0.3", "--rate", "4M", "--no-save", "--json", "--trace", str(target), *extra])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)["rows"]


@pytest.mark.parametrize("form", ["directory", "prefix"])
def test_each_row_gets_its_own_trace_whose_counts_are_the_rows(loopback_server, tmp_path, capsys, form):
    target, expected = ((tmp_path, "{}/127.0.0.1-{}B-reverse.npz") if form == "directory"
                        else (tmp_path / "run", "{}/run-127.0.0.1-{}B-reverse.npz"))
    rows = _sweep(loopback_server, target, capsys)
    assert [r["size"] for r in rows] == list(SIZES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        expected.format(tmp_path, size).rsplit("/", 1)[1] for size in SIZES)
    for row in rows:
        assert row["trace"] == expected.format(tmp_path, row["size"])
        meta, columns = trace.read(row["trace"])
        arrived = (columns["rx_ns"] > 0) & (columns["duplicate"] == 0)
        # 4 Mbit/s for 0.3 s: 300 datagrams of 500 bytes, 150 of 1000, each row's own
        assert meta["sent"] == row["sent"] and 0.8 * 150_000 / row["size"] <= row["sent"] <= 150_000 / row["size"] + 1
        assert int(arrived.sum()) == row["received"]
        assert int((columns["rx_ns"] == 0).sum()) == row["lost"]


def test_a_trace_limit_cuts_every_rows_file(loopback_server, tmp_path, capsys):
    rows = _sweep(loopback_server, tmp_path, capsys, "--trace-limit", "50")
    for row in rows:
        meta, columns = trace.read(row["trace"])
        assert meta["truncated"] is True and len(columns["seq"]) == 50
        assert meta["cut"] == row["received"] - 50


@pytest.mark.parametrize("argv, words", [
    (["-R", "--trace", "{tmp}/missing/"], "does not exist"),
    (["-R", "--trace", "{tmp}/missing/run"], "does not exist"),
    (["--trace", "{tmp}/run", "--streams", "2"], "one stream"),
])
def test_a_trace_nobody_can_write_is_one_line_exit_2(loopback_server, tmp_path, capsys, argv, words):
    argv = [a.format(tmp=tmp_path) for a in argv]
    code = main(["sweep", "127.0.0.1", "--port", str(loopback_server.port), "--sizes", "500",
                 "--duration", "0.2", "--no-save", *argv])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, err
    assert not any(tmp_path.iterdir())  # refused before measuring: nothing written


def test_a_forward_sweep_traces_each_row_through_its_server(loopback_server, tmp_path, capsys):
    """Forward rows: the server keeps each row's trace and the client fetches it after the REPORT."""
    rows = _sweep(loopback_server, tmp_path, capsys, direction=())
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"127.0.0.1-{size}B-forward.npz" for size in SIZES)
    for row in rows:
        meta, columns = trace.read(row["trace"])
        arrived = (columns["rx_ns"] > 0) & (columns["duplicate"] == 0)
        assert meta["sent"] == row["sent"] > 0
        assert int(arrived.sum()) == row["received"]
        assert int((columns["rx_ns"] == 0).sum()) == row["lost"]
