"""k-layer fully connected networks with batch normalization, forward AND backward by hand.

Used by dd2424-a3 (KTH DD2424, assignment 3), whose subject is writing the backward pass of
such a network yourself. This module does it with tensor operations; autograd appears only
as an independent witness (:func:`autograd_gradients`, and the tests).

One network: every hidden layer is ``s = a W + b -> BN -> ReLU``, the last ``s = a W + b ->
softmax``. BN normalizes with the batch mean and (biased) variance, ``(s - mu) / sqrt(var +
eps)`` with eps 1e-12, and has *no* learned scale or shift. In eval mode it uses running
averages ``r = alpha r + (1 - alpha) batch`` (alpha 0.99), which start at the first training
batch's statistics; before that first batch, eval mode uses the evaluated batch's own
statistics (as the course code does). Cost ``J = mean cross-entropy + lambda * sum ||W||^2``
over every weight matrix. Update ``v = rho v + eta grad; W -= v`` (biases too); eta is
multiplied by ``decay`` (0.99) after every epoch.

A :class:`BNNetFamily` holds M such networks of identical layer sizes, every tensor with a
leading member dimension, run with batched matrix products, so a hyper-parameter search of
hundreds of (eta, lambda) pairs trains as ONE model. Members differ in eta, lambda, rho and
initial weights. :meth:`BNNetFamily.manual_step` lets :func:`repro.fit` drive it;
:func:`train` adds what the course code records (cost with the L2 term, eta decay).
Weights are stored (in, out), the layout of :class:`repro.models.MLPFamily`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import gradcheck, store
from ..config import check_choice
from ..data import Split
from ..engine import fit
from ..optim import per_member

SOFTMAX_SHIFTS = ("global", "row")
INIT_STDS = ("xavier", "he")


def bn_backward(g: torch.Tensor, centred: torch.Tensor, inv_std: torch.Tensor) -> torch.Tensor:
    """dJ/ds from g = dJ/dshat, for shat = (s - mu) / sqrt(var + eps) with batch statistics.

    The course's equations, per member and unit, over the n samples of the batch:
    dJ/dvar = -1/2 sum_i g_i (s_i - mu) (var + eps)^(-3/2); dJ/dmu = -sum_i g_i (var + eps)^(-1/2);
    dJ/ds_i = g_i (var + eps)^(-1/2) + 2/n dJ/dvar (s_i - mu) + dJ/dmu / n.
    Shapes: (M, n, units); ``centred`` = s - mu, ``inv_std`` = (var + eps)^(-1/2) (M, 1, units).
    """
    n = g.shape[1]
    d_var = -0.5 * (g * centred).sum(1, keepdim=True) * inv_std ** 3
    d_mu = -(g * inv_std).sum(1, keepdim=True)
    return g * inv_std + (2.0 / n) * d_var * centred + d_mu / n


class BNNetFamily(nn.Module):
    """M k-layer nets (layer sizes ``dims``) with hand-written forward and backward passes.

    forward(x): x (B, in) shared by every member, or (M, B, in); returns scores (M, B, out).
    ``batch_norm`` is shared by the family (False: FC -> ReLU only). ``softmax_shift``:
    ``global`` subtracts one maximum over the whole batch of scores before exp (the course
    code's ``exp(s - max(s))``; a row can then underflow to 0/0), ``row`` the usual per-sample
    maximum. eta, lam (lambda), rho: one value or one per member.
    """

    def __init__(self, dims: Sequence[int], n_members: int = 1, *, batch_norm: bool = True, eta=0.01, lam=0.0,
                 rho=0.0, decay: float = 0.99, alpha: float = 0.99, eps: float = 1e-12,
                 softmax_shift: str = "global", dtype=torch.float32, device="cpu"):
        super().__init__()
        check_choice("softmax_shift", softmax_shift, SOFTMAX_SHIFTS)
        self.dims = tuple(int(d) for d in dims)
        if len(self.dims) < 2:
            raise ValueError("dims needs an input and an output size")
        self.n_members = m = int(n_members)
        self.n_layers = len(self.dims) - 1
        self.batch_norm, self.decay, self.alpha, self.eps = bool(batch_norm), decay, alpha, eps
        self.softmax_shift = softmax_shift
        kw = dict(dtype=dtype, device=device)
        for l, (a, b) in enumerate(zip(self.dims[:-1], self.dims[1:]), 1):
            for prefix in ("", "v"):  # parameters and their momentum
                self.register_buffer(f"{prefix}W{l}", torch.zeros(m, a, b, **kw))
                self.register_buffer(f"{prefix}b{l}", torch.zeros(m, 1, b, **kw))
        for l, units in enumerate(self.dims[1:-1], 1):
            self.register_buffer(f"mean{l}", torch.zeros(m, 1, units, **kw))
            self.register_buffer(f"var{l}", torch.ones(m, 1, units, **kw))
        self.register_buffer("stats_ready", torch.zeros((), dtype=torch.bool, device=device))
        self.register_buffer("eta", per_member(eta, m, "eta").to(**kw))
        self.register_buffer("lam", per_member(lam, m, "lam").to(**kw))
        self.register_buffer("rho", per_member(rho, m, "rho").to(**kw))

    # ------------------------------------------------------------------ parameters
    @property
    def weights(self) -> list[torch.Tensor]:
        return [getattr(self, f"W{l}") for l in range(1, self.n_layers + 1)]

    @property
    def biases(self) -> list[torch.Tensor]:
        return [getattr(self, f"b{l}") for l in range(1, self.n_layers + 1)]

    def parameter_names(self) -> list[str]:
        """b1 ... bk, W1 ... Wk: the order of the report's gradient-check tables."""
        return [f"b{l}" for l in range(1, self.n_layers + 1)] + [f"W{l}" for l in range(1, self.n_layers + 1)]

    @torch.no_grad()
    def initialize(self, std="xavier", seeds: Sequence[int] | int = 400, rng: str = "numpy") -> "BNNetFamily":
        """Biases zero; every weight matrix W ~ N(0, std^2).

        std: a number (e.g. 0.001), ``xavier`` = sqrt(2 / (fan_in + fan_out)) (what the course
        code calls "He"), or ``he`` = sqrt(2 / fan_in). ``rng="numpy"`` draws as the code does:
        ``np.random.seed(seed)``, then ``normal(0, std, (fan_out, fan_in))`` layer by layer
        (stored transposed here), so a member starts from the author's exact weights.
        Momentum and the running averages are reset.
        """
        seeds = [seeds] * self.n_members if isinstance(seeds, int) else list(seeds)
        if len(seeds) != self.n_members:
            raise ValueError(f"expected {self.n_members} seeds, got {len(seeds)}")
        if isinstance(std, str):
            check_choice("std", std, INIT_STDS)
        check_choice("rng", rng, ("numpy", "torch"))
        drawn: dict[int, list[torch.Tensor]] = {}  # members sharing a seed share their weights
        for k, seed in enumerate(seeds):
            if seed not in drawn:
                state = np.random.RandomState(seed) if rng == "numpy" else torch.Generator().manual_seed(seed)
                mats = []
                for fan_in, fan_out in zip(self.dims[:-1], self.dims[1:]):
                    s = std if not isinstance(std, str) else (
                        math.sqrt(2 / (fan_in + fan_out)) if std == "xavier" else math.sqrt(2 / fan_in))
                    if rng == "numpy":
                        mats.append(torch.from_numpy(state.normal(0, s, (fan_out, fan_in)).T.copy()))
                    else:
                        mats.append(torch.randn(fan_in, fan_out, generator=state, dtype=torch.float64) * s)
                drawn[seed] = mats
            for w, mat in zip(self.weights, drawn[seed]):
                w[k].copy_(mat)
        for b in self.biases:
            b.zero_()
        self.reset_state()
        return self

    @torch.no_grad()
    def reset_state(self) -> None:
        """Zero the momentum and forget the running averages."""
        for l in range(1, self.n_layers + 1):
            getattr(self, f"vW{l}").zero_()
            getattr(self, f"vb{l}").zero_()
        for l in range(1, self.n_layers):
            getattr(self, f"mean{l}").zero_()
            getattr(self, f"var{l}").fill_(1)
        self.stats_ready.fill_(False)

    def penalty(self) -> torch.Tensor:
        """lambda * sum ||W||^2 per member (M,)."""
        if not bool(self.lam.any()):
            return torch.zeros_like(self.lam)
        return self.lam * sum((w.to(self.lam.dtype) ** 2).sum((1, 2)) for w in self.weights)

    # ------------------------------------------------------------------ forward
    def _affine(self, a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.dim() == 2:  # one input batch for every member: one wide GEMM (B, in) @ (in, M*out)
            m, n_in, n_out = w.shape
            return (a @ w.permute(1, 0, 2).reshape(n_in, m * n_out)).reshape(a.shape[0], m, n_out).transpose(0, 1) + b
        return torch.baddbmm(b, a, w)

    def _forward(self, x: torch.Tensor, mode: str):
        """Scores (M, B, out) and the cache for the backward pass.

        mode ``batch``: batch statistics; ``train``: batch statistics and update the running
        averages; ``eval``: running averages (batch statistics until the first training batch).
        """
        a = x.to(self.W1.dtype)
        cache = {"a": [a], "centred": [], "inv_std": []}
        for l in range(1, self.n_layers + 1):
            s = self._affine(a, getattr(self, f"W{l}"), getattr(self, f"b{l}"))
            if l == self.n_layers:
                return s, cache
            if self.batch_norm:
                if mode == "eval" and bool(self.stats_ready):
                    mu, var = getattr(self, f"mean{l}"), getattr(self, f"var{l}")
                else:
                    mu = s.mean(1, keepdim=True)
                    var = ((s - mu) ** 2).mean(1, keepdim=True)
                    if mode == "train":
                        self._update_running(l, mu, var)
                centred, inv_std = s - mu, (var + self.eps) ** -0.5
                cache["centred"].append(centred)
                cache["inv_std"].append(inv_std)
                s = centred * inv_std
            a = torch.relu(s)
            cache["a"].append(a)
        raise AssertionError("unreachable")

    @torch.no_grad()
    def _update_running(self, l: int, mu: torch.Tensor, var: torch.Tensor) -> None:
        mean, running_var = getattr(self, f"mean{l}"), getattr(self, f"var{l}")
        if bool(self.stats_ready):
            mean.mul_(self.alpha).add_((1 - self.alpha) * mu)
            running_var.mul_(self.alpha).add_((1 - self.alpha) * var)
        else:  # the first batch initializes the averages
            mean.copy_(mu)
            running_var.copy_(var)
        if l == self.n_layers - 1:
            self.stats_ready.fill_(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (logits); eval mode uses the running averages, train mode the batch's statistics."""
        with torch.no_grad():
            return self._forward(x, "batch" if self.training else "eval")[0]

    @torch.no_grad()
    def normalized_scores(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The batch-normalized scores shat (M, B, units) of every hidden layer (batch statistics)."""
        _, cache = self._forward(x, "batch")
        return [c * i for c, i in zip(cache["centred"], cache["inv_std"])]

    def softmax(self, s: torch.Tensor) -> torch.Tensor:
        shift = s.amax(dim=(1, 2), keepdim=True) if self.softmax_shift == "global" else s.amax(dim=2, keepdim=True)
        e = torch.exp(s - shift)
        return e / e.sum(2, keepdim=True)

    def _cost(self, s: torch.Tensor, y: torch.Tensor):
        """Per-member cost J (M,) and the probabilities P (M, B, C)."""
        p = self.softmax(s)
        y = y.expand(s.shape[0], -1) if y.dim() == 1 else y
        ce = -torch.log(p.gather(2, y.unsqueeze(2)).squeeze(2)).mean(1)
        return ce.to(self.lam.dtype) + self.penalty(), p

    @torch.no_grad()
    def cost(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J per member with batch statistics and no side effects (what finite differences probe)."""
        return self._cost(self._forward(x, "batch")[0], y)[0]

    @torch.no_grad()
    def costs_with(self, name: str, stack: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """J of member 0 with parameter ``name`` replaced by each of the k copies in ``stack``.

        The copies run as one family of k members (batch statistics, no side effects): what
        :func:`repro.gradcheck.central_differences_batched` needs.
        """
        k = stack.shape[0]
        many = BNNetFamily(self.dims, k, batch_norm=self.batch_norm, lam=float(self.lam[0]), eps=self.eps,
                           softmax_shift=self.softmax_shift, dtype=self.W1.dtype, device=self.W1.device)
        for n in self.parameter_names():
            value = getattr(self, n)
            getattr(many, n).copy_(value[:1].expand(k, *value.shape[1:]))
        getattr(many, name).copy_(stack.reshape(k, *getattr(self, name).shape[1:]))
        return many.cost(x, y)

    # ------------------------------------------------------------------ backward
    def _weight_grad(self, a: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if a.dim() == 2:  # shared input: a^T (B, in) @ g (B, M*out), one wide GEMM
            m, n, out = g.shape
            return (a.T @ g.transpose(0, 1).reshape(n, m * out)).reshape(a.shape[1], m, out).transpose(0, 1)
        return torch.bmm(a.transpose(1, 2), g)

    def _backward(self, p: torch.Tensor, y: torch.Tensor, cache: dict) -> dict[str, torch.Tensor]:
        m, n, c = p.shape
        y = y.expand(m, -1) if y.dim() == 1 else y
        g = (p - F.one_hot(y, c).to(p.dtype)) / n  # dJ/ds of the last layer, mean over the batch
        lam = self.lam.to(p.dtype).view(-1, 1, 1)
        grads = {}
        for l in range(self.n_layers, 0, -1):
            w = getattr(self, f"W{l}")
            grads[f"W{l}"] = self._weight_grad(cache["a"][l - 1], g) + 2 * lam * w
            grads[f"b{l}"] = g.sum(1, keepdim=True)
            if l == 1:
                break
            g = torch.bmm(g, w.transpose(1, 2)) * (cache["a"][l - 1] > 0)  # through W, then ReLU
            if self.batch_norm:
                g = bn_backward(g, cache["centred"][l - 2], cache["inv_std"][l - 2])
        return grads

    @torch.no_grad()
    def gradients(self, x: torch.Tensor, y: torch.Tensor):
        """(J per member, {name: dJ/dname}) with batch statistics, computed by hand; no side effects."""
        s, cache = self._forward(x, "batch")
        cost, p = self._cost(s, y)
        return cost, self._backward(p, y, cache)

    @torch.no_grad()
    def apply_gradients(self, grads: dict[str, torch.Tensor]) -> None:
        """Momentum step per member: v = rho v + eta grad; theta -= v."""
        dtype = self.W1.dtype
        eta, rho = self.eta.to(dtype).view(-1, 1, 1), self.rho.to(dtype).view(-1, 1, 1)
        for name, g in grads.items():
            v = getattr(self, "v" + name)
            v.mul_(rho).addcmul_(g, eta)
            getattr(self, name).sub_(v)

    @torch.no_grad()
    def manual_step(self, x: torch.Tensor, y: torch.Tensor):
        """One training step for :func:`repro.fit`: (J per member on this batch, scores)."""
        s, cache = self._forward(x, "train")
        cost, p = self._cost(s, y)
        self.apply_gradients(self._backward(p, y, cache))
        return cost, s

    # ------------------------------------------------------------------ helpers
    def finite_members(self) -> torch.Tensor:
        """(M,) bool: whether every weight and bias of each member is still finite."""
        ok = torch.ones(self.n_members, dtype=torch.bool, device=self.W1.device)
        for t in self.weights + self.biases:
            ok &= torch.isfinite(t).flatten(1).all(1)
        return ok

    @torch.no_grad()
    def member(self, k: int) -> "BNNetFamily":
        """A copy of member k as a family of one."""
        one = BNNetFamily(self.dims, 1, batch_norm=self.batch_norm, decay=self.decay, alpha=self.alpha, eps=self.eps,
                          softmax_shift=self.softmax_shift, dtype=self.W1.dtype, device=self.W1.device)
        for name, value in self.state_dict().items():
            target = getattr(one, name)
            target.copy_(value if value.dim() == 0 else value[k:k + 1])
        return one

    @torch.no_grad()
    def keep_inputs(self, n: int) -> "BNNetFamily":
        """A copy that sees only the first n input dimensions (W1 cut to its first n rows).

        The course's gradient check does this to stay fast: ``W1 = W1[:, :100]`` in its layout.
        """
        cut = BNNetFamily((n, *self.dims[1:]), self.n_members, batch_norm=self.batch_norm, decay=self.decay,
                          alpha=self.alpha, eps=self.eps, softmax_shift=self.softmax_shift, dtype=self.W1.dtype,
                          device=self.W1.device)
        for name, value in self.state_dict().items():
            getattr(cut, name).copy_(value[:, :n] if name in ("W1", "vW1") else value)
        return cut


class EtaDecay:
    """Multiply every member's eta by the family's decay; :func:`repro.fit` calls step() once per epoch."""

    def __init__(self, model: BNNetFamily):
        self.model = model

    @torch.no_grad()
    def step(self) -> None:
        self.model.eta.mul_(self.model.decay)


def train(model: BNNetFamily, train_split: Split, *, epochs: int, batch_size: int = 100,
          evaluate_on: dict[str, Split] | None = None, eval_every: int | None = None, eval_at_start: bool = True,
          record_running_loss: bool = False, progress: bool | None = None, desc: str = "") -> pd.DataFrame:
    """Train as the course code does, through :func:`repro.fit`: fixed order, eta decay per epoch.

    Returns fit's history with a ``cost`` column added: the evaluated cross-entropy plus the
    member's lambda * sum ||W||^2 at that moment (the curves of the report plot this cost).
    """
    penalties = {0: model.penalty().cpu()}

    def remember(step, m):
        penalties[step] = m.penalty().cpu()

    history = fit(model, train_split, None, epochs=epochs, batch_size=batch_size, evaluate_on=evaluate_on,
                  eval_every=eval_every, eval_at_start=eval_at_start, shuffle=False, scheduler=EtaDecay(model),
                  on_evaluate=remember, record_running_loss=record_running_loss, progress=progress, desc=desc)
    pen = pd.DataFrame([(s, m, float(v)) for s, vals in penalties.items() for m, v in enumerate(vals)],
                       columns=["step", "member", "penalty"])
    history = history.merge(pen, on=["step", "member"], how="left")
    history["cost"] = history["loss"] + history["penalty"].fillna(0.0)
    return history.drop(columns="penalty")


# ---------------------------------------------------------------------- gradient checks
def autograd_gradients(model: BNNetFamily, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same gradients by autograd, through torch.nn.functional (an independent witness).

    Member by member: F.batch_norm in training mode (batch statistics, no affine), F.relu,
    F.cross_entropy, plus lambda * sum ||W||^2. The ``row`` and ``global`` softmax shifts
    give the same gradient, so log-softmax stands for both.
    """
    out = {}
    names = model.parameter_names()
    for k in range(model.n_members):
        params = {name: getattr(model, name)[k].detach().clone().requires_grad_(True) for name in names}
        a = (x if x.dim() == 2 else x[k]).to(model.W1.dtype)
        for l in range(1, model.n_layers + 1):
            s = a @ params[f"W{l}"] + params[f"b{l}"]
            if l < model.n_layers:
                if model.batch_norm:
                    s = F.batch_norm(s, None, None, training=True, eps=model.eps)
                a = F.relu(s)
        yk = y if y.dim() == 1 else y[k]
        cost = F.cross_entropy(s, yk) + model.lam[k].to(s.dtype) * sum((params[f"W{l}"] ** 2).sum()
                                                                        for l in range(1, model.n_layers + 1))
        grads = torch.autograd.grad(cost, [params[n] for n in names])
        for name, g in zip(names, grads):
            out.setdefault(name, []).append(g)
    return {name: torch.stack(gs) for name, gs in out.items()}


def relative_errors(model: BNNetFamily, x: torch.Tensor, y: torch.Tensor, name: str, *, h: float = 1e-5,
                    floor: float = 1e-5, indices: Sequence[int] | None = None, max_elements: int | None = None,
                    batched: bool = True, chunk: int = 256, grads: dict | None = None) -> pd.Series:
    """Element-wise relative error of member 0's hand-written dJ/d``name`` against centred differences.

    Differences of the cost with batch statistics, step h; error |ga - gn| / max(floor, |ga| + |gn|).
    ``batched`` evaluates ``chunk`` perturbed copies at once as one family
    (:func:`repro.gradcheck.central_differences_batched`); False perturbs one element at a time
    (:func:`repro.gradcheck.central_differences`): the same numbers, slower. Indexed by the
    flat element index. ``indices`` picks elements; ``max_elements`` checks at most that many,
    evenly spaced (a quick look; the course checks every element). Use float64.
    """
    one = model.member(0) if model.n_members > 1 else model
    if grads is None:
        grads = one.gradients(x, y)[1]
    theta = getattr(one, name)
    if indices is None and max_elements is not None and max_elements < theta.numel():
        indices = np.unique(np.linspace(0, theta.numel() - 1, max_elements).round().astype(int))
    chosen = list(range(theta.numel())) if indices is None else [int(i) for i in indices]
    if batched:
        numeric = gradcheck.central_differences_batched(lambda stack: one.costs_with(name, stack, x, y),
                                                        theta, chosen, h, chunk)
    else:
        numeric = gradcheck.central_differences(lambda: one.cost(x, y)[0], theta, chosen, h)
    analytic = grads[name].reshape(-1)[chosen].cpu().to(torch.float64)
    return pd.Series(gradcheck.relative_error(analytic, numeric, floor).numpy(), index=chosen, name=name)


def gradient_check(model: BNNetFamily, x: torch.Tensor, y: torch.Tensor, *, h: float = 1e-5,
                   floor: float = 1e-5, indices: dict[str, Sequence[int]] | None = None,
                   max_elements: int | None = None, batched: bool = True, chunk: int = 256) -> pd.DataFrame:
    """The course's gradient check of member 0, one row per parameter matrix (b1 ... bk, W1 ... Wk).

    Columns: elements checked, max, mean and (population) variance of the element-wise
    relative error (:func:`relative_errors`), and the largest |hand-written - autograd|
    difference (:func:`autograd_gradients`). ``indices`` optionally limits the elements
    checked per matrix ({name: flat indices}); ``max_elements`` checks at most that many,
    evenly spaced over each matrix (a quick look; the course checks every element).
    """
    one = model.member(0) if model.n_members > 1 else model
    _, grads = one.gradients(x, y)
    witness = autograd_gradients(one, x, y)
    rows = []
    for name in one.parameter_names():
        err = relative_errors(one, x, y, name, h=h, floor=floor, indices=(indices or {}).get(name),
                              max_elements=max_elements,
                              batched=batched, chunk=chunk, grads=grads)
        rows.append({"parameter": name, "elements": len(err), "max": float(err.max()), "mean": float(err.mean()),
                     "variance": float(err.var(ddof=0)),
                     "max |hand - autograd|": float((grads[name] - witness[name]).abs().max())})
    return pd.DataFrame(rows).set_index("parameter")


# ---------------------------------------------------------------------- searches
def sample_pairs(n: int, log10_eta: tuple[float, float], log10_lambda: tuple[float, float], *,
                 log_uniform: bool = True, seed: int = 0) -> pd.DataFrame:
    """n (eta, lambda) pairs drawn as the course code drew them: lambda first, then eta.

    log_uniform: exponents uniform in the given log10 ranges (what the code ran); False: eta
    and lambda themselves uniform between 10^low and 10^high (what the report's text says).
    """
    state = np.random.RandomState(seed)
    if log_uniform:
        lam, eta = 10 ** state.uniform(*log10_lambda, n), 10 ** state.uniform(*log10_eta, n)
    else:
        lam = state.uniform(10 ** log10_lambda[0], 10 ** log10_lambda[1], n)
        eta = state.uniform(10 ** log10_eta[0], 10 ** log10_eta[1], n)
    return pd.DataFrame({"eta": eta, "lambda": lam})


def search(pairs: pd.DataFrame, train_split: Split, valid_split: Split, *, dims: Sequence[int], epochs: int,
           rho: float, init_std="xavier", seed: int = 400, batch_size: int = 100, batch_norm: bool = True,
           softmax_shift: str = "global", dtype=torch.float32, family_size: int = 100, settings=None, experiment: str = "search",
           progress: bool | None = None) -> pd.DataFrame:
    """Train one network per (eta, lambda) row of ``pairs``, as batched families; final validation accuracy.

    Families of at most ``family_size`` members (memory); each is cached on its own when
    ``settings`` is given, so an interrupted search resumes. Every member starts from the
    same seed, as in the course code (``np.random.seed(400)`` in every Network).
    Returns ``pairs`` with ``valid_accuracy`` and ``valid_loss`` after the last epoch, the
    ``family`` each pair trained in, and that family's training ``seconds``.
    """
    device = train_split.x.device
    parts = []
    for start in range(0, len(pairs), family_size):
        chunk = pairs.iloc[start:start + family_size]

        def run(chunk=chunk):
            model = BNNetFamily(dims, len(chunk), batch_norm=batch_norm, eta=chunk["eta"].to_numpy(),
                                lam=chunk["lambda"].to_numpy(), rho=rho, softmax_shift=softmax_shift, dtype=dtype)
            model.initialize(init_std, seed).to(device)
            steps = epochs * math.ceil(len(train_split) / batch_size)
            h = train(model, train_split, epochs=epochs, batch_size=batch_size, evaluate_on={"valid": valid_split},
                      eval_every=steps, eval_at_start=False, progress=progress, desc=f"{experiment} {start}")
            return h[h["step"] == steps].sort_values("member")[["loss", "accuracy", "seconds"]].reset_index(drop=True)

        if settings is not None:
            key = {"pairs": chunk.round(12).to_dict("list"), "dims": list(dims), "epochs": epochs, "rho": rho,
                   "init_std": init_std, "seed": seed, "batch_size": batch_size, "batch_norm": batch_norm,
                   "softmax_shift": softmax_shift,
                   "dtype": str(dtype), "sizes": [len(train_split), len(valid_split)]}
            result = store.cached(settings, f"{experiment}-{start}", key, run)
        else:
            result = run()
        parts.append(chunk.reset_index(drop=True).assign(valid_accuracy=result["accuracy"], valid_loss=result["loss"],
                                                         family=start // family_size, seconds=result["seconds"]))
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------- failure analysis
@torch.no_grad()
def trace(model: BNNetFamily, train_split: Split, *, steps: int, batch_size: int = 100) -> pd.DataFrame:
    """Step-by-step record of member 0 in training (fixed order, eta decay per epoch).

    Trains through :func:`repro.fit` as :func:`train` does; its ``on_step`` hook records what
    the history does not show, after every step: the batch cost (infinite once a
    true class gets probability 0), the largest |score|, the gap between the batch's global
    score maximum and the smallest per-sample maximum (beyond about 745 in float64, or 103 in
    float32, exp underflows a whole row to 0 with the ``global`` shift, and that row's
    softmax is 0/0 = NaN), the rows so lost, the smallest probability of a true class, the
    norm of every weight matrix after the step, and whether all weights are still finite.
    Stops after the first step that leaves a non-finite weight (training is then dead).
    """
    one = model.member(0) if model.n_members > 1 else model
    per_epoch = math.ceil(len(train_split) / batch_size)
    rows = []

    def look(step, net, x, y, s, cost):
        row_max = s.amax(2)
        e_sum = torch.exp(s - s.amax(dim=(1, 2), keepdim=True)).sum(2)
        finite = bool(net.finite_members()[0])
        rows.append({"step": step, "epoch": step / per_epoch, "cost": float(cost[0]),
                     "max |score|": float(s.abs().max()),
                     "score gap": float(row_max.max() - row_max.min()),
                     "rows lost (0/0)": int((e_sum == 0).sum()) if net.softmax_shift == "global" else 0,
                     "min p(true class)": float(net.softmax(s).gather(2, y.view(1, -1, 1)).min()),
                     **{f"|W{l}|": float(w.norm()) for l, w in enumerate(net.weights, 1)},
                     "weights finite": finite})
        return not finite  # training is dead: stop

    fit(one, train_split, None, steps=steps, batch_size=batch_size, shuffle=False, scheduler=EtaDecay(one), on_step=look)
    return pd.DataFrame(rows)


def published_accuracy_curves(history: pd.DataFrame) -> pd.DataFrame:
    """The report's accuracy figures: the course code called ``plotAcc(t_acc, t_acc)``, so the
    curve labelled "validation" is the training accuracy. Returns a copy of a :func:`train`
    history with every ``valid`` accuracy replaced by the ``train`` accuracy of the same
    member and step."""
    out = history.copy()
    train_acc = out[out["split"] == "train"].set_index(["member", "step"])["accuracy"]
    mask = out["split"] == "valid"
    keys = pd.MultiIndex.from_frame(out.loc[mask, ["member", "step"]])
    out.loc[mask, "accuracy"] = train_acc.reindex(keys).to_numpy()
    return out


def first_step(frame: pd.DataFrame, condition) -> int:
    """The first ``step`` of a :func:`trace` where ``condition(frame)`` (a boolean column) holds; -1 when none."""
    hit = frame[condition(frame)]
    return int(hit["step"].iloc[0]) if len(hit) else -1


def first_nan_step(frame: pd.DataFrame) -> int:
    """The step of a :func:`trace` that first left a non-finite weight; -1 when none did."""
    return first_step(frame, lambda f: ~f["weights finite"])


def nan_outcome(frame: pd.DataFrame) -> str:
    """When a :func:`trace`'s weights became NaN, in words: ``"at step N"``, or ``"none in N steps"``."""
    step = first_nan_step(frame)
    return f"none in {len(frame)} steps" if step < 0 else f"at step {step}"


# ---------------------------------------------------------------------- the chapter's summary
def reductions(knobs: dict, reported: dict) -> list[str]:
    """What a profile's ``knobs`` cut from the report's settings (``reported``: the chapter's
    reported.json), in words; empty at the report's own settings."""
    search, epochs = reported["search"], knobs["search_epochs"]
    cuts = (("image subsets", bool(knobs["limit"] or knobs["big_limit"])),
            (f"{knobs['search_pairs']} pairs x {epochs[0]}/{epochs[1]} epochs per search",
             knobs["search_pairs"] < search["second"]["pairs"] or epochs[0] < search["first"]["epochs"]
             or epochs[1] < search["second"]["epochs"]),
            (f"{knobs['final_epochs']} final epoch(s)", knobs["final_epochs"] < reported["final"]["epochs"]),
            (f"{knobs['twolayer_epochs']} two-layer epoch(s)", knobs["twolayer_epochs"] < reported["two_layer"]["epochs"]))
    return [what for what, cut in cuts if cut]


def headline(results: str, reduced: list[str], subsets: bool) -> str:
    """The chapter's one sentence for the landing page: this run's ``results``; on a reduced run,
    what was cut first, and no results at all on image subsets (a few hundred images say
    nothing about the report's accuracies)."""
    if not reduced:
        return results[0].upper() + results[1:]
    return f"Reduced run ({', '.join(reduced)})" + ("" if subsets else f": {results}")
