"""What a sweep figure draws: the rows of each host as a series, the numbers read from them, the units.

No drawing here. A series is one host's rows in payload-size order: one line per host, as the
user measured one path per host, whatever engine ``auto`` picked at each size (the engine is
the marker, docs/plot.md). A host splits into one series per engine only where the file holds
the same size measured by several engines, and into one per direction where it holds both.
"""
from __future__ import annotations

import math

from udpbench.protocol import frag
from udpbench.protocol import wire

HOST_COLOURS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
ENGINE_MARKERS = {"gso": "o", "mmsg": "s", "send": "^"}
_SPARE_MARKERS = ("D", "v", "P", "X", "p", "h")  # for engines this list does not know (e.g. "gso+mmsg")

RATE_UNITS = (("Tbit/s", 1e12), ("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3), ("bit/s", 1.0))
DELAY_UNITS = (("s", 1e6), ("ms", 1e3), ("\u00b5s", 1.0))  # scale in microseconds


def number(row: dict, key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def goodput_bps(row: dict) -> float | None:
    value = number(row, "goodput_bps")
    if value is None:  # an older or partial row: goodput from its parts
        received, size, duration = number(row, "received"), number(row, "size"), number(row, "duration_s")
        if None in (received, size, duration) or not duration:
            return None
        value = received * size * 8 / duration
    return value


def loss_percent(row: dict) -> float | None:
    value = number(row, "loss_ratio")
    if value is None:
        lost, sent = number(row, "lost"), number(row, "sent")
        if lost is None or not sent:
            return None
        value = lost / sent
    return 100 * value


def spread(row: dict, key: str) -> float | None:
    """Jitter and delay spread need two datagrams that arrived; with fewer they are not zero but unknown."""
    received = number(row, "received")
    if received is not None and received < 2:
        return None
    return number(row, key)


def one_way_delay_us(row: dict, key: str) -> float | None:
    """An ``owd_*_us`` or ``sched_owd_*_us`` field, or None where the row has no delay sample:
    an older file without the fields, or nothing received (the field then holds 0, not a delay)."""
    if not isinstance(row.get("owd_basis"), str):
        return None
    received = number(row, "received")
    if received is not None and received < 1:
        return None
    return number(row, key)


def unit_for(largest: float, units) -> tuple[str, float]:
    """(name, scale) of the largest unit that ``largest`` reaches at least once; the smallest unit
    when it reaches none. So 39.8e9 bit/s plots as 39.8 Gbit/s, not 39,800 Mbit/s."""
    for name, scale in units:
        if largest >= scale:
            return name, scale
    return units[-1]


def engine_marker(engine: str, engines: list[str]) -> str:
    if engine in ENGINE_MARKERS:
        return ENGINE_MARKERS[engine]
    unknown = [e for e in engines if e not in ENGINE_MARKERS]
    return _SPARE_MARKERS[unknown.index(engine) % len(_SPARE_MARKERS)] if engine in unknown else "o"


class Series:
    """The rows of one host (and direction, or engine), sorted by payload size, and where that host fragments."""

    def __init__(self, host: str, label: str, rows: list[dict], mtu: int | None, v6: bool, colour: str):
        self.host, self.label, self.mtu, self.v6, self.colour = host, label, mtu, v6, colour
        self.rows = sorted((r for r in rows if number(r, "size") is not None), key=lambda r: r["size"])
        self.sizes = [int(r["size"]) for r in self.rows]

    def column(self, get) -> tuple[list[int], list[float]]:
        """(sizes, values) for the rows where ``get(row)`` is a number."""
        pairs = [(s, get(r)) for s, r in zip(self.sizes, self.rows)]
        pairs = [(s, v) for s, v in pairs if v is not None]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def by_engine(self, get) -> dict[str, tuple[list[int], list[float]]]:
        """``column(get)`` split by the engine that measured each row, for the markers."""
        out: dict[str, tuple[list[int], list[float]]] = {}
        for size, row in zip(self.sizes, self.rows):
            value = get(row)
            if value is not None:
                sizes, values = out.setdefault(engine_of(row), ([], []))
                sizes.append(size)
                values.append(value)
        return out

    def has(self, key: str) -> bool:
        return any(number(r, key) is not None for r in self.rows)

    def path_mtu_boundary(self) -> float | None:
        """Half-way between P (the largest unfragmented payload) and P + 1, if a UDP payload can be that big."""
        if not self.mtu:
            return None
        p = frag.max_unfragmented_payload(self.mtu, self.v6)
        return p + 0.5 if p < wire.max_payload(self.v6) else None

    def fragments_at(self, size: int, row: dict | None = None) -> int | None:
        """Packets one payload becomes at the bottleneck, counted as the row counted them.

        A row records the MTU its sender fragmented at (``sender_mtu``) and the path MTU; an
        IPv4 router cuts the sender's too-large packets again (frag.fragment_sizes_on_path).
        """
        path = number(row or {}, "path_mtu") or self.mtu
        sender = number(row or {}, "sender_mtu") or path
        if not path:
            return None
        try:
            return len(frag.fragment_sizes_on_path(size, int(sender), int(path), self.v6))
        except ValueError:
            return None

    def fragment_boundaries(self) -> list[tuple[float, int]]:
        """(x, k): between two adjacent measured sizes the fragment count rises by one, to k, at x.

        The count comes from the rows' ``fragments`` column, or from frag.py at the row's MTUs.
        x sits half a byte below the first payload that takes k packets.
        """
        counts = []
        for size, row in zip(self.sizes, self.rows):
            k = number(row, "fragments")
            if k is None or k <= 0:
                k = self.fragments_at(size, row)
            counts.append(int(k) if k else None)
        out = []
        measured = list(zip(self.rows, counts))
        for (row_a, ka), (row_b, kb) in zip(measured, measured[1:]):
            a, b = int(row_a["size"]), int(row_b["size"])
            # Only where one boundary lies between two measured sizes: the plan's (top, top + 1)
            # pairs. A wide step over several boundaries measured none of them.
            if ka is None or kb is None or kb != ka + 1:
                continue
            if self.fragments_at(a, row_a) == ka and self.fragments_at(b, row_b) == kb:
                lo, hi = a, b  # bisect, at the larger size's MTUs, for the first payload of kb packets
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if (self.fragments_at(mid, row_b) or 0) >= kb:
                        hi = mid
                    else:
                        lo = mid
                x = hi - 0.5
            else:
                x = math.sqrt(a * b)  # counts from elsewhere: half-way on the log axis
            out.append((x, kb))
        return out


def engine_of(row: dict) -> str:
    return str(row.get("engine") or "?")


def engines_of(rows: list[dict]) -> list[str]:
    """The engines in the rows, in order of the payload size each was first used at."""
    ordered = sorted(rows, key=lambda r: number(r, "size") or 0)
    return list(dict.fromkeys(engine_of(r) for r in ordered if r.get("engine")))


def _direction(row: dict) -> str:
    return str(row.get("direction") or "forward")


def series_of(meta: dict, rows: list[dict]) -> list[Series]:
    hosts_meta = {h.get("host"): h for h in meta.get("hosts", []) if isinstance(h, dict)}
    order = list(hosts_meta)
    for row in rows:
        if row.get("host") not in order:
            order.append(row.get("host"))
    directions = sorted({_direction(r) for r in rows})
    name_direction = directions != ["forward"]
    out = []
    for host in order:
        for direction in directions:
            mine = [r for r in rows if r.get("host") == host and _direction(r) == direction]
            if not mine:
                continue
            # One line per host; per engine only where one size was measured by several engines,
            # which is an engine comparison, not a plan that changed engine with size.
            sizes = [number(r, "size") for r in mine]
            compared = len(set(zip(sizes, map(engine_of, mine)))) > len(set(sizes))
            for engine in (engines_of(mine) if compared else [None]):
                group = [r for r in mine if engine is None or engine_of(r) == engine]
                name = str(host) if host is not None else "?"
                name += f" {direction}" if name_direction else ""
                name += f" {engine}" if engine is not None else ""
                colour = HOST_COLOURS[len(out) % len(HOST_COLOURS)]
                out.append(_series(name, group, hosts_meta.get(host, {}), colour))
    return out


def _series(name: str, rows: list[dict], info: dict, colour: str) -> Series:
    v6 = int(info.get("family") or number(rows[0], "family") or 4) == 6
    start_mtu = info.get("path_mtu") or number(rows[0], "path_mtu")
    # The sender's route MTU can only drop below the path MTU measured at the start if its
    # kernel learned a smaller one (ICMP "fragmentation needed") during the sweep.
    learned = [m for m in (number(r, "sender_mtu") for r in rows) if m]
    mtu = min([start_mtu, *learned]) if start_mtu else None
    label = name
    if mtu:
        shown = f"{int(start_mtu)}\u2192{int(mtu)}" if mtu < start_mtu else f"{int(mtu)}"
        p = frag.max_unfragmented_payload(int(mtu), v6)
        label += f" (MTU {shown}, P {p})" if p < wire.max_payload(v6) else f" (MTU {shown})"
    return Series(name, label, rows, int(mtu) if mtu else None, v6, colour)
