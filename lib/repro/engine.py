"""The one training engine: model + optimizer + data tensors in, a tidy history out.

Used by every chapter. Works for an ordinary ``nn.Module`` (logits (B, C)) and for a model
family (``model.n_members`` = M, logits (M, B, C)): a family's loss is the sum of its
members' mean losses, so each member gets exactly the gradient it would get alone.

Mini-batches are index slices of tensors already on the device: no DataLoader, no
per-sample Python, no host synchronisation inside the step loop (metrics are pulled once
per evaluation). The history is a pandas DataFrame with one row per
(evaluation, split, member): ``member, epoch, step, split, loss, accuracy, seconds``;
``seconds`` is cumulative training wall time, evaluation excluded.
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .data import Split


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample softmax cross-entropy (the training loss of every chapter unless stated)."""
    return F.cross_entropy(logits, y, reduction="none")


def clipped_cross_entropy(p_min: float = 1e-6) -> Callable:
    """Per-sample CE with probabilities clipped to [p_min, 1 - p_min] (a *recorded* loss)."""
    def loss(logits, y):
        p = torch.softmax(logits.double(), dim=-1).clamp(p_min, 1 - p_min)
        return -torch.log(p.gather(-1, y[:, None])[:, 0])
    return loss


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _family_loss(logits: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> torch.Tensor:
    """Per-member mean loss: logits (M, B, C), y (B,) or (M, B) -> (M,)."""
    m, b, c = logits.shape
    y = y.expand(m, b) if y.dim() == 1 else y
    return loss_fn(logits.reshape(m * b, c), y.reshape(-1)).view(m, b).mean(1)


@torch.no_grad()
def forward_batches(model: torch.nn.Module, x: torch.Tensor, batch_size: int) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, logits) for each batch of ``x`` in order, in eval mode without autograd.

    The one evaluation pass of the book: :func:`evaluate_losses` and :func:`predict` read it, so
    eval mode, no_grad and batching live here only. The model's train/eval mode is restored
    once the batches are exhausted. Batches bound the memory of one forward pass.
    """
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            rows = slice(start, start + batch_size)
            yield rows, model(x[rows])
    finally:
        model.train(was_training)


def predict(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 10_000, *, softmax: bool = False) -> torch.Tensor:
    """All logits of ``x`` ((N, C); (M, N, C) for a family), or with ``softmax`` the probabilities
    of the logits taken as float32 (what a report's figures and tables read, whatever the dtype)."""
    return torch.cat([torch.softmax(z.float(), -1) if softmax else z for _, z in forward_batches(model, x, batch_size)],
                     dim=-2)


def evaluate(model: torch.nn.Module, split: Split, loss_fn: Callable = cross_entropy,
             batch_size: int = 10_000) -> pd.DataFrame:
    """Mean loss and accuracy of every member on a whole split (eval mode, no grad)."""
    return evaluate_losses(model, split, {"loss": loss_fn}, batch_size)["loss"]


def evaluate_losses(model: torch.nn.Module, split: Split, loss_fns: dict[str, Callable],
                    batch_size: int = 10_000) -> dict[str, pd.DataFrame]:
    """Like :func:`evaluate` for several loss functions from ONE forward pass: {name: frame}.

    Losses are summed per batch in float64, so a mean over 50,000 images loses no precision.
    """
    m = getattr(model, "n_members", None)
    totals = {name: torch.zeros(m or 1, dtype=torch.float64, device=split.y.device) for name in loss_fns}
    correct = torch.zeros(m or 1, dtype=torch.float64, device=split.y.device)
    for rows, logits in forward_batches(model, split.x, batch_size):
        y = split.y[rows]
        if m is None:
            logits = logits.unsqueeze(0)
        k, b, c = logits.shape
        for name, loss_fn in loss_fns.items():
            totals[name] += loss_fn(logits.reshape(k * b, c), y.repeat(k)).view(k, b).double().sum(1)
        correct += (logits.argmax(-1) == y).double().sum(1)
    n = len(split)
    accuracy = (correct / n).cpu().numpy()
    return {name: pd.DataFrame({"member": range(m or 1), "loss": (total / n).cpu().numpy(), "accuracy": accuracy})
            for name, total in totals.items()}


class _Orders:
    """Epoch-by-epoch sample orders: fixed (no shuffling) or seeded permutations."""

    def __init__(self, n: int, shuffle: bool, seed: int, members: int | None, device):
        self.n, self.shuffle, self.members, self.device = n, shuffle, members, device
        self.gen = torch.Generator().manual_seed(seed)

    def epoch(self) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.n, device=self.device)
        if self.members:  # one permutation per member
            return torch.argsort(torch.rand(self.members, self.n, generator=self.gen), dim=1).to(self.device)
        return torch.randperm(self.n, generator=self.gen).to(self.device)


