"""TensorBoard monitoring of a model family: record, write and read back event files.

Used by sharif-hw2 (Figs. 5-22: histograms of each layer's weights, biases and activations
over the training steps, and the losses, as the report's author watched them in TensorBoard).

The path has three steps, so that a cached run writes the same event files as a fresh one:

1. :class:`Monitor` is the engine's ``on_evaluate`` callback (plus ``on_start`` for step 0).
   For every member of an :class:`repro.models.MLPFamily` it computes TensorBoard histograms
   (``torch.utils.tensorboard.summary.make_histogram``) of each layer's weights, biases and
   sigmoid activations on a fixed probe batch, and the per-layer health metrics
   (:func:`saturation`, :func:`weight_change`).
2. :func:`write_events` writes one TensorBoard run per member with
   ``torch.utils.tensorboard.SummaryWriter``: the losses and accuracies of the history as
   scalars (tags :data:`LOSS_TAGS`, :data:`ACCURACY_TAGS`) and the recorded histograms
   (``layer_<l>/weight_hist``, ``layer_<l>/bias_hist``, ``layer_<l>/act<l>_hist``).
   Open them with ``tensorboard --logdir <folder>``.
3. :func:`read_scalars` and :func:`read_histograms` read the event files back with
   TensorBoard's own ``EventAccumulator`` into tidy DataFrames; :func:`density_grid`
   puts the histograms of one run and tag on a common value grid for the seaborn heat-maps
   (:func:`heatmaps`) and ridge plots (:func:`ridge`).

:func:`train_monitored` ties it to the engine: it trains a family (``repro.sweep.train_family``)
with the monitor attached, evaluates the final model on whole splits (after early stopping's
restore), and caches everything the event files need.

The page's own arithmetic lives here too: :func:`spread_tolerance` (the tolerance of a
reported single run beside the mean of our seeds) and :func:`verdict_line` (verdict counts as
text for the prose).
"""
from __future__ import annotations

import math
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import store
from ..data import Split
from ..engine import cross_entropy, predict
from ..verdicts import Tolerance, numerical_bound, seed_spread
from ..verdicts import counts as verdict_counts

LOSS_TAGS = {"train": "S_Loss/train_loss", "test": "S_Loss_1/test_loss", "valid": "S_Loss_2/val_loss",
             "train (running)": "S_Loss/train_minibatch_loss"}
ACCURACY_TAGS = {"train": "S_Accuracy/train_accuracy", "test": "S_Accuracy_1/test_accuracy",
                 "valid": "S_Accuracy_2/val_accuracy"}
SATURATION_EPS = 0.01
UNIT_SATURATED_SHARE = 0.95


def histogram_tags(n_layers: int) -> list[str]:
    """The report's histogram tags for a net of ``n_layers`` weight layers (the last has no activation hist)."""
    tags = []
    for layer in range(1, n_layers + 1):
        tags += [f"layer_{layer}/weight_hist", f"layer_{layer}/bias_hist"]
        if layer < n_layers:
            tags.append(f"layer_{layer}/act{layer}_hist")
    return tags


# ----------------------------------------------------------------------------- metrics
def saturation(activations: torch.Tensor, eps: float = SATURATION_EPS,
               unit_share: float = UNIT_SATURATED_SHARE) -> dict[str, float]:
    """How saturated a sigmoid layer is, from its activations (images, units).

    saturated: fraction of (image, unit) activations closer than ``eps`` to 0 or 1 (there the
    sigmoid's slope a(1 - a) is below eps, under 4% of its maximum 0.25 for eps 0.01);
    saturated_units: fraction of units saturated on at least ``unit_share`` of the images;
    slope: mean a(1 - a) / 0.25, the average factor by which the layer scales the gradient
    passing back through it relative to an unsaturated sigmoid (1 = none lost).
    """
    a = activations.detach().double()
    sat = (a < eps) | (a > 1 - eps)
    return {"saturated": float(sat.double().mean()),
            "saturated_units": float((sat.double().mean(0) >= unit_share).double().mean()),
            "slope": float((a * (1 - a)).mean() / 0.25)}


