"""Library pieces added for ift6135-2019: image folders, batched augmentation, the VGG
builder, scheduler / early-stopping wiring in fit, extra recorded losses, the (out, in)
numpy weight layout, the numpy MNIST hold-out and the wrong-predictions gallery."""
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

import repro  # noqa: E402
from repro import augment, engine, images  # noqa: E402
from repro.chapters import ift6135_2019 as vgg  # noqa: E402
from repro.data import MissingDataError  # noqa: E402


# ----------------------------------------------------------------------------- image folders
def write_jpegs(folder, n, colour, size=16):
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = np.zeros((size, size, 3), dtype=np.uint8)
        img[:] = colour
        img[:, : i + 1] = 255  # make files differ
        Image.fromarray(img).save(folder / f"{i + 1}.jpg", quality=95)


@pytest.fixture
def catsdogs_tree(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache" / "results"))
    base = tmp_path / "data" / "catsdogs"
    write_jpegs(base / "trainset" / "Cat", 11, (200, 20, 20))
    write_jpegs(base / "trainset" / "Dog", 9, (20, 20, 200))
    write_jpegs(base / "testset" / "test", 4, (90, 90, 90))
    return tmp_path / "data"


def test_image_folder_decodes_once_in_imagefolder_order_and_caches(catsdogs_tree, monkeypatch):
    root = catsdogs_tree / "catsdogs" / "trainset"
    folder = images.read_image_folder(root)
    assert folder.images.dtype == torch.uint8 and folder.images.shape == (20, 3, 16, 16)
    assert folder.classes == ("Cat", "Dog")
    import torchvision
    reference = torchvision.datasets.ImageFolder(str(root))  # the order the authors' loader saw
    assert folder.names == [Path(path).relative_to(root).as_posix() for path, _ in reference.samples]
    assert folder.labels.tolist() == [label for _, label in reference.samples]
    assert folder.classes == tuple(reference.classes)
    assert int(folder.images[0, 0, 8, 12]) > 150 and int(folder.images[-1, 2, 8, 12]) > 150
    cached = list((catsdogs_tree / "catsdogs" / "decoded").glob("*.pt"))
    assert len(cached) == 1
    # A second read must not decode again.
    monkeypatch.setattr(images, "decode_images", lambda *a, **k: pytest.fail("decoded twice"))
    again = images.read_image_folder(root)
    assert torch.equal(again.images, folder.images) and again.names == folder.names


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(MissingDataError, match="not found in .*nowhere"):
        images.read_image_folder(tmp_path / "nowhere" / "catsdogs" / "trainset")
    empty = tmp_path / "data" / "catsdogs" / "trainset"
    empty.mkdir(parents=True)
    with pytest.raises(MissingDataError, match="it is empty"):
        images.read_image_folder(empty)
    (empty / "Cat").mkdir()
    with pytest.raises(MissingDataError, match="the folder is empty"):
        images.read_image_folder(empty)
    with pytest.raises(MissingDataError, match=f"not found in {tmp_path / 'missing'}"):
        images.load_catsdogs(data_dir=tmp_path / "missing")


def test_load_catsdogs_splits_like_the_authors(catsdogs_tree):
    s = images.load_catsdogs(0.85, split_seed=3, data_dir=catsdogs_tree)
    assert len(s.train) == math.ceil(0.85 * 20) and len(s.valid) == 20 - 17
    assert len(s.unlabelled) == 4 and s.classes == ("Cat", "Dog")
    assert sorted(torch.cat([s.train_index, s.valid_index]).tolist()) == list(range(20))
    assert s.train.x.dtype == torch.uint8
    again = images.load_catsdogs(0.85, split_seed=3, data_dir=catsdogs_tree, limit={"train": 5})
    assert torch.equal(again.valid_index, s.valid_index) and len(again.train) == 5
    with pytest.raises(repro.ParameterError):
        images.load_catsdogs(1.5, data_dir=catsdogs_tree)


# ----------------------------------------------------------------------------- augmentation
def batch(n=6, size=16, seed=0):
    return torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def test_augment_off_is_the_identity_and_colour_jitter_default_is_a_no_op():
    x = batch()
    off = augment.Augment(rotation=0, flip=False, crop_scale=None, jitter=0, grayscale=0)
    assert torch.equal(off(x, torch.Generator().manual_seed(0)), x.float())
    # ColorJitter() with default arguments (what the authors wrote) changes nothing.
    no_crop = augment.Augment(rotation=0, flip=False, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), grayscale=0)
    assert torch.allclose(no_crop(x, torch.Generator().manual_seed(0)), x.float(), atol=1e-3)


