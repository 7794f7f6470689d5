"""Shared fixtures: a neutral working directory, and a udpbench server on loopback."""
import os

import pytest

from udpbench.server import Server


@pytest.fixture(scope="session", autouse=True)
def neutral_working_directory(tmp_path_factory):
    """Run from an empty directory, so `python -m udpbench` in a subprocess imports the installed
    package rather than the source tree (where the compiled core is not built)."""
    before = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(before)


@pytest.fixture
def loopback_server():
    """A server on 127.0.0.1 and a free port, closed after the test."""
    with Server("127.0.0.1", 0) as server:
        yield server
