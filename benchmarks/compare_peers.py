#!/usr/bin/env python3
"""Delivered datagrams per second on loopback: udpbench's engines beside iperf3, iperf2, nuttcp and sockperf.

    python benchmarks/compare_peers.py                     # 64 and 1472 B, 5 rounds of 3 s
    python benchmarks/compare_peers.py --rounds 5 --duration 5 --sizes 64,512,1472

Not a test: a measurement of this machine, written to results/benchmark-TIME.json and
printed as a table. "Delivered" is what the receiving side counted, never what was sent:

- udpbench: ``received`` from the server's REPORT (distinct datagrams of the session).
- iperf3 (``-u -b 0 -l N``, server ``iperf3 -s -1``): the server's ``packets - lost_packets``
  (highest sequence number minus the gaps it saw), from its own JSON.
- iperf2 (Debian ``iperf`` 2.1; ``-u -b 10G -l N``, server ``iperf -s -u``): the server's report,
  which the client prints as its last CSV line (``-y C``): total datagrams minus lost ones. iperf2
  has no "unlimited" UDP rate; 10 Gbit/s is far above what one core sends on loopback.
- nuttcp (``-u -R 100g -l N`` into a one-shot ``nuttcp -1`` server): the receiver's counts, which
  the client prints with ``-fparse``: ``pkt`` minus ``drop``.
- sockperf (``sockperf tp`` into ``sockperf sr``): throughput mode reports only what the
  client sent, so delivered = sent - the drops of the server's socket, read with ``ss -m``
  (``skmem ... d<drops>``) before the server exits. On loopback nothing else loses
  datagrams, so this is what the server's socket took in; sockperf does not count it itself.
- c-reference (when a C compiler is present): ``benchmarks/c_reference.c``, plain C with the
  same syscalls as udpbench, counting only: the ceiling the Cython loops are judged against.

Each round runs every tool once per size, in a rotated order, so that a load change on a
shared machine hits all tools alike; the table shows medians over rounds, and each ratio is
the median of per-round ratios to iperf3 in the same round. Two more ratios judge udpbench: to the
best peer of the same round (whichever of iperf3, iperf2, nuttcp and sockperf delivered most), and to
the C reference's loop of the same engine. Each udpbench engine runs right beside the C loop of
that engine, first or second by turns: on a VM whose memory bandwidth swings by several times
from one second to the next (GSO at 1472 B is a memory copy at 7 GB/s), only neighbours in time
can be compared. Only loopback (127.0.0.1) is used.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ENGINES = ("send", "mmsg", "gso")
PEERS = ("iperf3", "iperf2", "nuttcp", "sockperf")
PEER_COMMANDS = {"iperf3": "iperf3", "iperf2": "iperf", "nuttcp": "nuttcp", "sockperf": "sockperf"}


def free_port() -> int:
    """A port free for both TCP and UDP on loopback (udpbench serves both on one number)."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind((HOST, 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((HOST, port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


