"""The mesh: every path among a Dask cluster's workers, measured from each source's own worker.

A udpbench server runs in every worker (one already listening on the port is used as it is).
The round-robin schedule (``protocol/schedule.py``) keeps every host in at most one measurement
at a time. Each measurement is a task pinned to the source's worker (``workers=[address],
allow_other_workers=False``); it finds the path MTU to the destination and blasts the sizes.

**The destination's address** is the host part of the destination worker's own contact
address (what the scheduler reaches it on: ``dask worker --host ADDRESS`` chooses it on a host
with several). The mesh measures only those addresses: it never scans or guesses.

Needs the optional ``distributed`` package (``pip install "udpbench[mesh]"``). Never prints:
progress goes to ``on_pair`` and notices to ``on_notice``. See docs/mesh.md.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import errno
import threading
import time
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

from udpbench._version import __version__
from udpbench.errors import MeasurementError, UserError
from udpbench.output import results
from udpbench.protocol.schedule import round_robin

DEFAULT_PORT = 1060  # the udpbench port (transport/server.py); the servers in the workers listen here
INSTALL_HINT = 'the mesh needs Dask distributed: pip install "udpbench[mesh]"'
SCHEMES = ("tcp", "tls", "ws", "wss")  # Dask's network transports
POLL_S = 0.2  # how often the orchestrator looks at its tasks and the cluster's workers


def require_distributed():
    """The ``distributed`` module, or a UserError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return distributed


@dataclasses.dataclass
class MeshOptions:
    """What to measure on every ordered pair, and how the mesh runs."""

    port: int = DEFAULT_PORT  # the udpbench server port in every worker
    token: str | None = None  # shared secret of the servers started (and of the existing ones)
    sizes: list[int] | None = None  # payload sizes; None: the largest unfragmented payload of the pair
    duration: float = 1.0  # seconds per size
    rate: float | None = None  # payload bits/s; None: sweep's default (100 Mbit/s off loopback)
    engine: str = "auto"
    mtu_only: bool = False  # path MTU only: no blast
    concurrency: int | None = None  # most measurements at once; None: as many as the schedule allows
    timeout: float = 60.0  # seconds a measurement may take before it is marked failed
    max_rate_bps: float = 0.0  # the started servers' rate limit (0: none)
    wait_workers: int = 0  # wait (up to connect_timeout) for this many workers to join
    connect_timeout: float = 10.0  # seconds to reach the scheduler (and for wait_workers)
    output: Path | None = None  # NAME.npz + NAME.json, rewritten after every pair


@dataclasses.dataclass
class MeshResult:
    """The rows of every pair measured (``src``, ``dst`` and ``round`` on each), ``meta`` (the
    cluster, hosts, schedule and each pair's status in ``pairs``) and where it was saved."""

    meta: dict
    rows: list[dict]
    saved: Path | None

    @property
    def pairs(self) -> list[dict]:
        return self.meta["pairs"]

    @property
    def partial(self) -> bool:
        return any(p["status"] != "ok" for p in self.pairs)


class MeshInterrupted(KeyboardInterrupt):
    """Ctrl-C during a mesh: ``result`` holds the pairs finished before it, saved; the servers
    the mesh started are stopped by the time this reaches the caller."""

    def __init__(self, result: MeshResult):
        super().__init__()
        self.result = result


# ---- in the workers ------------------------------------------------------------------------

_SERVERS: dict[int, object] = {}  # port -> the Server this worker process started


def worker_address(contact: str) -> str:
    """The IP address in a worker's contact address (``tcp://198.18.0.2:40123``)."""
    host = urlparse(contact).hostname
    if not host:
        raise UserError(f"worker address {contact!r} has no host")
    return host


def start_server(port: int, token: str | None, max_rate_bps: float, dask_worker=None) -> dict:
    """Run in every worker by ``client.run``: a udpbench server on the worker's address."""
    # client.run calls this on the worker's event loop, where the server's netlink queries
    # (pyroute2 runs an asyncio loop of its own) cannot run: build it in a thread of its own.
    address = worker_address(dask_worker.address)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_start_server, address, port, token, max_rate_bps).result()


def _start_server(address: str, port: int, token: str | None, max_rate_bps: float) -> dict:
    from udpbench.transport.client import Client, ServerAbsent
    from udpbench.transport.server import Server

    if port in _SERVERS:
        return {"address": address, "server": "started"}
    try:
        _SERVERS[port] = Server(address, port, token=token or None, max_rate_bps=max_rate_bps).start()
        return {"address": address, "server": "started"}
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
    try:  # something listens already: use it if it is a udpbench server
        with Client(address, port, token=token or ""):
            return {"address": address, "server": "existing"}
    except ServerAbsent as exc:
        raise MeasurementError(f"port {port} on {address} is taken by something else: {exc}") from None


def stop_server(port: int) -> bool:
    server = _SERVERS.pop(port, None)
    if server is not None:
        server.close()
    return server is not None


