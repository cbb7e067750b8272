"""The authors' own result files: found beside the project, fetched from their repositories, or missing.

The project never commits the authors' files (their result CSVs, logs and figures belong to
them). A chapter asks for one by the name ``reference/<chapter>/SOURCES.md`` gives it, and
:func:`locate` looks, in this order:

1. ``$REPRO_REFERENCE_DIR/<chapter>/<name>`` when that variable is set;
2. ``<project root>/../shared/reference/<chapter>/<name>`` (the offline copy beside a checkout);
3. the cache folder ``$REPRO_AUTHORS_DIR`` (default ``~/.cache/dl-repro-book/authors``),
   ``<chapter>/<name>``, filled by an earlier download;
4. a download of the source file from the authors' public GitHub repository at the commit
   pinned below (``raw.githubusercontent.com``; ``$REPRO_AUTHORS_URL`` overrides the URL
   template, ``REPRO_OFFLINE=1`` skips it). Every downloaded blob is checked against its
   SHA-256 before use. Files the repository holds as Python pickles inside ``.npy`` or as
   notebook/log text are decoded here, by our own small readers, into the same CSV layout as
   the offline copy.

When none of these works, :func:`locate` returns None and :func:`unavailable_message` says
why; the chapters then draw their figures without the authors' curves.

The SHA-256 sums below are of the blobs at the pinned commits (for verbatim files they equal
the sums of the offline copies in ``../shared/reference``; for decoded files they are the sums
of the ``.npy`` / ``.ipynb`` / ``.txt`` source, computed from a snapshot of the public
repository, and the decoders' output was compared byte for byte with the offline CSVs).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from .config import PROJECT, PROJECT_ROOT

DEFAULT_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"

IFT2020 = "dhaivat1729/IFT6135_deeplearning_MILA_assignments"
IFT2020_HEAD = "3aa18db2b3dc5e05264f3f4e955791b32da7806f"
IFT2020_2D504E8 = "2d504e84d55e886300184a641dc5d948137b0f61"
IFT2020_47E8532 = "47e853280c1213ccedd718e0ddfc6573aed1e4bd"
QUE2 = "Assignment1/Answers/practical/Que-2/"
IFT2019 = "deepaks4077/IFT6135"
IFT2019_LOG = "623aaae9bc3ce6b3178c3855186fee35a46a4c16"
IFT2019_NB = "c1a09f0d9262c39b52cd420b42311dd1433b403c"
DD2424 = "victorwegeborn/DD2424-Deep-Learning-in-Data-Science"
DD2424_COMMIT = "f7162378c85f59133c1ae75f5ae067c05bc1f777"


class AuthorsFileError(RuntimeError):
    """A downloaded source failed its checksum, or could not be decoded."""


@dataclass(frozen=True)
class Blob:
    """One file in an authors' repository, pinned by commit and SHA-256."""

    repo: str
    commit: str
    path: str
    sha256: str

    def url(self, template: str | None = None) -> str:
        template = template or os.environ.get("REPRO_AUTHORS_URL") or DEFAULT_URL
        return template.format(repo=self.repo, commit=self.commit, path=urllib.parse.quote(self.path))


@dataclass(frozen=True)
class AuthorsFile:
    """A file the book reads: where it comes from and how it is made from the source blobs.

    ``decode`` names a function of this module taking the list of blob contents (bytes) and
    returning the file's bytes; None means the file is the single blob, verbatim.
    ``columns``: name -> "str" | "int" | "float", for an empty frame when the file is missing.
    """

    blobs: tuple[Blob, ...]
    decode: str | None = None
    columns: dict = field(default_factory=dict)


def _ift2020(name: str, sha256: str, commit: str = IFT2020_HEAD) -> Blob:
    return Blob(IFT2020, commit, QUE2 + name, sha256)


_GRID_COLUMNS = dict(config_index="int", hidden_dims="str", lr="float", activation="str", seed="int",
                     batch_size="int", model_params="int", epoch="int", train_loss="float",
                     validation_loss="float", train_accuracy="float", validation_accuracy="float")
_SMALL_CNN_LOG = Blob(IFT2019, IFT2019_LOG, "experiments/default/log.txt",
                      "842f7f00d6af49a0089e15ac15594f79ac5190869210672b433c1c9aca276803")
_GRAD_DIFF = _ift2020("grad_diff.csv", "9dffc372494d86a27bf332b696ecb007859dd3763cb068002e5abe1a63a55e7e")