def weight_change(current: torch.Tensor, initial: torch.Tensor) -> dict[str, float]:
    """||W - W0|| (Frobenius) and the relative change ||W - W0|| / ||W0|| (NaN when W0 = 0)."""
    delta = float((current.detach().double() - initial.detach().double()).norm())
    norm0 = float(initial.detach().double().norm())
    return {"change": delta, "relative_change": delta / norm0 if norm0 > 0 else math.nan}


def _histogram(values: torch.Tensor, bins: int) -> dict:
    from torch.utils.tensorboard.summary import make_histogram

    h = make_histogram(values.detach().double().cpu().numpy().reshape(-1), bins)
    return {"min": h.min, "max": h.max, "num": h.num, "sum": h.sum, "sum_squares": h.sum_squares,
            "bucket_limits": list(h.bucket_limit), "bucket_counts": list(h.bucket)}


# ----------------------------------------------------------------------------- recording
class Monitor:
    """Histograms and health metrics of every member and layer, at step 0 and each evaluation.

    probe: inputs (P, in) whose activations are recorded (a fixed batch the net never trains
    on, e.g. the first validation images). bins: linear buckets from min to max per histogram.
    """

    def __init__(self, probe: torch.Tensor, bins: int = 60, eps: float = SATURATION_EPS,
                 histograms: bool = True):
        self.probe, self.bins, self.eps, self.with_histograms = probe, bins, eps, histograms
        self.histograms: list[dict] = []
        self.metrics: list[dict] = []
        self.initial: list[torch.Tensor] | None = None

    def start(self, model) -> None:
        self.initial = [w.detach().clone() for w in model.weights]
        self(0, model)

    @torch.no_grad()
    def __call__(self, step: int, model) -> None:
        if self.initial is None:
            raise RuntimeError("Monitor.start(model) must run before training (it keeps the initial weights)")
        was_training = model.training
        model.eval()
        _, hidden = model(self.probe.to(model.weights[0].dtype), return_hidden=True)
        model.train(was_training)
        n_layers = len(model.weights)
        for k in range(model.n_members):
            for i in range(n_layers):
                layer = i + 1
                w, b = model.weights[i][k], model.biases[i][k]
                row = {"member": k, "step": step, "layer": f"layer_{layer}",
                       **weight_change(w, self.initial[i][k]), "weight_sd": float(w.double().std())}
                row.update(saturation(hidden[i][k], self.eps) if i < n_layers - 1 else
                           {"saturated": math.nan, "saturated_units": math.nan, "slope": math.nan})
                self.metrics.append(row)
                if not self.with_histograms:
                    continue
                parts = [("weight_hist", w), ("bias_hist", b)]
                if i < n_layers - 1:
                    parts.append((f"act{layer}_hist", hidden[i][k]))
                for name, values in parts:
                    self.histograms.append({"member": k, "step": step, "tag": f"layer_{layer}/{name}",
                                            **_histogram(values, self.bins)})


# ----------------------------------------------------------------------------- training
@dataclass
class Monitored:
    """One monitored family run: what the event files and the page need."""

    configs: list[dict]
    history: pd.DataFrame
    final: pd.DataFrame
    metrics: pd.DataFrame
    histograms: list[dict] = field(default_factory=list)
    best_step: list | None = None
    stopped_at: list | None = None

    @property
    def labels(self) -> list[str]:
        return [c["label"] for c in self.configs]


