"""The axes every udpbench figure shares: the log payload-size axis, y scales that keep zeros,
the path-MTU and fragment boundaries, and a series drawn as one line with engine markers."""
from __future__ import annotations

import math

from udpbench.output.plot_series import Series, engine_marker

SIZE_TICKS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65507)
QUIET_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85}  # a note stays readable over grid lines


def symlog_threshold(values) -> float:
    """The linear part of a symmetric-log axis reaches up to the decade of the smallest non-zero value."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 1.0
    return 10 ** math.floor(math.log10(min(positive)))


def scale_y(ax, values, unit_floor: float) -> None:
    """Log-like when the values span decades (symlog, so zeros still plot); linear otherwise."""
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("symlog", linthresh=max(symlog_threshold(values), unit_floor), linscale=0.5)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(plain))
    else:
        ax.set_ylim(bottom=0, top=max(values, default=1) * 1.15 or 1)


def plain(v, _pos=None) -> str:
    if v == 0:
        return "0"
    return f"{v:,.0f}" if abs(v) >= 1 else f"{v:g}"


def size_axis(ax, sizes) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    lo, hi = min(sizes), max(sizes)
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ticks = [t for t in SIZE_TICKS if lo / 1.25 <= t <= hi * 1.25]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v)}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def grid(ax) -> None:
    ax.grid(True, which="major", color="#e0e0e0", linewidth=0.8)
    ax.grid(True, which="minor", axis="x", color="#f0f0f0", linewidth=0.5)
    ax.set_axisbelow(True)


def draw(ax, s: Series, get, engines: list[str], scale: float = 1.0, *, label=None, markersize=3.5,
         **style) -> list[float]:
    """One line through the host's points in size order, each point marked by its engine.

    Returns the values drawn (in the axis' unit), for the axis' scale.
    """
    sizes, values = s.column(get)
    if not sizes:
        return []
    values = [v / scale for v in values]
    style = {"color": s.colour, "linewidth": 1.5, "zorder": 3, **style}
    ax.plot(sizes, values, label=label, **style)
    if not markersize:
        return values
    for engine, (at, raw) in s.by_engine(get).items():
        ax.plot(at, [v / scale for v in raw], linestyle="none", marker=engine_marker(engine, engines),
                markersize=markersize, color=s.colour, alpha=style.get("alpha", 1.0), zorder=style["zorder"])
    return values


def boundaries(ax, series: list[Series]) -> None:
    """Path-MTU (dashed) and fragment (dotted) boundaries, in each host's colour."""
    lo, hi = ax.get_xlim()
    for s in series:
        p = s.path_mtu_boundary()
        if p is not None and lo < p < hi:
            ax.axvline(p, color=s.colour, linestyle="--", linewidth=1.2, alpha=0.8, zorder=1)
        for x, _k in s.fragment_boundaries():
            if p is not None and abs(x - p) < 1:
                continue  # the path-MTU line already marks 1 -> 2 fragments
            ax.axvline(x, color=s.colour, linestyle=":", linewidth=0.9, alpha=0.7, zorder=1)


def fragment_axis(ax, series: list[Series]) -> bool:
    """Fragment counts along the top of ``ax``, above the boundary where each count begins."""
    from matplotlib.ticker import FixedLocator, NullLocator

    lo, hi = ax.get_xlim()
    marks = sorted((x, k, s.colour) for s in series for x, k in s.fragment_boundaries() if lo < x < hi)
    kept, last = [], None
    for x, k, colour in marks:
        if last is None or x / last > 1.12:  # leave room for the label
            kept.append((x, k, colour))
            last = x
    if not kept:
        return False
    top = ax.secondary_xaxis("top")
    top.xaxis.set_major_locator(FixedLocator([x for x, _, _ in kept]))
    top.xaxis.set_minor_locator(NullLocator())
    top.set_xticklabels([str(k) for _, k, _ in kept], fontsize=7.5)
    for label, (_, _, colour) in zip(top.get_xticklabels(), kept):
        label.set_color(colour)
    top.tick_params(axis="x", length=3, pad=1)
    top.set_xlabel("fragments per datagram from here on", fontsize=8, labelpad=3)
    return True


def stack_in_display(ax, sizes, total, parts):
    """Boundaries of stacked areas whose total height is ``total`` on the axis' (symlog) scale.

    On a logarithmic axis, stacking values would make the bottom layer look far larger than it
    is; instead each layer takes the share of the drawn height that its cause has of the loss.
    """
    scale = ax.yaxis.get_transform()
    back = scale.inverted()
    base = scale.transform([0.0])[0]
    layers = []
    cumulative = [0.0] * len(sizes)
    for values in parts:
        lower = list(cumulative)
        for i, v in enumerate(values):
            cumulative[i] += v
        upper = list(cumulative)
        layers.append((lower, upper))
    out = []
    for lower, upper in layers:
        y0, y1 = [], []
        for i, t in enumerate(total):
            whole = sum(p[i] for p in parts)
            if whole <= 0 or t <= 0:
                y0.append(0.0)
                y1.append(0.0)
                continue
            top = scale.transform([t])[0]
            y0.append(back.transform([base + (top - base) * lower[i] / whole])[0])
            y1.append(back.transform([base + (top - base) * upper[i] / whole])[0])
        out.append((y0, y1))
    return out