FILES: dict[str, dict[str, AuthorsFile]] = {
    "ift6135-2020": {
        "init_study_per_epoch.csv": AuthorsFile(
            (_ift2020("different_initialization.npy", "14abe3f11ca5f625f0f8c586130d0e405a263716e277ea8ae67df28d7c6a2160"),),
            "decode_init_study",
            dict(init="str", epoch="int", train_loss="float", validation_loss="float", train_accuracy="float",
                 validation_accuracy="float")),
        "grid_per_epoch.csv": AuthorsFile(
            (_ift2020("hyperparameter_search.npy", "a152a13d76d99c0a37b73aac6ac274fe96d6f909752260323d91b4965c189f6f"),),
            "decode_grid", _GRID_COLUMNS),
        "superseded_grid_batch512_47e8532_per_epoch.csv": AuthorsFile(
            (_ift2020("hyperparameter_search.npy", "27f0d1b79252dbb4065ca6b52b82a5d9b12faeed67c42d58cb067e65271dffe1",
                      IFT2020_47E8532),), "decode_grid", _GRID_COLUMNS),
        "hyperparams_full.csv": AuthorsFile(
            (_ift2020("hyperparams_full.csv", "7d6479bab5f0fd3a35e3e6d3545e0934c4c365fe1f415969454e365014aef7f8"),)),
        "hyperparams_best.csv": AuthorsFile(
            (_ift2020("hyperparams_best.csv", "d3db2af7957735bb2d1c22bb332a631f6121c54f251c97ded4b80698b9989f71"),)),
        "grad_diff.csv": AuthorsFile((_GRAD_DIFF,)),
        "grad_diff_labelled.csv": AuthorsFile((_GRAD_DIFF,), "decode_grad_diff_labelled"),
        "finite_gradient.csv": AuthorsFile(
            (_ift2020("finite_gradient.csv", "fb634f272f6d9328ea1cd956e15499ffed3cebf7d577495b9d0e3d4faaed7b08"),),
            columns={"N": "int", "max_difference": "float"}),
        "cnn_per_epoch.csv": AuthorsFile(
            (_ift2020("vanila_CNN.npy", "10daa08dac02b9b0d26b92bbe69255075c47f296108c04a9acd27a8d32cf5523"),
             _ift2020("CNN_with_reg.npy", "50bd4e5a0f19a3c040758e05d3d0e522b44f1c4a6fdbcd7c8bcb176b5ca59cb3"),
             _ift2020("vanilla_CNN.npy", "0e8def20a5ca9ce7349cb2d39aa776a6bc0a486db8d35ed2809b42aa52b0762c", IFT2020_2D504E8),
             _ift2020("CNN_with_reg.npy", "39d313c489540d7dc98f936c08bfaf93e56a9f3ee6606be8fc952655a9403a00", IFT2020_2D504E8)),
            "decode_cnn",
            dict(run="str", source_commit="str", epoch="int", train_loss="float", val_loss="float",
                 train_accuracy_pct="float", val_accuracy_pct="float")),
    },
    "ift6135-2019": {
        "small_cnn_2066_experiments_default_log.txt": AuthorsFile((_SMALL_CNN_LOG,)),
        "small_cnn_2066_log_parsed.csv": AuthorsFile(
            (_SMALL_CNN_LOG,), "decode_small_cnn_log",
            dict(run="int", epoch="int", last_batch_loss="float", epoch_seconds="float", val_acc="float",
                 test_acc="float")),
        "catsdogs_early_convnet_attempts_per_epoch.csv": AuthorsFile(
            (Blob(IFT2019, IFT2019_NB, "conv_nets experimentsc.ipynb",
                  "127a4a3a50cad3b54076aeaee440ba8f33f2b5b652b4f95351c7dfe803213d20"),), "decode_catsdogs_attempts",
            dict(attempt="str", epoch="int", train_loss="float", train_acc="float", val_loss="float",
                 val_acc="float")),
    },
    "dd2424-a3": {
        f"figures/{name}": AuthorsFile((Blob(DD2424, DD2424_COMMIT, f"lab3/figures/{name}", sha),))
        for name, sha in {
            "K=2_large_BN=False_accuracy.png": "19194a2d3cf6ddcf871f5ee3d16cc7a034383b6dd3696a60886d110f21c77627",
            "K=2_large_BN=False_loss.png": "738e1c940f559ba32e2f902b6532a7e376d2cad7971224fa2038a62c22934ea0",
            "K=2_large_BN=True_accuracy.png": "96ce6e80e76f1bd9686a77494c404f01ccec83b5829c1bd158dfa33eb7d0b30c",
            "K=2_large_BN=True_loss.png": "9f84c72e6a6ecac6b219af40bed856c708d4d4530175512061dd363101564b77",
            "K=2_medium_BN=False_accuracy.png": "948476a01a0333bd87cc33363f5ebe43a3617ce0940c20fc16df00cf1fc0a9d1",
            "K=2_medium_BN=False_loss.png": "8b38a9f8e20c46f25d11f8a1d6e725e22992102056f12bb39b21eb5b984b2d4c",
            "K=2_medium_BN=True_accuracy.png": "a75fbf93956daa2293f5faedc1306899ec5bb50b6dd82fa0868386e9bcbe81d3",
            "K=2_medium_BN=True_loss.png": "8d2ad01b26914b97f5ea21f42b7a3ce7083cb45586621664c0380d82229f9bfa",
            "K=2_small_BN=False_accuracy.png": "0a4e7f6be96dbbaf8edc0c9616006ad049d062d9b71c6732652880c73a011583",
            "K=2_small_BN=False_loss.png": "81c705990a7296f67feee1df018a2c959e621fd3bfda8e088080d04aaa9462b3",
            "K=2_small_BN=True_accuracy.png": "8a2ef00ad3a3dd799757a34145f479a5f03a3b0ee109fb1485a1167e8b9454fc",
            "K=2_small_BN=True_loss.png": "22454a3329d7a42d173c710b15ad249e06a9580dc4f4852b11737b8ef56c7f57",
            "K=3_bn_1.png": "ef1c0b5ebb6966a1a46e034b5c65657cd71c1e2c762c59b6f421d0c5a9481fb7",
            "K=3_bn_1_acc.png": "205560007b75b644674571816561654c6edf20de2eef006e441845189111bcb6",
            "K=3_bn_2.png": "3f2b5cf3e98af60435216c77bf95148df0677f0cdf96629189fda615886f1e37",
            "K=3_bn_2_acc.png": "1b5d4560663dc3b05e97931a1fb712608eda73d8dd8a7acda7e790d662fefa65",
            "K=3_bn_3.png": "b50b42f9b82960f996f6166d1f806e28beed0fd006b071a209ea0cf04a1b9219",
            "K=3_bn_3_acc.png": "51f259370355d19a57f96fb49ef54ce5c80ab69f09f77dec310adfc4a96684da",
            "fig1.png": "1f77f7493ad2b649c171a6aa478a09c77d105a525a0cd3b77e6b8dbedaf0a8d9",
            "loss_evolution_bn.png": "764f50b00b217b76351d1757ac0ce340cbdecbdf117bf38fd4b3e53415301b7c",
            "loss_evolution_no_bn.png": "24d8e91665e6b5b47e286d03a2ee21a659058ab913cfe0fe05523815f47e9b1e",
            "overfit_acc.png": "8c9b31679f88d8ded46e2b3c14bce826a0a37b88de0f50ebec0d4de8086d87d0",
            "overfit_cost.png": "534d1ed498a1f8dcbc6ee818bf654f51d8838c66f470ab9a85e341d99a800669",
        }.items()
    },
}