def train_monitored(configs: Sequence[dict], train: Split, evaluate_on: dict[str, Split], *, settings,
                    experiment: str, steps: int, batch_size: int, eval_every: int, order_seed: int = 0,
                    bias: str = "zero", probe: torch.Tensor | None = None, bins: int = 60,
                    eps: float = SATURATION_EPS, histograms: bool = True, early_stopping: dict | None = None,
                    per_member_order: bool = False, final_on: dict[str, Split] | None = None,
                    cache_config: dict | None = None, dtype=torch.float32) -> Monitored:
    """Train ``configs`` (same ``dims``) as one batched family with a :class:`Monitor` attached.

    The history has one row per evaluation (every ``eval_every`` steps) and split, plus the
    running minibatch loss (split ``train (running)``); ``final`` evaluates the returned model
    on every split of ``final_on`` (default: ``evaluate_on``; e.g. whole splits where the
    curves use a subset), after early stopping restored its best weights.
    ``probe=None`` records no histograms or activation metrics (only weight changes, on the
    first 100 training images). per_member_order gives each member its own data order (seeds
    then differ in order as well as in initial weights). Cached under ``experiment`` with every
    setting that changes the result.
    """
    from ..sweep import DEFAULTS, train_family

    configs = [{**DEFAULTS, **c} for c in configs]
    for i, c in enumerate(configs):
        c.setdefault("label", str(i))
    probe_x = probe if probe is not None else train.x[:100]
    key = {"configs": configs, "steps": steps, "batch_size": batch_size, "eval_every": eval_every,
           "order_seed": order_seed, "bias": bias, "probe": len(probe_x) if probe is not None else None,
           "bins": bins, "eps": eps, "histograms": histograms and probe is not None,
           "early_stopping": early_stopping, "per_member_order": per_member_order, "dtype": str(dtype),
           "sizes": [len(train)] + [len(s) for s in evaluate_on.values()], "splits": list(evaluate_on),
           "final_on": {k: len(v) for k, v in (final_on or evaluate_on).items()},
           **(cache_config or {})}

    def run() -> dict:
        monitor = Monitor(probe_x, bins=bins, eps=eps, histograms=histograms and probe is not None)
        history, model = train_family(
            configs, train, evaluate_on, epochs=None, steps=steps, batch_size=batch_size, shuffle=True,
            order_seed=order_seed, dtype=dtype, bias=bias, return_model=True, on_start=monitor.start,
            on_evaluate=monitor, eval_every=eval_every, record_running_loss=True, early_stopping=early_stopping,
            per_member_order=per_member_order)
        final = []
        for name, split in (final_on or evaluate_on).items():  # per member: mean loss, accuracy, sd of the image losses
            logits = predict(model, split.x.to(model.weights[0].dtype))
            m, n, c = logits.shape
            loss = cross_entropy(logits.reshape(m * n, c), split.y.repeat(m)).view(m, n).double()
            final.append(pd.DataFrame({"member": range(m), "loss": loss.mean(1).cpu().numpy(),
                                       "accuracy": (logits.argmax(-1) == split.y).double().mean(1).cpu().numpy(),
                                       "loss_sd": loss.std(1).cpu().numpy(), "images": n, "split": name}))
        final = pd.concat(final, ignore_index=True)
        final["config"] = final["member"].map(lambda m: configs[m]["label"])
        metrics = pd.DataFrame(monitor.metrics)
        metrics["config"] = metrics["member"].map(lambda m: configs[m]["label"])
        return {"history": history, "final": final, "metrics": metrics, "histograms": monitor.histograms,
                "best_step": history.attrs.get("best_step"), "stopped_at": history.attrs.get("stopped_at_step")}

    out = store.cached(settings, experiment, key, run) if settings is not None else run()
    return Monitored(configs=configs, **out)


# ----------------------------------------------------------------------------- event files
def write_events(logdir: Path | str, result: Monitored) -> Path:
    """One TensorBoard run per member under ``logdir/<label>`` (replacing an earlier one).

    ``logdir`` gets a ``.gitignore`` of ``*``: event files are outputs, never committed, even
    under a results folder that is (``results/full/``).
    """
    from torch.utils.tensorboard import SummaryWriter

    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    (logdir / ".gitignore").write_text("*\n")
    history = result.history
    for k, label in enumerate(result.labels):
        run_dir = logdir / label
        if run_dir.exists():
            shutil.rmtree(run_dir)
        writer = SummaryWriter(log_dir=str(run_dir))
        mine = history[history["member"] == k]
        for row in mine.itertuples():
            if row.split in LOSS_TAGS:
                writer.add_scalar(LOSS_TAGS[row.split], row.loss, int(row.step))
            if row.split in ACCURACY_TAGS:
                writer.add_scalar(ACCURACY_TAGS[row.split], row.accuracy, int(row.step))
        for h in result.histograms:
            if h["member"] == k:
                writer.add_histogram_raw(h["tag"], h["min"], h["max"], h["num"], h["sum"], h["sum_squares"],
                                         h["bucket_limits"], h["bucket_counts"], global_step=int(h["step"]))
        writer.close()
    return logdir


