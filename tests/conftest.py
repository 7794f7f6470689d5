"""Shared fixtures: a neutral working directory, a server on loopback, and the lab. The lab ones build network namespaces (root, ip, nft) and always remove them.

``make_lab(**impairments)`` builds a lab with a prefix unique to this test run (``ubt<pid>x<n>``),
so a user's own lab (``ub``) is never touched; ``lab`` is one module-wide lab at MTU 1400.
``netns_script`` runs the small programs in tests/netns/ inside a lab node.
"""
from __future__ import annotations

import atexit
import itertools
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from udpbench.lab.lab import Lab
from udpbench.transport.server import Server

SCRIPTS = Path(__file__).parent / "netns"
PORT_GUARD = Path(__file__).parent / "portguard"
LAB_MTU = 1400
_unavailable: list[str] = []  # the reason, found once per session


def _ipv6_loopback_absent() -> str | None:
    """Why ::1 cannot be used here, or None. socket.has_ipv6 only says Python was built with IPv6;
    binding ::1 proves the address exists (a container may run with IPv6 disabled)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError as exc:
        return f"no IPv6 on loopback: binding ::1 fails ({exc.strerror or exc})"
    return None


def pytest_collection_modifyitems(config, items):
    """Tests marked ``ipv6`` skip, with the reason, where ::1 does not exist."""
    reason = None
    for item in items:
        if item.get_closest_marker("ipv6"):
            reason = reason or _ipv6_loopback_absent() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session", autouse=True)
def neutral_working_directory(tmp_path_factory):
    """Run from an empty directory, so `python -m udpbench` in a subprocess imports the installed
    package rather than the source tree (where the compiled core is not built)."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


class PortGuardRecord:
    """The lines the default-port guard (tests/portguard/sitecustomize.py) wrote, read once each."""

    def __init__(self, path: Path):
        self.path = path
        self.seen = 0

    def take(self) -> list[str]:
        """Lines written since the last call."""
        try:
            with open(self.path, encoding="utf-8") as record:
                record.seek(self.seen)
                text = record.read()
        except FileNotFoundError:
            return []
        self.seen += len(text.encode())
        return text.splitlines()



def pytest_configure(config):
    """Let Ctrl-C reach the commands the tests interrupt. A shell without job control starts
    background jobs (`pytest &`, `nohup pytest &`) with SIGINT ignored; children inherit an
    ignored signal across exec, and a Python started so never raises KeyboardInterrupt, so every
    test that sends SIGINT to a command would see it run to the end. A handler (Python's own)
    is reset to the default across exec instead."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)

@pytest.fixture(scope="session")
def port_guard(tmp_path_factory):
    """Records every aim at 127.0.0.0/8 or ::1 port 1060 from this process and its Python
    subprocesses, in this network namespace; nothing is bound, so a user's server is untouched."""
    sys.path.insert(0, str(PORT_GUARD))
    import sitecustomize as guard  # the one in tests/portguard (no other on this path)
    sys.path.remove(str(PORT_GUARD))

    record = tmp_path_factory.mktemp("portguard") / "hits"
    record.touch()
    netns = guard._netns()
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", guard.ENV_FILE, guard.ENV_NETNS)}
    os.environ[guard.ENV_FILE] = str(record)
    os.environ[guard.ENV_NETNS] = netns
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PORT_GUARD), saved["PYTHONPATH"]]))
    guard.install(str(record), netns)
    yield PortGuardRecord(record)
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def no_default_port(port_guard):
    """Fail a test that measured loopback on the default port: that is a user's server, if one runs."""
    port_guard.take()
    yield
    hits = port_guard.take()
    if hits:
        pytest.fail(f"this test aimed at loopback port 1060 (a user's server); give it its own "
                    f"server or a free port: {hits[0][:600]}", pytrace=False)


def _free_port() -> int:
    """A port free on 127.0.0.1 for TCP and UDP now: nothing listens there, so a measurement of
    127.0.0.1 on it starts an embedded server, whatever a user runs on the default port."""
    for _ in range(20):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


@pytest.fixture
def free_port() -> int:
    """A port free on 127.0.0.1 (TCP and UDP), for a test that lets the embedded server serve it."""
    return _free_port()


@pytest.fixture
def isolated_network():
    """``wrap(argv)``: ``argv`` in a network namespace of its own with loopback up (root:
    ``unshare -n``), for a command that must run on the default port as a user types it, without
    meeting a user's server; the test skips where that cannot be."""
    if not (os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs root, unshare and ip: on the default port it would measure a user's server")

    def wrap(argv: list[str]) -> list[str]:
        return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]

    return wrap


@pytest.fixture
def loopback_server():
    """A server on 127.0.0.1 and a free port, closed after the test."""
    with Server("127.0.0.1", 0) as server:
        yield server