# ----------------------------------------------------------------------------- our own readers
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles the object arrays that ``np.save`` writes for dicts and lists, and nothing else:
    only numpy's array/dtype/scalar reconstructors may be named, so a blob cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise AuthorsFileError(f"refusing to unpickle {module}.{name} from an authors' .npy file")
        import numpy

        if hasattr(numpy, "_core"):  # numpy >= 2 moved numpy.core to numpy._core
            module = module.replace("numpy.core.", "numpy._core.")
        return super().find_class(module, name)


def read_npy_object(blob: bytes):
    """The Python object inside an ``.npy`` file of dtype object (``np.save`` of a dict or a list
    of dicts): format version 1.x/2.x header, then a pickle read with :class:`_NumpyOnlyUnpickler`.
    A 0-d array gives its single item; a 1-d array gives a list."""
    if blob[:6] != b"\x93NUMPY":
        raise AuthorsFileError("not an .npy file (bad magic)")
    major = blob[6]
    if major == 1:
        hlen, start = int.from_bytes(blob[8:10], "little"), 10
    elif major in (2, 3):
        hlen, start = int.from_bytes(blob[8:12], "little"), 12
    else:
        raise AuthorsFileError(f"unknown .npy format version {major}")
    header = blob[start:start + hlen].decode("latin1")
    if "'descr': '|O'" not in header:
        raise AuthorsFileError(f"expected an object array, got header {header.strip()}")
    array = _NumpyOnlyUnpickler(io.BytesIO(blob[start + hlen:])).load()
    return array.item() if array.ndim == 0 else list(array)


