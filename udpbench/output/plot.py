"""Figures of a sweep: goodput, loss, one-way delay and jitter over payload size, with the fragment boundaries.

Panels share a logarithmic payload-size axis, one line per host, each point marked by the
engine that measured it (plot_series.py says when a host splits further):

1. goodput, in the rate unit its largest value reaches (Gbit/s on loopback, Mbit/s on a LAN);
2. loss, % on a symmetric-log axis so that 0 % plots and 0.001 % is still visible; when the
   rows carry loss attribution (``loss_sender`` ...) one panel per host shows the loss split by
   cause;
3. one-way delay, p50 and p99 from the actual and from the scheduled send time, with the
   basis of the numbers (``owd_basis``), where the rows have them;
4. jitter (RFC 3550) and, for files without delay percentiles, the one-way delay spread.

Vertical lines mark, per host, the path-MTU boundary (between P = MTU - 28 or - 48 and P + 1:
the first payload that fragments) and each further fragment boundary that falls between two
measured sizes. Matplotlib runs headless (the Agg canvas, never a display).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from udpbench.errors import UserError
from udpbench.output import plot_panels as panels
from udpbench.output import results
from udpbench.output.plot_axes import boundaries, fragment_axis, grid, size_axis
from udpbench.output.plot_series import Series, engine_marker, engines_of, series_of

FORMATS = (".png", ".svg", ".pdf")


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


def figure(meta: dict, rows: list[dict]):
    """The matplotlib Figure for (meta, rows), not yet written. Its axes are labelled by what they
    show (``ax.get_label()``: goodput, loss, loss HOST, one-way delay, jitter), for readers and tests."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    series = [s for s in series_of(meta, rows) if s.sizes]
    if not series:
        raise UserError("no rows with a payload size to plot")
    engines = engines_of([r for s in series for r in s.rows])
    by_cause = all(s.has(key) for s in series for key, _, _ in panels.CAUSES)
    loss_panels = series if by_cause and len(series) > 1 else [None]
    with_delay = panels.has_delay(series)
    with_jitter = any(s.has("jitter_ms") or s.has("delay_spread_ms") for s in series)

    names = ["goodput"] + [f"loss {s.host}" if s else "loss" for s in loss_panels]
    heights = [3.0] + [2.4 if len(loss_panels) == 1 else 1.8] * len(loss_panels)
    if with_delay:
        names.append("one-way delay")
        heights.append(2.4)
    if with_jitter:
        names.append("jitter")
        heights.append(2.0)
    fig = Figure(figsize=(11, 1.2 + sum(heights)), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(heights), 1, sharex=True, gridspec_kw={"height_ratios": heights})
    axes = list(axes) if len(heights) > 1 else [axes]
    panel = dict(zip(names, axes))
    all_sizes = [x for s in series for x in s.sizes]
    for name, ax in panel.items():
        ax.set_label(name)
        size_axis(ax, all_sizes)
        grid(ax)

    panels.goodput_panel(panel["goodput"], series, engines)
    threshold = panels.loss_threshold(series)
    for ax, s in zip(axes[1:1 + len(loss_panels)], loss_panels):
        panels.loss_panel(ax, series if s is None else [s], engines, by_cause, threshold)
        if s is not None:
            ax.set_title(s.label, loc="left", fontsize=9, color=s.colour, pad=3)
    if by_cause:
        panels.cause_legend(axes[1])
    if with_delay:
        panels.delay_panel(panel["one-way delay"], series, engines)
    if with_jitter:
        panels.jitter_panel(panel["jitter"], series, engines, with_spread=not with_delay)

    for ax in axes:
        boundaries(ax, series)
    axes[-1].set_xlabel("UDP payload (bytes, log scale)")
    _goodput_legend(panel["goodput"], series, engines, Line2D)
    fig.suptitle(_title(meta, series), fontsize=11, x=0.01, ha="left")
    return fig


def _goodput_legend(ax, series: list[Series], engines: list[str], Line2D) -> None:
    """Hosts by colour, then each engine once by its marker, then the boundary lines."""
    handles = [Line2D([], [], color=s.colour, linewidth=1.6, label=s.label) for s in series]
    handles += [Line2D([], [], color="#444444", linestyle="none", marker=engine_marker(e, engines),
                       markersize=4.5, label=f"engine {e}") for e in engines]
    lo, hi = ax.get_xlim()
    if any(p is not None and lo < p < hi for p in (s.path_mtu_boundary() for s in series)):
        handles.append(Line2D([], [], color="#444444", linestyle="--",
                              label="path MTU: P + 1 is the\nfirst payload to fragment"))
    if fragment_axis(ax, series):
        handles.append(Line2D([], [], color="#444444", linestyle=":", label="one more fragment\n(count on top)"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
              title="host (path MTU)", title_fontsize=8)


def render(meta: dict, rows: list[dict], out: str | Path) -> Path:
    """Draw the figure for (meta, rows) and write it atomically to ``out``."""
    out = check_output(out)
    fig = figure(meta, rows)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=out.suffix)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        os.fchmod(fd, _file_mode())  # mkstemp makes 0600; an image is as readable as any file the user writes
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


def _file_mode() -> int:
    """0666 less the process umask, read without changing it (proc(5): Umask, Linux 4.7)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


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
