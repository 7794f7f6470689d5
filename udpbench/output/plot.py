"""Figures of a sweep: goodput, loss and jitter over payload size, with the fragment boundaries.

Panels share a logarithmic payload-size axis, one line per host (per host and engine when a
file holds several engines):

1. goodput, Mbit/s;
2. loss, % on a symmetric-log axis so that 0 % plots and 0.001 % is still visible; when the
   rows carry loss attribution (``loss_sender`` ...) one panel per host shows the loss split by
   cause;
3. jitter (RFC 3550) and, where present, the one-way delay spread, ms.

Vertical lines mark, per host, the path-MTU boundary (between P = MTU - 28 or - 48 and P + 1:
the first payload that fragments) and each further fragment boundary that falls between two
measured sizes. Matplotlib runs headless (the Agg canvas, never a display).
"""
from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path

from udpbench.protocol import frag
from udpbench.output import results
from udpbench.protocol import wire
from udpbench.errors import UserError

CAUSES = (  # (row key, legend label, colour): the order they stack in, bottom up
    ("loss_network", "network", "#8c8c8c"),
    ("loss_reassembly", "reassembly", "#d62728"),
    ("loss_socket", "receiving socket", "#9467bd"),
    ("loss_sender", "sender", "#ff7f0e"),
)
HOST_COLOURS = ("#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
FORMATS = (".png", ".svg", ".pdf")
_QUIET_BOX = {"facecolor": "white", "edgecolor": "none", "alpha": 0.85}  # a note stays readable over grid lines
SIZE_TICKS = (32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65507)


def default_output(path: str | Path) -> Path:
    return Path(path).with_suffix(".png")


def check_output(out: str | Path) -> Path:
    """Refuse an image name we cannot write before any work is done."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"plot {out}: the name must end in {', '.join(FORMATS)}")
    return out


def plot_file(path: str | Path, out: str | Path | None = None) -> Path:
    meta, rows = results.load(path)
    out = check_output(out if out is not None else default_output(path))
    if not rows:
        raise UserError(f"{path} holds no rows to plot")
    return render(meta, rows, out)


# --- the data -------------------------------------------------------------------------------

def _number(row: dict, key: str) -> float | None:
    value = row.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _goodput_mbps(row: dict) -> float | None:
    value = _number(row, "goodput_bps")
    if value is None:  # an older or partial row: goodput from its parts
        received, size, duration = _number(row, "received"), _number(row, "size"), _number(row, "duration_s")
        if None in (received, size, duration) or not duration:
            return None
        value = received * size * 8 / duration
    return value / 1e6


def _loss_percent(row: dict) -> float | None:
    value = _number(row, "loss_ratio")
    if value is None:
        lost, sent = _number(row, "lost"), _number(row, "sent")
        if lost is None or not sent:
            return None
        value = lost / sent
    return 100 * value


def _latency(row: dict, key: str) -> float | None:
    """Jitter and delay spread need two datagrams that arrived; with fewer they are not zero but unknown."""
    received = _number(row, "received")
    if received is not None and received < 2:
        return None
    return _number(row, key)


class Series:
    """The rows of one host (and engine), sorted by payload size, and where that host fragments."""

    def __init__(self, host: str, label: str, rows: list[dict], mtu: int | None, v6: bool, colour: str):
        self.host, self.label, self.mtu, self.v6, self.colour = host, label, mtu, v6, colour
        self.rows = sorted((r for r in rows if _number(r, "size") is not None), key=lambda r: r["size"])
        self.sizes = [int(r["size"]) for r in self.rows]

    def column(self, get) -> tuple[list[int], list[float]]:
        """(sizes, values) for the rows where ``get(row)`` is a number."""
        pairs = [(s, get(r)) for s, r in zip(self.sizes, self.rows)]
        pairs = [(s, v) for s, v in pairs if v is not None]
        return [s for s, _ in pairs], [v for _, v in pairs]

    def has(self, key: str) -> bool:
        return any(_number(r, key) is not None for r in self.rows)

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
        path = _number(row or {}, "path_mtu") or self.mtu
        sender = _number(row or {}, "sender_mtu") or path
        if not path:
            return None
        try:
            if hasattr(frag, "fragment_sizes_on_path"):
                return len(frag.fragment_sizes_on_path(size, int(sender), int(path), self.v6))
            return frag.fragments(size, int(min(sender, path)), self.v6)
        except ValueError:
            return None

    def fragment_boundaries(self) -> list[tuple[float, int]]:
        """(x, k): between two adjacent measured sizes the fragment count rises by one, to k, at x.

        The count comes from the rows' ``fragments`` column, or from frag.py at the row's MTUs.
        x sits half a byte below the first payload that takes k packets.
        """
        counts = []
        for size, row in zip(self.sizes, self.rows):
            k = _number(row, "fragments")
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


def series_of(meta: dict, rows: list[dict]) -> list[Series]:
    hosts_meta = {h.get("host"): h for h in meta.get("hosts", []) if isinstance(h, dict)}
    order = [h for h in hosts_meta]
    for row in rows:
        if row.get("host") not in order:
            order.append(row.get("host"))
    engines = sorted({str(r.get("engine")) for r in rows if r.get("engine")})
    keys = [(h, e) for h in order for e in (engines if len(engines) > 1 else [None])]
    out = []
    for host, engine in keys:
        mine = [r for r in rows if r.get("host") == host and (engine is None or str(r.get("engine")) == engine)]
        if not mine:
            continue
        info = hosts_meta.get(host, {})
        v6 = int(info.get("family") or _number(mine[0], "family") or 4) == 6
        start_mtu = info.get("path_mtu") or _number(mine[0], "path_mtu")
        # The sender's route MTU can only drop below the path MTU measured at the start if its
        # kernel learned a smaller one (ICMP "fragmentation needed") during the sweep.
        learned = [m for m in (_number(r, "sender_mtu") for r in mine) if m]
        mtu = min([start_mtu, *learned]) if start_mtu else None
        name = str(host) if host is not None else "?"
        if engine is not None:
            name += f" {engine}"
        label = name
        if mtu:
            shown = f"{int(start_mtu)}\u2192{int(mtu)}" if mtu < start_mtu else f"{int(mtu)}"
            p = frag.max_unfragmented_payload(int(mtu), v6)
            label += f" (MTU {shown}, P {p})" if p < wire.max_payload(v6) else f" (MTU {shown})"
        colour = HOST_COLOURS[len(out) % len(HOST_COLOURS)]
        out.append(Series(name, label, mine, int(mtu) if mtu else None, v6, colour))
    return out


# --- drawing --------------------------------------------------------------------------------

def _symlog_threshold(values) -> float:
    """The linear part of a symmetric-log axis reaches up to the decade of the smallest non-zero value."""
    positive = [v for v in values if v > 0]
    if not positive:
        return 1.0
    return 10 ** math.floor(math.log10(min(positive)))


def _scale_y(ax, values, unit_floor: float) -> None:
    """Log-like when the values span decades (symlog, so zeros still plot); linear otherwise."""
    from matplotlib.ticker import FuncFormatter

    positive = [v for v in values if v > 0]
    if positive and max(positive) / min(positive) > 30:
        ax.set_yscale("symlog", linthresh=max(_symlog_threshold(values), unit_floor), linscale=0.5)
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    else:
        ax.set_ylim(bottom=0, top=max(values, default=1) * 1.15 or 1)


def _plain(v, _pos=None) -> str:
    if v == 0:
        return "0"
    return f"{v:,.0f}" if abs(v) >= 1 else f"{v:g}"


def _size_axis(ax, sizes) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    lo, hi = min(sizes), max(sizes)
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ticks = [t for t in SIZE_TICKS if lo / 1.25 <= t <= hi * 1.25]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: f"{int(v)}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _boundaries(ax, series: list[Series]) -> None:
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


def _fragment_axis(ax, series: list[Series]) -> bool:
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


def _stack_in_display(ax, sizes, total, parts):
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


def _loss_panel(ax, series: list[Series], by_cause: bool, threshold: float) -> list:
    ax.set_yscale("symlog", linthresh=threshold, linscale=0.5)
    ax.set_ylim(0, 100)
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    handles = []
    for s in series:
        sizes, loss = s.column(_loss_percent)
        if not sizes:
            continue
        if by_cause:
            rows = [r for r in s.rows if _loss_percent(r) is not None]  # the rows behind ``sizes``
            parts = [[max(_number(r, key) or 0.0, 0.0) for r in rows] for key, _, _ in CAUSES]
            for (y0, y1), (_key, _name, colour) in zip(_stack_in_display(ax, sizes, loss, parts), CAUSES):
                if any(b > a for a, b in zip(y0, y1)):
                    ax.fill_between(sizes, y0, y1, color=colour, alpha=0.55, linewidth=0, zorder=2)
        line, = ax.plot(sizes, loss, marker="o", markersize=3.5, color=s.colour, linewidth=1.5,
                        label=s.label, zorder=3)
        handles.append(line)
    ax.set_ylabel("loss (%)")
    return handles


def render(meta: dict, rows: list[dict], out: str | Path) -> Path:
    """Draw the figure for (meta, rows) and write it atomically to ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    out = check_output(out)
    series = [s for s in series_of(meta, rows) if s.sizes]
    if not series:
        raise UserError("no rows with a payload size to plot")
    all_sizes = [x for s in series for x in s.sizes]
    by_cause = all(s.has(key) for s in series for key, _, _ in CAUSES)
    loss_panels = series if by_cause and len(series) > 1 else [None]
    has_latency = any(s.has("jitter_ms") or s.has("delay_spread_ms") for s in series)

    heights = [3.0] + [2.4 if len(loss_panels) == 1 else 1.8] * len(loss_panels) + ([2.2] if has_latency else [])
    fig = Figure(figsize=(11, 1.2 + sum(heights)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(axes) if len(heights) > 1 else [axes]
    for ax in axes:
        _size_axis(ax, all_sizes)
        ax.grid(True, which="major", color="#e0e0e0", linewidth=0.8)
        ax.grid(True, which="minor", axis="x", color="#f0f0f0", linewidth=0.5)
        ax.set_axisbelow(True)

    # 1. goodput
    ax = axes[0]
    values = []
    host_handles = []
    for s in series:
        sizes, goodput = s.column(_goodput_mbps)
        values += goodput
        if sizes:
            line, = ax.plot(sizes, goodput, marker="o", markersize=3.5, color=s.colour, linewidth=1.6,
                            label=s.label, zorder=3)
            host_handles.append(line)
    _scale_y(ax, values, unit_floor=0.01)
    ax.set_ylabel("goodput (Mbit/s)")
    if not values:
        ax.text(0.5, 0.5, "no goodput in this file", transform=ax.transAxes, ha="center", color="grey")

    # 2. loss
    loss_values = [v for s in series for v in s.column(_loss_percent)[1]]
    threshold = min(max(_symlog_threshold(loss_values), 1e-4), 1.0) if loss_values else 0.01
    for ax, s in zip(axes[1:1 + len(loss_panels)], loss_panels):
        _loss_panel(ax, series if s is None else [s], by_cause, threshold)
        if s is not None:
            ax.set_title(s.label, loc="left", fontsize=9, color=s.colour, pad=3)
            if not any(v > 0 for v in s.column(_loss_percent)[1]):
                ax.text(0.5, 0.5, "no datagram lost", transform=ax.transAxes, ha="center", va="center",
                        color=s.colour, fontsize=9, bbox=_QUIET_BOX)
        if not loss_values:
            ax.text(0.5, 0.5, "no loss figures in this file", transform=ax.transAxes, ha="center", color="grey")
        elif s is None and not any(v > 0 for v in loss_values):
            ax.text(0.5, 0.5, "no datagram lost", transform=ax.transAxes, ha="center", va="center", color="grey",
                    bbox=_QUIET_BOX)
    if by_cause:
        cause_handles = [Patch(color=colour, alpha=0.55, label=name) for key, name, colour in reversed(CAUSES)]
        axes[1].legend(handles=cause_handles, title="lost at", loc="upper left", bbox_to_anchor=(1.01, 1.0),
                       fontsize=8, title_fontsize=8, frameon=False)

    # 3. latency
    if has_latency:
        ax = axes[-1]
        values = []
        for s in series:
            sizes, jitter = s.column(lambda r: _latency(r, "jitter_ms"))
            if sizes:
                ax.plot(sizes, jitter, marker="o", markersize=3, color=s.colour, linewidth=1.4, zorder=3)
                values += jitter
            sizes, spread = s.column(lambda r: _latency(r, "delay_spread_ms"))
            if sizes:
                ax.plot(sizes, spread, marker="s", markersize=2.5, color=s.colour, linewidth=1.0,
                        linestyle="--", alpha=0.8, zorder=3)
                values += spread
        _scale_y(ax, values, unit_floor=1e-4)
        ax.set_ylabel("latency (ms)")
        style = [Line2D([], [], color="#444444", marker="o", markersize=3, label="jitter (RFC 3550)")]
        if any(s.has("delay_spread_ms") for s in series):
            style.append(Line2D([], [], color="#444444", linestyle="--", marker="s", markersize=2.5,
                                label="delay spread\n(max - min one-way)"))
        ax.legend(handles=style, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    for ax in axes:
        _boundaries(ax, series)
    axes[-1].set_xlabel("UDP payload (bytes, log scale)")

    marks = []
    lo, hi = axes[0].get_xlim()
    if any(p is not None and lo < p < hi for p in (s.path_mtu_boundary() for s in series)):
        marks.append(Line2D([], [], color="#444444", linestyle="--", label="path MTU: P + 1 is the\nfirst payload to fragment"))
    if _fragment_axis(axes[0], series):
        marks.append(Line2D([], [], color="#444444", linestyle=":", label="one more fragment\n(count on top)"))
    axes[0].legend(handles=host_handles + marks, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                   frameon=False, title="host (path MTU)", title_fontsize=8)
    fig.suptitle(_title(meta, series), fontsize=11, x=0.01, ha="left")

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            fig.savefig(f, format=out.suffix.lstrip(".").lower())
        os.replace(tmp, out)
    except OSError as exc:
        _unlink(tmp)
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        _unlink(tmp)
        raise
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _title(meta: dict, series: list[Series]) -> str:
    what = meta.get("command") or "udpbench sweep " + " ".join(s.host for s in series)
    if len(what) > 110:
        what = what[:107] + "..."
    when = meta.get("started") or ""
    if len(when) >= 19:
        when = when[:10] + " " + when[11:16]
    details = [x for x in (when, meta.get("hostname") and f"from {meta['hostname']}",
                           meta.get("kernel") and f"Linux {meta['kernel']}",
                           meta.get("duration_s") and f"{meta['duration_s']:g} s per size") if x]
    return what + ("\n" + ", ".join(details) if details else "")
