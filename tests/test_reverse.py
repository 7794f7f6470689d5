"""Reverse and bidirectional runs: the server sends, the client receives; and the rules that
keep a server from being aimed at anyone else (docs/security.md, "Reverse runs")."""
from __future__ import annotations

import json
import secrets
import socket
import sys
import time

import pytest

from tests.fragment_loss import check_fragment_loss
from udpbench.cli.main import main
from udpbench.measure.blast import blast, blast_bidir
from udpbench.output import trace
from udpbench.protocol import control, wire
from udpbench.transport.server import Server

SIZE = 1000


def test_a_reverse_run_is_received_here_and_says_so(loopback_server):
    row = blast("127.0.0.1", port=loopback_server.port, size=SIZE, duration=0.4, rate=8e6, direction="reverse")
    assert row.direction == "reverse"
    assert row.received == row.sent > 0 and row.lost == 0
    # 8 Mbit/s of 1000-byte payloads for 0.4 s is 400 datagrams, paced by the server
    assert 300 <= row.sent <= 401
    assert row.owd_basis == "same-host" and row.path_mtu_source == "server"
    assert row.path_mtu > 16000  # the server's route MTU toward the client: loopback's, not a default 1500


def test_reverse_data_never_exceeds_the_grant():
    """The server's limits bind what it sends: at most 2 Mbit/s for 0.5 s whatever is asked."""
    with Server("127.0.0.1", 0, max_rate_bps=2e6, max_duration=0.5) as server:
        row = blast("127.0.0.1", port=server.port, size=SIZE, duration=3.0, rate=100e6, direction="reverse")
    assert set(row.clamped.split(",")) == {"rate_bps", "duration_s"}
    allowed = 2e6 * 0.5 / (8 * SIZE)  # 125 datagrams
    assert 0 < row.sent <= allowed + 1 and row.received <= row.sent


def test_both_directions_at_once_give_two_rows(loopback_server):
    forward, reverse = blast_bidir("127.0.0.1", port=loopback_server.port, size=SIZE, duration=0.4, rate=8e6)
    assert (forward.direction, reverse.direction) == ("forward", "reverse")
    assert forward.session != reverse.session
    for row in (forward, reverse):
        assert row.received == row.sent > 300


def test_a_server_that_forbids_reverse_says_so_in_one_line(capsys):
    with Server("127.0.0.1", 0, allow_reverse=False) as server:
        for flag in ("-R", "--bidir"):
            code = main(["blast", "127.0.0.1", "--port", str(server.port), flag, "--duration", "0.2"])
            err = capsys.readouterr().err
            assert code == 2 and len(err.strip().splitlines()) == 1 and "reverse" in err, err
        # And the server refuses it itself, whatever a client's HELLO check would do.
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        reply = _start_reverse(sock, 5000)
        assert reply["type"] == "ERROR" and "forbidden" in reply["message"]
        sock.close()


@pytest.mark.parametrize("argv, words", [
    (["--bidir", "--streams", "2"], "--bidir does not take --streams"),
    (["-R", "--df"], "-R does not take --df"),
    (["--trace", "t.npz", "--streams", "2"], "--trace covers one stream"),
    (["-R", "--trace", "/nonexistent-dir/t.npz"], "does not exist"),
])
def test_bad_combinations_are_one_line_exit_2(loopback_server, capsys, argv, words):
    code = main(["blast", "127.0.0.1", "--port", str(loopback_server.port), "--duration", "0.2", *argv])
    err = capsys.readouterr().err
    assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_sweep_refuses_bidir_in_one_line(capsys):
    code = main(["sweep", "127.0.0.1", "--bidir", "--no-save", "--sizes", "100"])
    err = capsys.readouterr().err
    assert code == 2 and "--bidir" in err and len(err.strip().splitlines()) == 1


def test_the_trace_counts_equal_the_rows(loopback_server, tmp_path):
    path = tmp_path / "r.npz"
    row = blast("127.0.0.1", port=loopback_server.port, size=SIZE, duration=0.3, rate=8e6, direction="reverse",
                trace=str(path))
    meta, t = trace.read(str(path))
    assert not meta["truncated"] and meta["sent"] == row.sent
    arrived = t["rx_ns"] > 0
    assert int((arrived & (t["duplicate"] == 0)).sum()) == row.received
    assert int((t["duplicate"] == 1).sum()) == row.duplicates
    assert int((t["rx_ns"] == 0).sum()) == row.lost
    assert sorted(set(t["seq"].tolist())) == list(range(row.sent))


def test_a_cut_trace_says_so(loopback_server, tmp_path):
    path = tmp_path / "cut.npz"
    row = blast("127.0.0.1", port=loopback_server.port, size=SIZE, duration=0.3, rate=8e6, direction="reverse",
                trace=str(path), trace_limit=50)
    meta, t = trace.read(str(path))
    assert meta["truncated"] and meta["cut"] == row.received - 50 and len(t["seq"]) == 50


# --- no amplification --------------------------------------------------------------------------

