"""The two setups of the Purdue CS690 HW3 report (chapter purdue-hw3), for its 784-300-100-10 MLP.

``as-run`` is the author's code as it behaved: every "epoch" draws ONE random minibatch and
makes ONE update; the recorded loss is that minibatch's cross-entropy (log clipped at
1e-14) before its update, plus the L2 term 0.5 * lambda * sum ||W||_F / 784; the L2 decay
step is divided by the 784 input features too and only SGD applies it; Momentum, Nesterov
and Adam reset their state at every call (Adam with epsilon 1e-5).

``intended`` is the assignment as the course's reference solution implements it: every
epoch runs over all minibatches; the optimizers keep their state (Adam epsilon 1e-7); L2
adds lambda * W to the weight gradients (the gradient of 0.5 * lambda * ||W||^2); the
recorded loss is the whole training set's cross-entropy (+ 0.5 * lambda * ||W||^2) at the end
of the epoch.

In both, weights and biases start U(-1/sqrt(fan_in), 1/sqrt(fan_in)) and members of one
family (same batch size and optimizer) train as one batched :class:`repro.models.MLPFamily`,
each with its own seed and its own data order.

This module holds everything only this report needs: the two setups (above,
:func:`train_setup_family`), the course handout's optimizers (:func:`make_optimizer`), the
shuffled-labels experiment (:func:`shuffle_labels`), the loss along a straight line in weight
space (:func:`line_scan`), the report's MLP numbers beside ours under the tolerance rule
(:class:`Comparison`), the CNN's feature-map sides and validation logs (:func:`sides`,
:func:`cnn_log_rows`) and the page's headline (:func:`headline`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch
import torch.nn.functional as F

from .. import store
from ..config import check_choice
from ..data import Split
from ..engine import cross_entropy, evaluate, fit
from ..models import MLPFamily
from ..optim import FamilyOptimizer
from ..verdicts import binomial_bound, column_spread, compare, compare_column, printed_precision, seed_spread


# ------------------------------------------------------------ the course handout's optimizers
# SGD, Momentum, Nesterov and Adam as the assignment defines them (eqs. 3-12 of the Purdue CS690
# HW3 handout): :class:`repro.optim.FamilyOptimizer` with ``rule="handout"`` (its docstring gives
# the equations), one learning rate and L2 per member (:func:`make_optimizer`). The author's code
# re-created the velocity / moments at every call: ``reset_state=True``. Then momentum and
# Nesterov are exactly SGD, and Adam's step is lr * c(t) * g / (|g| + eps'), i.e. about
# ``lr * c(t) * sign(g)`` with c(t) = (1 - b1) / (1 - b1^t) / sqrt((1 - b2) / (1 - b2^t))
# (:func:`reset_adam_scale`).


def reset_adam_scale(t: int, betas: tuple[float, float] = (0.9, 0.999)) -> float:
    """c(t): the step of an Adam whose moments are zeroed before every update, in units of lr * sign(g)."""
    b1, b2 = betas
    return ((1 - b1) / (1 - b1 ** t)) / math.sqrt((1 - b2) / (1 - b2 ** t))


# ------------------------------------------------------------ shuffled labels
# Randomly shuffled training labels, done right or the way ``np.random.shuffle`` does it to a tensor.
#
# Used by purdue-hw3 (the shuffled-labels memorization experiment).
#
# ``np.random.shuffle(t)`` on a 1-D torch tensor ``t`` takes numpy's generic path: for
# i = n-1 ... 1 it draws j uniform in {0, ..., i} and runs ``t[i], t[j] = t[j], t[i]``. Indexing
# a tensor returns *views*, so the second assignment writes back the value the first one just
# copied: t[i] receives t[j] and t[j] keeps its own value (numpy issue 18206, pytorch issue
# 50880; numpy now warns). Positions below i are still untouched when i is processed, so the
# result is simply ``t[i] = t_original[j_i]``: a draw with replacement, not a permutation.
# About half of the labels disappear (position k survives with probability 1 - k/n) and the
# others are duplicated; the class counts drift accordingly.

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


# ------------------------------------------------------------ the loss along a straight line
# The loss along the straight line between two parameter vectors ("flatness" plots).
#
# Used by purdue-hw3 (validation error of theta(alpha) = theta_0 + alpha (theta_final - theta_0),
# the interpolation of Goodfellow, Vinyals & Saxe, 2015). Works for any ``nn.Module``,
# model families included (each member moves along its own line).

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


# ------------------------------------------------------------ the report's two setups
SETUPS = ("as-run", "intended")
DIMS = (784, 300, 100, 10)
LOG_EPS = 1e-14  # the author's cross_entropy: -log(p + 1e-14)
L2_DIVISOR = 784  # m = X.shape[1] in the author's networks.py: the input features, not the batch size
ADAM_EPS = {"as-run": 1e-5, "intended": 1e-7}  # the author's changed epsilon; the reference solution's


@torch.no_grad()
def init_fan_in_uniform(model: MLPFamily, seeds: Sequence[int]) -> MLPFamily:
    """Weights and biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)), member k drawn with ``seeds[k]``."""
    for k, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(int(seed))
        for w, b in zip(model.weights, model.biases):
            bound = 1 / math.sqrt(w.shape[1])
            w[k].copy_((torch.rand(w.shape[1:], generator=gen) * 2 - 1) * bound)
            b[k].copy_((torch.rand(b.shape[1:], generator=gen) * 2 - 1) * bound)
    return model


def clipped_log_loss(logits: torch.Tensor, y: torch.Tensor, eps: float = LOG_EPS) -> torch.Tensor:
    """Per-sample -log(softmax(logits)[y] + eps), the author's recorded loss (float64, no gradient)."""
    p = torch.softmax(logits.detach().double(), dim=-1).gather(-1, y[:, None])[:, 0]
    return -torch.log(p + eps)