class RawControl:
    """A control connection without the client's logic, for protocol tests: raw frames in and
    out, and the checks that a bad one ended the conversation and the server serves on."""

    @staticmethod
    def connect(server) -> socket.socket:
        return socket.create_connection(("127.0.0.1", server.port), timeout=5)

    @staticmethod
    def read_frame(sock):
        """The next frame as a dict, or None if the server closed the connection first."""
        def exactly(n):
            data = b""
            while len(data) < n:
                chunk = sock.recv(n - len(data))
                if not chunk:
                    return None
                data += chunk
            return data

        head = exactly(4)
        body = head and exactly(int.from_bytes(head, "big"))
        return json.loads(body) if body else None

    @classmethod
    def assert_error_then_close(cls, sock, reason: str) -> None:
        reply = cls.read_frame(sock)
        assert reply is not None and reply["type"] == "ERROR", reply
        assert reason in reply["message"]
        assert sock.recv(1) == b""  # the server ended the conversation
        sock.close()

    @staticmethod
    def assert_still_serving(server) -> None:
        from udpbench.transport.client import Client

        with Client("127.0.0.1", server.port) as client:
            row = client.blast(100, 0.2, 10e6)
        assert row["received"] == row["sent"] > 0


def _wait_for(predicate, timeout: float = 5.0, poll: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())


@pytest.fixture
def wait_for():
    """``wait_for(predicate, timeout=5.0)``: poll until true; for state another thread or process changes."""
    return _wait_for


@pytest.fixture
def raw_control():
    return RawControl


def _lab_unavailable() -> str | None:
    """Why lab tests cannot run here, or None."""
    if _unavailable:
        return _unavailable[0] or None
    reason = ""
    if os.geteuid() != 0:
        reason = "lab tests need root (network namespaces)"
    elif not shutil.which("ip"):
        reason = "lab tests need `ip` (iproute2)"
    elif not shutil.which("nft"):
        reason = "lab tests need `nft` (nftables)"
    else:
        probe = f"ubt{os.getpid()}probe"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=10)
        if made.returncode != 0:
            reason = f"cannot create a network namespace: {made.stderr.strip() or made.returncode}"
        else:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    _unavailable.append(reason)
    return reason or None


def _remove_stale_test_labs() -> None:
    """Namespaces left by a test run that was killed (its pid is gone): remove them."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for line in listing.splitlines():
        name = line.split()[0] if line.strip() else ""
        head = name[3:].split("x")[0].split("probe")[0] if name.startswith("ubt") else ""
        if not head.isdigit() or not name.endswith(("-client", "-router", "-server", "probe")):
            continue
        pid = int(head)
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue  # that run is still going
        except ProcessLookupError:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        except PermissionError:
            continue


@pytest.fixture(scope="session")
def make_lab():
    """A factory: ``make_lab(mtu=1400, loss=0, rate=None, block_icmp=False)`` -> a Lab that is up.
    Every lab it made is taken down at the end of the session, whatever happened."""
    reason = _lab_unavailable()
    if reason:
        pytest.skip(reason)
    _remove_stale_test_labs()
    made: list[Lab] = []
    numbers = itertools.count()

    def teardown() -> None:
        while made:
            lab = made.pop()
            try:
                lab.down()
            except Exception as exc:  # keep removing the others
                print(f"could not remove lab {lab.prefix}: {exc}", file=sys.stderr)

    atexit.register(teardown)  # in case the session is cut short

    def make(**impairments) -> Lab:
        lab = Lab(f"ubt{os.getpid()}x{next(numbers)}", **impairments)
        made.append(lab)
        lab.up()
        return lab

    try:
        yield make
    finally:
        teardown()
        atexit.unregister(teardown)


@pytest.fixture(scope="module")
def lab(make_lab):
    """One lab for a module: MTU 1400 on the router-server link, no other impairment."""
    built = make_lab(mtu=LAB_MTU)
    try:
        yield built
    finally:
        built.down()


class Script:
    """A tests/netns program running in a lab node: wait for "ready", then for its JSON line."""

    def __init__(self, lab: Lab, node: str, name: str, args: list[str]):
        self.proc = lab.popen(node, [sys.executable, str(SCRIPTS / name), *map(str, args)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def wait_ready(self, timeout: float = 5.0) -> None:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            self.kill()
            raise AssertionError(f"netns script not ready: {line!r} {self.proc.stderr.read()!r}")

    def result(self, timeout: float = 15.0) -> dict:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if self.proc.returncode != 0:
            raise AssertionError(f"netns script failed ({self.proc.returncode}): {err.strip()}")
        return json.loads(out.strip().splitlines()[-1])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


@pytest.fixture
def netns_script():
    """``start(lab, node, name, *args)`` -> a Script waiting for "ready" (killed after the test);
    ``run(lab, node, name, *args)`` -> the JSON the script printed."""
    started: list[Script] = []

    class Runner:
        @staticmethod
        def start(lab: Lab, node: str, name: str, *args) -> Script:
            script = Script(lab, node, name, list(args))
            started.append(script)
            script.wait_ready()
            return script

        @staticmethod
        def run(lab: Lab, node: str, name: str, *args, timeout: float = 20.0) -> dict:
            proc = lab.run(node, [sys.executable, str(SCRIPTS / name), *map(str, args)],
                           capture_output=True, text=True, timeout=timeout)
            if proc.returncode != 0:
                raise AssertionError(f"{name} failed ({proc.returncode}): {proc.stderr.strip()}")
            return json.loads(proc.stdout.strip().splitlines()[-1])

    try:
        yield Runner
    finally:
        for script in started:
            script.kill()