def test_augment_flip_rotation_crop_and_grayscale_do_what_they_say():
    x = batch()
    gen = torch.Generator().manual_seed(1)
    flip = augment.Augment(rotation=0, flip=True, crop_scale=None, grayscale=0)
    out = flip(x, gen)
    for i in range(len(x)):  # each image is either untouched or mirrored
        assert torch.allclose(out[i], x[i].float(), atol=1e-3) or torch.allclose(out[i], x[i].float().flip(-1), atol=1e-3)
    flips = augment.Augment(rotation=0, flip=True, crop_scale=None, grayscale=0)(batch(400, 4), gen)
    mirrored = sum(not torch.allclose(a, b.float(), atol=1e-3) for a, b in zip(flips, batch(400, 4)))
    assert 150 < mirrored < 250
    # A 90-degree rotation of a square image moves the corners (zeros fill outside).
    rot = augment.Augment(rotation=90, flip=False, crop_scale=None, grayscale=0)
    theta = rot.affine(1000, 16, 16, torch.Generator().manual_seed(0))
    angles = torch.atan2(theta[:, 1, 0], theta[:, 0, 0]) * 180 / math.pi
    assert angles.abs().max() <= 90 + 1e-4 and angles.min() < -80 and angles.max() > 80
    # Crop: the sampled area stays within the requested fraction (clipped at the border).
    crop = augment.Augment(rotation=0, flip=False, crop_scale=(0.8, 1.0), grayscale=0)
    theta = crop.affine(2000, 64, 64, torch.Generator().manual_seed(0))
    area = (theta[:, 0, 0] * theta[:, 1, 1]).abs()
    assert area.min() >= 0.8 * (3 / 4) ** 0.5 * 0.999 and area.max() <= 1.0 + 1e-6
    assert (theta[:, 0, 2].abs() <= 1 - theta[:, 0, 0].abs() + 1e-6).all()  # the crop stays inside
    gray = augment.Augment(rotation=0, flip=False, crop_scale=None, grayscale=1.0)(x, gen)
    assert torch.allclose(gray[:, 0], gray[:, 1]) and torch.allclose(gray[:, 1], gray[:, 2])


def test_augment_is_batched_seeded_and_keeps_the_pixel_range():
    x = batch(32, 64)
    aug = augment.Augment(jitter=0.4)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 255
    copy = augment.augmented_copy(aug, x, seed=5, batch_size=10)
    assert copy.dtype == torch.uint8 and copy.shape == x.shape


def test_fit_applies_the_batch_transform_on_training_batches_only():
    seen = []

    def spy(x, generator):
        seen.append(x.dtype)
        return x.float() * 0  # erase the inputs: the model cannot learn
    data = repro.Split(torch.randn(64, 5), torch.randint(0, 2, (64,)))
    net = torch.nn.Linear(5, 2)
    repro.fit(net, data, torch.optim.SGD(net.parameters(), lr=0.1), epochs=2, batch_size=16,
              batch_transform=spy, evaluate_on={"train": data})
    assert len(seen) == 8


