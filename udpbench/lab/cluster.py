"""A Dask cluster inside a lab: the scheduler in the router's namespace, one worker in each
host's, every process tracked by its PID and stopped by it.

The scheduler listens on every router address, so each worker reaches it through its own
link; each worker serves on its host's lab address, which is therefore the address the mesh
measures (docs/mesh.md). Logs go to files in a temporary directory, not pipes nobody reads.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from udpbench.errors import UserError
from udpbench.lab.lab import Lab
from udpbench.lab.system import stop_process

SCHEDULER_PORT = 8786  # Dask's own default; the router's namespace has nothing else on it
START_TIMEOUT = 30.0  # seconds for the scheduler to listen (a loaded 2-CPU machine is slow)


class LabCluster:
    """``with LabCluster(lab) as cluster:`` — ``cluster.scheduler`` is the address to give the mesh
    from inside the router's namespace; ``cluster.workers`` maps each host to its worker process."""

    def __init__(self, lab: Lab, port: int = SCHEDULER_PORT, threads: int = 2):
        self.lab, self.port, self.threads = lab, port, threads
        self.scheduler_process: subprocess.Popen | None = None
        self.workers: dict[str, subprocess.Popen] = {}
        self.logs = Path(tempfile.mkdtemp(prefix="udpbench-mesh-"))

    @property
    def scheduler(self) -> str:
        return f"tcp://{self.lab.address('router')}:{self.port}"

    def scheduler_for(self, host: str) -> str:
        return f"tcp://{self.lab.address('router', toward=host)}:{self.port}"

    def _popen(self, node: str, argv: list[str], log: str) -> subprocess.Popen:
        with open(self.logs / log, "wb") as out:
            return self.lab.popen(node, [sys.executable, "-m", *argv], stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL)

    def start(self) -> LabCluster:
        try:
            self.scheduler_process = self._popen(
                "router", ["distributed.cli.dask_scheduler", "--host", "", "--port", str(self.port),
                           "--no-dashboard"], "scheduler.log")
            self._wait_for("scheduler.log", "Scheduler at", self.scheduler_process)
            for host in self.lab.hosts:
                self.workers[host] = self._popen(host, [
                    "distributed.cli.dask_worker", self.scheduler_for(host), "--host", self.lab.address(host),
                    "--name", host, "--nthreads", str(self.threads), "--no-nanny", "--no-dashboard",
                    "--memory-limit", "0", "--local-directory", str(self.logs / host)], f"{host}.log")
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for(self, log: str, text: str, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            content = (self.logs / log).read_text(errors="replace")
            if text in content:
                return
            if process.poll() is not None:
                last = content.strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"the Dask scheduler in the lab ended at once: {last[0]}")
            time.sleep(0.1)
        raise UserError(f"the Dask scheduler in the lab did not start within {START_TIMEOUT:g} s")

    def kill_worker(self, host: str) -> None:
        """End one worker at once (SIGKILL): what a crashed host looks like to the cluster."""
        self.workers[host].kill()

    def stop(self) -> None:
        """Stop every process this cluster started, by PID: workers first, then the scheduler."""
        for process in [*self.workers.values(), self.scheduler_process]:
            if process is not None:
                stop_process(process, grace=5.0)
        shutil.rmtree(self.logs, ignore_errors=True)

    def __enter__(self) -> LabCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def varied_links(hosts: tuple[str, ...]) -> dict[str, dict]:
    """``mesh --lab N``'s links when none are given: MTUs 1500, 1400, 1300, … (down to 1280, so
    IPv6 stays), and 2 % loss into the last host of three or more: the matrix then shows a
    smaller path MTU and a lossy direction to find."""
    links = {host: {"mtu": max(1280, 1500 - 100 * i)} for i, host in enumerate(hosts)}
    if len(hosts) >= 3:
        links[hosts[-1]]["loss"] = 2.0
    return links


def run_mesh_in_lab(hosts: int, links: dict[str, dict] | None, mesh_argv: list[str], prefix: str) -> int:
    """Build an N-host lab (``varied_links``, then ``links`` per host), a Dask cluster in it, run
    ``udpbench mesh MESH_ARGV`` in the router's namespace against that cluster (its output goes
    to this process's stdout and stderr), and remove everything, whatever happened. Returns the
    mesh's exit status."""
    lab = Lab(prefix, hosts=hosts)
    wanted = varied_links(lab.hosts)
    for host, settings in (links or {}).items():
        wanted.setdefault(host, {}).update(settings)
    lab.link_overrides = wanted
    with lab, LabCluster(lab) as cluster:
        argv = [sys.executable, "-m", "udpbench", "mesh", "--scheduler", cluster.scheduler,
                "--wait-workers", str(len(lab.hosts)), *mesh_argv]
        return lab.run("router", argv, stdin=subprocess.DEVNULL).returncode
