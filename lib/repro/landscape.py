"""The loss along the straight line between two parameter vectors ("flatness" plots).

Used by purdue-hw3 (validation error of theta(alpha) = theta_0 + alpha (theta_final - theta_0),
the interpolation of Goodfellow, Vinyals & Saxe, 2015). Works for any ``nn.Module``,
model families included (each member moves along its own line).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch

from .data import Split
from .engine import cross_entropy, evaluate


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of every parameter, by name."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def interpolate(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], alpha: float) -> dict[str, torch.Tensor]:
    """theta(alpha) = start + alpha * (end - start); alpha 0 gives start, 1 gives end, > 1 goes beyond."""
    if start.keys() != end.keys():
        raise ValueError("the two snapshots hold different parameters")
    return {k: start[k] + alpha * (end[k] - start[k]) for k in start}


@torch.no_grad()
def load_parameters(model: torch.nn.Module, values: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        p.copy_(values[name])


@torch.no_grad()
def line_scan(model: torch.nn.Module, start: dict, end: dict, alphas: Sequence[float],
              evaluate_on: dict[str, Split], loss_fn: Callable = cross_entropy) -> pd.DataFrame:
    """Loss, accuracy and error (%) of ``model`` at theta(alpha) for each alpha and split.

    The model's own parameters are restored afterwards. Returns one row per
    (alpha, split, member): ``alpha, split, member, loss, accuracy, error_pct``.
    """
    kept = snapshot(model)
    rows = []
    try:
        for alpha in alphas:
            load_parameters(model, interpolate(start, end, float(alpha)))
            for name, split in evaluate_on.items():
                rows.append(evaluate(model, split, loss_fn).assign(alpha=float(alpha), split=name))
    finally:
        load_parameters(model, kept)
    out = pd.concat(rows, ignore_index=True)
    out["error_pct"] = (1 - out["accuracy"]) * 100
    return out[["alpha", "split", "member", "loss", "accuracy", "error_pct"]]
