"""udpbench ping: RFC 6298 timeouts, backoff, request ids, stale/duplicate replies, serve --drop."""
from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time

import numpy as np
import pytest

from udpbench.protocol import control
from udpbench.transport.channel import Channel
from udpbench.cli import ping as ping_cli
from udpbench.measure import embedded
from udpbench.measure import ping as ping_api
from udpbench.protocol import rto, wire
from udpbench.cli import main
from udpbench.protocol.rto import Backoff, GiveUp, RtoEstimator, Transmit, Wait
from udpbench.transport import pinger
from udpbench.transport.pinger import Pinger
from udpbench.transport.server import EchoCounts, Server


@pytest.fixture
def dropping_server():
    """A loopback server dropping half the echo requests, with a fixed seed."""
    with Server("127.0.0.1", 0, drop=0.5, seed=1234) as server:
        yield server


# --- the estimator ------------------------------------------------------------------------------

def test_rto_estimator_follows_rfc6298():
    est = RtoEstimator(initial=1.0, minimum=0.001, maximum=60.0, granularity=0.001)
    assert est.rto == 1.0 and est.srtt is None
    est.sample(0.100)  # first sample: SRTT = R, RTTVAR = R/2, RTO = SRTT + 4 RTTVAR
    assert est.srtt == pytest.approx(0.100) and est.rttvar == pytest.approx(0.050)
    assert est.rto == pytest.approx(0.100 + 4 * 0.050)
    est.sample(0.200)  # RTTVAR uses the old SRTT: 3/4 * 0.05 + 1/4 * |0.1 - 0.2|
    assert est.rttvar == pytest.approx(0.75 * 0.050 + 0.25 * 0.100)
    assert est.srtt == pytest.approx(0.875 * 0.100 + 0.125 * 0.200)
    assert est.rto == pytest.approx(est.srtt + 4 * est.rttvar)


def test_rto_estimator_clock_granularity_floor_and_ceiling():
    est = RtoEstimator(initial=1.0, minimum=0.001, maximum=60.0, granularity=0.010)
    for _ in range(50):  # a constant RTT drives RTTVAR toward 0: G takes over
        est.sample(0.005)
    assert est.rttvar < 0.0025 and est.rto == pytest.approx(est.srtt + 0.010)
    lan = RtoEstimator()  # the defaults: 20 ms floor, 2 s ceiling
    lan.sample(0.0001)
    assert lan.rto == rto.RTO_MIN_S
    lan.sample(10.0)
    assert lan.rto == rto.RTO_MAX_S


def test_rto_limits_are_checked():
    with pytest.raises(Exception, match="RTO limits"):
        RtoEstimator(initial=5.0, minimum=0.02, maximum=2.0)


def test_percentile_matches_numpy():
    rng = random.Random(5)
    values = [rng.expovariate(1.0) for _ in range(101)]
    for q in (0, 50, 90, 99, 100):
        assert pinger.percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


# --- serve --drop ---------------------------------------------------------------------------------

def test_echo_drops_are_seeded_and_about_the_fraction():
    a, b, c = EchoCounts(0.3, 42), EchoCounts(0.3, 42), EchoCounts(0.3, 43)
    fates_a = [a.should_drop() for _ in range(4000)]
    assert fates_a == [b.should_drop() for _ in range(4000)]
    assert fates_a != [c.should_drop() for _ in range(4000)]
    assert 0.25 < sum(fates_a) / len(fates_a) < 0.35
    assert not any(EchoCounts(0.0, 42).should_drop() for _ in range(1000))


