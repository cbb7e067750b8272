"""SGD for model families: each member has its own learning rate, momentum and weight decay.

Parameters carry a leading member dimension (see :class:`repro.models.MLPFamily`). The
update is torch.optim.SGD's, member by member: g += wd * w; buf = mu * buf + g;
w -= lr * buf (or lr * (g + mu * buf) with Nesterov). Members can be frozen (early
stopping) with :meth:`FamilySGD.freeze`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch


def _per_member(value, m: int, name: str, device, dtype) -> torch.Tensor:
    t = torch.as_tensor(value if isinstance(value, Sequence) else [value] * m, dtype=dtype, device=device)
    if t.shape != (m,):
        raise ValueError(f"{name}: expected one value or {m} values, got {list(t.shape)}")
    return t


class FamilySGD(torch.optim.Optimizer):
    def __init__(self, params, n_members: int, lr, momentum=0.0, weight_decay=0.0, nesterov: bool = False):
        params = list(params)
        device, dtype = params[0].device, params[0].dtype
        self.n_members = n_members
        self.lr = _per_member(lr, n_members, "lr", device, dtype)
        self.momentum = _per_member(momentum, n_members, "momentum", device, dtype)
        self.weight_decay = _per_member(weight_decay, n_members, "weight_decay", device, dtype)
        self.active = torch.ones(n_members, dtype=dtype, device=device)
        self.nesterov = nesterov
        self._uses_key = None  # see _uses()
        super().__init__(params, {})

    def freeze(self, members) -> None:
        self.active[torch.as_tensor(members, dtype=torch.long, device=self.active.device)] = 0

    def _uses(self) -> tuple[bool, bool]:
        """(any member has momentum, any has weight decay), re-read only when those tensors change.

        Reading them means a host synchronisation on a GPU, so it is not done every step: the
        answer is kept until ``momentum`` or ``weight_decay`` is replaced or changed in place
        (its version counter moves).
        """
        mu, wd = self.momentum, self.weight_decay
        key = getattr(self, "_uses_key", None)
        if key is None or key[0] is not mu or key[1] is not wd or key[2] != (mu._version, wd._version):
            self._uses_flags = (bool((mu != 0).any()), bool((wd != 0).any()))
            self._uses_key = (mu, wd, (mu._version, wd._version))
        return self._uses_flags

    @torch.no_grad()
    def step(self, closure=None):
        use_momentum, use_decay = self._uses()
        step_lr = self.lr * self.active
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                shape = (-1,) + (1,) * (p.dim() - 1)
                g = p.grad
                if use_decay:
                    g = g + self.weight_decay.view(shape) * p
                if use_momentum:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.clone()
                    else:
                        buf.mul_(self.momentum.view(shape)).add_(g)
                    g = g + self.momentum.view(shape) * buf if self.nesterov else buf
                p.sub_(step_lr.view(shape) * g)
