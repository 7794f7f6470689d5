"""The control channel: framing, message checks, and the server's state machine under bad input."""
import struct
import threading

import pytest

from udpbench.protocol import control, conversation
from udpbench.transport.client import Client
from udpbench.transport.server import Server


def test_frame_round_trip():
    msg = {"type": "START", "session": 5, "mode": "blast", "size": 64, "duration_s": 1.0,
           "rate_bps": 0, "client_port": 9}
    encoded = control.encode(msg)
    (length,) = struct.unpack("!I", encoded[:4])
    assert length == len(encoded) - 4
    assert control.decode(encoded[4:]) == msg


@pytest.mark.parametrize("payload, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"[1, 2]", "type"),
    (b'{"type": 5}', "type"),
    (b'{"type": "LAUNCH"}', "unknown control message"),
    (b'{"type": "HELLO"}', "lacks 'version'"),
    (b'{"type": "HELLO", "version": "1"}', "wrong type"),
    (b'{"type": "START", "session": 1, "mode": "flood"}', "mode"),
    (b'{"type": "START", "session": 1, "mode": "blast"}', "lacks"),
    (b'{"type": "STOP", "session": -1}', "out of range"),
])
def test_decode_refuses_malformed_messages(payload, reason):
    with pytest.raises(control.ProtocolError, match=reason):
        control.decode(payload)


def test_state_machine_orders_messages():
    S = conversation.ServerState
    assert conversation.next_server_state(S.AWAIT_HELLO, {"type": "HELLO"}) is S.READY
    assert conversation.next_server_state(S.READY, {"type": "START"}) is S.RUNNING
    assert conversation.next_server_state(S.RUNNING, {"type": "STOP"}) is S.READY
    with pytest.raises(control.ProtocolError, match="out of order"):
        conversation.next_server_state(S.AWAIT_HELLO, {"type": "START"})
    with pytest.raises(control.ProtocolError, match="out of order"):
        conversation.next_server_state(S.READY, {"type": "STOP"})






@pytest.mark.parametrize("frame, reason", [
    (struct.pack("!I", 10) + b"not json!!", "not JSON"),
    (control.encode({"type": "START", "session": 1, "mode": "echo"}), "out of order"),
    (struct.pack("!I", control.MAX_FRAME + 1), "exceeds"),
    (control.encode({"type": "HELLO", "version": 99}), "protocol 99"),
])
def test_bad_first_frames_get_an_error_and_the_server_keeps_serving(loopback_server, frame, reason, raw_control):
    sock = raw_control.connect(loopback_server)
    sock.sendall(frame)
    raw_control.assert_error_then_close(sock, reason)
    raw_control.assert_still_serving(loopback_server)


def test_stop_for_a_session_that_is_not_running_is_refused(loopback_server, raw_control):
    sock = raw_control.connect(loopback_server)
    sock.sendall(control.encode({"type": "HELLO", "version": control.PROTOCOL_VERSION}))
    assert raw_control.read_frame(sock)["type"] == "HELLO"
    sock.sendall(control.encode({"type": "STOP", "session": 3}))
    raw_control.assert_error_then_close(sock, "out of order")
    raw_control.assert_still_serving(loopback_server)


def test_start_with_a_payload_below_the_header_is_refused(loopback_server, raw_control):
    sock = raw_control.connect(loopback_server)
    sock.sendall(control.encode({"type": "HELLO", "version": control.PROTOCOL_VERSION}))
    raw_control.read_frame(sock)
    sock.sendall(control.encode({"type": "START", "session": 3, "mode": "blast", "size": 8,
                                 "duration_s": 1, "rate_bps": 0, "client_port": 5}))
    raw_control.assert_error_then_close(sock, "smaller than the 32-byte")
    raw_control.assert_still_serving(loopback_server)


def test_a_client_that_vanishes_does_not_stop_the_server(loopback_server, raw_control):
    sock = raw_control.connect(loopback_server)
    sock.sendall(struct.pack("!I", 1000) + b"{")  # half a frame, then gone
    sock.close()
    raw_control.assert_still_serving(loopback_server)


def test_closing_the_server_ends_conversations_in_progress():
    """An embedded server's close() must not leave a session's threads and sockets behind."""
    server = Server("127.0.0.1", 0).start()
    client = Client("127.0.0.1", server.port)
    flow = client.start_blast(100, 30.0, 1e6)  # a session that would run for 30 s
    before = {t.name for t in threading.enumerate()}
    assert any(name.startswith("rx-") for name in before)
    server.close()
    after = {t.name for t in threading.enumerate()}
    assert not any(name.startswith("rx-") for name in after)  # the session's receiver ended
    assert server.active_sessions == 0
    flow.sock.close()
    client.channel.close()
