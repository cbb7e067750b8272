import gzip
import os

import numpy as np
import pytest
import torch

import repro
from repro import data
from repro.config import ParameterError


def write_idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_mnist(tmp_path):
    """60,000 + 10,000 fake images whose first pixel encodes their index (mod 256)."""
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem, n in (("train", 60_000), ("t10k", 10_000)):
        images = np.zeros((n, 28, 28), np.uint8)
        images[:, 0, 0] = np.arange(n) % 256
        images[:, 0, 1] = np.arange(n) // 256
        write_idx(raw / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(raw / f"{stem}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return tmp_path


def index_of(x):
    return (x[:, 0] * 255 + 0.5).long() + (x[:, 1] * 255 + 0.5).long() * 256


@pytest.mark.parametrize("split, sizes, first_valid", [
    ("50k/10k/10k", (50_000, 10_000, 10_000), 50_000),
    ("55k/5k/10k", (55_000, 5_000, 10_000), 0),
])
def test_named_splits_take_the_right_images(fake_mnist, split, sizes, first_valid):
    d = repro.load_mnist(split, data_dir=fake_mnist)
    assert (len(d.train), len(d.valid), len(d.test)) == sizes
    assert int(index_of(d.valid.x)[0]) == first_valid
    assert set(index_of(d.train.x).tolist()).isdisjoint(index_of(d.valid.x).tolist())


def test_60k_has_no_validation_and_random_holdout_is_seeded(fake_mnist):
    d = repro.load_mnist("60k/10k", data_dir=fake_mnist)
    assert d.valid is None and len(d.train) == 60_000
    a = repro.load_mnist("random-6000", data_dir=fake_mnist, split_seed=1)
    b = repro.load_mnist("random-6000", data_dir=fake_mnist, split_seed=1)
    c = repro.load_mnist("random-6000", data_dir=fake_mnist, split_seed=2)
    assert (len(a.train), len(a.valid)) == (54_000, 6_000)
    assert torch.equal(a.valid.y, b.valid.y) and not torch.equal(index_of(a.valid.x), index_of(c.valid.x))


def test_a_limit_keeps_the_first_images_of_each_named_split(fake_mnist):
    whole = repro.load_mnist("50k/10k/10k", data_dir=fake_mnist)
    cut = repro.load_mnist("50k/10k/10k", data_dir=fake_mnist, limit={"train": 30, "test": 5})
    assert cut.sizes() == {"train": 30, "valid": 10_000, "test": 5}
    assert torch.equal(cut.train.x, whole.train.x[:30])
    assert {k: len(v) for k, v in whole.limited({"train": 30, "test": 5}).items()} == cut.sizes()


def test_scalings():
    x = torch.tensor([0, 255], dtype=torch.uint8)
    assert data.scale_pixels(x, "unit").tolist() == [0.0, 1.0]
    assert data.scale_pixels(x, "symmetric").tolist() == [-1.0, 1.0]
    assert data.scale_pixels(x, "raw").tolist() == [0.0, 255.0]
    assert data.scale_pixels(x, "pkl").tolist() == [0.0, 0.99609375]  # mnist.pkl's x/256
    assert data.scale_pixels(x, "standard")[0].item() == pytest.approx(-0.1307 / 0.3081)


def test_bad_split_and_scaling_are_refused(fake_mnist):
    with pytest.raises(ParameterError, match="split"):
        repro.load_mnist("40k/20k", data_dir=fake_mnist)
    with pytest.raises(ParameterError, match="scaling"):
        repro.load_mnist("60k/10k", scaling="zscore", data_dir=fake_mnist)
    with pytest.raises(ParameterError, match="dataset"):
        repro.load_mnist("60k/10k", dataset="emnist", data_dir=fake_mnist)


def test_missing_data_names_folder_and_command(tmp_path):
    with pytest.raises(repro.MissingDataError) as e:
        repro.load_mnist(data_dir=tmp_path)
    assert str(tmp_path) in str(e.value) and "make data" in str(e.value)
    with pytest.raises(repro.MissingDataError, match="cifar-10-batches-py"):
        repro.load_cifar10(data_dir=tmp_path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "FASHION_SYSTEM_DIR", tmp_path / "nowhere")
    with pytest.raises(repro.MissingDataError, match="apt-get install dataset-fashion-mnist"):
        repro.load_mnist(dataset="fashion-mnist", data_dir=tmp_path)


def test_real_mnist_is_the_original(mnist_small):
    # Known facts of the original files: first training label 5, first test label 7.
    assert mnist_small.train.y[0].item() == 5 and mnist_small.test.y[0].item() == 7
    assert mnist_small.train.x.shape == (512, 784) and 0.0 <= mnist_small.train.x.min() <= mnist_small.train.x.max() <= 1.0
    full = repro.load_mnist("50k/10k/10k")
    assert full.sizes() == {"train": 50_000, "valid": 10_000, "test": 10_000}
    assert torch.bincount(full.test.y).tolist()[:3] == [980, 1135, 1032]


def test_real_cifar_pickles_are_read_directly():
    d = repro.load_cifar10(limit={"train": 1000, "valid": 100, "test": 100})
    assert d.train.x.shape == (1000, 3072) and len(d.valid) == 100
    assert abs(float(d.train.x.mean())) < 1e-5  # centred with the training mean


def test_repro_threads_override(monkeypatch):
    from repro.config import compute_threads
    monkeypatch.setenv("REPRO_THREADS", "1")
    assert compute_threads() == 1
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("REPRO_THREADS", bad)
        with pytest.raises(ParameterError, match="REPRO_THREADS"):
            compute_threads()
    monkeypatch.setenv("REPRO_THREADS", "3")
    assert compute_threads() == 3
    monkeypatch.delenv("REPRO_THREADS")
    assert compute_threads() == (os.cpu_count() or 1)  # unset: one thread per core


def test_check_looks_for_every_data_set_the_book_needs(tmp_path, capsys):
    """`repro.data check` (what `make data` asks) fails when Cats vs Dogs is missing, and says where each comes from."""
    assert set(data.check(tmp_path)) == {"MNIST", "CIFAR-10", "Cats vs Dogs"}
    assert data._main(["check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.count("MISSING") == 3 and "needed by ift6135-2019" in out and "Kaggle" in out
    for cls in ("Cat", "Dog"):
        (tmp_path / "catsdogs" / "trainset" / cls).mkdir(parents=True)
        (tmp_path / "catsdogs" / "trainset" / cls / "1.jpg").write_bytes(b"")
    (tmp_path / "catsdogs" / "testset" / "test").mkdir(parents=True)
    (tmp_path / "catsdogs" / "testset" / "test" / "1.jpg").write_bytes(b"")
    assert data.check(tmp_path)["Cats vs Dogs"] is None and data.check(tmp_path)["MNIST"] is not None