@pytest.mark.parametrize("bad", ["1", "1.5", "-0.1", "nan", "half"])
def test_serve_drop_is_validated(bad, capsys):
    assert main(["serve", "--port", "0", "--drop", bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--drop" in err and ("0 <= P < 1" in err or "not a number" in err)


def expected_tries(drop: float, seed: int, requests: int, max_tries: int) -> list[int]:
    """The tries each request needs if every timeout was a drop (the server's generator)."""
    fate = EchoCounts(drop, seed)
    out = []
    for _ in range(requests):
        tries = 1
        while fate.should_drop() and tries < max_tries:
            tries += 1
        out.append(tries)
    return out


def _ping_dropping(seed: int) -> dict:
    est = RtoEstimator(initial=0.05, minimum=0.05, maximum=0.8)  # tries wait 50,100,200,400,800 ms
    with Server("127.0.0.1", 0, drop=0.5, seed=seed) as server:
        return ping_api.ping("127.0.0.1", port=server.port, count=16, interval=0.001, rto_initial=est.rto,
                             rto_min=est.minimum, rto_max=est.maximum).as_dict()


def test_ping_against_dropping_server_accounts_for_every_request():
    # A host stalled past the 50 ms timeout makes a spurious retry (a stale reply), which takes
    # the server's next drop decision: the tries then differ from the seed's plan. Such a run
    # proves the accounting below but not the plan, so up to 3 fresh servers; one must be clean.
    for _ in range(3):
        r = _ping_dropping(1234)
        if r["stale"] == 0:
            break
    assert r["sent"] == 16 and r["received"] + r["lost"] == r["sent"]
    assert r["loss_ratio"] == pytest.approx(r["lost"] / r["sent"])
    assert len(r["attempts"]) == 16 and all(a >= 1 for a in r["attempts"])
    assert max(r["attempts"]) > 1, "half the requests dropped, yet no request was retransmitted"
    assert sum(r["attempts"]) == r["transmissions"] == r["retransmissions"] + r["sent"]
    hist = r["attempts_histogram"]
    assert sum(v for k, v in hist.items() if k != "lost") == r["received"] and hist.get("lost", 0) == r["lost"]
    # Loopback loses nothing: the server saw every datagram, and every reply it sent came back.
    server = r["server"]
    assert server["echo_requests"] == r["transmissions"]
    assert server["echo_answered"] == r["replies"]
    assert server["echo_dropped"] == r["transmissions"] - r["replies"]
    assert r["datagram_loss_ratio"] == pytest.approx(server["echo_dropped"] / server["echo_requests"])
    for req in r["requests"]:
        timeouts = req["timeouts_ms"]
        # Each retransmission doubles the timeout, up to the ceiling ...
        for before, after in zip(timeouts, timeouts[1:]):
            assert after == pytest.approx(min(2 * before, 800.0))
        # ... and really waited it out before going again.
        for i in range(1, len(timeouts)):
            gap = req["try_offsets_ms"][i] - req["try_offsets_ms"][i - 1]
            assert gap >= timeouts[i - 1] - 1.0
        if req["outcome"] == "answered":
            assert 1 <= req["answered_try"] <= req["tries"] and req["rtt_ms"] > 0
        else:
            assert req["reason"] == "ceiling" and timeouts[-1] == pytest.approx(800.0)
    assert r["stale"] == 0, "a spurious timeout in each of 3 runs: the machine stalls past 50 ms"
    assert r["attempts"] == expected_tries(0.5, 1234, 16, 5)  # every retry was a drop, by the seed
    rtts = [q["rtt_ms"] for q in r["requests"] if q["rtt_ms"] is not None]
    assert r["rtt_min_ms"] == min(rtts) and r["rtt_max_ms"] == max(rtts)
    assert r["rtt_min_ms"] <= r["rtt_p50_ms"] <= r["rtt_p90_ms"] <= r["rtt_p99_ms"] <= r["rtt_max_ms"]
    assert r["verdict"] == "alive"


def test_probes_are_never_dropped():
    """--drop is for echo: a dropped path-MTU probe would read as 'too big'."""
    with Server("127.0.0.1", 0, drop=0.9, seed=1) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=5) as tcp:
        ch = Channel(tcp)
        ch.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
        ch.expect("HELLO")
        ch.send({"type": "START", "session": 77, "mode": "echo", "duration_s": 5})
        ch.expect("STARTED")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((tcp.getsockname()[0], 0))
            udp.connect(("127.0.0.1", server.port))
            udp.settimeout(2)
            for seq in range(20):
                udp.send(wire.datagram(wire.Kind.PROBE, 77, seq, 200))
                assert wire.parse(udp.recv(2048)).kind == wire.Kind.PROBE_ACK
        ch.send({"type": "STOP", "session": 77})
        report = ch.expect("REPORT")
        assert report["echo_requests"] == 0 and report["echo_dropped"] == 0


def test_echo_is_answered_only_to_the_control_peer_address():
    """The anti-reflection rule: an ECHO of a live session from another address is foreign."""
    with Server(None, 0) as server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as tcp:
        ch = Channel(tcp)
        ch.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
        ch.expect("HELLO")
        ch.send({"type": "START", "session": 99, "mode": "echo"})
        ch.expect("STARTED")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.2", 0))  # not the control peer's 127.0.0.1
            other.settimeout(0.3)
            before = server.foreign
            other.sendto(wire.datagram(wire.Kind.ECHO, 99, 1, 64), ("127.0.0.1", server.port))
            with pytest.raises(socket.timeout):
                other.recv(2048)
            assert server.foreign == before + 1


def test_echo_start_with_a_bad_duration_is_refused():
    with Server("127.0.0.1", 0) as server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as tcp:
        ch = Channel(tcp)
        ch.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
        ch.expect("HELLO")
        ch.send({"type": "START", "session": 5, "mode": "echo", "duration_s": -1})
        with pytest.raises(control.PeerError, match="duration"):
            ch.recv()


# --- stale, duplicate and foreign replies from a scripted fake server ------------------------------

SESSION = 0x5EED


def reply_to(data: bytes, session: int = SESSION) -> bytes:
    h = wire.parse(data)
    return wire.pack(wire.Kind.ECHO_REPLY, session, h.seq, h.tx_ns) + data[wire.HEADER_SIZE:]


class ScriptedServer(threading.Thread):
    """Request 1: answered twice. Request 2: try 1 held, try 2 answered, then try 1's reply.
    Request 3: never answered. Request 4: first the late reply to request 3, request 1's reply
    again, two foreign datagrams and a reply from another address; then the answer."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.impostor = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.impostor.bind(("127.0.0.1", 0))
        self.client_addr = None
        self.seen: list[bytes] = []
        self.error = None

    def run(self):
        try:
            ids: list[int] = []
            held = None
            first_of: dict[int, bytes] = {}
            while True:
                try:
                    data, addr = self.sock.recvfrom(2048)
                except socket.timeout:
                    return
                if data == b"stop":
                    return
                self.client_addr = addr
                self.seen.append(data)
                h = wire.parse(data)
                if h.seq not in ids:
                    ids.append(h.seq)
                    first_of[h.seq] = data
                n = ids.index(h.seq) + 1
                if n == 1:
                    self.sock.sendto(reply_to(data), addr)
                    self.sock.sendto(reply_to(data), addr)
                elif n == 2 and held is None:
                    held = data
                elif n == 2:
                    self.sock.sendto(reply_to(data), addr)
                    self.sock.sendto(reply_to(held), addr)
                elif n == 4 and first_of[h.seq] is data:
                    self.sock.sendto(reply_to(first_of[ids[2]]), addr)  # late: request 3 was given up
                    self.sock.sendto(reply_to(first_of[ids[0]]), addr)  # request 1's again
                    self.sock.sendto(reply_to(data, session=SESSION + 1), addr)  # another session
                    self.sock.sendto(b"not udpbench at all", addr)
                    self.impostor.sendto(reply_to(data)[:-1], addr)  # another address: filtered
                    time.sleep(0.01)
                    self.sock.sendto(reply_to(data), addr)
        except BaseException as exc:
            self.error = exc


def test_stale_duplicate_and_foreign_replies_are_never_taken():
    fake = ScriptedServer()
    fake.start()
    events = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(fake.sock.getsockname())
        est = RtoEstimator(initial=0.1, minimum=0.1, maximum=0.4)
        pinger = Pinger(sock, SESSION, 64, est, on_event=lambda kind, **f: events.append((kind, f)))
        r = pinger.run(count=4, interval=0.001, deadline=20)
    fake.sock.sendto(b"stop", fake.sock.getsockname())
    fake.join(5)
    fake.sock.close()
    fake.impostor.close()
    assert fake.error is None
    assert [q["outcome"] for q in r["requests"]] == ["answered", "answered", "lost", "answered"]
    assert r["received"] == 3 and r["lost"] == 1 and r["sent"] == 4
    req2 = r["requests"][1]
    assert req2["tries"] == 2 and req2["answered_try"] == 2
    assert r["requests"][2]["tries"] == 3 and r["requests"][2]["timeouts_ms"] == [100.0, 200.0, 400.0]
    assert r["duplicates"] == 2  # request 1 answered twice, and its reply once more later
    assert r["stale"] == 2 and r["late"] == 1  # request 2's first try; request 3 after it was given up
    assert r["foreign"] == 2  # other session + junk; the impostor's reply never reached us
    seen = [(k, f["request"].number, f.get("try_number")) for k, f in events]
    assert [e for e in seen if e[0] == "reply"] == [("reply", 1, 1), ("reply", 2, 2), ("reply", 4, 1)]
    assert [e for e in seen if e[0] == "stale"] == [("stale", 2, 1), ("stale", 3, 1)]
    assert [e for e in seen if e[0] == "duplicate"] == [("duplicate", 1, 1), ("duplicate", 1, 1)]
    assert [e[:2] for e in seen if e[0] in ("retransmit", "lost")] == [
        ("retransmit", 2), ("retransmit", 3), ("retransmit", 3), ("lost", 3)]
    # Every request id was random and distinct, and a try's tx time tagged it.
    ids = {wire.parse(d).seq for d in fake.seen}
    assert len(ids) == 4
    assert len({wire.parse(d).tx_ns for d in fake.seen}) == len(fake.seen)


@contextlib.contextmanager
def silent_peer():
    """A UDP socket connected to a loopback peer that never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        silent.bind(("127.0.0.1", 0))
        sock.connect(silent.getsockname())
        yield sock


def test_silent_server_gives_the_down_verdict():
    with silent_peer() as sock:
        est = RtoEstimator(initial=0.02, minimum=0.02, maximum=0.08)
        r = Pinger(sock, 1, 64, est).run(count=5, interval=0.001, deadline=20)
    assert r["verdict"] == "down"
    assert r["sent"] == pinger.DOWN_AFTER and r["received"] == 0 and r["lost"] == r["sent"]
    assert all(q["timeouts_ms"] == [20.0, 40.0, 80.0] for q in r["requests"])
    assert "looks down" in ping_cli.summary_text({**r, "host": "h", "address": "127.0.0.1", "port": 1,
                                              "deadline_s": 20, "server": {}})


def test_closed_port_counts_icmp_refusals():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
        gone.bind(("127.0.0.1", 0))
        addr = gone.getsockname()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(addr)
        est = RtoEstimator(initial=0.02, minimum=0.02, maximum=0.04)
        r = Pinger(sock, 1, 64, est).run(count=3, interval=0.001, deadline=10)
    assert r["verdict"] == "down" and r["received"] == 0 and r["sent"] == pinger.DOWN_AFTER
    assert r["refused"] == r["transmissions"]  # every try met the closed port's ICMP refusal


def test_deadline_bounds_the_run():
    with silent_peer() as sock:
        est = RtoEstimator(initial=1.0, minimum=0.02, maximum=2.0)
        started = time.monotonic()
        r = Pinger(sock, 1, 64, est).run(count=100, interval=0.01, deadline=0.3)
        assert time.monotonic() - started < 5  # generous: the point is 0.3 s, not 3 s of backoff
    assert r["deadline_reached"] and r["sent"] == 1 and r["requests"][0]["reason"] == "deadline"


# --- the command ---------------------------------------------------------------------------------

def test_ping_cli_json(dropping_server, capsys):
    code = main(["ping", "127.0.0.1", "--port", str(dropping_server.port), "-c", "4", "-i", "0.001",
                 "--rto-initial", "0.05", "--rto-min", "0.05", "--rto-max", "0.8", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["sent"] == 4 and out["received"] + out["lost"] == 4
    for key in ("loss_ratio", "rtt_min_ms", "rtt_avg_ms", "rtt_max_ms", "rtt_mdev_ms", "rtt_p50_ms",
                "rtt_p90_ms", "rtt_p99_ms", "attempts", "attempts_histogram", "stale", "duplicates"):
        assert key in out


def test_ping_cli_lines(dropping_server, capsys):
    code = main(["ping", "127.0.0.1", "--port", str(dropping_server.port), "-c", "6", "-i", "0.001",
                 "--rto-initial", "0.05", "--rto-min", "0.05"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("bytes from 127.0.0.1: seq=") + out.count("given up") >= 6
    assert "no reply within 50 ms, try 2 waits 100 ms" in out  # the backoff, visible
    assert "udpbench ping statistics" in out and "dropped on purpose" in out


@pytest.mark.parametrize("argv, words", [
    (["-c", "0"], "--count"),
    (["-i", "0"], "--interval"),
    (["-s", "8"], "smaller than"),
    (["--rto-initial", "5"], "RTO limits"),
])
def test_ping_cli_user_errors(dropping_server, capsys, argv, words):
    assert main(["ping", "127.0.0.1", "--port", str(dropping_server.port), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def test_ping_without_a_server_at_a_remote_host_is_one_line(monkeypatch, capsys):
    monkeypatch.setattr(embedded, "is_loopback", lambda address: False)  # as if 127.0.0.1 were remote
    assert main(["ping", "127.0.0.1", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "no udpbench server" in err and err.count("\n") == 1


@pytest.mark.parametrize("host", ["127.0.0.1", pytest.param("::1", marks=pytest.mark.ipv6)])
def test_ping_on_loopback_with_no_server_uses_an_embedded_one(host, capsys):
    port = free_port(host)
    code = main(["ping", host, "--port", str(port), "-c", "3", "-i", "0.01", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["received"] == 3 and out["address"] == host
    assert out["port"] != port  # the embedded server listens on a port of its own
    assert out["server"]["echo_requests"] == out["transmissions"] == 3  # its own count agrees


def test_ping_accepts_a_clamped_echo_duration_and_reports_it():
    """A server with a shorter max duration grants less than asked (a real server clamps the echo
    session to its --max-duration): ping keeps to the grant."""
    notices = []
    with Server("127.0.0.1", 0, max_duration=0.3) as server:
        started = time.monotonic()
        r = ping_api.ping("127.0.0.1", port=server.port, count=50, interval=0.05, on_notice=notices.append)
        took = time.monotonic() - started
    assert r.deadline_s == 0.3 and r.deadline_asked_s == 50 * 0.05 + 5 * rto.RTO_MAX_S
    assert r.deadline_reached and r.sent < 50 and r.received == r.sent
    assert took < 2.5  # the 12.5 s asked for was not used
    assert len(notices) == 1 and "clamped the echo session to 0.3 s (asked 12.5 s)" in notices[0]
    assert r.as_dict()["deadline_asked_s"] == 12.5


def test_ping_result_keeps_the_json_fields():
    with Server("127.0.0.1", 0) as server:
        r = ping_api.ping("127.0.0.1", port=server.port, count=1)
    fields = r.as_dict()
    assert "deadline_asked_s" not in fields  # only when the server clamped
    assert list(fields)[:8] == ["host", "address", "port", "family", "count", "interval_s", "deadline_s", "df"]
    assert fields["sent"] == fields["received"] == 1 and list(fields)[-1] == "server"


# --- the retry schedule, on a fake clock -----------------------------------------------------------

def test_backoff_doubles_each_try_up_to_the_ceiling_then_gives_up():
    b = Backoff(initial=0.25, maximum=2.0, deadline=100.0)
    now, sent_at, timeouts = 0.0, [], []
    while True:
        action = b.next_action(now)
        if isinstance(action, Transmit):
            sent_at.append(now)
            timeouts.append(action.timeout)
            b.on_sent(now)
        elif isinstance(action, Wait):
            now = action.until  # nothing answers
        else:
            break
    assert timeouts == [0.25, 0.5, 1.0, 2.0]
    assert sent_at == [0.0, 0.25, 0.75, 1.75]  # each try leaves when the one before timed out
    assert action == GiveUp("ceiling") and now == 3.75


def test_backoff_gives_up_at_the_deadline_mid_try():
    b = Backoff(initial=1.0, maximum=2.0, deadline=1.5)
    assert b.next_action(0.0) == Transmit(1.0, retry=False)
    b.on_sent(0.0)
    assert b.next_action(0.5) == Wait(1.0)
    assert b.next_action(1.0) == Transmit(2.0, retry=True)
    b.on_sent(1.0)
    assert b.next_action(1.2) == Wait(1.5)  # the deadline comes before the try's timeout (3.0)
    assert b.next_action(1.5) == GiveUp("deadline")


def test_backoff_stops_at_an_answer_and_at_a_refused_too_big_send():
    b = Backoff(initial=0.1, maximum=1.0, deadline=10.0)
    b.next_action(0.0)
    b.on_sent(0.0)
    b.on_answered()
    assert isinstance(b.next_action(5.0), rto.Answered)  # however late it is asked
    big = Backoff(initial=0.1, maximum=1.0, deadline=10.0)
    big.next_action(0.0)
    big.on_too_big()
    assert big.next_action(0.0) == GiveUp("too-big")


@pytest.mark.ipv6
def test_replies_leave_from_the_address_the_request_went_to():
    """A wildcard server on a host with several addresses: 127.0.0.2 is asked, 127.0.0.1 is the
    client's source; a reply from 127.0.0.1 would be dropped by the connected socket."""
    with Server(None, 0) as server:
        for host in ("127.0.0.2", "::1"):
            r = ping_api.ping(host, port=server.port, count=2, interval=0.001, rto_initial=0.5, rto_min=0.05,
                              rto_max=0.5).as_dict()
            assert r["received"] == 2 and r["transmissions"] == 2, host


def test_echo_session_lives_as_long_as_the_client_said(monkeypatch):
    """START echo carries duration_s: the server waits that long (plus grace) for STOP."""
    from udpbench.transport import server as server_mod

    monkeypatch.setattr(server_mod, "SESSION_GRACE_S", 0.1)
    with Server("127.0.0.1", 0) as server, socket.create_connection(("127.0.0.1", server.port), timeout=5) as tcp:
        ch = Channel(tcp)
        ch.send({"type": "HELLO", "version": control.PROTOCOL_VERSION})
        ch.expect("HELLO")
        ch.send({"type": "START", "session": 8, "mode": "echo", "duration_s": 0.3})
        ch.expect("STARTED")
        started = time.monotonic()
        with pytest.raises(control.PeerError, match="session ended"):
            ch.recv(timeout=5)
        assert 0.3 <= time.monotonic() - started < 4  # 0.4 s, not the 10 s default


@pytest.mark.lab
def test_lab_df_finds_the_path_mtu_and_gives_up_at_once(lab):
    """The router's link to the server has MTU 1400 (the lab fixture's): with don't-fragment a
    1400-byte payload (1428 IP bytes) cannot pass; without it, it does once the PMTU is learned."""
    import sys

    server = lab.serve("--port", "1070")
    try:
        common = [lab.address("server"), "--port", "1070", "-s", "1400", "-c", "2", "-i", "0.01",
                  "--rto-initial", "0.2", "--rto-min", "0.05", "--rto-max", "0.4", "--json"]
        df = lab.run("client", [sys.executable, "-m", "udpbench", "ping", *common, "--df"],
                     capture_output=True, text=True, timeout=30)
        r = json.loads(df.stdout)
        assert df.returncode == 1 and r["verdict"] == "too-big" and r["path_mtu"] == 1400
        assert [q["reason"] for q in r["requests"]] == ["too-big", "too-big"]
        plain = lab.run("client", [sys.executable, "-m", "udpbench", "ping", *common],
                        capture_output=True, text=True, timeout=30)
        r = json.loads(plain.stdout)
        assert plain.returncode == 0 and r["received"] == 2 and r["path_mtu"] == 1400
    finally:
        server.terminate()
        server.communicate(timeout=10)
