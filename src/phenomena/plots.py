"""One look for every figure in the book, and the few helpers chapters share.

Captions live in the notebook (cell metadata ``mystnb.figure.caption``), so that the rendered
book numbers and captions the figure; these helpers take care of the axes and the style.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, NullFormatter

PALETTE = "colorblind"


def set_theme() -> None:
    """The book's seaborn theme: white grid, colour-blind palette, readable at page width."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE, font_scale=0.95)
    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "savefig.dpi": 150,
            "figure.constrained_layout.use": True,
            "axes.titleweight": "bold",
            "legend.frameon": False,
        }
    )
    try:  # pandas tables in the notebook: show whole sentences in the claims table
        import pandas as pd

        pd.set_option("display.max_colwidth", 200)
        pd.set_option("display.width", 200)
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass


def subplots(ncols: int = 1, nrows: int = 1, *, width: float = 4.2, height: float = 3.3, **kwargs: Any):
    """``plt.subplots`` sized per panel (inches), with the theme applied; returns ``(fig, axes)``."""
    set_theme()
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows), squeeze=False, **kwargs)
    flat = axes.ravel()
    return fig, (flat[0] if flat.size == 1 else flat)


def label(ax: Axes, x: str, y: str, title: str | None = None, *, legend: bool | None = None) -> Axes:
    """Label both axes (required for every figure in the book), optionally title and legend."""
    if not x or not y:
        raise ValueError("every axis in the book is labelled: give both x and y labels")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    if title:
        ax.set_title(title)
    handles, _ = ax.get_legend_handles_labels()
    if legend or (legend is None and handles):
        ax.legend(fontsize="small")
    return ax


def colors(n: int) -> list[tuple[float, float, float]]:
    """``n`` distinguishable colours from the book's palette."""
    return sns.color_palette(PALETTE, n)


def band(ax: Axes, x: Sequence[float], values: np.ndarray, *, label: str | None = None, color: Any = None) -> None:
    """Mean line and min-max band over the first axis of ``values`` (seeds), against ``x``."""
    values = np.asarray(values, dtype=float)
    mean = np.nanmean(values, axis=0)
    line = ax.plot(x, mean, label=label, color=color)[0]
    if values.shape[0] > 1:
        ax.fill_between(x, np.nanmin(values, axis=0), np.nanmax(values, axis=0), alpha=0.2, color=line.get_color())


def plain_log_formatter() -> FuncFormatter:
    """Tick labels on a log axis as plain numbers (``20``, ``0.01``) instead of ``2×10¹``."""
    return FuncFormatter(lambda v, _pos: f"{v:g}")


__all__ = ["set_theme", "subplots", "label", "colors", "band", "plain_log_formatter",
           "NullFormatter", "finite"]


def finite(values: Iterable[float]) -> np.ndarray:
    """Drop non-finite values (for log axes and fits)."""
    arr = np.asarray(list(values), dtype=float)
    return arr[np.isfinite(arr)]