def _accumulators(logdir: Path | str):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logdir = Path(logdir)
    runs = sorted({p.parent for p in logdir.rglob("events.out.tfevents.*")})
    for run_dir in runs:
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0})
        acc.Reload()
        yield run_dir.relative_to(logdir).as_posix(), acc


def read_scalars(logdir: Path | str) -> pd.DataFrame:
    """Every scalar of every run under ``logdir``: run, tag, step, value."""
    rows = [{"run": run, "tag": tag, "step": e.step, "value": e.value}
            for run, acc in _accumulators(logdir) for tag in acc.Tags()["scalars"] for e in acc.Scalars(tag)]
    return pd.DataFrame(rows, columns=["run", "tag", "step", "value"])


def read_histograms(logdir: Path | str) -> pd.DataFrame:
    """Every histogram bucket of every run: run, tag, step, left, right, count, and the
    histogram's num (values), min and max.

    TensorBoard stores right bucket edges only; bucket i spans (limit[i-1], limit[i]]. The
    first stored bucket is the empty one left of the data and is dropped.
    """
    rows = []
    for run, acc in _accumulators(logdir):
        for tag in acc.Tags()["histograms"]:
            for e in acc.Histograms(tag):
                h = e.histogram_value
                limits, counts = list(h.bucket_limit), list(h.bucket)
                for i in range(1, len(limits)):
                    rows.append((run, tag, e.step, limits[i - 1], limits[i], counts[i], h.num, h.min, h.max))
    return pd.DataFrame(rows, columns=["run", "tag", "step", "left", "right", "count", "num", "min", "max"])


def _shares_on_grid(part: pd.DataFrame, grid: np.ndarray) -> np.ndarray:
    """Fraction of one histogram's values in each bucket of ``grid`` (values spread evenly in a bucket)."""
    lo, hi = float(part["min"].iloc[0]), float(part["max"].iloc[0])
    counts = part["count"].to_numpy(dtype=float)
    total = counts.sum() or 1.0
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):  # every value equal: one spike
        share = np.zeros(len(grid) - 1)
        share[min(max(np.searchsorted(grid, lo, side="right") - 1, 0), len(share) - 1)] = 1.0
        return share
    edges = np.clip(np.concatenate([[part["left"].iloc[0]], part["right"].to_numpy()]), lo, hi)
    edges = np.maximum.accumulate(edges)
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    return np.diff(np.interp(grid, edges, cum, left=0.0, right=cum[-1])) / total


