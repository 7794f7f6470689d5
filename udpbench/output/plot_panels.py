"""The panels of the sweep figure: goodput, loss (by cause), one-way delay percentiles, jitter.

Each takes an axis and the series, draws, and labels its axis with the unit it chose from the
data. What each panel shows, and why, is in docs/plot.md.
"""
from __future__ import annotations

from functools import partial

from udpbench.output.plot_axes import QUIET_BOX, draw, scale_y, stack_in_display, symlog_threshold
from udpbench.output.plot_series import (DELAY_UNITS, RATE_UNITS, Series, goodput_bps, loss_percent,
                                         number, one_way_delay_us, spread, unit_for)

CAUSES = (  # (row key, legend label, colour): the order they stack in, bottom up
    ("loss_network", "network", "#8c8c8c"),
    ("loss_reassembly", "reassembly", "#d62728"),
    ("loss_socket", "receiving socket", "#9467bd"),
    ("loss_sender", "sender", "#ff7f0e"),
)
# One-way delay: the basis by line style, the percentile by line weight.
DELAY_BASES = (("owd", "-", "actual send time"), ("sched_owd", "--", "scheduled send time"))
DELAY_PERCENTILES = (("p50", 1.8, 1.0), ("p99", 0.9, 0.7))
BASIS_WORDS = {
    "same-host": "same-host: both ends read one kernel's clock",
    "estimated": "estimated: corrected by the clock offset",
    "relative": "relative: above the smallest delay, the clocks not compared",
}


def _legend(ax, handles, title: str | None = None) -> None:
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title=title, title_fontsize=8)


def goodput_panel(ax, series: list[Series], engines: list[str]) -> str:
    """Goodput in the unit its largest value reaches (Gbit/s on loopback); returns the unit."""
    largest = max((v for s in series for v in s.column(goodput_bps)[1]), default=0.0)
    unit, scale = unit_for(largest, RATE_UNITS) if largest else ("Mbit/s", 1e6)
    values = []
    for s in series:
        values += draw(ax, s, goodput_bps, engines, scale, label=s.label, linewidth=1.6)
    scale_y(ax, values, unit_floor=1e4 / scale)  # the symlog's linear part: at least 10 kbit/s
    ax.set_ylabel(f"goodput ({unit})")
    if not values:
        ax.text(0.5, 0.5, "no goodput in this file", transform=ax.transAxes, ha="center", color="grey")
    return unit


def loss_threshold(series: list[Series]) -> float:
    values = [v for s in series for v in s.column(loss_percent)[1]]
    return min(max(symlog_threshold(values), 1e-4), 1.0) if values else 0.01


def loss_panel(ax, series: list[Series], engines: list[str], by_cause: bool, threshold: float) -> None:
    from matplotlib.ticker import FuncFormatter

    from udpbench.output.plot_axes import plain

    ax.set_yscale("symlog", linthresh=threshold, linscale=0.5)
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(FuncFormatter(plain))
    values = []
    for s in series:
        sizes, loss = s.column(loss_percent)
        if not sizes:
            continue
        if by_cause:
            rows = [r for r in s.rows if loss_percent(r) is not None]  # the rows behind ``sizes``
            parts = [[max(number(r, key) or 0.0, 0.0) for r in rows] for key, _, _ in CAUSES]
            for (y0, y1), (_key, _name, colour) in zip(stack_in_display(ax, sizes, loss, parts), CAUSES):
                if any(b > a for a, b in zip(y0, y1)):
                    ax.fill_between(sizes, y0, y1, color=colour, alpha=0.55, linewidth=0, zorder=2)
        values += draw(ax, s, loss_percent, engines, label=s.label)
    ax.set_ylabel("loss (%)")
    if not values:
        ax.text(0.5, 0.5, "no loss figures in this file", transform=ax.transAxes, ha="center", color="grey")
    elif not any(v > 0 for v in values):
        colour = series[0].colour if len(series) == 1 else "grey"
        ax.text(0.5, 0.5, "no datagram lost", transform=ax.transAxes, ha="center", va="center", color=colour,
                fontsize=9, bbox=QUIET_BOX)


def cause_legend(ax) -> None:
    from matplotlib.patches import Patch

    _legend(ax, [Patch(color=colour, alpha=0.55, label=name) for _key, name, colour in reversed(CAUSES)],
            "lost at")


