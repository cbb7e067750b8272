"""Finite-difference gradient checks in float64, shared by every chapter that has one
(ift6135-2020 Table 4, ift6135-2019 Figs. 5-7, dd2424-a3 Tables 1-8).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


@torch.no_grad()
def central_differences(loss: Callable[[], torch.Tensor], theta: torch.Tensor, indices: Sequence[int],
                        eps: float) -> torch.Tensor:
    """(L(theta_i + eps) - L(theta_i - eps)) / (2 eps) for each flat index i of ``theta``.

    ``theta`` is perturbed in place and restored exactly; ``loss`` re-reads it each call.
    """
    flat = theta.view(-1)
    out = torch.empty(len(indices), dtype=torch.float64)
    for j, i in enumerate(indices):
        original = flat[i].clone()
        flat[i] = original + eps
        plus = float(loss())
        flat[i] = original - eps
        minus = float(loss())
        flat[i] = original
        out[j] = (plus - minus) / (2 * eps)
    return out


def analytic_gradient(loss: Callable[[], torch.Tensor], theta: torch.Tensor) -> torch.Tensor:
    """d loss / d theta by autograd (theta must require grad)."""
    (grad,) = torch.autograd.grad(loss(), theta)
    return grad


def relative_error(analytic: torch.Tensor, numeric: torch.Tensor, floor: float = 1e-5) -> torch.Tensor:
    """|ga - gn| / max(floor, |ga| + |gn|), the course-standard relative error."""
    return (analytic - numeric).abs() / torch.clamp(analytic.abs() + numeric.abs(), min=floor)


def epsilon_grid(ks: Sequence[int] = (1, 5), exponents: Sequence[int] = range(6)) -> list[int]:
    """The sorted set N = k * 10^i; each check uses eps = 1 / N."""
    return sorted({k * 10 ** i for k in ks for i in exponents})


@torch.no_grad()
def central_differences_batched(losses: Callable[[torch.Tensor], torch.Tensor], theta: torch.Tensor,
                                indices: Sequence[int], eps: float, chunk: int = 512) -> torch.Tensor:
    """:func:`central_differences` for a model that evaluates many copies of ``theta`` at once.

    ``losses(stack)`` takes a stack (k, *theta.shape) of copies of ``theta`` and returns their
    k losses (for example a batched model family with one perturbed copy per member). In each
    chunk of n indices, copy j holds theta_i + eps and copy n + j holds theta_i - eps, formed
    exactly as the one-at-a-time version forms them. ``theta`` itself is never modified.
    Used by dd2424-a3, whose check covers every element of every weight matrix.
    """
    indices = list(indices)
    flat = theta.detach().reshape(-1)
    out = torch.empty(len(indices), dtype=torch.float64)
    for start in range(0, len(indices), chunk):
        idx = torch.as_tensor(indices[start:start + chunk], dtype=torch.long, device=flat.device)
        n = len(idx)
        stack = flat.repeat(2 * n, 1)
        rows = torch.arange(n, device=flat.device)
        stack[rows, idx] = flat[idx] + eps
        stack[rows + n, idx] = flat[idx] - eps
        values = losses(stack.view(2 * n, *theta.shape)).to(torch.float64).cpu()
        out[start:start + n] = (values[:n] - values[n:]) / (2 * eps)
    return out
