"""Hyper-parameter sweeps of MLPs trained as batched families.

``train_mlp_sweep`` takes a list of configurations, groups them by everything that must be
shared inside one batched model (layer sizes, batch size, data order), trains each group as
ONE :class:`repro.models.MLPFamily` with per-member learning rate, momentum, weight decay,
initialization, seed and activation, and returns one history DataFrame with the
configuration columns attached. Each group is cached on its own, so an interrupted sweep
resumes with the groups it had finished.

Used by ift6135-2020 (init study, 36-net grid) and the other MLP chapters.
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from . import store
from .data import Split
from .engine import cross_entropy, fit
from .models import MLPFamily
from .optim import FamilyOptimizer

# Keys that may differ between members of one family; every other key must be shared.
MEMBER_KEYS = ("lr", "momentum", "weight_decay", "init", "seed", "activation", "normal_std", "label")
DEFAULTS = dict(momentum=0.0, weight_decay=0.0, init="glorot", seed=0, activation="relu", normal_std=1.0)


def group_configs(configs: Sequence[dict]) -> list[list[int]]:
    """Indices of configs grouped by their shared (non-member) settings, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        shared = {k: v for k, v in c.items() if k not in MEMBER_KEYS}
        groups.setdefault(repr(sorted(shared.items())), []).append(i)
    return list(groups.values())


def train_family(configs: Sequence[dict], train: Split, evaluate_on: dict[str, Split], *, epochs: int,
                 batch_size: int, shuffle: bool = False, order_seed: int = 0, rng: str = "torch",
                 dtype=torch.float32, eval_loss=None, return_model: bool = False, bias: str = "zero",
                 on_start=None, **fit_kw):
    """Train configs that share ``dims`` as one family; history has a ``config`` column.

    bias: "zero", or "normal" (biases drawn N(0, normal_std^2) like the weights, see
    :meth:`MLPFamily.initialize`). on_start(model): called once before the first step
    (e.g. to record the initial weights).
    """
    configs = [{**DEFAULTS, **c} for c in configs]
    dims = configs[0]["dims"]
    device = train.x.device
    model = MLPFamily(dims, [c["activation"] for c in configs], dtype=dtype, device="cpu")
    model.initialize([c["init"] for c in configs], [c["seed"] for c in configs], rng=rng,
                     normal_std=[c["normal_std"] for c in configs], bias=bias)
    model = model.to(device)
    model._groups = {a: idx.to(device) for a, idx in model._groups.items()}
    opt = FamilyOptimizer(model.parameters(), len(configs), lr=[c["lr"] for c in configs],
                          momentum=[c["momentum"] for c in configs], weight_decay=[c["weight_decay"] for c in configs])
    cast = (lambda s: Split(s.x.to(dtype), s.y)) if dtype != train.x.dtype else (lambda s: s)
    if on_start is not None:
        on_start(model)
    history = fit(model, cast(train), opt, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                  order_seed=order_seed, loss_fn=cross_entropy, eval_loss=eval_loss,
                  evaluate_on={k: cast(v) for k, v in evaluate_on.items()}, **fit_kw)
    history["config"] = history["member"].map(lambda m: configs[m].get("label", str(m)))
    for key in MEMBER_KEYS[:-1]:
        history[key] = history["member"].map(lambda m: configs[m][key])
    return (history, model) if return_model else history


def train_mlp_sweep(configs: Sequence[dict], train: Split, evaluate_on: dict[str, Split], *, settings=None,
                    experiment: str = "sweep", cache_config: dict | None = None, **kw) -> pd.DataFrame:
    """Train every config (grouped into batched families) and return one history.

    Each config is a dict with ``dims`` and optional member keys (``lr``, ``init``,
    ``seed``, ``activation``, ``momentum``, ``weight_decay``, ``normal_std``, ``label``).
    With ``settings`` each family is cached under ``experiment`` and its configs.
    """
    parts = []
    for idx in group_configs(configs):
        members = [dict(configs[i]) for i in idx]
        for i, c in zip(idx, members):
            c.setdefault("label", str(i))

        def run(members=members):
            return train_family(members, train, evaluate_on, **kw)

        if settings is not None:
            key = {"members": members, "fit": kw,  # the data itself is keyed by content (repro.fingerprint)
                   "sizes": [len(train)] + [len(s) for s in evaluate_on.values()], **(cache_config or {})}
            history = store.cached(settings, experiment, key, run)
        else:
            history = run()
        shared = {k: v for k, v in members[0].items() if k not in MEMBER_KEYS}
        for k, v in shared.items():
            history[k] = [v] * len(history)
        parts.append(history)
    return pd.concat(parts, ignore_index=True)
