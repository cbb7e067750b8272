"""Figures: the book's seaborn style, tidy-history curves, and the authors' figures beside ours.

Notebooks draw with seaborn and matplotlib directly (``import seaborn as sns``); what several
chapters repeat lives here.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .report import authors_file


def setup_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid")
    plt.rcParams.update({"figure.dpi": 90, "savefig.dpi": 90, "figure.figsize": (7, 4)})


def curves(data: pd.DataFrame, *, x: str = "epoch", y: str = "loss", hue: str | None = None,
           style: str | None = None, col: str | None = None, title: str = "", xlabel: str = "epoch",
           ylabel: str = "loss", logy: bool = False, height: float = 3.4):
    """Line plot(s) of a tidy history; ``col`` makes one panel per value."""
    g = sns.relplot(data=data, x=x, y=y, hue=hue, style=style, col=col, kind="line", marker="o",
                    markersize=4, height=height, aspect=1.25, facet_kws={"sharey": False})
    g.set_axis_labels(xlabel, ylabel)
    if logy:
        g.set(yscale="log")
    if title:
        g.figure.suptitle(title, y=1.03)
    return g


def overlay(ours: pd.DataFrame, theirs: pd.DataFrame | None, **kw):
    """Our curves (solid) beside the authors' published ones (dashed), same axes."""
    parts = [ours.assign(source="ours")]
    if theirs is not None:
        parts.append(theirs.assign(source="authors' file"))
    data = pd.concat(parts, ignore_index=True)
    kw.setdefault("style", "source")
    return curves(data, **kw)


def beside_reference_images(chapter: str, images: list[str], *, ours: int = 1, titles: list[str] | None = None,
                            title: str = "", panel_width: float = 4.2, height: float = 3.4):
    """One row of panels: the authors' published figures first (PNG files found by
    :mod:`repro.authors`, shown as images), then ``ours`` empty axes for our curves.

    For reports whose authors kept only images of their curves (dd2424-a3). Returns
    (figure, list of our axes).
    """
    fig, axes = plt.subplots(1, len(images) + ours, figsize=(panel_width * (len(images) + ours), height))
    axes = list(axes) if len(images) + ours > 1 else [axes]
    for i, (ax, name) in enumerate(zip(axes, images)):
        path = authors_file(chapter, name)
        if path is not None:
            ax.imshow(plt.imread(path))
        else:
            ax.text(0.5, 0.5, "the authors' figure\nis not available here", ha="center", va="center")
        ax.set_axis_off()
        ax.set_title(titles[i] if titles else f"authors' figure: {name}", fontsize=9)
    if title:
        fig.suptitle(title, y=1.02)
    return fig, axes[len(images):]


def loss_and_accuracy(history: pd.DataFrame, *, hue: str = "split", style: str | None = None, title: str = "",
                      by: str | None = None, height: float = 3.2, aspect: float = 1.25, marker: str | None = None):
    """Cross-entropy (nats) and accuracy per epoch from a history melted to ``metric`` / ``value``:
    two panels side by side, or, with ``by``, one column per value of ``by`` and a row per metric."""
    panels = dict(col="metric") if by is None else dict(row="metric", col=by)
    g = sns.relplot(data=history, x="epoch", y="value", hue=hue, style=style, kind="line", marker=marker, height=height,
                    aspect=aspect, facet_kws={"sharey": False if by is None else "row"}, **panels)
    g.set_axis_labels("epoch", "")
    g.set_titles("{col_name}")
    g.axes[0, 0].set_ylabel("cross-entropy (nats)")
    (g.axes[0, 1] if by is None else g.axes[1, 0]).set_ylabel("accuracy")
    if title:
        g.figure.suptitle(title, y=1.04 if by is None else 1.02)
    return g
