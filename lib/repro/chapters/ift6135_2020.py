"""The report's conclusions about initialization and the hyper-parameter grid, as named claims,
and the reading of the seed spread: what only ift6135-2020 (IFT6135-H2020, assignment 1,
problem 2) needs.

The chapter's training (the batched MLP families, the CNN) goes through the shared library
(:mod:`repro.sweep`, :func:`repro.fit`); this module only reads the results.
"""
from __future__ import annotations

import math

import pandas as pd

from .. import claims as cl


def falls_every_epoch(losses: pd.Series) -> dict[str, bool]:
    """``{"epoch e": loss fell from epoch e-1 to e}`` for every epoch after the first."""
    return {f"epoch {int(e)}": bool(d < 0) for e, d in losses.diff().dropna().items()}


def init_claims(train: pd.DataFrame, valid: pd.DataFrame, section: str, *, ran: bool, why: str) -> list[cl.Claim]:
    """The report's four conclusions about initialization (section 1), on the per-epoch mean
    losses ``train`` and ``valid`` (index: epoch, columns: glorot, zero, normal)."""
    last_e = float(train.index.max())
    gap = valid["normal"] - train["normal"]
    return [
        cl.claim_all("glorot_learns", "Glorot drastically reduces training and validation loss as training progresses",
                     section, {**{f"train {k}": v for k, v in falls_every_epoch(train["glorot"]).items()},
                               **{f"valid {k}": v for k, v in falls_every_epoch(valid["glorot"]).items()}},
                     "train and validation loss fall at every epoch",
                     evidence={"train loss, first epoch": train["glorot"].iloc[0], "train loss, last epoch": train["glorot"].iloc[-1]},
                     ran=ran, why=why),
        cl.claim_all("zero_stalls", "Zero: the network refuses to train; the validation loss remains the same", section,
                     {f"{split} epoch {int(e)}": bool(abs(v - math.log(10)) < 0.01)
                      for split, frame in (("train", train), ("valid", valid)) for e, v in frame["zero"].items()},
                     "train and validation loss stay within 0.01 of ln 10 = 2.3026 at every epoch",
                     evidence={"largest train loss": train["zero"].max(), "smallest train loss": train["zero"].min()},
                     ran=ran, why=why),
        cl.claim_order("init_order", "Normal works better than Zero but poorer than Glorot", section,
                       {init: train[init][last_e] for init in ("glorot", "normal", "zero")}, ["glorot", "normal", "zero"],
                       lower_is_better=True, ran=ran, why=why),
        cl.claim_between("normal_overfits", "Normal: the validation loss falls more slowly than the training loss (overfitting)",
                         section, float(gap.iloc[-1] - gap.iloc[0]), 0.0, math.inf,
                         "growth of the valid - train gap, first to last epoch",
                         extra={"gap, first epoch": gap.iloc[0], "gap, last epoch": gap.iloc[-1]}, ran=ran, why=why),
    ]


def grid_claims(valid: pd.Series, sizes: list[str], table2: set, section: str, *, ran: bool, why: str) -> list[cl.Claim]:
    """The report's six conclusions about the 36-network grid (section 2), on the validation
    accuracies ``valid`` (index: hidden dims as a string, activation, lr). ``sizes``: the hidden
    dims in the report's order; ``table2``: the (dims, activation, lr) keys Table 2 lists as
    reaching 97%."""
    per_size_best = {s: valid.loc[s].idxmax() for s in sizes}
    best_of_size = {s: float(valid.loc[s].max()) for s in sizes}
    return [
        cl.claim_all("table2_exactly", "The seven networks of Table 2, and only those, reach 97% validation accuracy", section,
                     {" ".join(map(str, k)): bool((valid[k] >= 0.97) == (k in table2)) for k in valid.index},
                     "validation accuracy >= 0.97 exactly for Table 2's configurations",
                     evidence={"networks at 97% here": int((valid >= 0.97).sum())}, ran=ran, why=why),
        cl.claim_all("sigmoid_poor", "Sigmoid performs poorly across all configurations", section,
                     {f"{s} lr {lr}": bool(valid[(s, "sigmoid", lr)] < min(valid[(s, "relu", lr)], valid[(s, "tanh", lr)]))
                      for s in sizes for lr in (0.05, 0.01, 0.005)},
                     "at every size and learning rate, sigmoid is below both ReLU and tanh",
                     evidence={"best sigmoid": float(valid.xs("sigmoid", level="activation").max())}, ran=ran, why=why),
        cl.claim_all("relu_every_size", "For every hidden size at least one ReLU network crosses 97%", section,
                     {s: bool(valid.loc[(s, "relu")].max() >= 0.97) for s in sizes}, "best ReLU network of each size >= 0.97",
                     evidence={"weakest size's best ReLU": min(float(valid.loc[(s, "relu")].max()) for s in sizes)},
                     ran=ran, why=why),
        cl.claim_between("tanh_some", "Tanh performs well for a number of configurations", section,
                         int((valid.xs("tanh", level="activation") >= 0.97).sum()), 1, math.inf, "tanh networks at 97%",
                         ran=ran, why=why),
        cl.claim_all("best_relu_005", "ReLU with lr 0.05 is the best configuration at every size (Tables 2-3)", section,
                     {s: per_size_best[s] == ("relu", 0.05) for s in sizes}, "the best network of each size is ReLU, lr 0.05",
                     evidence={s: " ".join(map(str, per_size_best[s])) for s in sizes}, ran=ran, why=why),
        cl.claim_between("size_matters_little", "More parameters do not improve the performance significantly", section,
                         max(best_of_size.values()) - min(best_of_size.values()), 0.0, 0.005,
                         "best minus worst of the four sizes' best validation accuracies",
                         extra={f"best {s}": v for s, v in best_of_size.items()}, ran=ran, why=why),
    ]


def spread_reading(accuracies: pd.Series, tolerance: float) -> str:
    """What the seed spread of the best grid network says, in words: its standard deviation
    over seeds as a multiple of the ``tolerance`` allowed for the author's own seed."""
    if len(accuracies) < 2:
        return "a single seed measures no spread"
    return (f"another seed moves a network by about {float(accuracies.std()) / tolerance:.1f} times the {tolerance:g} "
            "tolerance we allow for the author's own seed")
