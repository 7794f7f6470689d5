"""Kernel counters that say where datagrams were lost: /proc/net/snmp and /proc/net/snmp6.

The counters are per network namespace, not per socket: a delta over a measurement also counts
other traffic of the same kind in that namespace. udpbench reports them beside the counts it
makes itself and says so.
"""
from __future__ import annotations

# Counter names as reported, IPv4 name -> IPv6 name in /proc/net/snmp6
COUNTERS = {
    "Udp.InDatagrams": "Udp6InDatagrams",
    "Udp.InErrors": "Udp6InErrors",
    "Udp.RcvbufErrors": "Udp6RcvbufErrors",
    "Udp.SndbufErrors": "Udp6SndbufErrors",
    "Udp.OutDatagrams": "Udp6OutDatagrams",
    "Udp.NoPorts": "Udp6NoPorts",
    "Ip.ReasmReqds": "Ip6ReasmReqds",
    "Ip.ReasmOKs": "Ip6ReasmOKs",
    "Ip.ReasmFails": "Ip6ReasmFails",
    "Ip.ReasmTimeout": "Ip6ReasmTimeout",
    "Ip.FragCreates": "Ip6FragCreates",
}


def _read_snmp(path: str = "/proc/net/snmp") -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return values
    for names, numbers in zip(lines[::2], lines[1::2]):
        prefix, _, keys = names.partition(":")
        _, _, vals = numbers.partition(":")
        for key, val in zip(keys.split(), vals.split()):
            try:
                values[f"{prefix}.{key}"] = int(val)
            except ValueError:
                pass
    return values


def _read_snmp6(path: str = "/proc/net/snmp6") -> dict[str, int]:
    values: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    values[parts[0]] = int(parts[1])
    except (OSError, ValueError):
        pass
    return values


def snapshot(v6: bool = False) -> dict[str, int]:
    """Current values of the counters udpbench attributes loss with, under their IPv4 names."""
    if v6:
        raw = _read_snmp6()
        return {name: raw[name6] for name, name6 in COUNTERS.items() if name6 in raw}
    raw = _read_snmp()
    return {name: raw[name] for name in COUNTERS if name in raw}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after if k in before}
