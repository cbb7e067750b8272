"""VGG-style convolutional classifiers with a width multiplier and an exact parameter count.

Used by ift6135-2019 (Cats vs Dogs, Figs. 13-16): the authors' ``ConvNetD_withDropOut_VGG``
is 3x3 convolutions (padding 1) with 64, 128, 256, 256, 512, 512, 512 channels, ReLU after
each, 2x2 max-pools after the 1st, 2nd, 4th and 6th, then Linear 8192 -> 4096 -> 4096 -> 2
with ReLU and dropout after the two hidden linear layers: 57,208,706 parameters on 64x64
RGB images. Weights are Xavier-uniform; biases keep PyTorch's default initialization, as
in the authors' code (they only re-initialized ``.weight``).

``width`` scales every channel and hidden size (rounded, at least 1), so smoke and quick
profiles can train the same architecture narrower on a CPU. The network's first module
(:class:`Standardize`) turns uint8 (or float) pixels in [0, 255] into normalized floats,
so data can stay uint8 on the device.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

VGG_CHANNELS = (64, 128, 256, 256, 512, 512, 512)
VGG_POOL_AFTER = (1, 2, 4, 6)  # 1-based indices of the convolutions followed by a 2x2 max-pool
VGG_HIDDEN = (4096, 4096)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Standardize(nn.Module):
    """x in [0, 255] (uint8 or float) -> (x / 255 - mean) / std, per channel."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255.0 - self.mean) / self.std


def scaled(sizes: Sequence[int], width: float) -> list[int]:
    return [max(1, int(round(s * width))) for s in sizes]


def vgg_shapes(channels=VGG_CHANNELS, pool_after=VGG_POOL_AFTER, hidden=VGG_HIDDEN, *, width: float = 1.0,
               image_size: int = 64) -> tuple[list[int], list[int], int]:
    """(channels, hidden sizes, flattened feature size) after applying ``width``."""
    ch, hid = scaled(channels, width), scaled(hidden, width)
    side = image_size // 2 ** len(pool_after)
    return ch, hid, ch[-1] * side * side


def vgg(channels: Sequence[int] = VGG_CHANNELS, pool_after: Sequence[int] = VGG_POOL_AFTER,
        hidden: Sequence[int] = VGG_HIDDEN, *, n_classes: int = 2, in_channels: int = 3, image_size: int = 64,
        dropout: float = 0.4, width: float = 1.0, mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD, xavier: bool = True) -> nn.Sequential:
    """Build the VGG-style network (seed torch before calling for repeatable weights).

    dropout: probability of zeroing a hidden unit after each hidden linear layer (the
    authors' keep-probability 0.6 is dropout 0.4). mean/std: per-channel normalization of
    pixels scaled to [0, 1]; use std=(1, 1, 1) for zero-centring only.
    """
    ch, hid, flat = vgg_shapes(channels, pool_after, hidden, width=width, image_size=image_size)
    layers: list[nn.Module] = [Standardize(mean, std)]
    prev = in_channels
    for i, c in enumerate(ch, 1):
        layers += [nn.Conv2d(prev, c, 3, padding=1), nn.ReLU(inplace=True)]
        if i in pool_after:
            layers.append(nn.MaxPool2d(2, 2))
        prev = c
    layers.append(nn.Flatten())
    prev = flat
    for h in hid:
        layers += [nn.Linear(prev, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        prev = h
    layers.append(nn.Linear(prev, n_classes))
    net = nn.Sequential(*layers)
    if xavier:
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
    return net


def vgg_parameter_count(channels: Sequence[int] = VGG_CHANNELS, pool_after: Sequence[int] = VGG_POOL_AFTER,
                        hidden: Sequence[int] = VGG_HIDDEN, *, n_classes: int = 2, in_channels: int = 3,
                        image_size: int = 64, width: float = 1.0) -> int:
    """Weights and biases of :func:`vgg` with these settings, by formula (no model built)."""
    ch, hid, flat = vgg_shapes(channels, pool_after, hidden, width=width, image_size=image_size)
    total, prev = 0, in_channels
    for c in ch:
        total += prev * c * 9 + c
        prev = c
    prev = flat
    for h in [*hid, n_classes]:
        total += prev * h + h
        prev = h
    return total