def _start_reverse(sock, client_port: int, session: int | None = None) -> dict:
    from tests.conftest import RawControl
    sock.sendall(control.encode({"type": "HELLO", "version": control.PROTOCOL_VERSION}))
    RawControl.read_frame(sock)
    sock.sendall(control.encode({"type": "START", "session": session or secrets.randbits(64), "mode": "blast",
                                 "direction": "reverse", "size": SIZE, "duration_s": 0.5, "rate_bps": 8e6,
                                 "client_port": client_port}))
    return RawControl.read_frame(sock)


def _udp(address: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    s.settimeout(0.05)
    return s


def _arrivals(sock: socket.socket, seconds: float) -> int:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            sock.recv(65536)
            n += 1
        except (TimeoutError, socket.timeout):
            pass
    return n


def _report(sock, session: int) -> dict:
    from tests.conftest import RawControl
    sock.sendall(control.encode({"type": "STOP", "session": session}))
    return RawControl.read_frame(sock)


def test_nothing_is_sent_to_a_port_that_never_answered_the_nonce(loopback_server):
    """A START naming a port, then silence, a wrong nonce and the right nonce from another port:
    the named port receives nothing, and the REPORT says the proof never came."""
    target, other = _udp("127.0.0.1"), _udp("127.0.0.1")
    control_sock = socket.create_connection(("127.0.0.1", loopback_server.port), timeout=5)
    session = secrets.randbits(64)
    started = _start_reverse(control_sock, target.getsockname()[1], session)
    assert started["type"] == "STARTED"
    nonce = bytes.fromhex(started["nonce"])
    server = ("127.0.0.1", loopback_server.port)
    target.sendto(wire.nonce_datagram(session, bytes(wire.NONCE_BYTES)), server)  # wrong nonce
    other.sendto(wire.nonce_datagram(session, nonce), server)  # right nonce, another port
    target.sendto(wire.nonce_datagram(session ^ 1, nonce), server)  # right nonce, another session
    assert _arrivals(target, 0.6) == 0 and _arrivals(other, 0.05) == 0
    report = _report(control_sock, session)
    assert report["proved"] is False and "tx" not in report
    control_sock.close()


def test_a_control_peer_cannot_aim_the_server_at_another_address(loopback_server):
    """The victim listens on 127.0.0.2; the control peer is 127.0.0.1 and names the victim's
    port, then sends the nonce from the victim's address (which it can send from, as a spoofer
    could, but not receive at). The server sends only to its control peer's own address, so
    the victim gets nothing; the peer's own socket on that port gets what it proved for."""
    try:
        victim = _udp("127.0.0.2")
    except OSError:
        pytest.skip("127.0.0.2 cannot be bound here")
    port = victim.getsockname()[1]
    control_sock = socket.create_connection(("127.0.0.1", loopback_server.port), timeout=5)
    session = secrets.randbits(64)
    started = _start_reverse(control_sock, port, session)
    victim.sendto(wire.nonce_datagram(session, bytes.fromhex(started["nonce"])), ("127.0.0.1", loopback_server.port))
    assert _arrivals(victim, 0.6) == 0
    report = _report(control_sock, session)
    assert report["proved"] is False and "tx" not in report
    control_sock.close()


def test_a_proved_port_gets_no_more_than_the_grant(loopback_server):
    """The honest case through raw frames: the nonce from the named port starts the sending,
    and what arrives is the granted 0.5 s at 8 Mbit/s at most."""
    mine = _udp("127.0.0.1")
    control_sock = socket.create_connection(("127.0.0.1", loopback_server.port), timeout=5)
    session = secrets.randbits(64)
    started = _start_reverse(control_sock, mine.getsockname()[1], session)
    mine.sendto(wire.nonce_datagram(session, bytes.fromhex(started["nonce"])), ("127.0.0.1", loopback_server.port))
    got = _arrivals(mine, 1.2)
    report = _report(control_sock, session)
    assert report["proved"] is True
    assert 0 < got == report["tx"]["sent"] <= 8e6 * 0.5 / (8 * SIZE) + 1
    control_sock.close()


# --- the lab ---------------------------------------------------------------------------------

PER_PACKET_LOSS = 0.02
MTU = 1400


@pytest.mark.lab
def test_reverse_loss_through_a_lossy_link_follows_the_law_on_the_clients_side(make_lab):
    """The server's link carries MTU 1400, so its kernel sends k fragments a datagram; the
    router drops 2% of packets toward the client. Loss is 1-(1-p)^k and lands on the client's
    side: the network (or reassembly), never the client's socket."""
    lab = make_lab(mtu=MTU, links={"client": {"mtu": 1500, "loss": 100 * PER_PACKET_LOSS}})
    lab.run("client", ["sh", "-c", "echo 3145728 > /proc/sys/net/ipv4/ipfrag_low_thresh && "
                                   "echo 268435456 > /proc/sys/net/ipv4/ipfrag_high_thresh"], check=True, timeout=10)
    address = lab.address("server")
    sizes = [1000, 4000, 16000]
    with lab.serving():
        done = lab.run("client", [sys.executable, "-m", "udpbench", "sweep", address, "-R", "--sizes",
                                  ",".join(map(str, sizes)), "--duration", "1.5", "--rate", "60M",
                                  "--json", "--no-save"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    for row in rows:
        assert row["direction"] == "reverse" and row["path_mtu"] == MTU
        check_fragment_loss(row, PER_PACKET_LOSS, MTU)