# ----------------------------------------------------------------------------- VGG
def test_vgg_parameter_count_matches_the_report_and_the_built_model():
    assert vgg.vgg_parameter_count() == 57_208_706  # "about 57.2 M"
    with torch.device("meta"):
        full = vgg.vgg(xavier=False)
    assert repro.count_parameters(full) == 57_208_706
    for width in (1 / 8, 1 / 16, 0.3):
        net = vgg.vgg(width=width)
        assert repro.count_parameters(net) == vgg.vgg_parameter_count(width=width)
    net = vgg.vgg(width=1 / 16)
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    assert net(x).shape == (3, 2)
    table = repro.models.layer_table(net, (3, 64, 64))
    assert table["parameters"].sum() == vgg.vgg_parameter_count(width=1 / 16)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net) == 4
    assert sum(isinstance(m, torch.nn.Dropout) and m.p == 0.4 for m in net) == 2


def test_standardize_and_xavier_weights():
    s = vgg.Standardize()
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    expected = (1 - torch.tensor(vgg.IMAGENET_MEAN)) / torch.tensor(vgg.IMAGENET_STD)
    assert torch.allclose(s(x)[0, :, 0, 0], expected)
    torch.manual_seed(0)
    net = vgg.vgg(width=1 / 8)
    conv = net[1]
    bound = math.sqrt(6 / (conv.in_channels * 9 + conv.out_channels * 9))
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound


# ----------------------------------------------------------------------------- fit wiring
def plateau_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 10, generator=g)
    y = torch.randint(0, 2, (256,), generator=g)  # random labels: the validation loss plateaus
    return repro.Split(x[:192], y[:192]), repro.Split(x[192:], y[192:])


def test_reduce_lr_on_plateau_is_stepped_with_the_first_evaluated_split_each_epoch():
    train, valid = plateau_problem()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.05, patience=2)
    seen = []
    real_step = sched.step
    sched.step = lambda metric: (seen.append(metric), real_step(metric))
    h = repro.fit(net, train, opt, epochs=12, batch_size=32, scheduler=sched,
                  evaluate_on={"valid": valid, "train": train})
    valid_losses = h.query("split == 'valid'")["loss"].tolist()
    assert seen == pytest.approx(valid_losses)  # one step per epoch, on the first split
    assert opt.param_groups[0]["lr"] < 0.5 * 0.05 + 1e-12  # the plateau was detected


