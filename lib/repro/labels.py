"""Randomly shuffled training labels, done right or the way ``np.random.shuffle`` does it to a tensor.

Used by purdue-hw3 (the shuffled-labels memorization experiment).

``np.random.shuffle(t)`` on a 1-D torch tensor ``t`` takes numpy's generic path: for
i = n-1 ... 1 it draws j uniform in {0, ..., i} and runs ``t[i], t[j] = t[j], t[i]``. Indexing
a tensor returns *views*, so the second assignment writes back the value the first one just
copied: t[i] receives t[j] and t[j] keeps its own value (numpy issue 18206, pytorch issue
50880; numpy now warns). Positions below i are still untouched when i is processed, so the
result is simply ``t[i] = t_original[j_i]``: a draw with replacement, not a permutation.
About half of the labels disappear (position k survives with probability 1 - k/n) and the
others are duplicated; the class counts drift accordingly.
"""
from __future__ import annotations

import torch

from .config import check_choice

MODES = ("permutation", "numpy-on-torch")


def fisher_yates_draws(n: int, generator: torch.Generator) -> torch.Tensor:
    """j_i uniform in {0, ..., i} for every position i (j_0 = 0): the draws of a Fisher-Yates shuffle."""
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    return torch.minimum((u * torch.arange(1, n + 1, dtype=torch.float64)).long(), torch.arange(n))


def shuffle_index(n: int, mode: str = "permutation", seed: int = 0) -> torch.Tensor:
    """Source position of each label after shuffling: ``labels[shuffle_index(...)]``.

    permutation: a uniform random permutation (every label kept once).
    numpy-on-torch: what ``np.random.shuffle`` does to a torch tensor (see the module docstring).
    """
    check_choice("mode", mode, MODES)
    gen = torch.Generator().manual_seed(seed)
    if mode == "permutation":
        return torch.randperm(n, generator=gen)
    return fisher_yates_draws(n, gen)


def shuffle_labels(labels: torch.Tensor, mode: str = "permutation", seed: int = 0) -> torch.Tensor:
    """A shuffled copy of ``labels`` (on the same device)."""
    return labels[shuffle_index(len(labels), mode, seed).to(labels.device)]


def shuffle_summary(labels: torch.Tensor, index: torch.Tensor, n_classes: int = 10) -> dict:
    """What a shuffle did: labels kept in place, distinct original labels left, class-count drift."""
    labels, index = labels.cpu(), index.cpu()
    shuffled = labels[index]
    before = torch.bincount(labels, minlength=n_classes)
    after = torch.bincount(shuffled, minlength=n_classes)
    return {
        "images keeping their true label": float((shuffled == labels).double().mean()),
        "original labels still present": float(index.unique().numel() / len(index)),
        "largest class-count change (%)": float(((after - before).abs() / before.clamp(min=1)).max() * 100),
    }
