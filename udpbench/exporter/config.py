"""The exporter's modules and limits: built-in defaults, and a YAML file that overrides them.

A module is a named prober (ping, mtu, blast, sweep_lite) with its options, spelled as the
command line spells them (count, size, interval, method, rate, duration, sizes), and its own caps
(max_rate, max_duration). A module whose options exceed its caps is refused when the file is
read, not when Prometheus first scrapes it. See docs/exporter.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from udpbench.errors import UserError
from udpbench.protocol import wire
from udpbench.protocol.units import parse_rate, parse_sizes

PROBERS = ("ping", "mtu", "blast", "sweep_lite")
METHODS = ("icmp", "echo", "both")
DEFAULT_PORT = 1060  # the server's default (transport/server.py)
# A module may raise its caps up to these and no further: an exporter is driven from outside.
CEILING_RATE_BPS = 1e9
CEILING_DURATION_S = 60.0
SWEEP_LITE_POINTS = 5


@dataclass(frozen=True)
class Module:
    """One named probe: which prober, with which options, and never more than its caps."""

    name: str
    prober: str
    port: int = DEFAULT_PORT  # the server's port when the target names none
    count: int = 5  # ping: requests
    size: int = 64  # ping and blast: payload bytes
    interval: float = 0.2  # ping: seconds between requests
    method: str = "both"  # mtu: icmp, echo or both
    rate: float = 1e6  # blast and sweep_lite: payload bits/s; low, since a probe runs every scrape
    duration: float = 1.0  # blast: seconds; sweep_lite: seconds per size
    sizes: tuple[int, ...] = ()  # sweep_lite: payload sizes; empty plans them around the path MTU
    max_rate: float = 10e6  # payload bits/s this module may send at
    max_duration: float = 10.0  # seconds this module may take

    def sending_rate(self) -> float:
        """The payload bits/s the module asks for (ping: one request per interval)."""
        if self.prober == "ping":
            return self.size * 8 / self.interval
        return self.rate if self.prober in ("blast", "sweep_lite") else 0.0

    def planned_duration(self) -> float:
        """Seconds the module's datagrams are sent for, as configured."""
        if self.prober == "ping":
            return self.count * self.interval
        if self.prober == "blast":
            return self.duration
        if self.prober == "sweep_lite":
            return self.duration * (len(self.sizes) or SWEEP_LITE_POINTS)
        return 0.0


@dataclass
class Limits:
    """What the exporter as a whole allows."""

    concurrency: int = 2  # probes measuring at once
    probes_per_minute: int = 12  # per target, over every module
    timeout: float = 10.0  # a probe's seconds when Prometheus sends no scrape timeout
    timeout_offset: float = 0.5  # left of the scrape timeout for the answer to travel


@dataclass
class Config:
    modules: dict[str, Module] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)


def default_modules() -> dict[str, Module]:
    return {
        "ping": Module("ping", "ping"),
        "mtu": Module("mtu", "mtu", method="echo"),
        "blast": Module("blast", "blast", size=1472, rate=1e6, duration=1.0),
        "sweep_lite": Module("sweep_lite", "sweep_lite", rate=1e6, duration=0.2),
    }


def load(path: str | None) -> Config:
    """The configuration in the YAML file at ``path``; the built-in modules when None."""
    if path is None:
        return Config(default_modules())
    try:
        import yaml
    except ImportError:
        raise UserError("reading a configuration file needs PyYAML: pip install 'udpbench[exporter]'") from None
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    return parse(data or {}, path)