def has_delay(series: list[Series]) -> bool:
    return any(s.column(partial(one_way_delay_us, key="owd_p50_us"))[1] for s in series)


def delay_panel(ax, series: list[Series], engines: list[str]) -> str:
    """p50 and p99 one-way delay from the actual and from the scheduled send time, with their basis.

    Returns the note on the basis, which is also the panel's title.
    """
    from matplotlib.lines import Line2D

    getters = {(prefix, pct): partial(one_way_delay_us, key=f"{prefix}_{pct}_us")
               for prefix, _, _ in DELAY_BASES for pct, _, _ in DELAY_PERCENTILES}
    largest = max((v for s in series for get in getters.values() for v in s.column(get)[1]), default=0.0)
    unit, scale = unit_for(largest, DELAY_UNITS)
    values = []
    for s in series:
        for prefix, linestyle, _ in DELAY_BASES:
            for pct, width, alpha in DELAY_PERCENTILES:
                values += draw(ax, s, getters[prefix, pct], engines, scale, linestyle=linestyle, linewidth=width,
                               alpha=alpha, markersize=2.5 if pct == "p50" else 0)
    scale_y(ax, values, unit_floor=0.1 / scale)  # the symlog's linear part: at least 0.1 us
    bases = basis_notes(series)
    relative = all(b.startswith("relative") for b in bases.values())
    ax.set_ylabel(f"one-way delay{' above min' if relative else ''} ({unit})")
    note = next(iter(bases.values())) if len(set(bases.values())) == 1 else \
        "; ".join(f"{host}: {basis}" for host, basis in bases.items())
    ax.set_title(f"one-way delay, {note}", loc="left", fontsize=8.5, pad=3)
    _legend(ax, [Line2D([], [], color="#444444", linestyle=linestyle, linewidth=width, alpha=alpha,
                        label=f"{pct} from {words}")
                 for _, linestyle, words in DELAY_BASES for pct, width, alpha in DELAY_PERCENTILES],
            "one-way delay")
    return note


def basis_notes(series: list[Series]) -> dict[str, str]:
    """Each series' owd_basis in words; an estimated basis with its largest clock error."""
    out = {}
    for s in series:
        rows = [r for r in s.rows if one_way_delay_us(r, "owd_p50_us") is not None]
        if not rows:
            continue
        kinds = list(dict.fromkeys(str(r["owd_basis"]) for r in rows))
        words = []
        for kind in kinds:
            text = BASIS_WORDS.get(kind, kind)
            if kind == "estimated":
                error = max((number(r, "clock_error_us") or 0.0) for r in rows if r["owd_basis"] == kind)
                text += f" (\u00b1{error:,.0f} \u00b5s)"
            words.append(text)
        out[s.host] = " and ".join(words)
    return out


def jitter_panel(ax, series: list[Series], engines: list[str], with_spread: bool) -> None:
    """RFC 3550 jitter and, where the file has no delay percentiles, the one-way delay spread."""
    from matplotlib.lines import Line2D

    jitter = partial(spread, key="jitter_ms")
    delay_spread = partial(spread, key="delay_spread_ms")
    with_spread = with_spread and any(s.has("delay_spread_ms") for s in series)
    largest = max((1e3 * v for s in series for get in (jitter, delay_spread) for v in s.column(get)[1]),
                  default=0.0)
    unit, scale_us = unit_for(largest, DELAY_UNITS)
    scale = scale_us / 1e3  # the fields are in ms
    values = []
    for s in series:
        values += draw(ax, s, jitter, engines, scale, linewidth=1.4, markersize=3)
        if with_spread:
            values += draw(ax, s, delay_spread, engines, scale, linewidth=1.0, linestyle="--", alpha=0.8,
                           markersize=2.5)
    scale_y(ax, values, unit_floor=0.1 / scale_us)
    ax.set_ylabel(f"jitter{', spread' if with_spread else ''} ({unit})")
    style = [Line2D([], [], color="#444444", label="jitter (RFC 3550)")]
    if with_spread:
        style.append(Line2D([], [], color="#444444", linestyle="--", label="delay spread\n(max - min one-way)"))
    _legend(ax, style)