def measure_pair(destination: str, opts: MeshOptions) -> dict:
    """Run on the source's worker: path MTU to the destination, then a blast per size."""
    mtu, rows = _measure_with_library(destination, opts)
    return {"mtu": mtu, "rows": rows}


def _measure_with_library(destination: str, opts: MeshOptions) -> tuple[dict, list[dict]]:
    # The one place the mesh measures: the library's path_mtu, then its blast per size, told the
    # pair's path MTU so that fragments count what crosses the path. The rows are the library's
    # own (Row.as_dict); the orchestrator only adds src, dst and round.
    from udpbench.measure.blast import BlastOptions, blast
    from udpbench.measure.path_mtu import path_mtu

    token = opts.token or ""
    # Both methods: the echo answer is exact (acknowledged probes, RFC 8899) and the ICMP one
    # beside it reveals a black hole (RFC 2923), a thing worth seeing in a matrix.
    found = path_mtu(destination, method="both", port=opts.port, token=token)
    if found.path_mtu is None:
        raise MeasurementError(f"no path MTU to {destination}: " + ("; ".join(found.warnings) or "no probe answered"))
    mtu = {"path_mtu": found.path_mtu, "mtu_method": "echo" if found.echo_mtu else "icmp",
           "black_hole": found.black_hole, "icmp_mtu": found.icmp_mtu, "echo_mtu": found.echo_mtu}
    if opts.mtu_only:
        return mtu, []
    # The servers run in the workers: a missing one is the pair's failure, not a cue to embed one.
    options = BlastOptions(duration=opts.duration, rate=opts.rate, engine=opts.engine, port=opts.port,
                           token=token, embedded=False, path_mtu=found.path_mtu)
    rows = [blast(destination, options, size=size).as_dict() for size in opts.sizes or [found.max_payload]]
    return mtu, rows


# ---- the orchestrator ----------------------------------------------------------------------

def connect(scheduler: str, timeout: float):
    """A Dask client, or a one-line UserError when the scheduler cannot be reached."""
    distributed = require_distributed()
    scheduler = scheduler_address(scheduler)
    try:
        return distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot reach the Dask scheduler at {scheduler}: {reason}") from None


def scheduler_address(text: str) -> str:
    """``tcp://HOST:PORT`` (a bare ``HOST:PORT`` means tcp), or a UserError naming the text."""
    address = text if "://" in text else f"tcp://{text}"
    parsed = urlparse(address)
    try:
        port = parsed.port
    except ValueError:
        port = None
    if parsed.scheme not in SCHEMES or not parsed.hostname or port is None:
        raise UserError(f"scheduler address {text!r} is not like tcp://HOST:PORT")
    return address


def _workers(client) -> dict[str, dict]:
    # Asked of the scheduler itself, not through client.scheduler_info(): that returns the
    # client's shared cache, which its own periodic refresh (every 2 s, asking for no workers)
    # can overwrite between the fresh fetch and the return. An empty list then read as every
    # worker having left the cluster, and failed healthy pairs under load (docs/mesh.md).
    # Newer releases list only a few workers unless asked for all (n_workers=-1).
    wanted = {"n_workers": -1} if _accepts(client.scheduler_info, "n_workers") else {}
    return client.sync(client.scheduler.identity, **wanted)["workers"]


def _accepts(function, keyword: str) -> bool:
    import inspect
    return keyword in inspect.signature(function).parameters


def hosts_of(workers: dict[str, dict]) -> list[dict]:
    """One host per worker, named by the worker's name (or its address), in name order."""
    hosts = []
    for contact, info in workers.items():
        address = worker_address(contact)
        name = str(info.get("name")) if info.get("name") not in (None, "", contact) else address
        hosts.append({"host": name, "address": address, "worker": contact, "path_mtu": None})
    names = [h["host"] for h in hosts]
    if len(set(names)) != len(names):
        for h in hosts:
            h["host"] = h["worker"]
    return sorted(hosts, key=lambda h: (len(h["host"]), h["host"]))


def mesh(scheduler: str, options: MeshOptions | None = None, *,
         on_pair: Callable[[dict], None] | None = None,
         on_notice: Callable[[str], None] | None = None,
         stop: threading.Event | None = None) -> MeshResult:
    """Measure every ordered pair of the cluster's workers. A pair that fails (its worker lost,
    a timeout, an error) is marked failed with the reason and the rest go on; the result is
    saved after every pair. Ctrl-C stops the servers started and raises MeshInterrupted, whose
    ``result`` is what was measured (saved too). ``stop``, set from another thread, does the
    same without the exception: the pairs under way are cancelled, and the result (``meta``
    has ``stopped``) is returned."""
    opts = options or MeshOptions()
    client = connect(scheduler, opts.connect_timeout)
    try:
        if opts.wait_workers:
            try:
                client.wait_for_workers(opts.wait_workers, timeout=opts.connect_timeout)
            except TimeoutError:
                raise UserError(f"fewer than {opts.wait_workers} workers joined {scheduler} within "
                                f"{opts.connect_timeout:g} s") from None
        hosts = hosts_of(_workers(client))
        if len(hosts) < 2:
            raise UserError(f"the cluster at {scheduler} has {len(hosts)} worker(s): a mesh needs two")
        try:
            try:
                started = client.run(start_server, opts.port, opts.token, opts.max_rate_bps)
            except (UserError, MeasurementError):
                raise
            except Exception as exc:
                raise MeasurementError(f"could not start the udpbench servers in the workers: {_reason(exc)}") from None
            return _run(client, scheduler, hosts, started, opts, on_pair, stop or threading.Event())
        finally:
            try:
                if _accepts(client.run, "on_error"):
                    client.run(stop_server, opts.port, on_error="ignore")
                else:
                    client.run(stop_server, opts.port)
            except Exception as exc:  # a lost worker's server went with it
                if on_notice:
                    on_notice(f"stopping the servers: {exc}")
    finally:
        client.close()


