"""Data sets as whole tensors on the device, split the way each report split them.

Used by every chapter: MNIST (ift6135-2020, ift6135-2019, sharif-hw2, purdue-hw3),
Fashion-MNIST (any MNIST chapter, by parameter), CIFAR-10 (dd2424-a3); Cats vs Dogs
(ift6135-2019) is read by :mod:`repro.images`. ``python -m repro.data check`` checks all three
and says where each comes from.

The library reads one folder (``DATA_DIR``, see :func:`repro.config.default_data_dir`) in
the standard layouts (``MNIST/raw``, ``cifar-10-batches-py``). It never downloads by itself:
a missing data set raises :class:`MissingDataError` naming the folder and the command that
fills it (``make data``, or ``python -m repro.data download`` with internet access).
"""
from __future__ import annotations

import gzip
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import ParameterError, check_choice, default_data_dir

MNIST_SPLITS = ("50k/10k/10k", "55k/5k/10k", "60k/10k")
SCALINGS = ("unit", "pkl", "symmetric", "standard", "raw")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
DATASETS = ("mnist", "fashion-mnist")
FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
_RANDOM_SPLIT = re.compile(r"^random-(\d+)$")  # seeded hold-out of N training images as validation


class MissingDataError(FileNotFoundError):
    """A data set is not in the data folder; the message says how to provide it."""


def _missing(what: str, folder: Path, extra: str = "") -> MissingDataError:
    return MissingDataError(
        f"{what} not found in {folder}. Fill the data folder with `make data` "
        f"(or `DATA_DIR={folder.parent if folder.name else folder} make data`); with internet access, "
        f"`python -m repro.data download {folder.parent}` fetches the official files.{extra}")


@dataclass
class Split:
    """One split: inputs ``x`` (N, ...) and integer labels ``y`` (N,), on one device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def head(self, n: int) -> "Split":
        return Split(self.x[:n], self.y[:n])


@dataclass
class Dataset:
    name: str
    train: Split
    valid: Split | None
    test: Split
    classes: tuple

    def splits(self) -> dict[str, Split]:
        out = {"train": self.train, "valid": self.valid, "test": self.test}
        return {k: v for k, v in out.items() if v is not None}

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits().items()}

    def limited(self, limit: dict | None) -> dict[str, Split]:
        """The splits cut as a loader's ``limit`` would cut them (:func:`keep_first`), for a chapter
        that also needs the whole data set (e.g. one named training image)."""
        return {name: Split(*keep_first(limit, name, s.x, s.y)) for name, s in self.splits().items()}


# ----------------------------------------------------------------------------- IDX files
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folders: list[Path], stem: str) -> Path | None:
    for folder in folders:
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def mnist_folders(dataset: str, data_dir: Path) -> list[Path]:
    if dataset == "mnist":
        return [data_dir / "MNIST" / "raw"]
    return [data_dir / "FashionMNIST" / "raw", FASHION_SYSTEM_DIR]


def read_mnist_arrays(dataset: str = "mnist", data_dir: Path | None = None):
    """Return uint8 arrays (train_x, train_y, test_x, test_y) in the original file order."""
    check_choice("dataset", dataset, DATASETS)
    data_dir = Path(data_dir or default_data_dir())
    folders = mnist_folders(dataset, data_dir)
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(folders, s) for s in stems]
    if any(p is None for p in paths):
        if dataset == "fashion-mnist":
            raise MissingDataError(
                f"Fashion-MNIST not found in {folders[0]} or {folders[1]}. Install it with "
                "`apt-get install dataset-fashion-mnist` (offline Debian package), or with internet access "
                f"run `python -m repro.data download {data_dir} --dataset fashion-mnist`.")
        raise _missing("MNIST (the four IDX files)", folders[0].parent, "")
    return tuple(_read_idx(p) for p in paths)


def scale_pixels(x: torch.Tensor, scaling: str) -> torch.Tensor:
    """uint8 pixels -> float32 with the report's scaling (an argument, not a copy of the loader)."""
    check_choice("scaling", scaling, SCALINGS)
    x = x.float()
    if scaling == "raw":
        return x
    if scaling == "pkl":
        return x / 256.0  # the pixels of deeplearning.net's mnist.pkl: 255 -> 0.99609375, exact in float32
    x = x / 255.0
    if scaling == "symmetric":
        return x * 2 - 1  # Normalize(0.5, 0.5): [-1, 1]
    if scaling == "standard":
        return (x - MNIST_MEAN) / MNIST_STD
    return x


def check_split(split: str) -> str:
    if split in MNIST_SPLITS or _RANDOM_SPLIT.match(split):
        return split
    raise ParameterError(f"parameter 'split' must be one of {', '.join(MNIST_SPLITS)} or random-N "
                         f"(a seeded hold-out of N training images); got {split!r}")


def keep_first(limit: dict | None, split: str, *arrays):
    """The first ``limit[split]`` items of each array, or all of them when ``limit`` names no
    size for this split: the one way a profile shrinks a data set (every loader's ``limit``)."""
    n = (limit or {}).get(split)
    return arrays if n is None else tuple(a[:n] for a in arrays)


