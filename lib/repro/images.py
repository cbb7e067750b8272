"""Image-folder data sets decoded once into a cached uint8 tensor, and image figures.

Used by ift6135-2019 (the IFT6135-H2019 Kaggle "Cats vs Dogs" set, ``catsdogs/`` of the
data folder). Any folder in torchvision's ``ImageFolder`` layout works:
``root/<class>/<image>``, classes and files in ImageFolder's (sorted) order, so index i
here is index i of ``torchvision.datasets.ImageFolder(root)``.

Decoding 25,000 JPEGs costs seconds; training reads them hundreds of times. So a folder is
decoded ONCE into a uint8 tensor (N, 3, H, W) and stored next to the data
(``<root>/../decoded/<name>-<fingerprint>.pt``), or in the cache folder when the data
folder is read-only. The fingerprint covers every file's name and size, so a changed
folder is decoded again. Images stay uint8 on the device (4x smaller than float32); models
convert them (see :class:`repro.chapters.ift6135_2019.Standardize`) and :mod:`repro.augment` augments them
in batches.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ParameterError, default_cache_dir, default_data_dir
from .data import MissingDataError, Split, keep_first

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
CATSDOGS = "catsdogs"
CATSDOGS_CLASSES = ("Cat", "Dog")


@dataclass
class ImageFolder:
    """A decoded image folder: uint8 images (N, 3, H, W), labels (N,) (-1: unlabelled)."""

    images: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _missing_folder(root: Path, what: str) -> MissingDataError:
    data_dir = root.parent.parent if root.parent.name == CATSDOGS else root.parent
    return MissingDataError(
        f"{what} not found in {data_dir} (looked for {root}). Unpack the Cats vs Dogs set there "
        f"(`make data`, or `python ../shared/datasets/prepare.py {data_dir}`); the layout is "
        f"catsdogs/trainset/<class>/*.jpg and catsdogs/testset/test/*.jpg.")


def list_image_folder(root: Path | str) -> tuple[list[Path], list[int], tuple[str, ...]]:
    """Files, class indices and class names of an ImageFolder tree, in ImageFolder's order.

    Raises :class:`MissingDataError` if the folder is missing, has no class folders or
    holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise _missing_folder(root, f"image folder {root.name!r}")
    classes = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not classes:
        raise _missing_folder(root, f"class folders of {root.name!r} (it is empty)")
    files, labels = [], []
    for k, name in enumerate(classes):
        for folder, _, names in sorted(os.walk(root / name, followlinks=True)):
            for n in sorted(names):
                if n.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(folder) / n)
                    labels.append(k)
    if not files:
        raise _missing_folder(root, f"images ({', '.join(IMAGE_EXTENSIONS)}) in {root.name!r} (the folder is empty)")
    return files, labels, classes


def fingerprint(root: Path, files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode())
        h.update(str(f.stat().st_size).encode())
    return h.hexdigest()[:16]


def decode_images(files: list[Path], size: int | None = None) -> torch.Tensor:
    """Decode image files with PIL (as torchvision's ImageFolder does) to uint8 (N, 3, H, W).

    All images must share one size unless ``size`` is given (then each is resized to
    size x size, bilinear).
    """
    from PIL import Image

    arrays = []
    for f in files:
        with Image.open(f) as img:
            img = img.convert("RGB")
            if size is not None and img.size != (size, size):
                img = img.resize((size, size), Image.BILINEAR)
            arrays.append(np.asarray(img))
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images of several sizes {sorted(shapes)[:3]}...; pass size= to resize them")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _cache_candidates(root: Path, key: str) -> list[Path]:
    name = f"{root.parent.name}-{root.name}-{key}.pt"
    return [root.parent / "decoded" / name, default_cache_dir().parent / "decoded" / name]


def read_image_folder(root: Path | str, *, size: int | None = None, labelled: bool = True,
                      cache: bool = True) -> ImageFolder:
    """Decode an ImageFolder tree once and return it as uint8 tensors (cached on disk).

    labelled=False: the class folders carry no labels (e.g. ``testset/test``); labels are -1.
    cache=False decodes without reading or writing the decoded file.
    """
    root = Path(root)
    files, labels, classes = list_image_folder(root)
    key = fingerprint(root, files) + (f"-s{size}" if size else "")
    names = [str(f.relative_to(root)) for f in files]
    for path in _cache_candidates(root, key) if cache else []:
        if path.is_file():
            try:
                stored = torch.load(path, weights_only=True)
                if stored["names"] == names:
                    return ImageFolder(stored["images"], stored["labels"], names, tuple(stored["classes"]))
            except Exception:  # unreadable or partial: decode again
                pass
    images = decode_images(files, size)
    y = torch.tensor(labels if labelled else [-1] * len(files), dtype=torch.int64)
    folder = ImageFolder(images, y, names, classes if labelled else ())
    if cache:
        payload = {"images": images, "labels": y, "names": names, "classes": list(folder.classes)}
        for path in _cache_candidates(root, key):
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(path.name + f".tmp{os.getpid()}")
                torch.save(payload, tmp)
                os.replace(tmp, path)
                break
            except OSError:  # read-only data folder: try the cache folder
                continue
    return folder


