"""Models shared by two or more chapters: fully connected nets, alone or as a family.

A *family* is M same-shaped MLPs stored as stacked parameters with a leading member
dimension and run with batched matrix products, so a sweep (three initializations in
ift6135-2020, the 36-net grid, the sharif-hw2 init families) trains as ONE model. A single
MLP is simply a family of one. Each member keeps its own initialization and activation.

Weights are indexed (member, in, out) - member k's matrix ``weights[i][k]`` is in the (in, out)
layout of the reports' numpy code, so that "W2[0, 0:10]" means what the reports mean. In memory
each weight is stored in the layout its matrix product reads, so nothing is re-laid out per step:

- the first layer of a float32 family (M > 1) is stored member-first and output-major,
  (M, out, in): one (M*out, in) matrix, ``nn.Linear``'s layout. A batch shared by all members runs
  through it as ONE product x (B, in) @ W (in, M*out), W read transposed straight from the
  parameter, and autograd takes the weight gradient as dh^T @ x, in the parameter's own layout.
  Stored (in, M*out) instead (as before issue 17), the forward product is about as fast, but the
  weight gradient is taken as x^T @ dh, which MKL ran 1.3-2x slower for the 50-member sweep's
  shapes on this CPU. In float32 the two layouts gave the same bits in every shape tried under the
  tests' pinned MKL path (MKL_CBWR=AVX2), so the float32 goldens do not move;
- a single net and every float64 family keep the first layer input-major, (in, M, out) - for
  M = 1 a contiguous (in, out) matrix, which the gradient checks perturb through a flat view. In
  float64 MKL's products of the two layouts differ in the last bits (the reports' exact-arithmetic
  replications, whose goldens pin every digit), and the speed is the same;
- the later layers (small, run as batched products on per-member activations) are stored
  member-first, (M, in, out), the layout their batched gradients have.

With per-member batches (M, B, in) the first layer's batched product reads the output-major
weight transposed as well (same float32 bits), and its gradient comes out in the same layout.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from .config import check_choice

ACTIVATIONS = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "linear": lambda h: h}
INITS = ("zero", "normal", "glorot")
RNGS = ("torch", "numpy")


def mlp_parameter_count(dims: Sequence[int]) -> int:
    """Weights and biases of a fully connected net with layer sizes ``dims``."""
    return sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))


def count_parameters(model: nn.Module) -> int:
    n = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return n // getattr(model, "n_members", 1)


class MLPFamily(nn.Module):
    """M fully connected nets of identical layer sizes, trained together.

    forward(x): x is (B, in) - the same batch for every member - or (M, B, in) - one batch
    per member. Returns logits (M, B, out).
    """

    def __init__(self, dims: Sequence[int], activations: Sequence[str] | str = "relu", n_members: int | None = None,
                 dtype=torch.float32, device="cpu"):
        super().__init__()
        if isinstance(activations, str):
            activations = [activations] * (n_members or 1)
        for a in activations:
            check_choice("activation", a, tuple(ACTIVATIONS))
        self.dims = tuple(int(d) for d in dims)
        self.activations = list(activations)
        self.n_members = len(self.activations)
        m = self.n_members
        self.weights = nn.ParameterList(
            nn.Parameter(_zeros_weight(m, a, b, _layout(i, m, dtype), dtype=dtype, device=device))
            for i, (a, b) in enumerate(zip(self.dims[:-1], self.dims[1:])))
        self.biases = nn.ParameterList(
            nn.Parameter(torch.zeros(m, 1, b, dtype=dtype, device=device)) for b in self.dims[1:])
        # Members grouped by activation, so mixed families apply each function once.
        groups: dict[str, list[int]] = {}
        for i, a in enumerate(self.activations):
            groups.setdefault(a, []).append(i)
        self._groups = {a: torch.tensor(idx, device=device) for a, idx in groups.items()}

    def _activate(self, h: torch.Tensor) -> torch.Tensor:
        if len(self._groups) == 1:
            return ACTIVATIONS[self.activations[0]](h)
        out = torch.empty_like(h)
        for a, idx in self._groups.items():
            out[idx] = ACTIVATIONS[a](h[idx])
        return out

    def forward(self, x: torch.Tensor, *, return_hidden: bool = False):
        hidden = []
        m = self.n_members
        n_layers = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if x.dim() == 2:
                # Shared input: one wide GEMM (B, in) @ (in, M*out) beats M small ones. The (in, M*out)
                # matrix is a view of the first layer's weight (stored (M*out, in) or (in, M*out)).
                h = (x @ _wide(w)).view(x.shape[0], m, -1).transpose(0, 1) + b
            else:
                h = torch.baddbmm(b, x, w)
            if i < n_layers - 1:
                h = self._activate(h)
                hidden.append(h)
            x = h
        return (x, hidden) if return_hidden else x

    # ------------------------------------------------------------------ initialization
    @torch.no_grad()
    def initialize(self, schemes: Sequence[str] | str = "glorot", seeds: Sequence[int] | int = 0,
                   rng: str = "torch", normal_std: Sequence[float] | float = 1.0,
                   bias: str = "zero", layout: str = "in_out") -> "MLPFamily":
        """Initialize every member: biases zero; weights by ``schemes[m]`` with ``seeds[m]``.

        zero: all zeros; normal: N(0, std^2) (std 1 unless given); glorot: U(-d, d),
        d = sqrt(6 / (fan_in + fan_out)). ``rng="numpy"`` draws with numpy's legacy
        ``np.random.seed(seed)`` stream in the reports' order (W1, W2, ... each (in, out)),
        reproducing the initial weights of numpy-written homework exactly.
        ``bias="normal"`` draws biases N(0, std^2) too, right after each weight matrix.
        ``layout="out_in"`` draws each weight matrix as (out, in) and transposes it, for
        numpy code that stored W as (out, in) (ift6135-2019): same stream, their exact weights.
        """
        m = self.n_members
        schemes = [schemes] * m if isinstance(schemes, str) else list(schemes)
        seeds = [seeds] * m if isinstance(seeds, int) else list(seeds)
        stds = [normal_std] * m if isinstance(normal_std, (int, float)) else list(normal_std)
        check_choice("rng", rng, RNGS)
        check_choice("bias", bias, ("zero", "normal"))
        check_choice("layout", layout, ("in_out", "out_in"))

        def drawn(draw, kind, fan_in, fan_out, scale):
            return draw(kind, (fan_in, fan_out), scale) if layout == "in_out" else draw(kind, (fan_out, fan_in), scale).T
        for k in range(m):
            check_choice("init", schemes[k], INITS)
            draw = _numpy_draw(seeds[k]) if rng == "numpy" else _torch_draw(seeds[k])
            for w, b in zip(self.weights, self.biases):
                fan_in, fan_out = w.shape[1], w.shape[2]
                if schemes[k] == "zero":
                    w[k].zero_()
                elif schemes[k] == "normal":
                    w[k].copy_(drawn(draw, "normal", fan_in, fan_out, stds[k]))
                else:
                    d = math.sqrt(6.0 / (fan_in + fan_out))
                    w[k].copy_(drawn(draw, "uniform", fan_in, fan_out, d))
                if bias == "normal" and schemes[k] == "normal":
                    b[k].copy_(draw("normal", (1, fan_out), stds[k]))
                else:
                    b[k].zero_()
        return self

    def member(self, k: int) -> "MLPFamily":
        """A copy of member k as a family of one (for per-member checks)."""
        one = MLPFamily(self.dims, [self.activations[k]], dtype=self.weights[0].dtype, device=self.weights[0].device)
        with torch.no_grad():
            for src, dst in zip(list(self.weights) + list(self.biases), list(one.weights) + list(one.biases)):
                dst.copy_(src[k:k + 1])
        return one


def _layout(layer: int, m: int, dtype) -> str:
    """How layer ``layer``'s (m, in, out) weight is stored (see the module docstring)."""
    if layer > 0:
        return "member_first"  # (m, in, out)
    return "out_major" if m > 1 and dtype == torch.float32 else "input_major"  # (m, out, in) / (in, m, out)