def _run(client, scheduler, hosts, started, opts, on_pair, stop: threading.Event) -> MeshResult:
    by_name = {h["host"]: h for h in hosts}
    for h in hosts:
        h["server"] = started.get(h["worker"], {}).get("server")
    schedule = round_robin(list(by_name), opts.concurrency)
    meta = {
        "tool": "udpbench", "version": __version__, "kind": "mesh", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cluster": {"scheduler": scheduler, "workers": [h["worker"] for h in hosts]},
        "hosts": hosts, "schedule": [[list(p) for p in r] for r in schedule],
        "port": opts.port, "duration_s": opts.duration, "sizes": opts.sizes, "mtu_only": opts.mtu_only,
        "concurrency": opts.concurrency, "timeout_s": opts.timeout, "pairs": [],
    }
    rows: list[dict] = []
    saved: Path | None = None
    lost: dict[str, str] = {}  # worker -> why it is gone
    running: dict[tuple[str, str], tuple] = {}  # (src, dst) -> (future, record, deadline)

    def checkpoint():
        nonlocal saved
        if opts.output is not None:
            saved = results.save(opts.output, meta, rows)[0]

    def finish(record: dict, outcome: dict | None = None):
        if outcome is not None:
            record.update(status="ok", **outcome["mtu"])
            for row in outcome["rows"]:
                rows.append({**row, "src": record["src"], "dst": record["dst"], "round": record["round"],
                             "src_address": by_name[record["src"]]["address"],
                             "dst_address": by_name[record["dst"]]["address"]})
        meta["pairs"].append(record)
        checkpoint()
        if on_pair:
            on_pair(record)

    try:
        for number, pairs in enumerate(schedule):
            if stop.is_set():
                break
            _check_workers(client, hosts, lost)
            running = {}
            for src, dst in pairs:
                record = {"src": src, "dst": dst, "round": number, "status": "failed", "reason": None,
                          "path_mtu": None}
                gone = [lost[by_name[h]["worker"]] for h in (src, dst) if by_name[h]["worker"] in lost]
                if gone:
                    record["reason"] = gone[0]
                    finish(record)
                    continue
                future = client.submit(measure_pair, by_name[dst]["address"], opts, pure=False,
                                       workers=[by_name[src]["worker"]], allow_other_workers=False,
                                       key=f"udpbench-mesh-{number}-{src}-{dst}-{time.monotonic_ns()}")
                running[(src, dst)] = (future, record, time.monotonic() + opts.timeout)
            while running:
                if stop.wait(POLL_S):
                    for future, _, _ in running.values():
                        future.cancel()
                    running = {}
                    break
                _check_workers(client, hosts, lost)
                for (src, dst), (future, record, deadline) in list(running.items()):
                    gone = [lost[by_name[h]["worker"]] for h in (src, dst) if by_name[h]["worker"] in lost]
                    if future.status == "finished":
                        finish(record, future.result())
                    elif future.status == "error":
                        record["reason"] = _reason(future.exception())
                        finish(record)
                    elif gone or future.status in ("cancelled", "lost") or time.monotonic() > deadline:
                        record["reason"] = gone[0] if gone else (f"no result within {opts.timeout:g} s"
                                                                 if future.status == "pending" else future.status)
                        future.cancel()
                        finish(record)
                    else:
                        continue
                    del running[(src, dst)]
    except KeyboardInterrupt:
        for future, _, _ in running.values():
            future.cancel()
        meta["interrupted"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        checkpoint()
        raise MeshInterrupted(MeshResult(meta, rows, saved)) from None
    meta["stopped" if stop.is_set() else "finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    checkpoint()
    return MeshResult(meta, rows, saved)


def _check_workers(client, hosts, lost: dict[str, str]) -> None:
    present = set(_workers(client))
    for h in hosts:
        if h["worker"] not in present and h["worker"] not in lost:
            lost[h["worker"]] = f"worker {h['host']} ({h['worker']}) left the cluster"


def _reason(exc: BaseException | None) -> str:
    text = str(exc).splitlines()[0] if exc is not None and str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text}" if not isinstance(exc, (UserError, MeasurementError)) else text