@dataclass
class ImageSplits:
    """Labelled train/validation splits and the unlabelled test images of an image set."""

    train: Split
    valid: Split
    unlabelled: torch.Tensor
    classes: tuple[str, ...]
    train_index: torch.Tensor  # indices into the labelled folder (ImageFolder order)
    valid_index: torch.Tensor
    names: list[str]  # labelled file names, ImageFolder order
    unlabelled_names: list[str]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "valid": len(self.valid), "unlabelled": len(self.unlabelled)}


def load_catsdogs(train_fraction: float = 0.85, *, split_seed: int = 0, data_dir: Path | str | None = None,
                  device="cpu", limit: dict | None = None, cache: bool = True) -> ImageSplits:
    """The IFT6135-H2019 Cats vs Dogs set as uint8 tensors on the device.

    ``catsdogs/trainset/{Cat,Dog}`` (19,998 labelled 64x64 images) is split at random
    (``split_seed``) into train / validation: the first ceil(train_fraction * N) of a
    permutation train, the rest validation, as the authors' ``data_loader`` did.
    ``catsdogs/testset/test`` (4,999 images) has no labels: they were scored on Kaggle.
    limit: optional {"train": n, "valid": n, "unlabelled": n} keeping the first n images.
    """
    if not 0 < train_fraction < 1:
        raise ParameterError(f"train_fraction must be between 0 and 1, got {train_fraction!r}")
    base = Path(data_dir or default_data_dir()) / CATSDOGS
    labelled = read_image_folder(base / "trainset", cache=cache)
    test = read_image_folder(base / "testset", labelled=False, cache=cache)
    n = len(labelled)
    perm = torch.from_numpy(np.random.RandomState(split_seed).permutation(n))
    cut = math.ceil(train_fraction * n)
    train_index, valid_index = perm[:cut], perm[cut:]
    (train_index,), (valid_index,) = keep_first(limit, "train", train_index), keep_first(limit, "valid", valid_index)
    (unlabelled,) = keep_first(limit, "unlabelled", test.images)

    def split(idx):
        return Split(labelled.images[idx].to(device), labelled.labels[idx].to(device))

    return ImageSplits(split(train_index), split(valid_index), unlabelled.to(device), labelled.classes,
                       train_index, valid_index, labelled.names, test.names[:len(unlabelled)])


# --------------------------------------------------------------------------------------- figures
def _as_hwc(image: torch.Tensor) -> np.ndarray:
    return image.detach().to("cpu", torch.uint8).permute(1, 2, 0).numpy()


def image_grid(images: torch.Tensor, titles: list[str] | None = None, *, ncols: int = 8, size: float = 1.3,
               title: str = "", title_colors: list[str] | None = None):
    """A grid of uint8 images (N, 3, H, W) with optional per-image titles; returns the figure."""
    import matplotlib.pyplot as plt

    n = len(images)
    nrows = max(1, math.ceil(n / ncols))
    title_lines = max((t.count("\n") + 1 for t in titles), default=0) if titles else 0
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.22 * title_lines) + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(_as_hwc(images[i]))
            if titles:
                ax.set_title(titles[i], fontsize=8, color=(title_colors or ["black"] * n)[i])
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def wrong_predictions(images: torch.Tensor, labels: torch.Tensor, probs: torch.Tensor, classes, *, n: int = 16,
                      ncols: int = 8, title: str = ""):
    """Gallery of the most confidently wrong predictions, each titled with the predicted
    class and its probability (and the true class). Returns (figure, table of those images)."""
    import pandas as pd

    probs, labels = probs.cpu(), labels.cpu()
    predicted = probs.argmax(1)
    wrong = (predicted != labels).nonzero().flatten()
    confidence = probs[wrong, predicted[wrong]]
    order = wrong[torch.argsort(confidence, descending=True, stable=True)][:n]
    table = pd.DataFrame({"index": order.numpy(), "true": [classes[int(labels[i])] for i in order],
                          "predicted": [classes[int(predicted[i])] for i in order],
                          "probability": [float(probs[i, predicted[i]]) for i in order]})
    titles = [f"{r.predicted} {r.probability:.2f}\n(is {r.true})" for r in table.itertuples()]
    fig = image_grid(images[order.to(images.device)], titles, ncols=ncols, title=title,
                     title_colors=["firebrick"] * len(order))
    return fig, table