def _zeros_weight(m: int, fan_in: int, fan_out: int, layout: str, *, dtype, device) -> torch.Tensor:
    """A zero (m, fan_in, fan_out) weight stored in memory as ``layout`` says."""
    if layout == "out_major":
        return torch.zeros(m, fan_out, fan_in, dtype=dtype, device=device).transpose(1, 2)
    if layout == "input_major":
        return torch.zeros(fan_in, m, fan_out, dtype=dtype, device=device).transpose(0, 1)
    return torch.zeros(m, fan_in, fan_out, dtype=dtype, device=device)


def _wide(w: torch.Tensor) -> torch.Tensor:
    """The (in, M*out) matrix of all members of a (M, in, out) weight: a view when the weight is
    stored output-major (M, out, in) (the transpose of one (M*out, in) matrix) or input-major."""
    return w.transpose(0, 1).reshape(w.shape[1], -1)


def _numpy_draw(seed: int):
    state = np.random.RandomState(seed)  # same stream as np.random.seed(seed); np.random.*

    def draw(kind, shape, scale):
        a = state.uniform(-scale, scale, size=shape) if kind == "uniform" else state.normal(0, scale, size=shape)
        return torch.from_numpy(a)
    return draw


def _torch_draw(seed: int):
    gen = torch.Generator().manual_seed(seed)

    def draw(kind, shape, scale):
        if kind == "uniform":
            return (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale
        return torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    return draw


def mlp(dims: Sequence[int], activation: str = "relu", **kw) -> MLPFamily:
    """One MLP (a family of one)."""
    return MLPFamily(dims, [activation], **kw)


def layer_table(model: nn.Module, input_shape: Sequence[int]) -> "pd.DataFrame":
    """Per-layer summary like torchsummary's: layer, output shape, parameter count."""
    import pandas as pd

    rows = []
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    counters: dict[str, int] = {}

    def hook(module, _inp, out):
        kind = type(module).__name__
        counters[kind] = counters.get(kind, 0) + 1
        rows.append({"layer": f"{kind}-{len(rows) + 1}", "output shape": str([-1, *out.shape[1:]]),
                     "parameters": sum(p.numel() for p in module.parameters())})

    handles = [m.register_forward_hook(hook) for _, m in leaves]
    try:
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, *input_shape, dtype=p.dtype, device=p.device))
    finally:
        for h in handles:
            h.remove()
    return pd.DataFrame(rows).set_index("layer")