def parse(data, where: str = "configuration") -> Config:
    """A Config from the parsed file: unknown keys, bad values and options over caps are refused."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping with 'modules' and 'limits'")
    _only(data, {"modules", "limits"}, where)
    limits = Limits()
    for key, value in (data.get("limits") or {}).items():
        if key not in Limits.__dataclass_fields__:
            raise UserError(f"{where}: limits: unknown key {key!r}")
        number = _number(value, f"{where}: limits.{key}")
        if key in ("concurrency", "probes_per_minute"):
            if number != int(number) or not 1 <= number <= 1000:
                raise UserError(f"{where}: limits.{key} must be a whole number from 1 to 1000")
            number = int(number)
        elif not 0 <= number <= 600:
            raise UserError(f"{where}: limits.{key} must be from 0 to 600 seconds")
        setattr(limits, key, number)
    modules = default_modules() if data.get("modules") is None else {}
    for name, options in (data.get("modules") or {}).items():
        modules[str(name)] = module(str(name), options or {}, where)
    return Config(modules, limits)


def module(name: str, options: dict, where: str = "configuration") -> Module:
    """One module from its options; the prober defaults to the module's name."""
    here = f"{where}: module {name}"
    if not isinstance(options, dict):
        raise UserError(f"{here}: expected a mapping of options")
    prober = options.get("prober", name)
    if prober not in PROBERS:
        raise UserError(f"{here}: prober {prober!r} is not one of {', '.join(PROBERS)}")
    base = default_modules().get(prober, Module(name, prober))
    allowed = {"prober", "port", "max_rate", "max_duration"} | {
        "ping": {"count", "size", "interval"}, "mtu": {"method"}, "blast": {"size", "rate", "duration"},
        "sweep_lite": {"sizes", "rate", "duration"}}[prober]
    _only(options, allowed, here)
    values = {}
    for key, value in options.items():
        if key == "prober":
            continue
        if key in ("rate", "max_rate"):
            values[key] = _rate(value, f"{here}: {key}")
        elif key == "method":
            if value not in METHODS:
                raise UserError(f"{here}: method {value!r} is not one of {', '.join(METHODS)}")
            values[key] = value
        elif key == "sizes":
            values[key] = tuple(_sizes(value, here))
        else:
            number = _number(value, f"{here}: {key}")
            if key in ("count", "size", "port"):
                if number != int(number):
                    raise UserError(f"{here}: {key} must be a whole number")
                number = int(number)
            values[key] = number
    m = replace(base, name=name, **values)
    check(m, here)
    return m


def check(m: Module, here: str) -> None:
    """Refuse options outside what a module can do, or over its caps."""
    if not 1 <= m.port <= 65535:
        raise UserError(f"{here}: port {m.port} is not 1 to 65535")
    if not 0 < m.max_rate <= CEILING_RATE_BPS:
        raise UserError(f"{here}: max_rate must be above 0 and at most {CEILING_RATE_BPS / 1e6:g} Mbit/s")
    if not 0 < m.max_duration <= CEILING_DURATION_S:
        raise UserError(f"{here}: max_duration must be above 0 and at most {CEILING_DURATION_S:g} s")
    if m.prober == "ping":
        if not 1 <= m.count <= 1000:
            raise UserError(f"{here}: count {m.count} must be from 1 to 1000")
        if not m.interval >= 0.001:
            raise UserError(f"{here}: interval {m.interval:g} s must be at least 0.001 s")
    if m.prober in ("ping", "blast"):
        try:
            wire.check_size(m.size)
        except wire.WireError as exc:
            raise UserError(f"{here}: {exc}") from None
    if m.prober in ("blast", "sweep_lite") and not 0 < m.duration:
        raise UserError(f"{here}: duration must be above 0 seconds")
    if m.sending_rate() > m.max_rate:
        raise UserError(f"{here}: sends {m.sending_rate() / 1e6:g} Mbit/s, over its max_rate of "
                        f"{m.max_rate / 1e6:g} Mbit/s")
    if m.planned_duration() > m.max_duration:
        raise UserError(f"{here}: takes {m.planned_duration():g} s, over its max_duration of {m.max_duration:g} s")


def _only(mapping: dict, allowed: set, here: str) -> None:
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise UserError(f"{here}: unknown key {unknown[0]!r} (known: {', '.join(sorted(allowed))})")


def _number(value, here: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"{here}: {value!r} is not a non-negative number")
    return float(value)


def _rate(value, here: str) -> float:
    rate = parse_rate(str(value))
    if rate == 0:  # "max" is unbounded: an exporter probes on a schedule and always paces
        raise UserError(f"{here}: a probe's rate must be a number of bits/s, not {value!r}")
    return rate


def _sizes(value, here: str) -> list[int]:
    text = ",".join(str(v) for v in value) if isinstance(value, list) else str(value)
    sizes = parse_sizes(text)
    for s in sizes:
        try:
            wire.check_size(s)
        except wire.WireError as exc:
            raise UserError(f"{here}: {exc}") from None
    return sizes