def test_early_stopping_stops_and_restores_the_best_validation_weights():
    train, valid = plateau_problem()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(10, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    h = repro.fit(net, train, opt, epochs=50, batch_size=32, evaluate_on={"valid": valid},
                  early_stopping={"split": "valid", "patience": 3, "restore_best": True}, extra_eval_losses={
                      "twice": engine.softmax_twice_cross_entropy})
    v = h.query("split == 'valid'")
    assert v["epoch"].max() < 50
    best = v["loss"].min()
    assert h.attrs["best_step"][0] == int(v.loc[v["loss"].idxmin(), "step"])
    assert repro.evaluate(net, valid)["loss"].iloc[0] == pytest.approx(best, rel=1e-6)
    assert set(h["split"]) == {"valid", "valid [twice]"}


def test_softmax_twice_is_squeezed_between_its_bounds():
    logits = torch.tensor([[50.0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [0.0] * 10, [-50.0] + [0.0] * 9])
    y = torch.tensor([0, 0, 0])
    loss = engine.softmax_twice_cross_entropy(logits, y)
    assert loss[0] == pytest.approx(-math.log(math.e / (math.e + 9)), abs=1e-6)
    assert loss[1] == pytest.approx(math.log(10), abs=1e-6)
    assert loss[2] < -math.log(1 / (1 + 9 * math.e)) + 1e-5
    assert repr(engine.softmax_twice_cross_entropy) == "softmax_twice_cross_entropy"


# ----------------------------------------------------------------------------- numpy layouts
def test_out_in_layout_reproduces_numpy_code_that_stores_w_as_out_by_in():
    net = repro.mlp((6, 5, 4, 3), dtype=torch.float64).initialize("glorot", 42, rng="numpy", layout="out_in")
    np.random.seed(42)
    for w, (fan_out, fan_in) in zip(net.weights, [(5, 6), (4, 5), (3, 4)]):
        r = np.sqrt(6.0 / (fan_out + fan_in))
        theirs = np.random.uniform(-r, r, size=(fan_out, fan_in))
        assert np.array_equal(w[0].detach().numpy().T, theirs)
    default = repro.mlp((6, 5, 3), dtype=torch.float64).initialize("glorot", 42, rng="numpy")
    assert default.weights[0].shape == (1, 6, 5)


def test_numpy_mnist_hold_out_matches_np_random_shuffle(mnist_small):
    d = repro.load_mnist("random-6000", split_seed=42, split_rng="numpy", limit={"train": 5, "valid": 5})
    idx = list(range(60000))
    np.random.seed(42)
    np.random.shuffle(idx)
    full = repro.load_mnist("60k/10k")
    assert torch.equal(d.valid.x, full.train.x[idx[:5]]) and torch.equal(d.train.x, full.train.x[idx[6000:6005]])


# ----------------------------------------------------------------------------- gallery
def test_wrong_predictions_gallery_shows_the_most_confident_mistakes():
    imgs = batch(6, 8)
    labels = torch.tensor([0, 0, 1, 1, 0, 1])
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.95, 0.05], [0.4, 0.6], [0.1, 0.9]])
    fig, table = images.wrong_predictions(imgs, labels, probs, ("Cat", "Dog"), n=5, ncols=3)
    assert table["index"].tolist() == [3, 1, 4]  # wrong ones, most confident first
    assert table["probability"].tolist() == pytest.approx([0.95, 0.8, 0.6])
    assert table["predicted"].tolist() == ["Cat", "Dog", "Dog"]
    assert len(fig.axes) == 3
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 2))
    p = repro.predict(net, imgs.float(), 4, softmax=True)
    assert p.shape == (6, 2) and torch.allclose(p.sum(1), torch.ones(6)) and net.training


def test_extra_eval_losses_equal_separate_evaluations_from_one_forward_pass():
    train, valid = plateau_problem()
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(10, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    h = repro.fit(net, train, torch.optim.SGD(net.parameters(), lr=0.1), epochs=1, batch_size=32,
                  evaluate_on={"valid": valid, "train": train}, eval_batch_size=50,
                  extra_eval_losses={"twice": engine.softmax_twice_cross_entropy})
    assert list(h["split"]) == ["valid", "train", "valid [twice]", "train [twice]"]
    for name, split in (("valid", valid), ("train", train)):
        alone = repro.evaluate(net, split, engine.softmax_twice_cross_entropy)
        row = h[h["split"] == f"{name} [twice]"].iloc[0]
        assert row["loss"] == pytest.approx(alone["loss"].iloc[0], rel=1e-6)
        assert row["accuracy"] == h[h["split"] == name]["accuracy"].iloc[0]


# ----------------------------------------------------------------------------- the chapter's claims
def test_input_blind_bounds_are_the_label_entropy_and_the_largest_class_share():
    entropy, top = vgg.input_blind_bounds(torch.tensor([0, 0, 1, 1]))
    assert entropy == pytest.approx(math.log(2)) and top == 0.5
    entropy, top = vgg.input_blind_bounds(torch.tensor([3, 3, 3, 7]))  # absent classes add nothing
    assert entropy == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))) and top == 0.75


def init_history(accuracy, epochs):
    """A tidy init-study history; ``accuracy(config, split, epoch)`` gives each row's accuracy."""
    import pandas as pd
    return pd.DataFrame([dict(config=c, split=s, epoch=float(e), accuracy=accuracy(c, s, e), loss=2.3 if c == "zero" else 0.3)
                         for c in ("zero", "normal", "glorot") for s in ("train", "valid", "test") for e in range(1, epochs + 1)])