def density_grid(hist: pd.DataFrame, bins: int = 40, lo: float | None = None, hi: float | None = None) -> pd.DataFrame:
    """Put the histograms of each (run, tag) on one common value grid, step by step.

    The grid spans the smallest to the largest value recorded for that run and tag (or
    ``lo``..``hi``). Each histogram's cumulative count is interpolated linearly at the grid's
    edges and differenced. Returns run, tag, step, value (bucket centre), share (fraction of
    the values in that grid bucket; each step sums to 1).
    """
    out = []
    for (run, tag), part in hist.groupby(["run", "tag"], sort=False):
        low = float(part["min"].min()) if lo is None else lo
        high = float(part["max"].max()) if hi is None else hi
        if high - low <= 1e-9:
            low, high = low - 0.5, high + 0.5
        grid = np.linspace(low, high, bins + 1)
        centres = (grid[:-1] + grid[1:]) / 2
        for step, s in part.groupby("step"):
            out.append(pd.DataFrame({"run": run, "tag": tag, "step": step, "value": centres,
                                     "share": _shares_on_grid(s, grid)}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["run", "tag", "step", "value", "share"])


# ----------------------------------------------------------------------------- figures
def heatmaps(grid: pd.DataFrame, panels: Sequence[tuple[str, str]], titles: Sequence[str] | None = None,
             ncols: int = 3, xlabel: str = "value", floor: float = 1e-4, suptitle: str = ""):
    """One seaborn heat-map per (run, tag): value across, step down, colour = share of values (log)."""
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.colors import LogNorm

    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.9 * nrows), squeeze=False)
    for ax, (run, tag), title in zip(axes.flat, panels, titles or [f"{r}: {t}" for r, t in panels]):
        part = grid[(grid["run"] == run) & (grid["tag"] == tag)]
        table = part.pivot_table(index="step", columns="value", values="share").clip(lower=floor)
        sns.heatmap(table, ax=ax, cmap="magma", norm=LogNorm(vmin=floor, vmax=1), cbar=ax is axes.flat[-1] or
                    len(panels) == 1, cbar_kws={"label": "share of values"} if len(panels) == 1 else None)
        values = table.columns.to_numpy()
        span = float(values[-1] - values[0]) if len(values) > 1 else 1.0
        digits = max(0, math.ceil(-math.log10(span)) + 1) if span > 0 else 2
        ticks = np.linspace(0, len(values) - 1, 5 if digits <= 3 else 3).round().astype(int)
        ax.set_xticks(ticks + 0.5, [f"{values[t]:.{digits}f}" for t in ticks], rotation=0)
        steps = table.index.to_numpy()
        rows = np.unique(np.linspace(0, len(steps) - 1, min(5, len(steps))).round().astype(int))
        ax.set_yticks(rows + 0.5, [str(int(steps[r])) for r in rows])
        ax.set(title=title, xlabel=xlabel, ylabel="step")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def ridge(grid: pd.DataFrame, run: str, tag: str, max_rows: int = 8, xlabel: str = "value", title: str = ""):
    """TensorBoard's offset view as a seaborn ridge plot: one filled histogram per recorded step."""
    import warnings

    import matplotlib.pyplot as plt
    import seaborn as sns

    part = grid[(grid["run"] == run) & (grid["tag"] == tag)]
    steps = np.sort(part["step"].unique())
    keep = steps[np.unique(np.linspace(0, len(steps) - 1, min(max_rows, len(steps))).round().astype(int))]
    part = part[part["step"].isin(keep)]
    with warnings.catch_warnings():  # overlapping rows are the point; tight_layout cannot fit them
        warnings.filterwarnings("ignore", message="Tight layout not applied")
        g = sns.FacetGrid(part, row="step", hue="step", aspect=9, height=0.6, palette="crest", sharey=False)
        g.map_dataframe(lambda data, color, **_: plt.fill_between(data["value"], data["share"], color=color, alpha=0.8))
        g.map_dataframe(lambda data, color, **_: plt.plot(data["value"], data["share"], color="white", lw=1))
        for ax, step in zip(g.axes.flat, keep):
            ax.text(-0.01, 0.05, f"step {int(step)}", transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
            ax.set(yticks=[], ylabel="", title="")
            ax.grid(False)
            ax.patch.set_alpha(0)
        g.figure.subplots_adjust(hspace=-0.4)
        g.despine(left=True)
        g.set_xlabels(xlabel)
    if title:
        g.figure.suptitle(title, y=1.02)
    return g


# ----------------------------------------------------------------------------- the page's numbers
def spread_tolerance(values: pd.Series, sampling_variance: float, at: str) -> Tolerance:
    """The tolerance of one reported run beside the mean of our n seeds (rule: seed spread).

    The difference of one draw and a mean of n draws has variance sd² (1 + 1/n), sd the seeds'
    standard deviation; ``sampling_variance`` (e.g. the binomial variance p(1 - p)/N of an
    accuracy on N images) is added, and two standard deviations are allowed. With one seed
    only the sampling error is allowed (a numerical bound). ``at``: the settings the seeds ran at.
    """
    n = len(values)
    if n < 2:
        return numerical_bound(round(2 * math.sqrt(sampling_variance), 4), "2 sd of the sampling error (one seed)")
    sd = math.sqrt(float(values.var()) * (1 + 1 / n) + sampling_variance)
    return seed_spread(round(sd, 4), n, at=at)


def verdict_line(rows: list) -> str:
    """The verdicts of ``rows`` as text for the prose, e.g. ``"2 match, 1 close"`` (``"none"`` without rows)."""
    return ", ".join(f"{n} {v}" for v, n in verdict_counts(rows).items() if n) or "none"