def _csv(header: list[str], rows) -> bytes:
    def cell(v):
        if v is None:
            return ""
        if isinstance(v, str):
            return v
        return repr(float(v)) if not isinstance(v, int) else str(v)
    return ("\r\n".join([",".join(header)] + [",".join(cell(v) for v in row) for row in rows]) + "\r\n").encode()  # as csv.writer


def decode_init_study(blobs: list[bytes]) -> bytes:
    runs = read_npy_object(blobs[0])[0]
    keys = ["train_loss", "validation_loss", "train_accuracy", "validation_accuracy"]
    rows = [[init, epoch + 1, *(runs[init][k][epoch] for k in keys)]
            for init in runs for epoch in range(len(runs[init]["train_loss"]))]
    return _csv(["init", "epoch", *keys], rows)


def decode_grid(blobs: list[bytes]) -> bytes:
    keys = ["train_loss", "validation_loss", "train_accuracy", "validation_accuracy"]
    rows = []
    for i, c in enumerate(read_npy_object(blobs[0])):
        dims = "x".join(str(d) for d in c["hidden_dims"])
        for epoch in range(len(c["train_loss"])):
            rows.append([i, dims, float(c["lr"]), c["activation"], int(c["seed"]), int(c["batch_size"]),
                         int(c["model_params"]), epoch + 1, *(c[k][epoch] for k in keys)])
    return _csv(["config_index", "hidden_dims", "lr", "activation", "seed", "batch_size", "model_params", "epoch",
                 *keys], rows)


def decode_cnn(blobs: list[bytes]) -> bytes:
    runs = [("vanilla", "3aa18db(HEAD)"), ("l2_wd0.01", "3aa18db(HEAD)"), ("vanilla_superseded", "2d504e8"),
            ("l2_superseded", "2d504e8")]
    rows = []
    for (run, commit), blob in zip(runs, blobs):
        d = read_npy_object(blob)
        for epoch in range(len(d["train_loss"])):
            rows.append([run, commit, epoch + 1, d["train_loss"][epoch], d["val_loss"][epoch],
                         *(d[k][epoch] if k in d else None for k in ("train_accuracy", "val_accuracy"))])
    return _csv(["run", "source_commit", "epoch", "train_loss", "val_loss", "train_accuracy_pct", "val_accuracy_pct"],
                rows)


GRAD_DIFF_N = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000, 50000, 100000, 500000)


def decode_grad_diff_labelled(blobs: list[bytes]) -> bytes:
    rows = [[i + 1, *(float(v) for v in line.split(","))]
            for i, line in enumerate(blobs[0].decode().split("\n")) if line.strip()]
    return _csv(["theta_index", *(f"N={n}" for n in GRAD_DIFF_N)], rows)


def decode_small_cnn_log(blobs: list[bytes]) -> bytes:
    """``experiments/default/log.txt``: one run per logger start; per epoch the last minibatch's
    loss and the seconds; ``Performance`` (validation) and ``Test performance`` accuracies are
    attached to the epoch just logged. Numbers are kept as printed."""
    rows, run = [], 0
    for line in blobs[0].decode().splitlines():
        if "Initialized logger" in line:
            run += 1
        elif m := re.match(r"Epoch (\d+) with loss: ([\d.]+) in ([\d.]+)", line):
            rows.append([run, m[1], m[2], m[3], "", ""])
        elif (m := re.match(r"(Test )?[Pp]erformance:\{'acc': tensor\(([\d.]+)\)\}", line)) and rows and rows[-1][0] == run:
            rows[-1][5 if m[1] else 4] = m[2]
    return _csv(["run", "epoch", "last_batch_loss", "epoch_seconds", "val_acc", "test_acc"],
                [[str(v) for v in r] for r in rows])