def training_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of plain cross-entropy (softmax minus one-hot, the author's backward pass), value of
    :func:`clipped_log_loss` (what the author's code printed)."""
    ce = F.cross_entropy(logits, y, reduction="none")
    return ce + (clipped_log_loss(logits, y).to(ce.dtype) - ce.detach())


def l2_penalty(model: MLPFamily, l2: torch.Tensor, setup: str) -> torch.Tensor:
    """Per-member L2 term of the recorded loss: as-run 0.5 l2 sum ||W||_F / 784; intended 0.5 l2 sum ||W||^2."""
    norms = torch.stack([w.detach().flatten(1).norm(dim=1).double() for w in model.weights])  # (layers, M)
    if setup == "as-run":
        return 0.5 * l2 * norms.sum(0) / L2_DIVISOR
    return 0.5 * l2 * (norms ** 2).sum(0)


def make_optimizer(model: MLPFamily, setup: str, method: str, lr: Sequence[float], l2: Sequence[float]):
    """The setup's optimizer for a family: per-member lr and L2, weight decay on weights only."""
    check_choice("setup", setup, SETUPS)
    if setup == "as-run":  # decay lr * lambda / 784 * W in SGD only; the other optimizers ignore lambda
        decay = [x / L2_DIVISOR if method == "sgd" else 0.0 for x in l2]
    else:  # the reference solution adds lambda * W to every weight gradient
        decay = list(l2)
    groups = [{"params": list(model.weights), "weight_decay": decay},
              {"params": list(model.biases), "weight_decay": 0.0}]
    return FamilyOptimizer(groups, model.n_members, method, rule="handout", lr=list(lr), eps=ADAM_EPS[setup],
                           reset_state=(setup == "as-run"))


class _Probe:
    """on_evaluate callback: the L2 term after every call, full evaluations every ``every`` calls."""

    def __init__(self, splits: dict[str, Split], l2: torch.Tensor, setup: str, every: int, last: int, at_start: bool):
        self.splits, self.l2, self.setup, self.every, self.last = splits, l2, setup, every, last
        self.at_start, self.calls, self.penalty, self.rows = at_start, 0, {}, []

    def __call__(self, step: int, model: MLPFamily) -> None:
        self.penalty[step] = l2_penalty(model, self.l2, self.setup).cpu()
        if (self.calls % self.every == 0 and (step > 0 or self.at_start)) or step == self.last:
            for name, split in self.splits.items():
                self.rows.append(evaluate(model, split, clipped_log_loss).assign(split=name, step=step))
        self.calls += 1


def train_setup_family(configs: Sequence[dict], train: Split, evaluate_on: dict[str, Split], *, setup: str,
                       method: str = "sgd", batch_size: int, epochs: int, curve_every: int = 1,
                       eval_at_start: bool = True, order_seed: int = 0) -> pd.DataFrame:
    """Train the configs (dicts with ``lr``, ``l2``, ``seed``, ``label``) as one family in one of
    the report's two :data:`SETUPS`, with this chapter's evaluation schedule (not to be confused
    with :func:`repro.sweep.train_family`, the shared sweep of plain MLP families).

    Returns a tidy history: ``config, member, epoch, step, split, loss, accuracy, penalty,
    objective, seconds``. ``split`` is each evaluated split (a full evaluation every
    ``curve_every`` epochs, after the last one and, with ``eval_at_start``, before training)
    and, as-run only, ``minibatch`` (each update's minibatch, before the update). ``loss`` is
    -log(p + 1e-14) averaged; ``objective`` = loss + the setup's L2 term, the number the
    setup's code printed as "loss" (minibatch rows as-run, train rows intended); ``seconds``
    is the family's cumulative training time (evaluations excluded). An as-run epoch is one
    update, so there ``epoch`` = ``step``.
    """
    check_choice("setup", setup, SETUPS)
    m = len(configs)
    device = train.x.device
    model = init_fan_in_uniform(MLPFamily(DIMS, "relu", n_members=m), [c["seed"] for c in configs]).to(device)
    l2 = torch.tensor([float(c.get("l2", 0.0)) for c in configs], dtype=torch.float64)
    opt = make_optimizer(model, setup, method, [c["lr"] for c in configs], l2.tolist())
    per_epoch = 1 if setup == "as-run" else math.ceil(len(train) / batch_size)
    steps = epochs * per_epoch
    probe = _Probe(evaluate_on, l2, setup, curve_every, steps, eval_at_start)
    probe(0, model)
    history = fit(model, train, opt, steps=steps, batch_size=batch_size, loss_fn=training_loss,
                  eval_every=per_epoch, evaluate_on={}, record_running_loss=True,
                  on_evaluate=probe, order_seed=order_seed, per_member_order=True)
    seconds = history.groupby("step")["seconds"].first() if len(history) else pd.Series(dtype=float)
    parts = [pd.concat(probe.rows, ignore_index=True)]
    if setup == "as-run":
        mini = history[history["split"] == "train (running)"].assign(split="minibatch")
        parts.append(mini[["member", "loss", "accuracy", "split", "step"]])
    out = pd.concat(parts, ignore_index=True)
    out["seconds"] = out["step"].map(seconds).fillna(0.0)
    # the L2 term of a minibatch row uses the weights before its update (as the author's code did)
    before = out["step"] - (out["split"] == "minibatch").astype(int)
    out["penalty"] = [float(probe.penalty[s][k]) for s, k in zip(before, out["member"])]
    out["objective"] = out["loss"] + out["penalty"]
    out["epoch"] = out["step"] / per_epoch
    out["config"] = out["member"].map(lambda k: configs[k].get("label", str(k)))
    for key in ("lr", "l2", "seed"):
        out[key] = out["member"].map(lambda k: configs[k].get(key, 0.0))
    out = out.assign(setup=setup, method=method, batch_size=batch_size)
    cols = ["setup", "method", "batch_size", "config", "lr", "l2", "seed", "member", "epoch", "step", "split",
            "loss", "accuracy", "penalty", "objective", "seconds"]
    return out[cols].sort_values(["member", "step", "split"], ignore_index=True)


def run_family(configs: Sequence[dict], train: Split, evaluate_on: dict[str, Split], *, settings=None,
               experiment: str = "mlp", cache_config: dict | None = None, **kw) -> pd.DataFrame:
    """:func:`train_setup_family`, cached under ``experiment`` (one cache entry per family)."""
    if settings is None:
        return train_setup_family(configs, train, evaluate_on, **kw)
    key = {"configs": list(configs), "fit": kw, "sizes": [len(train)] + [len(s) for s in evaluate_on.values()],
           **(cache_config or {})}
    return store.cached(settings, experiment, key, lambda: train_setup_family(configs, train, evaluate_on, **kw))


def final_numbers(history: pd.DataFrame) -> pd.DataFrame:
    """Per config: the printed loss, train and test accuracy (%) after the last epoch."""
    rows = []
    for (setup, config), h in history.groupby(["setup", "config"], sort=False):
        last = h[h["step"] == h["step"].max()].set_index("split")
        loss_split = "minibatch" if setup == "as-run" else "train"
        first = last.iloc[0]
        rows.append({"setup": setup, "config": config, **{k: first[k] for k in ("method", "batch_size", "lr", "l2", "seed")},
                     "loss": last.loc[loss_split, "objective"],
                     "train_acc": 100 * last.loc["train", "accuracy"], "test_acc": 100 * last.loc["test", "accuracy"],
                     "epochs": last["epoch"].iloc[0]})
    return pd.DataFrame(rows).set_index(["setup", "config"])


def time_as_run_epoch(train: Split, test: Split, *, method: str = "sgd", batch_size: int, repeats: int = 3,
                      seed: int = 0) -> float:
    """Wall seconds of one as-run "epoch" of one network: one update of ``batch_size`` images,
    then predictions on the whole training and test sets, as the author's loop timed it
    (median of ``repeats`` after one warm-up)."""
    model = init_fan_in_uniform(MLPFamily(DIMS, "relu", n_members=1), [seed]).to(train.x.device)
    opt = make_optimizer(model, "as-run", method, [1e-4], [0.0])
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fit(model, train, opt, steps=1, batch_size=batch_size, loss_fn=training_loss,
            evaluate_on={"train": train, "test": test}, order_seed=seed)
        if train.x.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(pd.Series(times[1:]).median())


# ------------------------------------------------------------ the report's numbers beside ours
REPORT_IMAGES = {"train_acc": 60_000, "test_acc": 10_000}  # the report's accuracies are over all of MNIST's images


def printed(value: float, step: float) -> str:
    """The report's number as printed: whole numbers without decimals ('85%'), others to the table's step."""
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    return str(int(value)) if float(value).is_integer() else f"{value:.{decimals}f}"


def report_columns(reported: dict) -> dict[tuple, list[float]]:
    """Each MLP row's column of the report, for the rule's second test (a tolerance wider than half a
    column's spread could let one constant match the column): ``(experiment, column, key)`` -> the
    reported values it is held against (the four batch sizes at one learning rate, the optimizers,
    the lambdas)."""
    t, g, o, l2 = reported["tables_1_3"], reported["gd_vs_sgd"], reported["optimizers"], reported["l2"]
    keys = {"loss": "loss", "train_acc": "train_accuracy_pct", "test_acc": "test_accuracy_pct"}
    columns = {}
    for table, column in (("Table 1", "loss"), ("Table 2", "train_acc"), ("Table 3", "test_acc")):
        for i, lr in enumerate(t["learning_rates"]):
            for bs in t["batch_sizes"]:
                columns[(table, column, f"batch {bs}, lr {lr:g}")] = [row[i] for row in t[keys[column]]]
    for column, key in keys.items():
        for m in ("sgd", "gd"):
            columns[("GD vs SGD", column, m)] = [g[n][key] for n in ("sgd", "gd")]
        for m in ("sgd", "momentum", "nesterov", "adam"):
            columns[("Optimizers", column, m)] = [o[n][key] for n in ("sgd", "momentum", "nesterov", "adam") if key in o[n]]
        for lam in ("1", "0.1", "0.01"):
            columns[("L2", column, f"sgd, lambda {lam}")] = [l2[n][key] for n in ("1", "0.1", "0.01")]
    return columns


@dataclass
class Comparison:
    """The MLP rows of the report beside ours, for the compared ``setup``, under the book's tolerance rule.

    Each :meth:`row` also keeps the ``other`` setup's value of the same quantity in
    :attr:`other_rows` (no verdict: the report printed one setup). A row's tolerance is the
    measured seed spread when the row's network is one of the spread's own networks (``spread``:
    mean and sd per (method, batch size, lr), used only when ``spread_serves``: the as-run setup is
    compared and the spread was measured at the report's 100 updates on all the images), else two
    binomial sd of an accuracy over the report's images or, for a loss, the report's printed
    precision; never below half the report's last printed digit. Each row is held against its
    column of the report (``columns``, :func:`report_columns`).
    """

    setup: str
    other: str
    columns: dict
    spread: pd.DataFrame
    spread_serves: bool
    spread_seeds: int
    spread_at: str  # where the spread was measured, e.g. "100 updates on 60,000 images"
    profile: str
    train_images: int  # the compared setup's training images (for the note of a reduced run)
    comparable: bool
    other_rows: list[dict] = field(default_factory=list)

    def tolerance(self, reported: float, own: pd.Series, network: tuple, column: str, printed_step: float):
        """(tolerance, sd): the seed spread of ``network`` = (method, batch size, lr) when it is the row's own
        network (``own``: the row's final numbers, with its method, batch size, lr and L2), else the bound."""
        candidates = [printed_precision(printed(reported, printed_step))]
        sd = None
        if (self.spread_serves and network in self.spread.index and float(own["l2"]) == 0
                and (own["method"], int(own["batch_size"]), float(own["lr"])) == network):
            sd = float(self.spread.loc[network, (column, "std")])
            candidates.append(seed_spread(round(math.sqrt(2) * sd, 4), self.spread_seeds, at=(
                f"as-run, {network[0]}, batch {network[1]}, lr {network[2]:g}, {self.spread_at}")))
        elif column in REPORT_IMAGES:
            candidates.append(binomial_bound(reported / 100, REPORT_IMAGES[column], scale=100, digits=2))
        return max(candidates, key=lambda t: t.value), sd

    def row(self, experiment: str, quantity: str, reported: float, finals: pd.DataFrame, key: str, column: str, *,
            network: tuple, printed_step: float, section: str, faithful: bool):
        """The reported-vs-ours row of ``finals.loc[(setup, key), column]`` (``finals``: :func:`final_numbers`
        of both setups); ``network``: the spread network that may give its tolerance; ``faithful``: whether
        this run trained the report's setting (else ours is only in the note)."""
        ours = float(finals.loc[(self.setup, key), column])
        other = float(finals.loc[(self.other, key), column])
        self.other_rows.append(dict(setup=self.other, experiment=experiment, quantity=quantity, value=other,
                                    section=section, epochs=float(finals.loc[(self.other, key), "epochs"])))
        note = "" if faithful else (f"{self.profile}: {finals.loc[(self.setup, key), 'epochs']:g} epoch(s) on "
                                    f"{self.train_images} training images gave {ours:.4g}")
        tol, sd = self.tolerance(reported, finals.loc[(self.setup, key)], network, column, printed_step)
        return compare(experiment, quantity, reported, ours if faithful else None, tol, section=section, note=note,
                       comparable=self.comparable, seed_sd=sd,
                       column_spread_=column_spread(self.columns[(experiment, column, key)]))


def lr_extreme_checks(value: Callable, batch_sizes: Sequence[int], lrs: Sequence[float], lr: float, *,
                      best: bool) -> dict[str, bool]:
    """Per batch size, whether ``lr`` has the highest (``best``; else the lowest) training and test accuracy
    and the lowest (else the highest) printed loss of the learning rates ``lrs``.
    ``value(batch_size, lr, column)``: a final number of the compared setup."""
    others = [x for x in lrs if x != lr]
    sign = 1 if best else -1  # +1: above the others in accuracy, below them in loss
    top, bottom = ("highest", "lowest") if best else ("lowest", "highest")
    checks = {}
    for bs in batch_sizes:
        for what, column, s in ((f"{top} train accuracy", "train_acc", sign), (f"{top} test accuracy", "test_acc", sign),
                                (f"{bottom} loss", "loss", -sign)):
            checks[f"batch {bs}: {what}"] = all(s * value(bs, lr, column) > s * value(bs, x, column) for x in others)
    return checks


# ------------------------------------------------------------ the lecture's CNN
@torch.no_grad()
def sides(net: torch.nn.Module) -> dict[str, int]:
    """Side of each feature map of the lecture's CNN (``conv1``, pool, ``conv2``, pool), measured by
    running a blank 28x28 image through the layers, and the input size of ``fc1``."""
    c1 = net.conv1(torch.zeros(1, 1, 28, 28))
    p1 = F.max_pool2d(c1, 2)
    c2 = net.conv2(p1)
    p2 = F.max_pool2d(c2, 2)
    return dict(conv1_out=c1.shape[-1], pool1_out=p1.shape[-1], conv2_out=c2.shape[-1], pool2_out=p2.shape[-1],
                fc1_in=p2.flatten(1).shape[1])


def cnn_log_rows(variant: str, log: dict, ours: pd.DataFrame, *, epochs: Sequence[int], faithful: bool, profile: str,
                 test_images: int, section: str, comparable: bool) -> list:
    """One CNN variant's validation log (``log``: the report's ``average_loss`` and ``correct`` per epoch)
    beside ours (``ours``: our validation rows indexed by epoch; ``test_images``: how many we evaluated).

    No seed spread of these CNNs is measured, so the tolerances are bounds: two binomial sd of a
    count of correct answers among the report's 10,000 test images, and for the average loss the
    printed precision (four decimals); each value is held against its neighbours in the log. An
    epoch this run did not train, or a run on a subset of the images, gets no verdict, only a note.
    """
    n = REPORT_IMAGES["test_acc"]
    trained = [float(e) in ours.index for e in epochs]
    notes = [("" if faithful else f"{profile}: a subset of the images") if t else f"{profile}: not trained to epoch {e}"
             for e, t in zip(epochs, trained)]
    losses = [float(ours.loc[float(e), "loss"]) if t and faithful else None for e, t in zip(epochs, trained)]
    correct = [float(ours.loc[float(e), "accuracy"]) * test_images if t and faithful else None
               for e, t in zip(epochs, trained)]
    loss_tol = [printed_precision(f"{v:.4f}") for v in log["average_loss"]]
    count_tol = [binomial_bound(c / n, n, scale=n, of="a count of correct answers", digits=1) for c in log["correct"]]
    rows = []
    for quantity, reported, values, tols in (("average loss", log["average_loss"], losses, loss_tol),
                                             ("correct of 10000", log["correct"], correct, count_tol)):
        column = compare_column("CNN validation log", [f"{variant}, epoch {e}: {quantity}" for e in epochs], reported,
                                values, tols, within="neighbours", section=section, comparable=comparable)
        for row, note in zip(column, notes):
            row.note = note
        rows += column
    return rows


# ------------------------------------------------------------ the chapter's summary
def headline(setup: str, table_finals: pd.DataFrame, opt_finals: pd.DataFrame, reported: dict) -> str:
    """One sentence for the landing page: the compared setup's test accuracies of the report's
    headline networks (batch 100 at lr 1e-3; Adam, Momentum and SGD at batch 300) beside the report's."""
    t, o = table_finals.loc[setup], opt_finals.loc[setup]
    ours = lambda m: f"{o.loc[m, 'test_acc']:.1f}%"
    theirs = lambda m: f"{reported['optimizers'][m]['test_accuracy_pct']:g}%"
    return (f"{setup}: batch 100, lr 1e-3 test {t.loc['batch 100, lr 0.001', 'test_acc']:.1f}% "
            f"(report {reported['tables_1_3']['test_accuracy_pct'][0][0]:g}%); Adam {ours('adam')} (report {theirs('adam')}), "
            f"Momentum {ours('momentum')} and SGD {ours('sgd')} (report {theirs('momentum')} and {theirs('sgd')})")