def wait_port(port: int, timeout: float = 5.0, udp: bool = False) -> None:
    """Wait until a server listens on the port. Asks ss rather than connecting: a test
    connection would be the one client `iperf3 -s -1` serves."""
    deadline = time.monotonic() + timeout
    argv = ["ss", "-Huan" if udp else "-Htln", f"sport = :{port}"]
    while time.monotonic() < deadline:
        if subprocess.run(argv, capture_output=True, text=True).stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def stop(proc: subprocess.Popen) -> None:
    """End a server this script started. SIGTERM, not SIGINT: a shell without job control
    starts background jobs with SIGINT ignored, and their children inherit that."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def env_with_repo() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


# --- the tools ---------------------------------------------------------------------------------

class Udpbench:
    """One `udpbench serve` process for the whole benchmark; one `udpbench blast` per run."""

    def __init__(self):
        self.port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "udpbench", "serve", "--bind", HOST, "--port", str(self.port), "--quiet"],
            env=env_with_repo(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_port(self.port)

    def run(self, engine: str, size: int, duration: float) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "udpbench", "blast", HOST, "--port", str(self.port), "--size", str(size),
             "--duration", str(duration), "--engine", engine, "--rate", "max", "--json"],
            env=env_with_repo(), capture_output=True, text=True, timeout=duration + 30)
        if out.returncode != 0:
            raise RuntimeError(f"udpbench blast failed: {out.stderr.strip()}")
        row = json.loads(out.stdout)
        return {"sent": row["sent"], "delivered": row["received"], "seconds": row["duration_s"],
                "engine_used": row["engine"], "loss_socket": row.get("loss_socket")}

    def close(self) -> None:
        stop(self.server)


def run_iperf3(size: int, duration: float) -> dict:
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-B", HOST, "-p", str(port), "-J"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        client = subprocess.run(["iperf3", "-c", HOST, "-p", str(port), "-u", "-b", "0", "-l", str(size),
                                 "-t", str(duration), "-J"], capture_output=True, text=True,
                                timeout=duration + 30)
        out, _ = server.communicate(timeout=10)
    finally:
        stop(server)
    sent = json.loads(client.stdout)["end"]["sum"]
    received = json.loads(out)["end"]["sum"]
    return {"sent": sent["packets"], "delivered": received["packets"] - received["lost_packets"],
            "seconds": received["seconds"]}


def run_iperf2(size: int, duration: float) -> dict:
    """iperf2's server prints its report (CSV, line-buffered through stdbuf) when the client ends;
    read it there: the copy the server sends back to the client is lost when its socket is full."""
    port = free_port()
    with tempfile.TemporaryFile(mode="w+") as report_file:
        server = subprocess.Popen(["stdbuf", "-oL", "iperf", "-s", "-u", "-B", HOST, "-p", str(port), "-y", "C",
                                   "-e"], stdout=report_file, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, udp=True)
            subprocess.run(["iperf", "-c", HOST, "-u", "-p", str(port), "-b", "10G", "-l", str(size),
                            "-t", f"{duration:g}"], capture_output=True, text=True, timeout=duration + 30)
            deadline = time.monotonic() + 10
            lines: list[list[str]] = []
            while not lines and time.monotonic() < deadline:
                time.sleep(0.1)
                report_file.seek(0)
                lines = [line.split(",") for line in report_file.read().splitlines() if line.count(",") >= 12]
        finally:
            stop(server)
    if not lines:
        raise RuntimeError("iperf2's server printed no report")
    # ...,interval,bytes,bps,jitter,lost,total,percent,outoforder
    report = lines[-1]
    lost, total = int(report[10]), int(report[11])
    start, _, end = report[6].partition("-")
    return {"sent": total, "delivered": total - lost, "seconds": float(end) - float(start)}


NUTTCP_FIELDS = re.compile(r"(\w+)=([-0-9.]+)")


def run_nuttcp(size: int, duration: float) -> dict:
    control_port = free_port()
    data_port = free_port()
    server = subprocess.Popen(["nuttcp", "-1", "--nofork", "-P", str(control_port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(control_port)
        client = subprocess.run(["nuttcp", "-u", f"-l{size}", "-R", "100g", f"-T{duration:g}", "-fparse",
                                 "-P", str(control_port), "-p", str(data_port), HOST],
                                capture_output=True, text=True, timeout=duration + 30)
    finally:
        stop(server)
    fields = dict(NUTTCP_FIELDS.findall(client.stdout))
    if "pkt" not in fields or "drop" not in fields:
        raise RuntimeError(f"cannot read nuttcp's counts: {client.stdout[-300:]!r} {client.stderr[-300:]!r}")
    pkt, drop = int(fields["pkt"]), int(fields["drop"])
    return {"sent": pkt, "delivered": pkt - drop, "seconds": float(fields["real_seconds"])}


SOCKPERF_SENT = re.compile(r"Total of (\d+) messages sent in ([0-9.]+) sec")
SS_DROPS = re.compile(r"\bd(\d+)\b")


def run_sockperf(size: int, duration: float) -> dict:
    port = free_port()
    server = subprocess.Popen(["sockperf", "sr", "-i", HOST, "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, udp=True)
        client = subprocess.run(["sockperf", "tp", "-i", HOST, "-p", str(port), "-m", str(size),
                                 "-t", str(duration), "--dontwarmup"], capture_output=True, text=True,
                                timeout=duration + 30)
        time.sleep(0.3)  # let the server empty its socket
        ss = subprocess.run(["ss", "-Huamn", f"sport = :{port}"], capture_output=True, text=True).stdout
    finally:
        stop(server)
    m = SOCKPERF_SENT.search(client.stdout + client.stderr)
    d = SS_DROPS.search(ss)
    if not m or not d:
        raise RuntimeError(f"cannot read sockperf's counts (client: {client.stdout[-300:]!r}, ss: {ss!r})")
    sent, seconds = int(m.group(1)), float(m.group(2))
    return {"sent": sent, "delivered": sent - int(d.group(1)), "seconds": seconds,
            "socket_drops": int(d.group(1))}


def build_c_reference(workdir: Path) -> Path | None:
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    exe = workdir / "c_reference"
    subprocess.run([cc, "-O2", "-Wall", "-pthread", "-o", str(exe), str(ROOT / "benchmarks" / "c_reference.c")],
                   check=True)
    return exe


def run_c_reference(exe: Path, engine: str, size: int, duration: float) -> dict:
    out = subprocess.run([str(exe), engine, str(size), str(duration)], capture_output=True, text=True,
                         timeout=duration + 30, check=True)
    r = json.loads(out.stdout)
    return {"sent": r["sent"], "delivered": r["delivered"], "seconds": r["seconds"]}


# --- the machine -------------------------------------------------------------------------------

def _tool_order(tool: str) -> int:
    order = list(PEERS) + [f"udpbench {e}" for e in ENGINES] + [f"c-reference {e}" for e in ENGINES]
    return order.index(tool) if tool in order else len(order)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def version(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=5).stdout.splitlines()[0].strip()
        except (OSError, IndexError, subprocess.SubprocessError):
            return None

    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
            "python": platform.python_version(), "iperf3": version(["iperf3", "--version"]),
            "iperf2": version(["iperf", "-v"]), "nuttcp": version(["nuttcp", "-V"]),
            "sockperf": version(["sockperf", "--version"])}


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


# --- the run -----------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="64,1472", help="payload sizes, comma-separated (default 64,1472)")
    p.add_argument("--duration", type=float, default=3.0, help="seconds per run (default 3)")
    p.add_argument("--rounds", type=int, default=5, help="rounds; the table shows medians (default 5)")
    p.add_argument("--no-c", action="store_true", help="skip the C reference")
    p.add_argument("--output", type=Path, help="JSON file (default results/benchmark-TIME.json)")
    p.add_argument("--show", type=Path, metavar="JSON", help="print the table of an earlier run and exit")
    args = p.parse_args(argv)
    if args.show:
        doc = json.loads(args.show.read_text())
        tools = list(dict.fromkeys(r["tool"] for r in doc["runs"]))
        doc["summary"] = summarize(doc["runs"], doc["sizes"], sorted(tools, key=_tool_order))
        print(table(doc))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    if not 0 < args.duration <= 60 or not 1 <= args.rounds <= 20:
        p.error("duration must be in (0, 60] s and rounds in 1..20")
    missing = [t for t in ("iperf3", "ss", "stdbuf") if not shutil.which(t)]
    if missing:
        p.error(f"missing tools: {', '.join(missing)} (iperf3 is the baseline every ratio divides by)")
    peers = [peer for peer in PEERS if shutil.which(PEER_COMMANDS[peer])]
    absent = [peer for peer in PEERS if peer not in peers]
    if absent:
        print(f"not installed, left out: {', '.join(absent)}", file=sys.stderr)

    tools = peers + [f"udpbench {e}" for e in ENGINES]
    with tempfile.TemporaryDirectory() as tmp:
        exe = None if args.no_c else build_c_reference(Path(tmp))
        # A unit is what runs together: a peer alone, or an engine of udpbench beside its C loop.
        units = [[peer] for peer in peers] + [
            [f"udpbench {e}"] + ([f"c-reference {e}"] if exe else []) for e in ENGINES]
        if exe:
            tools += [f"c-reference {e}" for e in ENGINES]
        udpbench = Udpbench()
        runs = []
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        load_before = loadavg()
        try:
            for rnd in range(args.rounds):
                for size in sizes:
                    rotated = units[rnd % len(units):] + units[:rnd % len(units)]
                    order = [tool for unit in rotated for tool in (unit if rnd % 2 == 0 else unit[::-1])]
                    for tool in order:
                        name, _, engine = tool.partition(" ")
                        if name == "iperf3":
                            r = run_iperf3(size, args.duration)
                        elif name == "sockperf":
                            r = run_sockperf(size, args.duration)
                        elif name == "iperf2":
                            r = run_iperf2(size, args.duration)
                        elif name == "nuttcp":
                            r = run_nuttcp(size, args.duration)
                        elif name == "udpbench":
                            r = udpbench.run(engine, size, args.duration)
                        else:
                            r = run_c_reference(exe, engine, size, args.duration)
                        r.update(tool=tool, size=size, round=rnd, load1=loadavg()[0],
                                 delivered_pps=r["delivered"] / r["seconds"], sent_pps=r["sent"] / r["seconds"])
                        runs.append(r)
                        print(f"round {rnd + 1} {size:>5} B {tool:<20} delivered {r['delivered_pps']:>12,.0f}/s"
                              f"  sent {r['sent_pps']:>12,.0f}/s", file=sys.stderr, flush=True)
        finally:
            udpbench.close()
        load_after = loadavg()

    summary = summarize(runs, sizes, tools)
    document = {
        "benchmark": "udpbench loopback delivered datagrams/s vs iperf3, iperf2, nuttcp and sockperf",
        "started": started, "machine": machine(), "load_before": load_before, "load_after": load_after,
        "duration_s": args.duration, "rounds": args.rounds, "sizes": sizes,
        "summary": summary, "runs": runs,
    }
    output = args.output or ROOT / "results" / time.strftime("benchmark-%Y%m%d-%H%M%S.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=1) + "\n")
    print(table(document))
    print(f"\nwritten to {output}", file=sys.stderr)
    return 0


def per_round_ratios(mine: list[dict], reference: dict[int, float]) -> list[float]:
    return [r["delivered_pps"] / reference[r["round"]] for r in mine if reference.get(r["round"])]


def summarize(runs: list[dict], sizes: list[int], tools: list[str]) -> list[dict]:
    """Medians per tool and size; ratios are medians of per-round ratios: to iperf3, to the best
    peer of the same round, and (for udpbench) to the C reference's loop of the same engine."""
    summary = []
    for size in sizes:
        base = {r["round"]: r for r in runs if r["tool"] == "iperf3" and r["size"] == size}
        best_peer: dict[int, float] = {}
        for r in runs:
            if r["size"] == size and r["tool"] in PEERS:
                best_peer[r["round"]] = max(best_peer.get(r["round"], 0.0), r["delivered_pps"])
        for tool in tools:
            mine = [r for r in runs if r["tool"] == tool and r["size"] == size]
            if not mine:
                continue
            ratios = [r["delivered_pps"] / base[r["round"]]["delivered_pps"] for r in mine
                      if r["round"] in base and base[r["round"]]["delivered_pps"]]
            sent_ratios = [r["sent_pps"] / base[r["round"]]["sent_pps"] for r in mine
                           if r["round"] in base and base[r["round"]]["sent_pps"]]
            name, _, engine = tool.partition(" ")
            c_loop = {r["round"]: r["delivered_pps"] for r in runs
                      if r["tool"] == f"c-reference {engine}" and r["size"] == size}
            to_best = per_round_ratios(mine, best_peer) if name == "udpbench" else []
            to_c = per_round_ratios(mine, c_loop) if name == "udpbench" else []
            own = [r["delivered_pps"] for r in mine]
            summary.append({
                "tool": tool, "size": size,
                "ratio_to_best_peer": statistics.median(to_best) if to_best else None,
                "ratio_to_c_reference": statistics.median(to_c) if to_c else None,
                "ratio_to_c_range": [min(to_c), max(to_c)] if to_c else None,
                # How much the tool's own rate moved from round to round: max / min.
                "spread": max(own) / min(own) if min(own) > 0 else None,
                "delivered_pps": statistics.median(r["delivered_pps"] for r in mine),
                "sent_pps": statistics.median(r["sent_pps"] for r in mine),
                "ratio_to_iperf3": statistics.median(ratios) if ratios else None,
                "ratio_range": [min(ratios), max(ratios)] if ratios else None,
                "sent_ratio_to_iperf3": statistics.median(sent_ratios) if sent_ratios else None,
            })
    return summary


