"""`udpbench lab demo` as a user runs it: a lab, a sweep of loopback and the lab path, a file,
a plot, and no lab left behind. Short: three sizes of 0.2 s."""
import json
import os
import subprocess

import numpy as np
import pytest

from udpbench import cli
from udpbench.lab import demo


@pytest.mark.lab
def test_lab_demo_sweeps_loopback_and_the_lab_path_and_removes_the_lab(make_lab, tmp_path, monkeypatch):
    make_lab  # noqa: B018 - only for its skip where namespaces cannot be made, and its stale-lab sweep
    # A prefix of this test run's own, so that a user's demo (ubdemo) is never touched.
    prefix = f"ubt{os.getpid()}xdemo"
    monkeypatch.setattr(demo, "DEMO_PREFIX", prefix)
    out = tmp_path / "demo"
    code = cli.main(["lab", "demo", "--duration", "0.2", "--points", "3", "--rate", "10M", "--loss", "1",
                     "-o", str(out)])
    assert code == 0
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
        hosts = list(data["host"])
        meta = json.loads(str(data["meta"]))
    assert "127.0.0.1" in hosts and "198.18.1.2" in hosts  # loopback and the lab's server
    mtus = {h["host"]: h["path_mtu"] for h in meta["hosts"]}
    assert mtus["198.18.1.2"] == 1400  # the lab's link MTU: its ground truth
    assert out.with_suffix(".png").stat().st_size > 10_000
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert prefix not in left
