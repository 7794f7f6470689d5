"""Hardening: token authentication, server limits, no amplification or reflection, safe loading.

Everything here runs an in-process server on loopback; the subprocess fault tests are in
test_faults.py, the fuzzing and the flood in test_fuzz.py.
"""
from __future__ import annotations

import json
import os
import pickle
import secrets
import shlex
import socket
import time
import zipfile

import numpy as np
import pytest

from udpbench import cli
from udpbench.protocol import control
from udpbench.transport.channel import Channel
from udpbench.output import results
from udpbench.cli.options import redact
from udpbench.measure.sweep import sweep
from udpbench.protocol import wire
from udpbench.transport.client import Client
from udpbench.errors import MeasurementError, UserError
from udpbench.transport.server import Server

TOKEN = "correct horse battery staple"


@pytest.fixture
def make_server():
    servers = []

    def make(**kwargs):
        kwargs.setdefault("bind", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = Server(**kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def no_token_in_environment(monkeypatch):
    monkeypatch.delenv(control.TOKEN_ENV, raising=False)



class RawControl:
    """A hand-driven control connection: frames in and out, no client logic."""

    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=5)
        self.channel = Channel(self.sock, timeout=5)

    def send(self, msg):
        self.channel.send(msg)

    def recv(self):
        return self.channel.recv()

    def hello(self):
        self.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
        return self.channel.expect("HELLO")

    def close(self):
        self.channel.close()


# --- authentication ------------------------------------------------------------------------

def test_token_server_refuses_a_client_without_token(make_server, wait_for):
    server = make_server(token=TOKEN)
    with pytest.raises(UserError, match="server requires a token"):
        Client("127.0.0.1", server.port, token="")
    assert wait_for(lambda: server.refused == 1)
    assert wait_for(lambda: server.active_sessions == 0)


def test_wrong_token_is_refused_on_both_ends(make_server, capsys, wait_for):
    import sys

    server = make_server(token=TOKEN, log=sys.stderr)
    with pytest.raises(UserError, match="authentication failed"):
        Client("127.0.0.1", server.port, token="not the token")
    assert wait_for(lambda: server.refused == 1)
    assert "refused 127.0.0.1: authentication failed" in capsys.readouterr().err


def test_right_token_authenticates_and_measures_exactly(make_server):
    server = make_server(token=TOKEN)
    with Client("127.0.0.1", server.port, token=TOKEN) as client:
        assert client.authenticated
        row = client.blast(500, 0.2, 8e6)
    assert row["authenticated"] is True
    assert row["sent"] > 0 and row["received"] == row["sent"]


def test_token_comes_from_the_environment(make_server, monkeypatch):
    server = make_server(token=TOKEN)
    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    with Client("127.0.0.1", server.port) as client:
        assert client.authenticated


def test_token_file_is_read_and_an_empty_one_refused(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    assert control.resolve_token(None, str(path)) == TOKEN
    path.write_text("\n")
    with pytest.raises(UserError, match="empty"):
        control.resolve_token(None, str(path))
    with pytest.raises(UserError, match="cannot read token file"):
        control.resolve_token(None, str(tmp_path / "missing"))


def test_token_never_crosses_the_network(make_server, monkeypatch):
    frames = []
    real_encode = control.encode
    monkeypatch.setattr(control, "encode", lambda msg: frames.append(real_encode(msg)) or frames[-1])
    server = make_server(token=TOKEN)
    with Client("127.0.0.1", server.port, token=TOKEN) as client:
        client.blast(200, 0.05, 1e6)
    assert any(b'"AUTH"' in f for f in frames) and any(b'"AUTH_OK"' in f for f in frames)
    wire_bytes = b"".join(frames)
    for form in (TOKEN.encode(), TOKEN.encode().hex().encode(), json.dumps(TOKEN).encode()):
        assert form not in wire_bytes


def test_recorded_auth_is_useless_on_another_connection(make_server):
    server = make_server(token=TOKEN)
    first = RawControl(server.port)
    nonce1 = first.hello()["nonce"]
    client_nonce = control.new_nonce()
    recorded = {"type": "AUTH", "nonce": client_nonce,
                "mac": control.auth_mac(TOKEN, "client", nonce1, client_nonce)}
    first.send(recorded)
    assert first.channel.expect("AUTH_OK")
    first.close()

    second = RawControl(server.port)
    assert second.hello()["nonce"] != nonce1
    second.send(recorded)  # a replay: right token, wrong server nonce
    with pytest.raises(control.PeerError, match="authentication failed"):
        second.recv()
    second.close()


def test_server_proof_is_not_the_client_proof_reflected():
    s, c = control.new_nonce(), control.new_nonce()
    assert control.auth_mac(TOKEN, "client", s, c) != control.auth_mac(TOKEN, "server", s, c)
    assert control.check_mac(TOKEN, "server", s, c, control.auth_mac(TOKEN, "server", s, c))
    assert not control.check_mac(TOKEN, "server", s, c, control.auth_mac(TOKEN, "client", s, c))


@pytest.mark.parametrize("first", [
    {"type": "START", "session": 1, "mode": "echo"},
    {"type": "START", "session": 1, "mode": "blast", "size": 100, "duration_s": 1, "rate_bps": 0,
     "client_port": 9},
    {"type": "STOP", "session": 1},
    {"type": "HELLO", "version": 1},
])
def test_nothing_but_auth_is_accepted_before_authentication(make_server, first, wait_for):
    server = make_server(token=TOKEN)
    raw = RawControl(server.port)
    raw.hello()
    raw.send(first)
    with pytest.raises(control.PeerError, match="server requires a token"):
        raw.recv()
    raw.close()
    assert wait_for(lambda: server.active_sessions == 0)
    assert not server.echo_sessions


def test_client_refuses_a_server_that_cannot_prove_the_token():
    """A fake server that asks for a token and answers AUTH_OK with a made-up proof."""
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def fake():
        conn, _ = listener.accept()
        ch = Channel(conn, timeout=5)
        ch.expect("HELLO")
        ch.send({"type": "HELLO", "version": 1, "nonce": control.new_nonce(), "auth": control.AUTH_METHOD})
        ch.expect("AUTH")
        ch.send({"type": "AUTH_OK", "mac": "00" * 32})
        try:
            ch.recv(timeout=2)
        except Exception:
            pass
        ch.close()

    t = threading.Thread(target=fake, daemon=True)
    t.start()
    try:
        with pytest.raises(MeasurementError, match="could not prove"):
            Client("127.0.0.1", port, token=TOKEN)
    finally:
        t.join(5)
        listener.close()


def test_client_with_token_and_server_without_goes_on_and_says_so(make_server, capsys):
    server = make_server()
    notices = []
    with Client("127.0.0.1", server.port, token=TOKEN, on_notice=notices.append) as client:
        assert not client.authenticated
        row = client.blast(100, 0.05, 1e6)
    assert row["authenticated"] is False
    assert len(notices) == 1 and "does not require a token" in notices[0]
    assert capsys.readouterr().err == ""  # the library says it through on_notice, never on stderr


def test_embedded_server_shares_the_clients_token(monkeypatch):
    from udpbench.measure.embedded import connect

    monkeypatch.setenv(control.TOKEN_ENV, TOKEN)
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    with connect("127.0.0.1", port) as client:
        assert client.authenticated


def test_result_files_never_hold_the_token(tmp_path, monkeypatch):
    monkeypatch.setenv(control.TOKEN_ENV, "")
    argv = ["sweep", "127.0.0.1", "--sizes", "100", "--token", TOKEN, "--token=" + TOKEN]
    done = sweep(["127.0.0.1"], sizes=[100], duration=0.05, rate=1e6, engine="send", port=_free_port(),
                 output=tmp_path / "r", command=shlex.join(["udpbench", *redact(argv)]), token=TOKEN)
    meta, rows, saved = done.meta, done.rows, done.path
    assert rows[0]["authenticated"] is True
    assert "***" in meta["command"]
    for path in (saved, saved.with_suffix(".json")):
        assert TOKEN.encode() not in path.read_bytes()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- limits -------------------------------------------------------------------------------

def test_server_clamps_duration_and_rate_and_the_row_records_it(make_server):
    server = make_server(max_duration=0.3, max_rate_bps=8e6)
    err = []
    with Client("127.0.0.1", server.port, on_notice=err.append) as client:
        row = client.blast(1000, 5.0, None)  # asks 5 s as fast as possible
    assert row["duration_requested_s"] == 5.0 and row["duration_granted_s"] == 0.3
    assert row["rate_requested_bps"] == 0.0 and row["rate_target_bps"] == 8e6
    assert set(row["clamped"].split(",")) == {"duration_s", "rate_bps"}
    assert row["duration_s"] < 2.0  # the client sent for the granted time, not the asked one
    assert row["sent"] <= 8e6 * 0.3 / 8000 * 1.5 + 10
    assert row["received"] == row["sent"]
    assert any("clamped the duration to 0.3 s (asked 5 s)" in line for line in err)
    assert any("clamped the rate to 8 Mbit/s (asked max)" in line for line in err)


def test_within_limits_nothing_is_clamped(make_server):
    server = make_server(max_duration=10, max_rate_bps=1e9)
    with Client("127.0.0.1", server.port) as client:
        row = client.blast(200, 0.1, 2e6)
    assert row["clamped"] == ""
    assert row["rate_target_bps"] == 2e6 and row["duration_granted_s"] == 0.1


def test_client_never_uses_more_than_it_asked():
    client = Client.__new__(Client)  # only the grant logic: no connection needed
    client._noticed = set()
    client.server_addr, client.port = ("127.0.0.1", 1), 1
    generous = {"granted": {"duration_s": 100.0, "rate_bps": 1e12}, "clamped": []}
    assert client._granted(generous, 1.0, 1e6) == (1.0, 1e6, [])
    nonsense = {"granted": {"duration_s": "x", "rate_bps": -5}}
    assert client._granted(nonsense, 1.0, 0.0) == (1.0, 0.0, [])
    assert client._granted({}, 2.0, 5.0) == (2.0, 5.0, [])


@pytest.mark.parametrize("start, reason", [
    ({"size": 100, "duration_s": -1, "rate_bps": 0}, "not a positive number"),
    ({"size": 100, "duration_s": float("nan"), "rate_bps": 0}, "not a positive number"),
    ({"size": 100, "duration_s": 10 ** 400, "rate_bps": 0}, "out of range"),
    ({"size": 100, "duration_s": 1, "rate_bps": -1}, "not 0"),
    ({"size": 10, "duration_s": 1, "rate_bps": 0}, "smaller than the 32-byte"),
    ({"size": 70000, "duration_s": 1, "rate_bps": 0}, "exceeds the largest UDP payload"),
    ({"size": 100, "duration_s": 1, "rate_bps": 0, "client_port": 0}, "client_port"),
    ({"size": 100, "duration_s": 1, "rate_bps": 0, "client_port": 70000}, "client_port"),
])
def test_nonsense_start_is_refused_and_the_server_goes_on(make_server, start, reason):
    server = make_server()
    raw = RawControl(server.port)
    raw.hello()
    msg = {"type": "START", "session": 7, "mode": "blast", "client_port": 9, **start}
    raw.channel.sock.sendall(control.LENGTH.pack(len(p := json.dumps(msg).encode())) + p)
    with pytest.raises(control.PeerError, match=reason):
        raw.recv()
    raw.close()
    with Client("127.0.0.1", server.port) as client:
        row = client.blast(100, 0.05, 1e6)
    assert row["received"] == row["sent"] > 0
    assert server.internal_errors == 0


def test_max_sessions_refuses_the_next_client_until_one_leaves(make_server, wait_for):
    server = make_server(max_sessions=1)
    first = Client("127.0.0.1", server.port)
    with pytest.raises(MeasurementError, match="server busy: 1 sessions in progress"):
        Client("127.0.0.1", server.port)
    first.close()
    assert wait_for(lambda: server.active_sessions == 0)
    with Client("127.0.0.1", server.port) as second:
        assert second.blast(100, 0.05, 1e6)["received"] > 0


@pytest.mark.parametrize("kwargs", [{"max_sessions": 0}, {"max_duration": 0}, {"max_rate_bps": -1},
                                    {"session_grace": float("inf")}])
def test_nonsense_server_limits_are_user_errors(kwargs):
    with pytest.raises(UserError):
        Server("127.0.0.1", 0, **kwargs)


def test_serve_limits_on_the_command_line_are_checked(capsys):
    assert cli.main(["serve", "--bind", "127.0.0.1", "--port", "0", "--max-sessions", "0"]) == 2
    assert cli.main(["serve", "--bind", "127.0.0.1", "--port", "0", "--max-rate", "fast"]) == 2
    assert cli.main(["serve", "--bind", "127.0.0.1", "--port", "0", "--max-duration", "-3"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3 and all(line.startswith("udpbench: ") for line in err)


# --- no amplification, no reflection --------------------------------------------------------

REQUEST_SIZES = (0, 1, 16, 31, 32, 33, 43, 44, 45, 64, 200, 1472, 9000)


def _requests(sessions):
    """(datagram, id) for every kind x session x size, each with a unique sequence number."""
    out, seq = [], 1
    for kind in list(wire.Kind) + [0, 99, 255]:
        for session in sessions:
            for size in REQUEST_SIZES:
                if size >= wire.HEADER_SIZE:
                    data = wire.HEADER.pack(wire.MAGIC, wire.VERSION, int(kind), 0, session, seq, 0)
                    data += bytes(size - len(data))
                else:
                    data = secrets.token_bytes(size)
                out.append((data, seq))
                seq += 1
    for size in (32, 100, 1500):  # wrong magic and wrong version
        out.append((b"\0" * size, seq))
        seq += 1
        out.append((wire.HEADER.pack(wire.MAGIC, 99, int(wire.Kind.ECHO), 0, 1, seq, 0) + bytes(size - 32), seq))
        seq += 1
    return out


_ECHO_PREFIX = wire.pack(wire.Kind.ECHO, 0, 0)[:6]  # magic, version, kind


def _collect(sock, quiet=0.3, limit=5.0):
    replies, start, last = [], time.monotonic(), time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - last < quiet and time.monotonic() - start < limit:
        try:
            replies.append(sock.recv(65536))
            last = time.monotonic()
        except (socket.timeout, ConnectionRefusedError):
            pass
    return replies


def test_every_reply_is_no_larger_than_its_request(make_server):
    server = make_server()
    live = secrets.randbits(64)
    with Client("127.0.0.1", server.port) as client:
        client.open_echo(live)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.1", server.port))
            requests = _requests([live, live ^ 1, 0])
            sizes = {seq: len(data) for data, seq in requests}
            for i, (data, _) in enumerate(requests):
                sock.send(data)
                if i % 8 == 7:
                    time.sleep(0.003)  # paced: the server's shared socket keeps a default-sized queue
            replies = _collect(sock)
    answered = set()
    for reply in replies:
        header = wire.parse(reply)  # every reply is a well-formed udpbench datagram ...
        assert header.seq in sizes, "a reply to nothing that was asked"
        assert len(reply) <= sizes[header.seq], f"{header.kind.name} reply larger than its request"
        if header.kind in (wire.Kind.PROBE_ACK, wire.Kind.ECHO_REPLY):
            assert header.session == live  # ... and only a live session's probes and echoes are answered
        answered.add(header.seq)
    # the live session's echoes were answered: the test can fail
    echo_seqs = {seq for data, seq in requests if len(data) >= 32 and data[:6] == _ECHO_PREFIX
                 and wire.HEADER.unpack_from(data)[4] == live}
    # (most, not all: a loaded machine may drop some at the server's queue, which is no failure here)
    assert echo_seqs and len(echo_seqs & answered) >= len(echo_seqs) // 2


def test_echo_is_not_reflected_to_another_address(make_server, wait_for):
    """A spoofer sending a live session's echo from another address gets nothing, nor does its victim."""
    server = make_server(bind="0.0.0.0")
    live = secrets.randbits(64)
    with Client("127.0.0.1", server.port) as client:
        client.open_echo(live)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.2", 0))  # all of 127/8 is this machine: a second source address
            other.connect(("127.0.0.1", server.port))
            foreign_before = server.foreign
            for seq in range(20):
                other.send(wire.datagram(wire.Kind.ECHO, live, seq, 200))
                other.send(wire.datagram(wire.Kind.PROBE, live, seq, 200))
            assert _collect(other) == []
            assert wait_for(lambda: server.foreign >= foreign_before + 40)
        # the same session from its owner is answered: the refusal above is about the address
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as own:
            own.bind(("127.0.0.1", 0))
            own.connect(("127.0.0.1", server.port))
            own.send(wire.datagram(wire.Kind.ECHO, live, 1, 200))
            assert len(_collect(own)) == 1


def test_nothing_is_answered_after_the_echo_session_stops(make_server):
    server = make_server()
    live = secrets.randbits(64)
    with Client("127.0.0.1", server.port) as client:
        client.open_echo(live)
        client.close_echo(live)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.connect(("127.0.0.1", server.port))
            for seq in range(10):
                sock.send(wire.datagram(wire.Kind.ECHO, live, seq, 100))
            assert _collect(sock) == []


def test_a_session_id_cannot_be_taken_over(make_server):
    server = make_server()
    live = secrets.randbits(64)
    with Client("127.0.0.1", server.port) as a, Client("127.0.0.1", server.port) as b:
        a.channel.send({"type": "START", "session": live, "mode": "echo"})
        a.channel.expect("STARTED")
        b.channel.send({"type": "START", "session": live, "mode": "echo"})
        with pytest.raises(control.PeerError, match="already in use"):
            b.channel.recv()
        assert live in server.echo_sessions


def test_a_blast_session_answers_nothing(make_server):
    """The per-session socket is connected to the client's data port and never sends."""
    server = make_server()
    with Client("127.0.0.1", server.port) as client:
        with client.data_socket() as sock:
            session = secrets.randbits(64)
            client.channel.send({"type": "START", "session": session, "mode": "blast", "size": 100,
                                 "duration_s": 1.0, "rate_bps": 0, "client_port": sock.getsockname()[1]})
            client.channel.expect("STARTED")
            for kind in (wire.Kind.PROBE, wire.Kind.ECHO, wire.Kind.DATA, wire.Kind.DISCOVER):
                for seq in range(5):
                    sock.send(wire.datagram(kind, session, seq, 100))
            assert _collect(sock) == []
            client.channel.send({"type": "STOP", "session": session})
            report = client.channel.expect("REPORT")
    assert report["received"] == 5 and report["foreign"] == 15


# --- result files ---------------------------------------------------------------------------

@pytest.fixture
def good_result(tmp_path):
    row = {"host": "127.0.0.1", "size": 100, "sent": 10, "received": 10, "lost": 0, "loss_ratio": 0.0,
           "engine": "send", "errors": {"EAGAIN": 1}}
    meta = {"hosts": [{"host": "127.0.0.1", "path_mtu": 65536}]}
    npz, js = results.save(tmp_path / "good", meta, [row, dict(row, size=200)])
    return npz, js


def show(path, capsys):
    code = cli.main(["show", str(path)])
    err = capsys.readouterr().err
    return code, err


def assert_refused(path, capsys, needle="not a udpbench result file"):
    code, err = show(path, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("udpbench: ") and "Traceback" not in err
    assert needle in err
    return err


def test_a_good_file_loads_both_ways(good_result, capsys):
    for path in good_result:
        meta, rows = results.load(path)
        assert [r["size"] for r in rows] == [100, 200] and rows[0]["errors"] == {"EAGAIN": 1}
        assert show(path, capsys)[0] == 0


class _Trap:
    """Unpickling this creates a marker file: the proof that a loader unpickled."""

    marker = None

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_an_object_array_is_refused_and_never_unpickled(tmp_path, capsys):
    marker = tmp_path / "unpickled"
    _Trap.marker = str(marker)
    meta = json.dumps({"schema": results.SCHEMA, "schema_version": 1, "rows": 1})
    path = tmp_path / "evil.npz"
    trap = np.empty(1, dtype=object)
    trap[0] = _Trap()
    np.savez(path, meta=np.array(meta), host=trap)
    assert b"unpickled" in path.read_bytes()  # the file really holds the pickle
    err = assert_refused(path, capsys, needle="pickled (object) array")
    assert "never unpickles" in err
    assert not marker.exists()
    # a pickled meta, and a bare pickle named .npz, are refused too
    evil_meta = np.empty((), dtype=object)
    evil_meta[()] = _Trap()
    np.savez(tmp_path / "evil2.npz", meta=evil_meta)
    assert_refused(tmp_path / "evil2.npz", capsys, needle="pickled")
    (tmp_path / "evil3.npz").write_bytes(pickle.dumps(_Trap()))
    assert_refused(tmp_path / "evil3.npz", capsys)
    assert not marker.exists()


def test_truncated_files_are_refused_in_one_line(good_result, tmp_path, capsys):
    for path in good_result:
        data = path.read_bytes()
        for cut in (0, 10, len(data) // 2, len(data) - 2):  # -2: the .json ends in a newline
            broken = tmp_path / f"cut{cut}{path.suffix}"
            broken.write_bytes(data[:cut])
            assert_refused(broken, capsys)


@pytest.mark.parametrize("suffix", [".npz", ".json", ".bin", ""])
def test_random_binary_is_refused(tmp_path, capsys, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(secrets.token_bytes(4096))
    assert_refused(path, capsys)


def test_npz_without_udpbench_meta_is_refused(tmp_path, capsys):
    np.savez(tmp_path / "plain.npz", x=np.arange(3))
    assert_refused(tmp_path / "plain.npz", capsys, needle="no 'meta' array")
    np.savez(tmp_path / "other.npz", meta=np.array(json.dumps({"schema": "someone.else"})))
    assert_refused(tmp_path / "other.npz", capsys, needle="schema")
    np.save(tmp_path / "single.npy", np.arange(3))
    assert_refused(tmp_path / "single.npy", capsys)


def test_npz_whose_meta_lies_is_refused(good_result, tmp_path, capsys):
    meta = json.loads(str(np.load(good_result[0])["meta"]))
    for lie in ({"rows": 10 ** 12}, {"rows": "two"}, {"json_columns": ["host"]}, {"schema_version": "1"},
                {"schema_version": 99}, {"hosts": "127.0.0.1"}):
        with np.load(good_result[0]) as data:
            arrays = {k: data[k] for k in data.files}
        arrays["meta"] = np.array(json.dumps(dict(meta, **lie)))
        path = tmp_path / "lie.npz"
        np.savez(path, **arrays)
        code, err = show(path, capsys)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (lie, err)


def test_zip_bomb_claims_are_refused_before_reading(tmp_path, capsys):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("meta.npy", "w", force_zip64=True) as f:
            chunk = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros, a few hundred KiB on disk
                f.write(chunk)
    assert path.stat().st_size < 2 << 20
    assert_refused(path, capsys, needle="MiB")


@pytest.mark.parametrize("document", [
    [1, 2, 3],
    "just a string",
    {"meta": {"schema": "udpbench.sweep"}},
    {"meta": {"schema": "udpbench.sweep", "schema_version": 1}, "rows": 5},
    {"meta": {"schema": "udpbench.sweep", "schema_version": 1}, "rows": [1, 2]},
    {"meta": {"schema": "udpbench.sweep", "schema_version": 1}, "rows": [{"sent": "many"}]},
    {"meta": {"schema": "udpbench.sweep", "schema_version": 1}, "rows": [{"host": ["a"]}]},
    {"meta": {"schema": "udpbench.sweep", "schema_version": 1, "hosts": [{"host": 1}]}, "rows": []},
    {"meta": "udpbench.sweep", "rows": []},
])
def test_json_of_another_shape_is_refused(tmp_path, capsys, document):
    path = tmp_path / "other.json"
    path.write_text(json.dumps(document))
    assert_refused(path, capsys, needle=str(path))


def test_deeply_nested_json_is_refused(tmp_path, capsys):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100000 + "]" * 100000)
    assert_refused(path, capsys)


def test_show_refuses_a_directory_and_a_missing_file(tmp_path, capsys):
    assert_refused(tmp_path, capsys, needle="directory")
    (tmp_path / "d.json").mkdir()
    assert_refused(tmp_path / "d.json", capsys, needle="directory")
    assert_refused(tmp_path / "missing.npz", capsys, needle="no result file")


def test_show_in_a_real_process_prints_no_traceback(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "noise.npz"
    path.write_bytes(os.urandom(1000))
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cli.__file__)))
    proc = subprocess.run([sys.executable, "-m", "udpbench", "show", str(path)], capture_output=True,
                          text=True, timeout=60, env=env)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_a_peer_dribbling_a_frame_cannot_hold_a_session_slot(make_server, monkeypatch, wait_for):
    """The handshake timeout bounds a whole frame, not each byte of it (slowloris)."""
    import udpbench.transport.server as server_module

    monkeypatch.setattr(server_module, "HANDSHAKE_TIMEOUT_S", 0.5)
    server = make_server(max_sessions=1)
    frame = control.encode({"type": "HELLO", "version": control.PROTOCOL_VERSION, "pad": "x" * 200})
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as conn:
        assert wait_for(lambda: server.active_sessions == 1)
        start = time.monotonic()
        closed = False
        for byte in frame:
            try:
                conn.send(bytes([byte]))
            except OSError:
                closed = True
                break
            if server.active_sessions == 0:
                closed = True
                break
            time.sleep(0.1)
        assert closed, "the server waited for the whole dribbled frame"
        assert time.monotonic() - start < 10  # the frame would take 20 s to dribble
    with Client("127.0.0.1", server.port) as client:
        assert client.blast(100, 0.05, 1e6)["received"] > 0


def test_discovery_replies_are_small_and_rate_limited(make_server):
    """Whatever answers DISCOVER (it needs no session): never larger than the request, and a
    burst of requests gets far fewer replies than requests."""
    server = make_server()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.connect(("127.0.0.1", server.port))
        sizes = {}
        for seq in range(1, 2001):
            size = (32, 48, 64, 128, 512, 1472)[seq % 6]
            sizes[seq] = size
            sock.send(wire.datagram(wire.Kind.DISCOVER, secrets.randbits(64), seq, size))
            if seq % 50 == 0:
                time.sleep(0.002)
        replies = _collect(sock, quiet=0.5)
    for reply in replies:
        header = wire.parse(reply)
        assert len(reply) <= sizes[header.seq]
    assert len(replies) < len(sizes) // 2, f"{len(replies)} replies to a burst of {len(sizes)} DISCOVERs"
