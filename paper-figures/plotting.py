"""Shared pieces of the figure scripts: theme, atomic saving, confidence intervals, empty panels."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

log = logging.getLogger("plots")


def theme() -> None:
    import seaborn as sns

    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)


def save(fig: plt.Figure, out: Path) -> None:
    """Write PNG and PDF atomically; bbox_inches='tight' keeps titles and outside legends in."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for path in (out, out.with_suffix(".pdf")):
        tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
        fig.savefig(tmp, dpi=150, bbox_inches="tight", pad_inches=0.1)
        tmp.replace(path)
    plt.close(fig)
    log.info("wrote %s", out)


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def existing(paths: Iterable[Path]) -> list[Path]:
    """The inputs that exist; a missing optional input is logged and skipped, not fatal."""
    found = []
    for path in paths:
        if Path(path).exists():
            found.append(Path(path))
        else:
            log.warning("skipping missing input %s", path)
    return found


def no_data(ax: plt.Axes, what: str) -> None:
    """An empty panel that says why, instead of a failed figure."""
    ax.text(0.5, 0.5, f"no data: {what}", ha="center", va="center", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def mean_ci(samples: np.ndarray, level: float = 0.95) -> tuple[np.ndarray, ...]:
    """Mean and Student-t confidence interval over axis 0 (seeds), ignoring NaN.

    With one sample the interval collapses to the mean (no band is drawn where no seeds are).
    """
    samples = np.asarray(samples, float)
    n = np.sum(~np.isnan(samples), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(samples, axis=0)
        sem = np.nanstd(samples, axis=0, ddof=1) / np.sqrt(n)
        half = stats.t.ppf(0.5 + level / 2, np.maximum(n - 1, 1)) * sem
    half = np.where(n > 1, half, 0.0)
    return mean, mean - half, mean + half


def band(ax: plt.Axes, x: Any, mean: Any, lo: Any, hi: Any, **line: Any) -> None:
    """A line with its confidence band in the line's colour."""
    (drawn,) = ax.plot(x, mean, **line)
    ax.fill_between(x, lo, hi, color=drawn.get_color(), alpha=0.2, linewidth=0)


def legend_outside(ax: plt.Axes, title: str | None = None) -> None:
    """Legend right of the axes, off the data (savefig's tight box keeps it in the image)."""
    handles, labels = ax.get_legend_handles_labels()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.02, 1.0))


def numeric_leaves(tree: Any, prefix: str = "") -> Mapping[str, float]:
    """Flatten nested JSON to {'a.b.c': number} (for inputs whose layout may change)."""
    out: dict[str, float] = {}
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            out.update(numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        out[prefix] = float(tree)
    return out