CATSDOGS_ATTEMPT_CELLS = {14: "attempt2_50ep", 18: "attempt3_100ep"}  # cells of the notebook at IFT2019_NB


def decode_catsdogs_attempts(blobs: list[bytes]) -> bytes:
    """The per-epoch lines the notebook printed while training (its stream outputs)."""
    nb = json.loads(blobs[0].decode())
    rows = []
    for index, attempt in CATSDOGS_ATTEMPT_CELLS.items():
        text = "".join("".join(o.get("text", "")) for o in nb["cells"][index].get("outputs", [])
                       if o.get("output_type") == "stream")
        pattern = (r"Epoch: (\d+)\s+-+\s+Training Loss: ([\d.e-]+), Accuracy: ([\d.e-]+)\s+"
                   r"Validation Loss: ([\d.e-]+), Accuracy: ([\d.e-]+)")
        rows += [[attempt, *m] for m in re.findall(pattern, text)]
    if not rows:
        raise AuthorsFileError("no training lines found in the notebook's outputs")
    return _csv(["attempt", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"], rows)


# ----------------------------------------------------------------------------- lookup
def search_dirs(chapter: str) -> list[Path]:
    """Where an offline copy of the authors' files may lie, first match wins."""
    dirs = []
    if os.environ.get("REPRO_REFERENCE_DIR"):
        dirs.append(Path(os.environ["REPRO_REFERENCE_DIR"]).expanduser() / chapter)
    dirs.append(PROJECT_ROOT.parent / "shared" / "reference" / chapter)
    return dirs


def cache_dir() -> Path:
    return Path(os.environ.get("REPRO_AUTHORS_DIR") or Path.home() / ".cache" / PROJECT / "authors").expanduser()


def fetch(url: str) -> bytes:
    """The bytes at ``url`` (https or file); a blocked network fails within 20 s."""
    with urllib.request.urlopen(url, timeout=20) as response:
        return response.read()


def spec(chapter: str, name: str) -> AuthorsFile:
    try:
        return FILES[chapter][name]
    except KeyError:
        known = ", ".join(sorted(FILES.get(chapter, {}))) or "none"
        raise KeyError(f"no authors' file {name!r} is known for chapter {chapter!r} (known: {known})") from None


def download(chapter: str, name: str) -> Path:
    """Fetch the source blobs, check their SHA-256, decode, and store the file in the cache."""
    entry = spec(chapter, name)
    contents = []
    for blob in entry.blobs:
        data = fetch(blob.url())
        digest = hashlib.sha256(data).hexdigest()
        if digest != blob.sha256:
            raise AuthorsFileError(f"{blob.repo}@{blob.commit[:7]}:{blob.path}: SHA-256 {digest} "
                                   f"differs from the pinned {blob.sha256}")
        contents.append(data)
    data = globals()[entry.decode](contents) if entry.decode else contents[0]
    target = cache_dir() / chapter / name
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


_FAILURES: dict[tuple[str, str], str] = {}


def locate(chapter: str, name: str) -> Path | None:
    """The authors' file on disk (offline copy, cache, or a fresh verified download), or None."""
    spec(chapter, name)
    for folder in search_dirs(chapter) + [cache_dir() / chapter]:
        if (folder / name).is_file():
            return folder / name
    if (chapter, name) in _FAILURES:
        return None
    if os.environ.get("REPRO_OFFLINE", "") not in ("", "0"):
        _FAILURES[(chapter, name)] = "REPRO_OFFLINE is set, so no download was tried"
        return None
    try:
        return download(chapter, name)
    except (OSError, AuthorsFileError, ValueError) as e:  # URLError is an OSError
        _FAILURES[(chapter, name)] = f"the download failed ({e})"
        return None


def unavailable_message(chapter: str, name: str) -> str:
    looked = ", ".join(str(d) for d in search_dirs(chapter) + [cache_dir() / chapter])
    why = _FAILURES.get((chapter, name), "it was not found")
    source = ", ".join(f"{b.repo}@{b.commit[:7]}:{b.path}" for b in spec(chapter, name).blobs)
    return (f"The authors' file {name} is not available ({why}; looked in {looked}; source: {source}). "
            f"The figures and tables below are drawn without the authors' curves; the chapter's own results "
            f"are unaffected. Put the file in one of those folders, or set REPRO_REFERENCE_DIR, to show them.")
