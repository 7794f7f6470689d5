"""The mesh as matrices: path MTU, goodput at the largest unfragmented size and loss for every
(source, destination), the cells that stand out, the pairs whose two directions differ, and a
heatmap. Reads a mesh result's ``meta`` and rows; never measures.
"""
from __future__ import annotations

import statistics
from pathlib import Path

LOSS_FLOOR = 0.001  # loss this far above the median, and above 0.1 %, stands out
ASYMMETRIC_GOODPUT = 0.2  # directions whose goodput differs by a fifth
ASYMMETRIC_LOSS = 0.005  # or whose loss differs by half a percentage point


def cells(meta: dict, rows: list[dict]) -> dict[tuple[str, str], dict]:
    """{(src, dst): {status, reason, path_mtu, goodput_bps, loss_ratio, size}} for every pair."""
    out = {}
    for pair in meta.get("pairs", []):
        cell = {"status": pair["status"], "reason": pair.get("reason"), "path_mtu": pair.get("path_mtu"),
                "goodput_bps": None, "loss_ratio": None, "size": None}
        mine = [r for r in rows if r.get("src") == pair["src"] and r.get("dst") == pair["dst"]]
        if mine and pair.get("path_mtu"):
            # The largest payload that still fits one packet: the figure that says what the path
            # carries before fragmentation costs anything (docs/mesh.md).
            fits = [r for r in mine if not r.get("fragments") or r["fragments"] <= 1] or mine
            best = max(fits, key=lambda r: r["size"])
            cell.update(goodput_bps=best.get("goodput_bps"), loss_ratio=best.get("loss_ratio"), size=best["size"])
        out[(pair["src"], pair["dst"])] = cell
    return out


def outliers(table: dict[tuple[str, str], dict]) -> dict[tuple[str, str], list[str]]:
    """The cells that stand out: a path MTU below the largest seen, loss above the median."""
    mtus = [c["path_mtu"] for c in table.values() if c["path_mtu"]]
    losses = [c["loss_ratio"] for c in table.values() if c["loss_ratio"] is not None]
    top = max(mtus) if mtus else None
    median = statistics.median(losses) if losses else 0.0
    marks: dict[tuple[str, str], list[str]] = {}
    for key, c in table.items():
        why = []
        if c["status"] != "ok":
            why.append("failed")
        if c["path_mtu"] and top and c["path_mtu"] < top:
            why.append("mtu")
        if c["loss_ratio"] is not None and c["loss_ratio"] > max(median + LOSS_FLOOR, LOSS_FLOOR):
            why.append("loss")
        if why:
            marks[key] = why
    return marks


def asymmetric(table: dict[tuple[str, str], dict]) -> list[tuple[str, str, str]]:
    """(a, b, what) for each pair whose a→b and b→a differ in path MTU, loss or goodput."""
    found = []
    for (a, b), there in table.items():
        back = table.get((b, a))
        if back is None or a > b or there["status"] != "ok" or back["status"] != "ok":
            continue
        if there["path_mtu"] != back["path_mtu"]:
            found.append((a, b, f"path MTU {there['path_mtu']} vs {back['path_mtu']}"))
        if there["loss_ratio"] is not None and back["loss_ratio"] is not None \
                and abs(there["loss_ratio"] - back["loss_ratio"]) > ASYMMETRIC_LOSS:
            found.append((a, b, f"loss {100 * there['loss_ratio']:.2f}% vs {100 * back['loss_ratio']:.2f}%"))
        g1, g2 = there["goodput_bps"], back["goodput_bps"]
        if g1 and g2 and abs(g1 - g2) > ASYMMETRIC_GOODPUT * max(g1, g2):
            found.append((a, b, f"goodput {g1 / 1e6:.1f} vs {g2 / 1e6:.1f} Mbit/s"))
    return found


def heatmap(meta: dict, rows: list[dict], path: str | Path) -> Path:
    """Path MTU, goodput and loss as three source×destination heatmaps in one image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    table = cells(meta, rows)
    hosts = [h["host"] for h in meta["hosts"]]
    panels = [("path MTU (bytes)", "path_mtu", 1.0), ("goodput (Mbit/s)", "goodput_bps", 1e-6),
              ("loss (%)", "loss_ratio", 100.0)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), constrained_layout=True)
    for ax, (title, key, scale) in zip(axes, panels):
        grid = np.full((len(hosts), len(hosts)), np.nan)
        for (src, dst), cell in table.items():
            if cell[key] is not None:
                grid[hosts.index(src), hosts.index(dst)] = cell[key] * scale
        image = ax.imshow(grid, cmap="viridis_r" if key == "loss_ratio" else "viridis")
        for i in range(len(hosts)):
            for j in range(len(hosts)):
                text = "" if np.isnan(grid[i, j]) else f"{grid[i, j]:.{0 if key == 'path_mtu' else 1}f}"
                failed = table.get((hosts[i], hosts[j]), {}).get("status") == "failed"
                ax.text(j, i, "failed" if failed else text, ha="center", va="center", fontsize=8, color="w")
        ax.set_xticks(range(len(hosts)), hosts)
        ax.set_yticks(range(len(hosts)), hosts)
        ax.set_xlabel("destination")
        ax.set_ylabel("source")
        ax.set_title(title)
        fig.colorbar(image, ax=ax, shrink=0.8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
