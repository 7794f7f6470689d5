"""Library errors name values; the command line says which flag or command fixes them.

The CLI lines below are the words users have always seen, written out by hand.
"""
from __future__ import annotations

import socket

import pytest

from udpbench import cli
from udpbench.cli.common import user_words
from udpbench.errors import ServerAbsent, TokenRequired
from udpbench.measure import embedded
from udpbench.transport.client import Client
from udpbench.transport.server import Server


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_server_names_the_address_in_the_library_and_the_serve_command_on_the_line(monkeypatch, capsys):
    port = _closed_port()
    with pytest.raises(ServerAbsent) as caught:
        Client("127.0.0.1", port)
    assert str(caught.value) == f"no udpbench server at 127.0.0.1:{port}"
    assert (caught.value.reason, caught.value.port) == ("refused", port)

    monkeypatch.setattr(embedded, "is_loopback", lambda address: False)  # no embedded server
    assert cli.main(["blast", "127.0.0.1", "--port", str(port)]) == 2
    assert capsys.readouterr().err == (f"udpbench: no udpbench server at 127.0.0.1:{port}: start one there "
                                       f"with `python -m udpbench serve --port {port}`\n")


def test_a_missing_token_names_the_server_in_the_library_and_the_flag_on_the_line(capsys):
    with Server("127.0.0.1", 0, token="s3cret-token") as server:
        with pytest.raises(TokenRequired) as caught:
            Client("127.0.0.1", server.port, token="")
        assert "--" not in str(caught.value)
        assert caught.value.where == f"127.0.0.1:{server.port}"
        assert cli.main(["ping", "127.0.0.1", "--port", str(server.port), "-c", "1", "--token", ""]) == 2
    assert capsys.readouterr().err == (f"udpbench: 127.0.0.1:{server.port}: server requires a token: "
                                       "pass --token or set UDPBENCH_TOKEN\n")


def test_a_silent_server_gets_the_running_there_question():
    silent = ServerAbsent("no answer from 192.0.2.1:1070 within 3 s", "192.0.2.1:1070", 1070, "timeout")
    assert user_words(silent) == ("no answer from 192.0.2.1:1070 within 3 s: "
                                  "is `python -m udpbench serve --port 1070` running there?")
    unreachable = ServerAbsent("cannot reach 192.0.2.1:1070: Network is unreachable", "192.0.2.1:1070", 1070)
    assert user_words(unreachable) == "cannot reach 192.0.2.1:1070: Network is unreachable"


def test_a_lab_in_the_wrong_state_gets_the_lab_command_with_its_prefix():
    from udpbench.errors import LabState

    assert user_words(LabState("no lab 'ub' is up", "ub", "up", default_prefix=True)) == \
        "no lab 'ub' is up; run `udpbench lab up`"
    assert user_words(LabState("lab 't1' is already up", "t1", "down", default_prefix=False)) == \
        "lab 't1' is already up; run `udpbench lab down --prefix t1`"
