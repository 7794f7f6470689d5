"""The README's quick start as a new user runs it, and the lint CI holds the code to."""
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def isolated(argv: list[str]) -> list[str]:
    """The README's command as typed, default port included, in a network namespace of its own
    (root: `unshare -n`), so that a user's `udpbench serve` on port 1060 is not what it measures.
    Without root, the same command on a free port: no server there either, so the embedded one
    serves it just the same."""
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"):
        return ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]
    return [*argv, "--port", str(free_port())]


def test_quick_start_sweep_runs_from_the_repository_root():
    """`pip install . && python -m udpbench sweep 127.0.0.1` is typed in the checkout: Python then
    imports the checkout's package, so the build must have put the compiled core there too."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(isolated([sys.executable, "-m", "udpbench", "sweep", "127.0.0.1", "--duration", "0.2",
                                    "--points", "4", "--no-save"]), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "udpbench sweep: 127.0.0.1" in done.stdout
    assert "Traceback" not in done.stderr


def test_lint():
    beside_python = Path(sys.executable).parent / "ruff"  # a venv's ruff, when its bin is not on PATH
    ruff = shutil.which("ruff") or (str(beside_python) if beside_python.exists() else None)
    if ruff is None:
        pytest.skip("ruff is not installed (pip install '.[test]' installs it)")
    targets = [str(REPO / d) for d in ("udpbench", "tests", "benchmarks") if (REPO / d).is_dir()]
    done = subprocess.run([ruff, "check", "--config", str(REPO / "pyproject.toml"), *targets],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