def load_mnist(split: str = "50k/10k/10k", *, scaling: str = "unit", flatten: bool = True,
               dataset: str = "mnist", data_dir: Path | str | None = None, device="cpu",
               limit: dict | None = None, split_seed: int = 0, split_rng: str = "torch") -> Dataset:
    """MNIST (or Fashion-MNIST) split as a report split it, whole splits as device tensors.

    split: ``50k/10k/10k`` (mnist.pkl: train = first 50,000, valid = last 10,000 of the 60k),
    ``55k/5k/10k`` (TensorFlow tutorial: valid = first 5,000), ``60k/10k`` (no validation),
    ``random-N`` (valid = N training images drawn with ``split_seed``, the rest train).
    limit: optional {split: n} keeping the first n images of a split (smoke/quick profiles).
    split_rng: ``random-N`` draws its permutation with torch (``torch.randperm``) or with
    ``numpy`` (``np.random.seed(split_seed); np.random.shuffle(indices)``, valid = the first
    N shuffled indices, as the ift6135-2019 authors' MNIST loader did).
    """
    check_split(split)
    check_choice("split_rng", split_rng, ("torch", "numpy"))
    check_choice("scaling", scaling, SCALINGS)
    tx, ty, sx, sy = read_mnist_arrays(dataset, Path(data_dir) if data_dir else None)
    tx, ty = torch.from_numpy(tx.copy()), torch.from_numpy(ty.astype(np.int64))
    sx, sy = torch.from_numpy(sx.copy()), torch.from_numpy(sy.astype(np.int64))
    if split == "50k/10k/10k":
        train_idx, valid_idx = torch.arange(50_000), torch.arange(50_000, 60_000)
    elif split == "55k/5k/10k":
        train_idx, valid_idx = torch.arange(5_000, 60_000), torch.arange(5_000)
    elif split == "60k/10k":
        train_idx, valid_idx = torch.arange(60_000), None
    else:
        n_valid = int(_RANDOM_SPLIT.match(split).group(1))
        if not 0 < n_valid < len(ty):
            raise ParameterError(f"split {split!r}: the hold-out must be between 1 and {len(ty) - 1}")
        if split_rng == "numpy":
            perm = torch.from_numpy(np.random.RandomState(split_seed).permutation(len(ty)))
        else:
            perm = torch.randperm(len(ty), generator=torch.Generator().manual_seed(split_seed))
        train_idx, valid_idx = perm[n_valid:], perm[:n_valid]

    def make(x, y, idx, name):
        if idx is not None:
            x, y = x[idx], y[idx]
        x, y = keep_first(limit, name, x, y)
        x = scale_pixels(x, scaling)
        x = x.reshape(len(x), -1) if flatten else x.unsqueeze(1)
        return Split(x.to(device), y.to(device))

    valid = make(tx, ty, valid_idx, "valid") if valid_idx is not None else None
    classes = tuple(range(10))
    return Dataset(dataset, make(tx, ty, train_idx, "train"), valid, make(sx, sy, None, "test"), classes)


