"""The optimizer of model families: one class, :class:`FamilyOptimizer`, with two sets of update rules.

Parameters carry a leading member dimension (see :class:`repro.models.MLPFamily`); the learning
rate and the weight decay may differ from member to member (one number, or one value per member:
:func:`per_member`). A plain ``nn.Module`` works too (``n_members=None``: numbers only). Parameter
groups may set their own ``lr`` and ``weight_decay`` (e.g. no decay on the biases).

``rule="torch"`` (the default; only ``method="sgd"``): torch.optim.SGD's update, member by member,
with a per-member ``momentum`` mu::

    g = grad + wd * w;  buf = g at the first step, else mu * buf + g;
    w <- w - lr * buf             (w <- w - lr * (g + mu * buf) with nesterov=True)

``rule="handout"``: the update rules as a course handout writes them (Purdue CS690 HW3, eqs. 3-12,
used by purdue-hw3). With g = grad + wd * w and one velocity coefficient ``rho``:

- ``sgd``:      w <- w - lr * g
- ``momentum``: v <- rho * v + lr * g;  w <- w - v
- ``nesterov``: v <- rho * v - lr * grad f(w + rho * v);  w <- w + v. The gradient must be taken at
  the look-ahead point, so between steps the stored parameters sit at ``w + rho * v`` (an
  autograd engine differentiates at the stored parameters); evaluations between steps therefore
  see the look-ahead point, ``rho * v`` away from ``w``.
- ``adam``:     m1 <- b1 m1 + (1 - b1) g;  m2 <- b2 m2 + (1 - b2) g^2;  t <- t + 1;
  w <- w - lr * (m1 / (1 - b1^t)) / (sqrt(m2 / (1 - b2^t)) + eps)

  ``reset_state=True`` zeroes the velocity / moments before every update, as code that re-creates
  its buffers inside ``update()`` does (the step counter t keeps counting): momentum and Nesterov
  are then exactly SGD, and Adam steps by about lr * c(t) * sign(g)
  (:func:`repro.chapters.purdue_hw3.reset_adam_scale`).

In both rules weight decay is applied only where some member's value is not 0. ``freeze(members)``
stops members (early stopping): the torch rule gives them a step size of 0, the handout rule
puts their parameters back after each update.

The torch rule updates a large parameter block by block (:func:`_blocks`): the same elementwise
operations in the same order, so the same bits, but each block is still in the CPU's cache for the
next operation, which spares passes over memory (the update is memory-bound). Fused kernels
(``addcmul``) would spare more but round differently (a fused multiply-add), so they are not used.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .config import check_choice

RULES = ("torch", "handout")
METHODS = ("sgd", "momentum", "nesterov", "adam")  # the handout's; the torch rule is "sgd" only
_BLOCK_BYTES = 2 << 20  # a block of a parameter the torch rule updates at a time (CPU)


def per_member(value, m: int, name: str, like: torch.Tensor | None = None) -> torch.Tensor:
    """One value per member, shape (m,), with the dtype and device of ``like`` (float64 on the CPU
    without): a number is repeated m times; a sequence, array or tensor must hold m values."""
    values = value if np.ndim(value) > 0 else [value] * m
    values = values.tolist() if isinstance(values, np.ndarray) else values  # a copy: arrays may be read-only
    kw = dict(dtype=like.dtype, device=like.device) if like is not None else dict(dtype=torch.float64)
    t = torch.as_tensor(values, **kw)
    if t.shape != (m,):
        raise ValueError(f"{name}: expected one value or {m} values, got {list(t.shape)}")
    return t


def _blocks(p: torch.Tensor) -> tuple[tuple[int, int, int], ...]:
    """(dim, start, length): slices of ``p`` along its outermost dimension in memory, about
    ``_BLOCK_BYTES`` each; one block, (-1, 0, 0) = the whole tensor, on a GPU or when ``p`` is small."""
    return _block_plan(tuple(p.shape), p.stride(), p.element_size(), p.is_cuda)


@functools.lru_cache(maxsize=256)
def _block_plan(shape: tuple, stride: tuple, element_size: int, on_gpu: bool) -> tuple[tuple[int, int, int], ...]:
    dims = [d for d in range(len(shape)) if shape[d] > 1]
    if on_gpu or not dims or math.prod(shape) * element_size <= _BLOCK_BYTES:
        return ((-1, 0, 0),)
    d = max(dims, key=lambda k: stride[k])
    per = max(1, _BLOCK_BYTES // (stride[d] * element_size))
    return tuple((d, a, min(per, shape[d] - a)) for a in range(0, shape[d], per))


def _part(t: torch.Tensor, block: tuple[int, int, int]) -> torch.Tensor:
    """The block of ``t`` (a parameter-shaped tensor, or a per-member view that broadcasts to one)."""
    d, a, n = block
    return t if d < 0 or t.dim() == 0 or t.shape[d] == 1 else t.narrow(d, a, n)


class FamilyOptimizer(torch.optim.Optimizer):
    """Per-member learning rate, weight decay (and momentum, torch rule) for model families.

    params: tensors or parameter groups (a group may set ``lr``, ``weight_decay``, ``momentum``).
    n_members: the family size M (None for a plain module: then every value is one number).
    rule ``torch``: method ``sgd``, ``momentum`` (per member) and ``nesterov`` as torch.optim.SGD.
    rule ``handout``: method one of :data:`METHODS`; ``rho``, ``betas``, ``eps``, ``reset_state``.
    See the module docstring for the equations.
    """

    def __init__(self, params, n_members: int | None = None, method: str = "sgd", *, rule: str = "torch", lr,
                 weight_decay=0.0, momentum=0.0, nesterov: bool = False, rho: float = 0.9,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, reset_state: bool = False):
        check_choice("rule", rule, RULES)
        check_choice("method", method, ("sgd",) if rule == "torch" else METHODS)
        if rule == "handout" and (nesterov or not isinstance(momentum, (int, float)) or momentum != 0):
            raise ValueError("rule 'handout': choose method 'momentum' or 'nesterov' (coefficient rho)")
        self.rule, self.method, self.nesterov = rule, method, nesterov
        self.rho, self.betas, self.eps, self.reset_state = rho, betas, eps, reset_state
        self.n_members, self.t = n_members, 0
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, momentum=momentum))
        m = n_members or 1
        for group in self.param_groups:
            for name in ("lr", "weight_decay", "momentum"):
                if n_members is None and not isinstance(group[name], (int, float)):
                    raise ValueError(f"{name}: per-member values need n_members")
                group[name] = per_member(group[name], m, name, like=group["params"][0])
        p0 = self.param_groups[0]["params"][0]
        self.active = torch.ones(m, dtype=p0.dtype, device=p0.device)  # 0: frozen
        self._frozen: list[int] = []
        self._cache: dict = {}  # per group: its tensors, their versions, step values, views by rank, flags

    def freeze(self, members) -> None:
        """Stop these members (indices): their parameters keep their values from now on."""
        self.active[torch.as_tensor(members, dtype=torch.long, device=self.active.device)] = 0
        self._frozen = sorted(set(self._frozen) | {int(k) for k in members})

    def _hyper(self, i: int, group: dict, p: torch.Tensor) -> tuple:
        """(lr, weight_decay, momentum) viewed to broadcast over ``p``, and whether any member has
        weight decay, momentum. The step lr (lr * active) and the flags are recomputed only when a
        group's tensors are replaced or changed in place: reading the flags synchronises a GPU."""
        tensors = (group["lr"], group["weight_decay"], group["momentum"], self.active)
        versions = tuple(t._version for t in tensors)
        cached = self._cache.get(i)
        if cached is None or any(a is not b for a, b in zip(cached[0], tensors)) or cached[1] != versions:
            lr, wd, mu, active = tensors
            step_lr = lr * active if self.rule == "torch" else lr  # handout: frozen members are put back
            flags = (bool((wd != 0).any()), bool((mu != 0).any()))
            cached = self._cache[i] = (tensors, versions, (step_lr, wd, mu), {}, flags)
        _, _, values, views, flags = cached
        rank = p.dim()
        if rank not in views:
            shape = (-1,) + (1,) * (rank - 1) if self.n_members else ()
            views[rank] = tuple(v.view(shape) for v in values)
        return (*views[rank], *flags)

    @torch.no_grad()
    def step(self, closure=None):
        self.t += 1
        for i, group in enumerate(self.param_groups):
            for p in group["params"]:
                if p.grad is None:
                    continue
                lr, wd, mu, use_decay, use_momentum = self._hyper(i, group, p)
                if self.rule == "torch":
                    self._torch_update(p, lr, wd, mu, use_decay, use_momentum)
                else:
                    kept = p[self._frozen].clone() if self._frozen and self.n_members else None
                    self._handout_update(p, lr, wd, use_decay)
                    if kept is not None:
                        p[self._frozen] = kept

    def _torch_update(self, p, lr, wd, mu, use_decay: bool, use_momentum: bool) -> None:
        state = self.state[p]
        first = use_momentum and "momentum_buffer" not in state
        if first:
            state["momentum_buffer"] = torch.empty_like(p)
        buf = state.get("momentum_buffer")
        for block in _blocks(p):
            w, g = _part(p, block), _part(p.grad, block)
            if use_decay:
                g = torch.mul(_part(wd, block), w).add_(g)  # g + wd * w
            if use_momentum:
                b = _part(buf, block)
                if first:
                    b.copy_(g)
                else:
                    b.mul_(_part(mu, block)).add_(g)
                g = torch.mul(_part(mu, block), b).add_(g) if self.nesterov else b
            w.sub_(_part(lr, block) * g)

    def _handout_update(self, p, lr, wd, use_decay: bool) -> None:
        b1, b2 = self.betas
        g = p.grad + wd * p if use_decay else p.grad
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
