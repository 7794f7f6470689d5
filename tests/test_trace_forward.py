"""Forward traces: the server keeps the trace, the client fetches it after REPORT (issue 12)."""
import json

import pytest

from tests.conftest import RawControl
from udpbench.cli.main import main
from udpbench.errors import MeasurementError
from udpbench.measure.blast import blast
from udpbench.output import trace
from udpbench.protocol import conversation, grant
from udpbench.transport.client import Client

SIZE = 200


def _counted(path):
    meta, t = trace.read(str(path))
    arrived = t["rx_ns"] > 0
    return meta, t, {"received": int((arrived & (t["duplicate"] == 0)).sum()),
                     "duplicates": int((t["duplicate"] == 1).sum()), "lost": int((~arrived).sum())}


def test_a_forward_trace_from_the_command_line_counts_what_the_row_counts(loopback_server, tmp_path, capsys):
    path = tmp_path / "trace.npz"
    code = main(["blast", "127.0.0.1", "--port", str(loopback_server.port), "--size", str(SIZE),
                 "--duration", "0.3", "--rate", "8M", "--trace", str(path), "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    row = json.loads(out)
    meta, t, counts = _counted(path)
    slots = 1500  # 8 Mbit/s of 200 B for 0.3 s
    assert not meta["truncated"] and meta["sent"] == row["sent"] <= slots
    # A loaded machine may take slots from the paced sender: never more than it measured itself late.
    assert slots - row["sent"] <= row["late_max_us"] * 1e-6 * slots / 0.3 + 1, row
    assert counts == {"received": row["received"], "duplicates": row["duplicates"], "lost": row["lost"]}
    # every sequence number once as a first copy or as a loss
    assert sorted(t["seq"][t["duplicate"] == 0].tolist()) == list(range(row["sent"]))
    firsts = (t["rx_ns"] > 0) & (t["duplicate"] == 0)
    assert (t["rx_ns"][firsts] >= t["tx_ns"][firsts]).all()  # one host, one clock
    assert loopback_server.internal_errors == 0


def test_a_limit_smaller_than_the_run_marks_the_file_cut(loopback_server, tmp_path):
    path = tmp_path / "cut.npz"
    # 1500 datagrams through a trace of 1200: the fetch takes two chunks (1000 + 200).
    row = blast("127.0.0.1", port=loopback_server.port, size=SIZE, duration=0.3, rate=8e6, trace=str(path),
                trace_limit=1200)
    meta, t = trace.read(str(path))
    assert meta["truncated"] and meta["limit"] == 1200 and len(t["seq"]) == 1200
    assert meta["cut"] == row.received + row.duplicates - 1200
    assert t["seq"].tolist() == sorted(t["seq"].tolist()) and (t["rx_ns"] > 0).all()


def test_the_server_caps_the_trace_it_keeps(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        flow = client.start_blast(SIZE, 0.1, 1e6, trace_limit=10**9)
        flow.finish()
        assert flow.started["trace_limit"] == grant.MAX_TRACE_DATAGRAMS


def _hello(sock):
    sock.sendall(_frame({"type": "HELLO", "version": 1}))
    return RawControl.read_frame(sock)


def _frame(msg):
    body = json.dumps(msg).encode()
    return len(body).to_bytes(4, "big") + body


def test_a_trace_asked_for_before_any_run_is_a_protocol_error(loopback_server):
    sock = RawControl.connect(loopback_server)
    assert "trace" in _hello(sock)["features"]
    sock.sendall(_frame({"type": "TRACE", "session": 7, "offset": 0}))
    RawControl.assert_error_then_close(sock, "no session whose trace")
    assert loopback_server.internal_errors == 0
    RawControl.assert_still_serving(loopback_server)


def test_a_trace_asked_for_while_running_is_out_of_order(loopback_server):
    sock = RawControl.connect(loopback_server)
    _hello(sock)
    sock.sendall(_frame({"type": "START", "session": 9, "mode": "blast", "size": SIZE, "duration_s": 1,
                         "rate_bps": 1e6, "client_port": 40000, "trace_limit": 10}))
    assert RawControl.read_frame(sock)["trace_limit"] == 10
    sock.sendall(_frame({"type": "TRACE", "session": 9, "offset": 0}))
    RawControl.assert_error_then_close(sock, "TRACE is out of order")
    assert loopback_server.internal_errors == 0


def test_a_trace_is_kept_only_until_the_next_start(loopback_server):
    with Client("127.0.0.1", loopback_server.port) as client:
        flow = client.start_blast(SIZE, 0.1, 1e6, trace_limit=100)
        flow.send()
        row = flow.finish()
        kept = client._converse({"type": "TRACE", "session": flow.session, "offset": 0}, "TRACE_DATA")
        # 625 datagrams/s for 0.1 s: one every 1.6 ms from 0 to 99.2 ms
        assert kept["count"] == row.received == 63
        with pytest.raises(MeasurementError, match="outside the kept trace"):
            client._converse({"type": "TRACE", "session": flow.session, "offset": 64}, "TRACE_DATA")
    with Client("127.0.0.1", loopback_server.port) as client:
        flow = client.start_blast(SIZE, 0.1, 1e6, trace_limit=100)
        flow.finish()
        client.blast(SIZE, 0.1, 1e6)  # the next START frees the first session's trace
        with pytest.raises(MeasurementError, match="no session whose trace"):
            client._converse({"type": "TRACE", "session": flow.session, "offset": 0}, "TRACE_DATA")
    assert loopback_server.internal_errors == 0


def test_a_server_without_forward_traces_is_refused_in_one_line(loopback_server, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(conversation, "FEATURE_TRACE", "something-else")  # as an older server's HELLO
    code = main(["blast", "127.0.0.1", "--port", str(loopback_server.port), "--duration", "0.2",
                 "--trace", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert code == 2 and "does not return forward traces" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.npz").exists()