# ----------------------------------------------------------------------------- CIFAR-10
CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar_batch(name: str, data_dir: Path | str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One official CIFAR-10 pickle (``data_batch_1`` ... ``test_batch``): uint8 (N, 3072), labels (N,).

    The pickles are read directly: torchvision's CIFAR10 class checks MD5s and refuses
    re-encoded copies such as the offline one.
    """
    folder = Path(data_dir or default_data_dir()) / "cifar-10-batches-py"
    path = folder / name
    if not path.is_file():
        raise _missing(f"CIFAR-10 pickle {name!r}", folder, "")
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="latin1")
    return np.asarray(d["data"], dtype=np.uint8), np.asarray(d["labels"], dtype=np.int64)


def load_cifar10(train_batches=("data_batch_1",), valid_batches=("data_batch_2",), test_batch="test_batch", *,
                 valid_last: int | None = None, data_dir=None, device="cpu", limit: dict | None = None,
                 center: bool = True, flatten: bool = True) -> Dataset:
    """CIFAR-10 from the pickles, pixels /255, minus the training set's per-dimension mean.

    ``valid_last=N`` takes the last N images of ``train_batches`` as validation instead of
    ``valid_batches`` (e.g. all five batches with the last 1,000 held out).
    """
    def stack(names):
        parts = [read_cifar_batch(n, data_dir) for n in names]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    tx, ty = stack(train_batches)
    if valid_last:
        vx, vy, tx, ty = tx[-valid_last:], ty[-valid_last:], tx[:-valid_last], ty[:-valid_last]
    else:
        vx, vy = stack(valid_batches) if valid_batches else (None, None)
    sx, sy = read_cifar_batch(test_batch, data_dir)
    (tx, ty), (sx, sy) = keep_first(limit, "train", tx, ty), keep_first(limit, "test", sx, sy)
    if vx is not None:
        vx, vy = keep_first(limit, "valid", vx, vy)
    mean = (tx.astype(np.float64) / 255).mean(axis=0) if center else 0.0

    def make(x, y):
        x = torch.from_numpy(x.astype(np.float64) / 255 - mean).float()
        x = x if flatten else x.reshape(-1, 3, 32, 32)
        return Split(x.to(device), torch.from_numpy(y).to(device))

    valid = make(vx, vy) if vx is not None else None
    return Dataset("cifar10", make(tx, ty), valid, make(sx, sy), CIFAR_CLASSES)


# ----------------------------------------------------------------------------- download
def download(data_dir: Path, dataset: str = "mnist") -> None:
    """Fetch the official files with torchvision (needs internet; never called implicitly)."""
    import socket

    import torchvision

    socket.setdefaulttimeout(30)  # a blocked network fails in seconds, not hours
    data_dir.mkdir(parents=True, exist_ok=True)
    if dataset == "mnist":
        torchvision.datasets.MNIST(data_dir, train=True, download=True)
    elif dataset == "fashion-mnist":
        torchvision.datasets.FashionMNIST(data_dir, train=True, download=True)
    elif dataset == "cifar10":
        torchvision.datasets.CIFAR10(data_dir, train=True, download=True)
    else:
        raise ParameterError(f"cannot download {dataset!r}; known: mnist, fashion-mnist, cifar10")


# What the book needs, where each comes from, and how to check it is there.
SOURCES = {
    "MNIST": ("ift6135-2020, ift6135-2019, sharif-hw2, purdue-hw3",
              "Yann LeCun's MNIST files via torchvision (`python -m repro.data download DIR`), or the offline copy "
              "(`python ../shared/datasets/prepare.py DIR mnist`)"),
    "CIFAR-10": ("dd2424-a3",
                 "the official CIFAR-10 python pickles (cs.toronto.edu) via torchvision (`python -m repro.data download "
                 "DIR`), or the offline copy (`python ../shared/datasets/prepare.py DIR cifar10`; JPEG-rebuilt, see its README)"),
    "Cats vs Dogs": ("ift6135-2019",
                     "the IFT6135-H2019 class's Kaggle set (19,998 labelled + 4,999 test 64x64 JPEGs). It has no public "
                     "download this project can use: unpack the offline copy (`python ../shared/datasets/prepare.py DIR "
                     "catsdogs`) or your own copy of the course's files as DIR/catsdogs/trainset/{Cat,Dog}/*.jpg and "
                     "DIR/catsdogs/testset/test/*.jpg"),
}


def _check_catsdogs(folder: Path) -> None:
    from .images import CATSDOGS, list_image_folder
    _, _, classes = list_image_folder(folder / CATSDOGS / "trainset")
    if classes != ("Cat", "Dog"):
        raise MissingDataError(f"{folder / CATSDOGS / 'trainset'} has class folders {classes}, expected Cat and Dog")
    list_image_folder(folder / CATSDOGS / "testset")


CHECKS = {"MNIST": lambda folder: read_mnist_arrays("mnist", folder),
          "CIFAR-10": lambda folder: read_cifar_batch("test_batch", folder),
          "Cats vs Dogs": _check_catsdogs}


def check(folder: Path) -> dict[str, str | None]:
    """Each data set the book needs -> None when it is in ``folder``, else why not."""
    found = {}
    for label, fn in CHECKS.items():
        try:
            fn(folder)
            found[label] = None
        except FileNotFoundError as e:  # MissingDataError (caught by its base: under `python -m` two copies exist)
            found[label] = str(e)
    return found


def _main(argv=None):
    import argparse

    p = argparse.ArgumentParser(prog="python -m repro.data", description="Data folder tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="download official files with torchvision (internet needed; "
                                        "MNIST and CIFAR-10 only: Cats vs Dogs has no public download)")
    d.add_argument("data_dir", type=Path)
    d.add_argument("--dataset", default="all", choices=("all", "mnist", "fashion-mnist", "cifar10"))
    c = sub.add_parser("check", help="say which data sets the folder holds, which chapters need them, where they come from")
    c.add_argument("data_dir", type=Path, nargs="?", default=None)
    a = p.parse_args(argv)
    if a.cmd == "download":
        for name in (("mnist", "cifar10") if a.dataset == "all" else (a.dataset,)):
            download(a.data_dir.expanduser(), name)
        if a.dataset == "all" and check(a.data_dir.expanduser())["Cats vs Dogs"] is not None:
            print("Cats vs Dogs cannot be downloaded: " + SOURCES["Cats vs Dogs"][1].replace("DIR", str(a.data_dir)))
        return 0
    folder = (a.data_dir or default_data_dir()).expanduser()
    found = check(folder)
    for label, problem in found.items():
        chapters, source = SOURCES[label]
        print(f"{label}: {'ok' if problem is None else 'MISSING'} in {folder} (needed by {chapters}; "
              f"source: {source.replace('DIR', str(folder))})")
        if problem is not None:
            print(f"  {problem}")
    return 0 if all(v is None for v in found.values()) else 1


if __name__ == "__main__":
    raise SystemExit(_main())
