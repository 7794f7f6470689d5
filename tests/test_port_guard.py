"""The default-port guard (tests/portguard): a test that aims at loopback port 1060 is caught, in
this process and in a Python subprocess, and one in a network namespace of its own is not."""
from __future__ import annotations

import shutil
import socket
import subprocess
import sys

import pytest

AIM = "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.connect(('127.0.0.1', 1060))"


def test_the_guard_sees_an_aim_at_1060_in_this_process(port_guard):
    # A UDP connect() sends nothing: only the guard notices it.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", 1060))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", 1061))
    hits = port_guard.take()
    assert len(hits) == 1 and "('127.0.0.1', 1060)" in hits[0]


def test_the_guard_sees_an_aim_at_1060_in_a_python_subprocess(port_guard):
    subprocess.run([sys.executable, "-c", AIM], check=True, timeout=30)
    hits = port_guard.take()
    assert len(hits) == 1 and "connect('127.0.0.1', 1060)" in hits[0]


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs unshare (util-linux)")
def test_the_guard_leaves_other_network_namespaces_alone(port_guard):
    done = subprocess.run(["unshare", "-n", sys.executable, "-c", AIM.replace("s.connect", "s.bind")],
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0 and "unshare" in done.stderr:
        pytest.skip(f"cannot make a network namespace: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    assert port_guard.take() == []
