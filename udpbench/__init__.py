"""udpbench: measure what a network path does to UDP datagrams.

The library face. Every measurement is a function that takes its options as keywords (or an
options dataclass), reports progress and notices through callbacks, accepts ``stop=`` (a
``threading.Event`` another thread may set) and prints nothing::

    import udpbench
    row = udpbench.blast("127.0.0.1", size=1472, duration=1.0)
    print(row.goodput_bps, row.loss_ratio, row.loss_network)

The measurements: ``blast`` (one size -> ``Row``), ``sweep`` (sizes around the path MTU ->
``Sweep`` of rows), ``path_mtu`` (-> ``PathMtu``), ``ping`` (-> ``PingResult``),
``find_servers`` (-> ``FoundServer`` list), ``capacity`` (the highest loss-free rate at each
size, RFC 2544 -> ``CapacityResult`` of ``CapacityRow``) and ``mesh`` (every path among a Dask
cluster's workers -> ``MeshResult``; needs ``udpbench[mesh]``). ``Server`` serves them;
``load_results`` reads a result file back. Errors: ``UserError`` (exit 2 on the command line),
``MeasurementError`` (exit 1), and the ``UserError``s ``ServerAbsent`` and ``TokenRequired``,
which say where.

For a loopback host with no server listening, a measurement starts an embedded one. Names are
imported on first use, so ``import udpbench`` (and reading result files) needs no compiled core.
"""
from __future__ import annotations

import importlib

from udpbench._version import __version__

# name -> (module, attribute): imported when first asked for (PEP 562).
_LAZY = {
    "blast": ("udpbench.measure.blast", "blast"),
    "BlastOptions": ("udpbench.measure.blast", "BlastOptions"),
    "sweep": ("udpbench.measure.sweep", "sweep"),
    "SweepOptions": ("udpbench.measure.sweep", "SweepOptions"),
    "Sweep": ("udpbench.measure.sweep", "Sweep"),
    "SweepInterrupted": ("udpbench.measure.sweep", "SweepInterrupted"),
    "path_mtu": ("udpbench.measure.path_mtu", "path_mtu"),
    "PathMtu": ("udpbench.measure.path_mtu", "PathMtu"),
    "PathMtuOptions": ("udpbench.measure.path_mtu", "PathMtuOptions"),
    "ping": ("udpbench.measure.ping", "ping"),
    "PingOptions": ("udpbench.measure.ping", "PingOptions"),
    "PingResult": ("udpbench.measure.ping", "PingResult"),
    "find_servers": ("udpbench.measure.find_servers", "find_servers"),
    "FindServersOptions": ("udpbench.measure.find_servers", "FindServersOptions"),
    "FoundServer": ("udpbench.protocol.discovery", "FoundServer"),
    "capacity": ("udpbench.measure.capacity", "capacity"),
    "CapacityOptions": ("udpbench.measure.capacity", "CapacityOptions"),
    "CapacityResult": ("udpbench.measure.capacity", "CapacityResult"),
    "CapacityInterrupted": ("udpbench.measure.capacity", "CapacityInterrupted"),
    "CapacityRow": ("udpbench.protocol.capacity", "CapacityRow"),
    "mesh": ("udpbench.measure.mesh", "mesh"),
    "MeshOptions": ("udpbench.measure.mesh", "MeshOptions"),
    "MeshResult": ("udpbench.measure.mesh", "MeshResult"),
    "MeshInterrupted": ("udpbench.measure.mesh", "MeshInterrupted"),
    "Server": ("udpbench.transport.server", "Server"),
    "Row": ("udpbench.protocol.row", "Row"),
    "load_results": ("udpbench.output.results", "load_rows"),
    "UserError": ("udpbench.errors", "UserError"),
    "MeasurementError": ("udpbench.errors", "MeasurementError"),
    "ServerAbsent": ("udpbench.errors", "ServerAbsent"),
    "TokenRequired": ("udpbench.errors", "TokenRequired"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    """An entry of the face, imported from its module the first time it is asked for."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'udpbench' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    """The face's entries, imported or not, so that ``help(udpbench)`` lists them all."""
    return sorted(set(globals()) | set(__all__))
