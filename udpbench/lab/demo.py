"""`udpbench lab demo`: loopback against an emulated LAN, in one result file and one plot.

Builds a lab (MTU 1400, 1 % loss per packet on the router's link by default), serves from its
server namespace, and from its client namespace sweeps both that namespace's loopback and the
lab path. The lab is removed afterwards, whatever happened.
"""
from __future__ import annotations

import sys
from pathlib import Path

from udpbench.lab.lab import Lab

DEMO_PREFIX = "ubdemo"


def run_demo(output: Path, mtu: int = 1400, loss: float = 1.0, duration: float = 1.0, points: int = 16,
             rate: str = "100M", plot: Path | None = None) -> int:
    output = output.resolve()
    plot = (plot or output.with_suffix(".png")).resolve()
    with Lab(DEMO_PREFIX, mtu=mtu, loss=loss) as lab:
        address = lab.address("server")
        with lab.serving():
            argv = [sys.executable, "-m", "udpbench", "sweep", "127.0.0.1", address,
                    "--duration", str(duration), "--points", str(points), "--rate", rate,
                    "-o", str(output), "--plot", str(plot)]
            print(f"lab up: MTU {mtu} and {loss:g}% loss per packet from client to server; sweeping "
                  f"loopback and {address} from the client namespace", file=sys.stderr, flush=True)
            done = lab.run("client", argv)
    return done.returncode


def add_action(actions, parents) -> None:
    demo = actions.add_parser("demo", parents=parents,
                              help="build a lab, sweep loopback and the lab path into one file and plot, remove the lab")
    demo.add_argument("--mtu", type=int, default=1400, help="the lab link's MTU (default 1400)")
    demo.add_argument("--loss", type=float, default=1.0, metavar="PCT", help="loss per packet, %% (default 1)")
    demo.add_argument("--duration", type=float, default=1.0, metavar="S", help="seconds per size (default 1)")
    demo.add_argument("--points", type=int, default=16, help="sizes in the plan (default 16)")
    demo.add_argument("--rate", default="100M", help="send rate in bits/s (default 100M)")
    demo.add_argument("-o", "--output", type=Path, default=Path("results") / "lab-demo",
                      help="result base name (default results/lab-demo)")
    demo.add_argument("--plot", type=Path, default=None, help="PNG path (default: the output name with .png)")
    demo.set_defaults(lab_func=lambda args: run_demo(args.output, args.mtu, args.loss, args.duration,
                                                     args.points, args.rate, args.plot))