def fit(model: torch.nn.Module, train: Split, optimizer: torch.optim.Optimizer, *,
        epochs: int | None = None, steps: int | None = None, batch_size: int = 64,
        loss_fn: Callable = cross_entropy, eval_loss: Callable | None = None,
        evaluate_on: dict[str, Split] | None = None, eval_every: int | None = None, eval_at_start: bool = False,
        shuffle: bool = True, order_seed: int = 0, per_member_order: bool = False,
        scheduler=None, early_stopping: dict | None = None, record_running_loss: bool = False,
        on_evaluate: Callable | None = None, on_step: Callable | None = None, batch_transform: Callable | None = None,
        progress: bool | None = None, desc: str = "", extra_eval_losses: dict[str, Callable] | None = None,
        eval_batch_size: int = 10_000) -> pd.DataFrame:
    """Train ``model`` on ``train`` and return its history.

    epochs / steps: length of training (one of them); an epoch is ceil(N / batch_size) steps
    and the last batch of an epoch may be smaller. eval_every: steps between evaluations
    (default: once per epoch). evaluate_on: {split name: Split} evaluated with ``eval_loss``
    (default: the training loss). shuffle=False keeps the data order fixed (several reports
    never shuffled); per_member_order gives each family member its own order.
    scheduler: called once per epoch (``ReduceLROnPlateau`` gets the first evaluated
    split's mean loss). early_stopping: {"split": name, "patience": evaluations,
    "restore_best": bool} - per member for families (finished members are frozen).
    record_running_loss adds split "train (running)": the mean minibatch loss (and the
    accuracy on those minibatches, before each update) since the previous evaluation, as the
    authors' own training logs often report them.
    on_evaluate(step, model): called after each evaluation (e.g. TensorBoard histograms).
    on_step(step, model, x, y, logits, per_member) -> bool | None: called after every update
    (step from 1; the batch, its logits and per-member loss from before the update, detached);
    returning True ends training after that step, which then gets the final evaluation (rows
    only if evaluate_on or record_running_loss ask) and, at an epoch's end, the scheduler step.
    batch_transform(x, generator) -> x: applied to each training batch on the device (data
    augmentation); it draws its randomness from ``generator`` so runs stay seeded.
    extra_eval_losses: {name: loss_fn} recorded as well at each evaluation, as extra rows
    with split ``"<split> [<name>]"`` (e.g. the loss a report's code really plotted).
    eval_batch_size: images per forward pass during evaluation (memory vs speed).

    Models that train without autograd (a hand-written backward pass) define
    ``manual_step(x, y) -> (per-member loss, logits)``; the engine calls it instead of
    loss.backward() + optimizer.step(), and ``optimizer`` may be None.
    """
    if (epochs is None) == (steps is None):
        raise ValueError("give exactly one of epochs or steps")
    if (epochs if epochs is not None else steps) <= 0:
        raise ValueError("epochs/steps must be > 0")
    device = train.x.device
    members = getattr(model, "n_members", None)
    per_epoch = math.ceil(len(train) / batch_size)
    total = steps if steps is not None else epochs * per_epoch
    eval_every = eval_every or per_epoch
    eval_loss = eval_loss or loss_fn
    evaluate_on = evaluate_on or {}
    orders = _Orders(len(train), shuffle, order_seed, members if per_member_order else None, device)
    manual = hasattr(model, "manual_step")
    augment_gen = torch.Generator(device=device).manual_seed(order_seed + 1) if batch_transform else None
    stopper = _EarlyStopping(model, optimizer, members, **early_stopping) if early_stopping else None

    rows: list[pd.DataFrame] = []
    running = torch.zeros(members or 1, device=device)
    running_correct = torch.zeros(members or 1, device=device)
    running_count = running_seen = 0
    train_seconds = 0.0

    def record(step: int):
        nonlocal running_count, running_seen
        stamp = dict(epoch=step / per_epoch, step=step, seconds=train_seconds)
        if record_running_loss and running_count:
            r = pd.DataFrame({"member": range(members or 1), "loss": (running / running_count).cpu().numpy(),
                              "accuracy": (running_correct / running_seen).cpu().numpy()})
            rows.append(r.assign(split="train (running)", **stamp))
            running.zero_()
            running_correct.zero_()
            running_count = running_seen = 0
        evaluated, extra = [], []
        for name, split in evaluate_on.items():
            frames = evaluate_losses(model, split, {"": eval_loss, **(extra_eval_losses or {})}, eval_batch_size)
            evaluated.append(frames.pop("").assign(split=name, **stamp))
            extra += [frame.assign(split=f"{name} [{loss_name}]", **stamp) for loss_name, frame in frames.items()]
        rows.extend(evaluated + extra)
        return evaluated

    if eval_at_start:
        record(0)
    model.train()
    # progress=None: the REPRO_PROGRESS variable decides (off by default, so executed notebooks stay clean)
    if progress is None:
        progress = os.environ.get("REPRO_PROGRESS", "") in ("1", "true", "yes")
    bar = tqdm(total=total, desc=desc, leave=False) if progress else None
    # A fixed order that nothing writes into: batches are slices of the data (views, no copy).
    as_slices = not shuffle and batch_transform is None and not manual
    order = None
    t0 = time.perf_counter()
    for step in range(total):
        k = step % per_epoch
        if as_slices:
            x, y = train.x[k * batch_size:(k + 1) * batch_size], train.y[k * batch_size:(k + 1) * batch_size]
        else:
            if k == 0:
                order = orders.epoch()
            x, y = _gather(train, order[..., k * batch_size:(k + 1) * batch_size])
        if batch_transform is not None:
            x = batch_transform(x, augment_gen)
        if manual:
            per_member, logits = model.manual_step(x, y)
            per_member = per_member.reshape(-1)
        else:
            logits = model(x)
            if members:
                per_member = _family_loss(logits, y, loss_fn)
                loss = per_member.sum()
            else:
                per_member = loss_fn(logits, y).mean().unsqueeze(0)
                loss = per_member[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        stop = on_step is not None and bool(on_step(step + 1, model, x, y, logits.detach(), per_member.detach()))
        if record_running_loss:
            running += per_member.detach()
            running_correct += (logits.detach().argmax(-1) == y).reshape(members or 1, -1).sum(1)
            running_count += 1
            running_seen += len(y) if y.dim() == 1 else y.shape[-1]
        if bar is not None:
            bar.update()
        done = step + 1
        if done % eval_every == 0 or done == total or stop:
            _sync(device)
            train_seconds += time.perf_counter() - t0
            evaluated = record(done)
            if on_evaluate is not None:
                on_evaluate(done, model)
            if stopper and stopper.update(evaluated):
                t0 = time.perf_counter()
                break
            if scheduler is not None and done % per_epoch == 0:
                _step_scheduler(scheduler, rows, evaluate_on)
            t0 = time.perf_counter()
        elif scheduler is not None and done % per_epoch == 0:
            _step_scheduler(scheduler, rows, evaluate_on)
        if stop:
            break
    if bar is not None:
        bar.close()
    if stopper:
        stopper.finish()
    history = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["member", "epoch", "step", "split", "loss", "accuracy", "seconds"])
    history = history[["member", "epoch", "step", "split", "loss", "accuracy", "seconds"]]
    if stopper:
        history.attrs["stopped_at_step"] = stopper.stopped_at
        history.attrs["best_step"] = stopper.best_step
    return history


