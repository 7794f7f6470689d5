"""The README's Python example runs as written, against an embedded loopback server."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text.split("## Python API", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(isolated_network):
    # The example names no port: in a network namespace of its own, nobody is on 1060 but the
    # embedded server it starts.
    done = subprocess.run(isolated_network([sys.executable, "-c", python_example()]), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the library prints nothing of its own
    lines = done.stdout.splitlines()
    goodput, loss_ratio, loss_network = (float(v) for v in lines[0].split())
    assert goodput > 0 and 0 <= loss_ratio <= 1 and loss_network >= 0
    # on_row saw each size once, in order, before sweep returned
    assert [int(line.split()[0]) for line in lines[1:4]] == [64, 1472, 1473]
    assert lines[4] == "3 None"
    # lo carries 65536, but an IPv4 packet is at most 65535 bytes (16-bit total length, RFC 791)
    assert lines[5] == "65535"
    # loopback loses nothing on a wire: the knee is the receiving socket's or the sender's
    found, cause, disturbed = lines[6].split()
    # Under a CPU hog the sender may stall through the search's whole budget of trials: then
    # nothing is found, and the row must show the trials its stalls spoiled.
    assert cause in ("socket", "sender", "sender-disturbed"), lines[6]
    assert found == "True" or int(disturbed) > 0, lines[6]
