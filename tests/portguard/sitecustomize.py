"""The default-port guard: records every socket call that aims at udpbench's default port on
loopback in the test run's own network namespace.

A test that measures 127.0.0.1 without a port of its own measures whatever listens on 1060, and
that is the server a user starts as the README says. Nothing is bound or sent here: the guard
wraps ``socket.socket``'s methods and only writes a line to the file named by
``UDPBENCH_PORT_GUARD``. tests/conftest.py installs it in the test process and puts this
directory on ``PYTHONPATH``, so Python subprocesses (``python -m udpbench ...``) install it too.
Lab nodes and ``unshare -n`` run in other network namespaces, where 1060 is theirs to use.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import traceback

DEFAULT_PORT = 1060
ENV_FILE = "UDPBENCH_PORT_GUARD"
ENV_NETNS = "UDPBENCH_PORT_GUARD_NETNS"


def _netns() -> str:
    try:  # per thread: setns() moves one thread only
        return os.readlink("/proc/thread-self/ns/net")
    except OSError:
        return ""


def _aims_at_default_port(address) -> bool:
    if not isinstance(address, tuple) or len(address) < 2 or address[1] != DEFAULT_PORT:
        return False
    host = address[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install(record: str, netns: str) -> None:
    """Wrap connect, connect_ex, bind and sendto once; a hit appends one line to ``record``."""
    if getattr(socket.socket, "_udpbench_port_guard", False):
        return

    def note(call: str, address) -> None:
        if not _aims_at_default_port(address) or _netns() != netns:
            return
        caller = "".join(traceback.format_stack(limit=8)[:-2]).replace("\n", " | ")
        with open(record, "a", encoding="utf-8") as out:
            out.write(f"pid {os.getpid()} {call}{address!r}: {caller}\n")

    def wrap(name: str, address_at: int) -> None:
        original = getattr(socket.socket, name)

        def guarded(self, *args):
            if len(args) > address_at:
                note(name, args[address_at])
            return original(self, *args)

        guarded.__name__ = name
        setattr(socket.socket, name, guarded)

    for name, address_at in (("connect", 0), ("connect_ex", 0), ("bind", 0), ("sendto", -1)):
        if address_at < 0:  # sendto(data, address) or sendto(data, flags, address)
            original_sendto = socket.socket.sendto

            def sendto(self, *args, _original=original_sendto):
                note("sendto", args[-1])
                return _original(self, *args)

            socket.socket.sendto = sendto
        else:
            wrap(name, address_at)
    socket.socket._udpbench_port_guard = True


if os.environ.get(ENV_FILE) and os.environ.get(ENV_NETNS):
    install(os.environ[ENV_FILE], os.environ[ENV_NETNS])