def test_initialization_claims_read_fig1_and_epoch_60_and_say_what_a_short_run_cannot_show():
    labels = torch.arange(10).repeat(10)  # uniform digits: entropy ln 10, top share 0.1
    rises = lambda c, s, e: 0.1 if c == "zero" else min(0.99, 0.85 + (0.01 if c == "normal" else 0.012) * e)
    claims = {c.name: c for c in vgg.initialization_claims(init_history(rises, 60), labels, 60, ran_fig1=True,
                                                           ran_report=True, why_fig1="", why_report="", section="s1")}
    assert claims["zero_does_not_learn"].status == "fails"  # loss 2.3 < ln 10 = 2.303: below the input-blind bound
    assert claims["normal_glorot_learn"].status == "holds" and claims["normal_plateaus"].status == "holds"
    assert claims["glorot_keeps_improving"].status == "holds"  # 0.99 at epoch 60 against 0.97 at epoch 10
    assert claims["local_optimum"].status == "cannot be tested"
    short = {c.name: c for c in vgg.initialization_claims(init_history(rises, 1), labels, 1, ran_fig1=False,
                                                          ran_report=False, why_fig1="1 of 10", why_report="1 of 60",
                                                          section="s1")}
    assert short["glorot_keeps_improving"].status == "not run" and short["glorot_keeps_improving"].observed == ""
    assert short["normal_plateaus"].observed == ""  # epoch 4 = epoch 10 = 1: no gain to compare
    assert short["normal_glorot_learn"].status == "not run" and short["normal_glorot_learn"].why == "1 of 10"


def vgg_history(lr_by_epoch, valid_loss):
    import pandas as pd
    rows = []
    for e, (lr, loss) in enumerate(zip(lr_by_epoch, valid_loss), 1):
        rows += [dict(split="train (running)", epoch=float(e), loss=loss + 0.1, accuracy=0.8, lr=lr),
                 dict(split="valid (augmented)", epoch=float(e), loss=loss, accuracy=0.7 + e / 1000, lr=lr)]
    return pd.DataFrame(rows)


def test_lr_drop_checks_find_the_first_epoch_at_a_reduced_rate():
    losses = [1.0] * 100
    losses[62] = 0.5  # epoch 63, the first at the reduced rate: both losses fall
    checks, evidence = vgg.lr_drop_checks(vgg_history([0.01] * 62 + [0.0005] * 38, losses), "valid (augmented)")
    assert all(checks.values()) and evidence["first epoch at the reduced rate"] == 63
    checks, _ = vgg.lr_drop_checks(vgg_history([0.01] * 80 + [0.0005] * 20, losses), "valid (augmented)")
    assert not checks["first reduction within the scheduler's patience (10 epochs) of epoch 60"]
    checks, evidence = vgg.lr_drop_checks(vgg_history([0.01] * 5, [1.0] * 5), "valid (augmented)")
    assert checks == {"the learning rate is reduced": False} and evidence == {"epochs": 5}


def test_long_run_measures_the_fall_from_the_best_epoch_and_the_last_epoch_gaps():
    import pandas as pd
    h = pd.DataFrame([dict(split="valid", epoch=1.0, loss=0.2, accuracy=0.98), dict(split="valid", epoch=2.0, loss=0.3, accuracy=0.97),
                      dict(split="train (running)", epoch=2.0, loss=0.1, accuracy=0.975)])
    m = vgg.long_run(h, 97.1)
    assert m["fall"] == pytest.approx(1.0) and m["loss ratio"] == pytest.approx(3.0)
    assert m["accuracy gap"] == pytest.approx(0.5)
    assert m["fall allowed"] == pytest.approx(200 * math.sqrt(0.971 * 0.029 / 6000), abs=0.01)
