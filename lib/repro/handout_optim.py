"""SGD, Momentum, Nesterov and Adam written the way a course handout writes them.

Used by purdue-hw3, whose assignment defines each update rule (eqs. 3-12 of the Purdue
CS690 HW3 handout) and whose author's code reset the optimizer state at every call.

:class:`HandoutOptimizer` works on an ordinary ``nn.Module`` and on a model family
(:class:`repro.models.MLPFamily`: parameters with a leading member dimension), with one
learning rate per member. With ``g = grad + weight_decay * w`` (weight decay per parameter
group, so biases can be left out):

- ``sgd``:      w <- w - lr * g
- ``momentum``: v <- rho * v + lr * g;  w <- w - v
- ``nesterov``: v <- rho * v - lr * grad f(w + rho * v);  w <- w + v. The gradient must be
  taken at the look-ahead point, so between steps the stored parameters sit at
  ``w + rho * v`` (an autograd engine differentiates at the stored parameters); evaluations
  between steps therefore see the look-ahead point, ``rho * v`` away from ``w``.
- ``adam``:     m1 <- b1 m1 + (1 - b1) g;  m2 <- b2 m2 + (1 - b2) g^2;  t <- t + 1;
  w <- w - lr * (m1 / (1 - b1^t)) / (sqrt(m2 / (1 - b2^t)) + eps)

``reset_state=True`` zeroes the velocity / moments before every update, as code that
re-creates its buffers inside ``update()`` does (the step counter t keeps counting). Then
momentum and Nesterov are exactly SGD, and Adam's step is lr * c(t) * g / (|g| + eps'), i.e.
about ``lr * c(t) * sign(g)`` with c(t) = (1 - b1) / (1 - b1^t) / sqrt((1 - b2) / (1 - b2^t))
(:func:`reset_adam_scale`).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .config import check_choice

METHODS = ("sgd", "momentum", "nesterov", "adam")


def reset_adam_scale(t: int, betas: tuple[float, float] = (0.9, 0.999)) -> float:
    """c(t): the step of an Adam whose moments are zeroed before every update, in units of lr * sign(g)."""
    b1, b2 = betas
    return ((1 - b1) / (1 - b1 ** t)) / math.sqrt((1 - b2) / (1 - b2 ** t))


class HandoutOptimizer(torch.optim.Optimizer):
    """One of :data:`METHODS` with per-member learning rates and optional per-step state reset.

    params: tensors or parameter groups; a group may set its own ``weight_decay`` (a number
    or one value per member). n_members: the family size M (None for a plain module); then
    ``lr`` and ``weight_decay`` may be sequences of M values, applied along dimension 0.
    """

    def __init__(self, params, method: str = "sgd", *, lr, n_members: int | None = None, rho: float = 0.9,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay=0.0,
                 reset_state: bool = False):
        check_choice("method", method, METHODS)
        self.method, self.rho, self.betas, self.eps = method, rho, betas, eps
        self.n_members, self.reset_state = n_members, reset_state
        self.t = 0
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def _per_member(self, value, p: torch.Tensor) -> torch.Tensor | float:
        if not isinstance(value, (Sequence, torch.Tensor)):
            return float(value)
        if self.n_members is None:
            raise ValueError("per-member values need n_members")
        t = torch.as_tensor(value, dtype=p.dtype, device=p.device)
        if t.shape != (self.n_members,):
            raise ValueError(f"expected one value or {self.n_members} values, got {list(t.shape)}")
        return t.view((-1,) + (1,) * (p.dim() - 1))

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        b1, b2 = self.betas
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                lr, wd = self._per_member(group["lr"], p), self._per_member(group["weight_decay"], p)
                g = p.grad if isinstance(wd, float) and wd == 0 else p.grad + wd * p
                state = self.state[p]
                if self.method == "sgd":
                    p.sub_(lr * g)
                elif self.method == "momentum":
                    v = torch.zeros_like(p) if self.reset_state else state.get("v", torch.zeros_like(p))
                    v = self.rho * v + lr * g
                    p.sub_(v)
                    state["v"] = v
                elif self.method == "nesterov":
                    v_old = state.get("v", torch.zeros_like(p))
                    w = p - self.rho * v_old  # back from the look-ahead point to w
                    v = self.rho * v_old - lr * g  # with reset_state, v_old is always zero
                    kept = torch.zeros_like(p) if self.reset_state else v
                    p.copy_(w + v + self.rho * kept)  # the next gradient is taken at w + rho * v
                    state["v"] = kept
                else:
                    m1 = torch.zeros_like(p) if self.reset_state else state.get("m1", torch.zeros_like(p))
                    m2 = torch.zeros_like(p) if self.reset_state else state.get("m2", torch.zeros_like(p))
                    m1 = b1 * m1 + (1 - b1) * g
                    m2 = b2 * m2 + (1 - b2) * g * g
                    u1, u2 = m1 / (1 - b1 ** self.t), m2 / (1 - b2 ** self.t)
                    p.sub_(lr * u1 / (u2.sqrt() + self.eps))
                    state["m1"], state["m2"] = m1, m2