def table(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"Loopback, {doc['rounds']} rounds x {doc['duration_s']:g} s, medians. Machine: {m['nproc']} CPUs, "
        f"{m['cpu_model']}, Linux {m['kernel']}; load average {doc['load_before'][0]:.2f} before, "
        f"{doc['load_after'][0]:.2f} after.",
        "",
        "| tool | payload B | delivered datagrams/s | sent datagrams/s | delivered / iperf3 (range over rounds) "
        "| sent / iperf3 sent | delivered / best peer | delivered / C loop (range) | max / min over rounds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in doc["summary"]:
        ratio = "-" if s["ratio_to_iperf3"] is None else (
            f"{s['ratio_to_iperf3']:.2f}x ({s['ratio_range'][0]:.2f}-{s['ratio_range'][1]:.2f})")
        sent = "-" if s.get("sent_ratio_to_iperf3") is None else f"{s['sent_ratio_to_iperf3']:.2f}x"
        best = "-" if s.get("ratio_to_best_peer") is None else f"{s['ratio_to_best_peer']:.2f}x"
        c_loop = "-" if s.get("ratio_to_c_reference") is None else f"{s['ratio_to_c_reference']:.2f}x"
        if s.get("ratio_to_c_range"):
            c_loop += f" ({s['ratio_to_c_range'][0]:.2f}-{s['ratio_to_c_range'][1]:.2f})"
        spread = "-" if s.get("spread") is None else f"{s['spread']:.2f}"
        lines.append(f"| {s['tool']} | {s['size']} | {s['delivered_pps']:,.0f} | {s['sent_pps']:,.0f} | {ratio} "
                     f"| {sent} | {best} | {c_loop} | {spread} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