def _gather(train: Split, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """train.x[idx], train.y[idx] for an index vector (B,) or one per member (M, B), by index_select
    (the same copy as advanced indexing, with less dispatch work per step)."""
    if idx.dim() == 1:
        return train.x.index_select(0, idx), train.y.index_select(0, idx)
    flat = idx.reshape(-1)
    return (train.x.index_select(0, flat).view(*idx.shape, *train.x.shape[1:]),
            train.y.index_select(0, flat).view(idx.shape))


def _step_scheduler(scheduler, rows, evaluate_on) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        first = next(iter(evaluate_on), None)
        if first is None:
            raise ValueError("ReduceLROnPlateau needs an evaluated split")
        last = [r for r in rows if r["split"].iloc[0] == first][-1]
        scheduler.step(float(last["loss"].mean()))
    else:
        scheduler.step()


class _EarlyStopping:
    """Per-member patience on an evaluated split's loss; optionally restores best weights."""

    def __init__(self, model, optimizer, members, split: str = "valid", patience: int = 5,
                 restore_best: bool = True, min_delta: float = 0.0):
        self.model, self.optimizer, self.split = model, optimizer, split
        self.m = members or 1
        self.patience, self.restore_best, self.min_delta = patience, restore_best, min_delta
        self.best = torch.full((self.m,), float("inf"), dtype=torch.float64)
        self.bad = torch.zeros(self.m, dtype=torch.long)
        self.done = torch.zeros(self.m, dtype=torch.bool)
        self.best_step = [0] * self.m
        self.stopped_at = [None] * self.m
        self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if restore_best else None

    def update(self, evaluated: list[pd.DataFrame]) -> bool:
        frame = next((r for r in evaluated if r["split"].iloc[0] == self.split), None)
        if frame is None:
            raise ValueError(f"early stopping watches split {self.split!r}, which is not evaluated")
        loss = torch.tensor(frame["loss"].to_numpy(), dtype=torch.float64)
        step = int(frame["step"].iloc[0])
        improved = (loss < self.best - self.min_delta) & ~self.done
        self.best = torch.where(improved, loss, self.best)
        self.bad = torch.where(improved, 0, self.bad + (~self.done).long())
        for k in improved.nonzero().flatten().tolist():
            self.best_step[k] = step
            if self.best_state is not None:
                self._save(k)
        newly = (self.bad >= self.patience) & ~self.done
        for k in newly.nonzero().flatten().tolist():
            self.stopped_at[k] = step
        self.done |= newly
        if newly.any() and hasattr(self.optimizer, "freeze"):
            self.optimizer.freeze(newly.nonzero().flatten().tolist())
        return bool(self.done.all()) or (newly.any() and not hasattr(self.optimizer, "freeze"))

    @torch.no_grad()
    def _save(self, k: int) -> None:
        for name, value in self.model.state_dict().items():
            if self.m > 1:
                self.best_state[name][k].copy_(value[k])
            else:
                self.best_state[name].copy_(value)

    def finish(self) -> None:
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)


class SoftmaxTwiceCrossEntropy:
    """Per-sample cross-entropy of softmax(logits) used AS logits: CE(softmax(softmax(z))).

    The loss a code computes when it passes probabilities to a loss that applies
    log-softmax again (ift6135-2019's first MLP notebook). It lies between
    -log(e / (e + C - 1)) and log C (1.46 and 2.30 for 10 classes). A named callable
    (stable repr) so that it can be part of a cache key.
    """

    def __call__(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(torch.softmax(logits, dim=-1), y, reduction="none")

    def __repr__(self) -> str:
        return "softmax_twice_cross_entropy"


softmax_twice_cross_entropy = SoftmaxTwiceCrossEntropy()
