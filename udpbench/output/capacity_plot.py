"""The capacity figure: the found rate against payload size (log x), in bits/s and in datagrams/s,
one line per host, each point coloured by where the loss just above it happened, with the path
MTU and fragment boundaries marked as the sweep figure marks them (plot.py)."""
from __future__ import annotations

from pathlib import Path

from udpbench.errors import UserError
from udpbench.output import plot, plot_axes, results
from udpbench.output.plot_panels import CAUSES
from udpbench.output.plot_series import series_of
from udpbench.protocol.capacity import SENDER_DISTURBED

# cause at the knee -> colour: the sweep figure's colours for the same causes; hollow for none
CAUSE_COLOURS = ({key.removeprefix("loss_"): colour for key, _, colour in CAUSES}
                 | {SENDER_DISTURBED: "#ffbb78", "": "#ffffff"})  # a paler sender: the knee is not the path's


def _found(rows: list[dict], key: str, scale: float) -> tuple[list[int], list[float], list[str]]:
    kept = sorted((r for r in rows if r.get("sendable", True)), key=lambda r: r["size"])
    return [r["size"] for r in kept], [r[key] / scale for r in kept], [r.get("cause") or "" for r in kept]


def render(meta: dict, rows: list[dict], out: str | Path) -> Path:
    """Draw the found rates of (meta, rows) and write the image atomically to ``out``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    out = plot.check_output(out)
    # The sweep figure's series give each host its colour, path MTU and fragment boundaries;
    # the engine is left out so that a host is one line.
    series = [s for s in series_of(meta, [{k: v for k, v in r.items() if k != "engine"} for r in rows])
              if s.sizes]
    if not series:
        raise UserError("no sizes to plot")
    fig = Figure(figsize=(11, 7), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 1, sharex=True)
    for ax, (key, scale, label) in zip(axes, (("found_bps", 1e6, "found rate (Mbit/s of payload)"),
                                              ("found_pps", 1e3, "found rate (thousand datagrams/s)"))):
        plot_axes.size_axis(ax, [x for s in series for x in s.sizes])
        ax.grid(True, which="major", color="#e0e0e0", linewidth=0.8)
        ax.set_axisbelow(True)
        values = []
        for s in series:
            sizes, found, causes = _found(s.rows, key, scale)
            values += found
            ax.plot(sizes, found, color=s.colour, linewidth=1.5, zorder=2, label=s.label)
            ax.scatter(sizes, found, c=[CAUSE_COLOURS.get(c, "#ffffff") for c in causes], s=30,
                       edgecolors=s.colour, linewidths=1.0, zorder=3)
        plot_axes.scale_y(ax, values, unit_floor=0.01)
        ax.set_ylabel(label)
        plot_axes.boundaries(ax, series)
    axes[-1].set_xlabel("UDP payload (bytes, log scale)")
    plot_axes.fragment_axis(axes[0], series)
    hosts = [Line2D([], [], color=s.colour, linewidth=1.5, label=s.label) for s in series]
    causes = [Line2D([], [], color="none", marker="o", markerfacecolor=colour, markeredgecolor="#444444",
                     label=name or "none") for name, colour in CAUSE_COLOURS.items()
              if any((r.get("cause") or "") == name for r in rows)]
    axes[0].legend(handles=hosts, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                   title="host (path MTU)", title_fontsize=8)
    axes[1].legend(handles=causes, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False,
                   title="loss just above\n(the knee's cause)", title_fontsize=8)
    threshold = meta.get("loss_threshold") or 0
    what = "no-drop rate" if not threshold else f"rate losing at most {100 * threshold:g}%"
    fig.suptitle(f"{meta.get('command') or 'udpbench capacity'}\n{what}, {meta.get('trial_s', 1):g} s trials, "
                 f"{meta.get('started', '')[:16]}", fontsize=11, x=0.01, ha="left")
    try:
        results.write_atomically(out, lambda f: fig.savefig(f, format=out.suffix.lstrip(".").lower()))
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out
