"""PNG plots of results people would rather see than read: training curves per round."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_round_metrics(rows: Sequence[dict[str, Any]], path: Path, title: str = "") -> Path | None:
    """Draw one line per metric over rounds (rows are ``{"round": r, name: value, ...}``) into ``path``.

    Returns:
        The file written, or None when there is nothing to draw or matplotlib is not installed.
    """
    names = sorted({k for row in rows for k in row if k != "round"})
    if not rows or not names:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name in names:
        points = [(row["round"], row[name]) for row in rows if name in row]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("value (mean over clients, weighted by local steps)")
    ax.set_title(title or "training curve")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
