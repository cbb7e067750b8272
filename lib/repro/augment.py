"""Batched data augmentation on device tensors, for ``repro.fit(..., batch_transform=...)``.

Used by ift6135-2019 (Cats vs Dogs). The authors' torchvision pipeline transformed one PIL
image at a time in DataLoader workers::

    RandomRotation(10), RandomHorizontalFlip(), RandomResizedCrop(64, scale=(0.8, 1.0)),
    ColorJitter(), RandomGrayscale(0.2), ToTensor(), Normalize(ImageNet mean, std)

:class:`Augment` does the same to a whole batch at once on the device: the rotation, the
flip and the resized crop are composed into ONE affine map per image and applied with a
single bilinear ``grid_sample`` (zeros outside the image, as RandomRotation's fill);
colour jitter and grayscale are per-image arithmetic. Normalization is left to the model
(:class:`repro.chapters.ift6135_2019.Standardize`), so validation images need no separate transform.

Differences from torchvision, all small: one interpolation instead of two (rotation, then
crop), bilinear rotation (torchvision's RandomRotation defaults to nearest), continuous crop
positions, and a crop whose size falls outside the image is clipped to it (torchvision
retries up to 10 times, then falls back to a centre crop). Colour jitter, when enabled,
applies brightness, contrast, saturation in that fixed order and no hue change.
``ColorJitter()`` with default arguments, as the authors wrote it, is the identity:
``jitter=0``.

Pixel values keep the input's scale (uint8 input gives float output in [0, 255]).
All randomness comes from the ``generator`` argument, so a seeded run is repeatable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision's rgb_to_grayscale


@dataclass(frozen=True)
class Augment:
    """Random rotation (+-``rotation`` degrees), horizontal flip (p 0.5 if ``flip``), random
    resized crop (area fraction in ``crop_scale``, aspect ratio in ``crop_ratio``; None: no
    crop), colour jitter of strength ``jitter`` (brightness, contrast and saturation factors
    drawn from [1 - jitter, 1 + jitter]; 0: none), grayscale with probability ``grayscale``.

    Call it as ``augment(x, generator)`` on a batch (B, C, H, W), uint8 or float.
    """

    rotation: float = 10.0
    flip: bool = True
    crop_scale: tuple[float, float] | None = (0.8, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: float = 0.0
    grayscale: float = 0.2
    max_value: float = 255.0  # pixel range for clamping after jitter

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = x.float()
        x = self.geometric(x, generator)
        if self.jitter:
            x = self.colour_jitter(x, generator)
        if self.grayscale:
            x = self.random_grayscale(x, generator)
        return x

    # ------------------------------------------------------------------ geometry
    def affine(self, n: int, height: int, width: int, generator=None, device="cpu") -> torch.Tensor:
        """(n, 2, 3) maps from output to input coordinates (``affine_grid`` convention)."""
        def uniform(lo, hi):
            return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)

        # Crop: half-sizes (sx, sy) and centre (cx, cy) in normalized [-1, 1] coordinates.
        if self.crop_scale is not None:
            area = uniform(*self.crop_scale)
            ratio = torch.exp(uniform(math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])))
            sx, sy = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
            cx, cy = (1 - sx) * uniform(-1.0, 1.0), (1 - sy) * uniform(-1.0, 1.0)
        else:
            sx = sy = torch.ones(n, device=device)
            cx = cy = torch.zeros(n, device=device)
        flip = torch.where(torch.rand(n, generator=generator, device=device) < 0.5, -1.0, 1.0) if self.flip \
            else torch.ones(n, device=device)
        angle = uniform(-self.rotation, self.rotation) * math.pi / 180 if self.rotation else torch.zeros(n, device=device)
        # Output u -> crop frame v = c + S u -> flipped w = (f v_x, v_y) -> rotated back to the source.
        # Rotation works in pixel units: scale x by width/2 and y by height/2 around it.
        a = torch.zeros(n, 2, 3, device=device)
        cos, sin = torch.cos(angle), torch.sin(angle)
        ax, ay = width / 2, height / 2
        # source = D^-1 R D (F (c + S u)), D = diag(ax, ay)
        r00, r01 = cos, -sin * ay / ax
        r10, r11 = sin * ax / ay, cos
        a[:, 0, 0], a[:, 0, 1] = r00 * flip * sx, r01 * sy
        a[:, 1, 0], a[:, 1, 1] = r10 * flip * sx, r11 * sy
        a[:, 0, 2] = r00 * flip * cx + r01 * cy
        a[:, 1, 2] = r10 * flip * cx + r11 * cy
        return a

    def geometric(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        if not (self.rotation or self.flip or self.crop_scale is not None):
            return x
        theta = self.affine(len(x), x.shape[-2], x.shape[-1], generator, x.device)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    # ------------------------------------------------------------------ colour
    @staticmethod
    def gray(x: torch.Tensor) -> torch.Tensor:
        w = torch.tensor(GRAY_WEIGHTS, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return (x * w).sum(1, keepdim=True)

    def colour_jitter(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        n = len(x)

        def factor():
            lo = max(0.0, 1 - self.jitter)
            return (lo + (1 + self.jitter - lo) * torch.rand(n, generator=generator, device=x.device)).view(n, 1, 1, 1)

        x = (x * factor()).clamp(0, self.max_value)  # brightness
        mean = self.gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factor() + mean).clamp(0, self.max_value)  # contrast
        g = self.gray(x)
        return ((x - g) * factor() + g).clamp(0, self.max_value)  # saturation

    def random_grayscale(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        pick = (torch.rand(len(x), generator=generator, device=x.device) < self.grayscale).view(-1, 1, 1, 1)
        return torch.where(pick, self.gray(x).expand_as(x), x)


def augmented_copy(augment: Augment, x: torch.Tensor, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
    """One seeded augmented draw of a whole set, rounded back to uint8 (as torchvision's PIL
    transforms return uint8 images): e.g. the authors' validation images, which went through
    the training augmentation."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    parts = [augment(x[i:i + batch_size], gen).round().clamp(0, 255).to(torch.uint8)
             for i in range(0, len(x), batch_size)]
    return torch.cat(parts)
