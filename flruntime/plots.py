"""PNG plots of results people would rather see than read: training curves, system metrics, the cross-site matrix.

The ``*_figure`` functions return matplotlib :class:`~matplotlib.figure.Figure` objects (no pyplot: no global
state, safe in threads) so callers and tests can inspect what was drawn; :func:`save_png` writes one with a
``flruntime`` PNG text chunk that describes it (:func:`describe`: each axes' title, axis labels and lines with
their number of points), which :func:`png_info` reads back.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: ``results[data_site][model][metric] = value``: the cross-site validation matrix.
Matrix = Mapping[str, Mapping[str, Mapping[str, Any]]]
#: ``{line label: [(x, y), ...]}``: the lines of one axes.
Lines = Mapping[str, Sequence[tuple[float, float]]]

#: The PNG text chunk :func:`save_png` writes and :func:`png_info` reads.
INFO_KEY = "flruntime"


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure with an Agg canvas, ``width`` x ``height`` inches (``dpi`` pixels each)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def curve_figure(lines: Lines, *, title: str, xlabel: str, ylabel: str, integer_x: bool = True) -> Figure:
    """One axes with a line (and markers) per entry of ``lines``, in sorted label order."""
    from matplotlib.ticker import MaxNLocator

    fig = new_figure(7, 4.5)
    ax = fig.subplots()
    for label in sorted(lines):
        points = lines[label]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", markersize=3, label=label)
    if integer_x:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if lines:
        ax.legend(fontsize=8)
    return fig


def panels_figure(panels: Sequence[tuple[str, Lines]], *, title: str, xlabel: str) -> Figure:
    """Stacked axes sharing x, one per ``(ylabel, lines)`` panel (e.g. CPU % and RSS MiB per site over time)."""
    fig = new_figure(8, 1.2 + 2.6 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False, sharex=True)[:, 0]
    for ax, (ylabel, lines) in zip(axes, panels, strict=True):
        for label in sorted(lines):
            points = lines[label]
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", markersize=4, label=label)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[-1].set_xlabel(xlabel)
    fig.suptitle(title)
    return fig


def cross_site_figure(results: Matrix) -> Figure | None:
    """One annotated heatmap per numeric metric (rows: data sites, columns: models); None when nothing is numeric."""
    import numpy as np

    sites = sorted(results)
    owners = sorted({owner for row in results.values() for owner in row})
    names = sorted(
        {
            name
            for row in results.values()
            for metrics in row.values()
            if isinstance(metrics, Mapping)
            for name, v in metrics.items()
            if _number(v)
        }
    )
    if not sites or not owners or not names:
        return None
    label = max(len(o) for o in owners) * 0.07  # room for the rotated model names under each heatmap
    width = 2.5 + 1.2 * len(owners) + 0.07 * max(len(s) for s in sites)
    fig = new_figure(width, (1.4 + 0.6 * len(sites) + label) * len(names))
    axes = fig.subplots(len(names), 1, squeeze=False)[:, 0]
    for ax, name in zip(axes, names, strict=True):
        grid = np.full((len(sites), len(owners)), np.nan)
        for i, site in enumerate(sites):
            for j, owner in enumerate(owners):
                metrics = results[site].get(owner)
                v = metrics.get(name) if isinstance(metrics, Mapping) else None
                if _number(v):
                    grid[i, j] = float(v)
        image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", aspect="auto")
        fig.colorbar(image, ax=ax)
        ax.set_xticks(range(len(owners)), owners, rotation=30, ha="right")
        ax.set_yticks(range(len(sites)), sites)
        ax.set_xlabel("model")
        ax.set_ylabel("data site")
        ax.set_title(name)
        for i in range(len(sites)):
            for j in range(len(owners)):
                if not math.isnan(grid[i, j]):
                    shade = image.norm(grid[i, j])  # dark text on the bright end of the colour map
                    color = "black" if np.ma.is_masked(shade) or shade > 0.6 else "white"
                    ax.text(j, i, f"{grid[i, j]:.4g}", ha="center", va="center", color=color, fontsize=9)
    return fig


def describe(fig: Figure) -> dict[str, Any]:
    """What a figure shows: its title and, per axes (colour bars left out), title, labels, lines and texts."""
    axes = []
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        axes.append(
            {
                "title": ax.get_title(),
                "xlabel": ax.get_xlabel(),
                "ylabel": ax.get_ylabel(),
                "lines": {str(line.get_label()): len(line.get_xdata()) for line in ax.get_lines()},  # type: ignore[arg-type]
                "texts": [t.get_text() for t in ax.texts],
            }
        )
    suptitle = fig.get_suptitle()
    return {"title": suptitle or (axes[0]["title"] if axes else ""), "axes": axes}


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as a PNG with its :func:`describe` summary in a text chunk; return ``path``."""
    info = describe(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Title": info["title"], INFO_KEY: json.dumps(info)})
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its header.

    Raises:
        ValueError: not a PNG file.
    """
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path}: not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return int(width), int(height)


def png_text(path: Path) -> dict[str, str]:
    """The PNG's text chunks (``tEXt``, ``zTXt``, ``iTXt``) as ``{keyword: text}``."""
    data = path.read_bytes()
    out: dict[str, str] = {}
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            out[key.decode("latin-1")] = text.decode("latin-1")
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out[key.decode("latin-1")] = zlib.decompress(rest[1:]).decode("latin-1")
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            out[key.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        elif kind == b"IEND":
            break
    return out


def png_info(path: Path) -> dict[str, Any]:
    """The :func:`describe` summary :func:`save_png` stored in a PNG (empty when there is none)."""
    text = png_text(path).get(INFO_KEY)
    return dict(json.loads(text)) if text else {}


def plot_round_metrics(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Draw one line per metric over rounds (rows are ``{"round": r, name: value, ...}``) into ``path``.

    Returns:
        The file written, or None when there is nothing to draw or matplotlib is not installed.
    """
    names = sorted({k for row in rows for k in row if k != "round"})
    if not rows or not names:
        return None
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    lines = {name: [(row["round"], row[name]) for row in rows if name in row] for name in names}
    ylabel = "value (mean over clients, weighted by local steps)"
    fig = curve_figure(lines, title=title or "training curve", xlabel="round", ylabel=ylabel)
    return save_png(fig, path)
