"""The lab demo: loopback against an emulated LAN, in one result file and one plot.

Builds a lab (MTU 1400, 1 % loss per packet on the router's link by default), serves from its
server namespace, and from its client namespace sweeps both that namespace's loopback and the
lab path. The lab is removed afterwards, whatever happened. Demo imports lab, never the reverse.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from udpbench.lab.lab import Lab

DEMO_PREFIX = "ubdemo"


def run_demo(output: Path, mtu: int = 1400, loss: float = 1.0, duration: float = 1.0, points: int = 16,
             rate: str = "100M", plot: Path | None = None,
             on_notice: Callable[[str], None] | None = None) -> int:
    """Run the demo; returns the sweep's exit status. The sweep writes to this process's
    stdout and stderr; ``on_notice`` hears what is about to happen."""
    output = output.resolve()
    plot = (plot or output.with_suffix(".png")).resolve()
    with Lab(DEMO_PREFIX, mtu=mtu, loss=loss) as lab:
        address = lab.address("server")
        with lab.serving():
            argv = [sys.executable, "-m", "udpbench", "sweep", "127.0.0.1", address,
                    "--duration", str(duration), "--points", str(points), "--rate", rate,
                    "-o", str(output), "--plot", str(plot)]
            if on_notice:
                on_notice(f"lab up: MTU {mtu} and {loss:g}% loss per packet from client to server; "
                          f"sweeping loopback and {address} from the client namespace")
            done = lab.run("client", argv)
    return done.returncode
