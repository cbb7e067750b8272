"""repro.chapters.sharif_hw2 (sharif-hw2): monitor metrics, event files written and read back."""
import math

import numpy as np
import pandas as pd
import pytest
import torch

import repro
from repro import sweep
from repro.chapters import sharif_hw2 as tb


def toy(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 12, generator=g)
    return repro.Split(x, (x[:, :3].sum(1) * 3).long().clamp(max=5))


def test_saturation_counts_activations_near_0_or_1():
    a = torch.tensor([[0.001, 0.5, 0.999, 0.3], [0.002, 0.5, 0.9995, 0.7]])
    s = tb.saturation(a, eps=0.01)
    assert s["saturated"] == pytest.approx(0.5)
    assert s["saturated_units"] == pytest.approx(0.5)  # units 0 and 2 on every image
    assert 0 < s["slope"] < 1
    assert tb.saturation(torch.full((3, 4), 0.5))["slope"] == pytest.approx(1.0)


def test_weight_change_is_relative_to_the_initial_norm_and_nan_from_zero():
    w0 = torch.ones(4, 4)
    c = tb.weight_change(w0 * 1.1, w0)
    assert c["relative_change"] == pytest.approx(0.1) and c["change"] == pytest.approx(0.4)
    z = tb.weight_change(torch.ones(2, 2), torch.zeros(2, 2))
    assert math.isnan(z["relative_change"]) and z["change"] == pytest.approx(2.0)


def test_histogram_tags_follow_the_report():
    assert tb.histogram_tags(3) == ["layer_1/weight_hist", "layer_1/bias_hist", "layer_1/act1_hist",
                                    "layer_2/weight_hist", "layer_2/bias_hist", "layer_2/act2_hist",
                                    "layer_3/weight_hist", "layer_3/bias_hist"]


def test_train_family_draws_normal_biases_only_when_asked():
    data = toy()
    cfg = [dict(dims=(12, 8, 6), activation="sigmoid", init="normal", normal_std=0.5, lr=0.0, seed=1)]
    seen = {}
    sweep.train_family(cfg, data, {}, epochs=None, steps=1, batch_size=50, bias="normal",
                       on_start=lambda m: seen.update(b=m.biases[0].detach().clone()))
    assert seen["b"].abs().sum() > 0
    sweep.train_family(cfg, data, {}, epochs=None, steps=1, batch_size=50,
                       on_start=lambda m: seen.update(b=m.biases[0].detach().clone()))
    assert seen["b"].abs().sum() == 0


@pytest.fixture(scope="module")
def monitored():
    data = toy()
    cfg = [dict(dims=(12, 8, 7, 6), activation="sigmoid", init=i, normal_std=s, lr=0.5, seed=0, label=l)
           for i, s, l in (("zero", 1.0, "zero"), ("normal", 0.1, "small"), ("normal", 3.0, "large"))]
    return tb.train_monitored(cfg, data, {"train": data, "test": data.head(100)}, settings=None, experiment="t",
                              steps=30, batch_size=40, eval_every=10, probe=data.x[:64], bins=20)


def test_monitor_records_step_zero_and_every_evaluation(monitored):
    m = monitored.metrics
    assert sorted(m["step"].unique()) == [0, 10, 20, 30]
    start = m[m["step"] == 0]
    assert (start["change"] == 0).all()
    # a large initialization saturates the sigmoid layers, a small one does not
    sat = start.set_index(["config", "layer"])["saturated"]
    assert sat["large", "layer_1"] > 0.3 > sat["small", "layer_1"]
    assert set(monitored.final["split"]) == {"train", "test"}
    assert len({(h["member"], h["step"], h["tag"]) for h in monitored.histograms}) == 3 * 4 * 8


def test_event_files_round_trip_with_the_reports_tags(monitored, tmp_path):
    tb.write_events(tmp_path / "tb", monitored)
    tb.write_events(tmp_path / "tb", monitored)  # rewriting replaces, never duplicates
    assert len(list((tmp_path / "tb" / "small").glob("events.out.tfevents.*"))) == 1
    assert (tmp_path / "tb" / ".gitignore").read_text() == "*\n"  # event files are never committed
    scalars = tb.read_scalars(tmp_path / "tb")
    assert set(scalars["run"]) == {"zero", "small", "large"}
    assert {"S_Loss/train_loss", "S_Loss_1/test_loss", "S_Loss/train_minibatch_loss"} <= set(scalars["tag"])
    ours = monitored.history.query("member == 1 and split == 'test'").set_index("step")["loss"]
    back = scalars.query("run == 'small' and tag == 'S_Loss_1/test_loss'").set_index("step")["value"]
    pd.testing.assert_series_equal(back.sort_index(), ours.sort_index(), check_names=False, rtol=1e-6)
    hist = tb.read_histograms(tmp_path / "tb")
    assert set(hist["tag"]) == set(tb.histogram_tags(3))
    counts = hist.groupby(["run", "tag", "step"]).agg(count=("count", "sum"), num=("num", "first"))
    assert (counts["count"] == counts["num"]).all()  # every value lands in a bucket
    grid = tb.density_grid(hist, bins=15)
    assert np.allclose(grid.groupby(["run", "tag", "step"])["share"].sum(), 1.0)


def test_final_evaluation_agrees_with_the_engine(monitored):
    last = monitored.history.query("step == 30 and split in ['train', 'test']")  # the same model, by fit's evaluation
    final = monitored.final.merge(last, on=["member", "split"], suffixes=("", "_fit"))
    assert len(final) == 6
    assert np.allclose(final["loss"], final["loss_fit"], atol=1e-6) and (final["accuracy"] == final["accuracy_fit"]).all()
    assert (final["loss_sd"] > 0).all() and (final["images"] == final["split"].map({"train": 400, "test": 100})).all()


def test_predict_gives_a_family_s_logits_in_eval_mode_and_restores_the_mode():
    data = toy()
    model = repro.models.MLPFamily((12, 5, 6), "sigmoid", 2).initialize("normal", [0, 1], normal_std=0.5)
    logits = repro.predict(model, data.x, 150)
    assert logits.shape == (2, 400, 6) and torch.allclose(logits, model(data.x), atol=1e-6) and model.training
    probs = repro.predict(model, data.x, 150, softmax=True)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 400)) and not probs.requires_grad


def test_a_histogram_of_equal_values_is_one_spike(tmp_path, monitored):
    tb.write_events(tmp_path / "tb", monitored)
    hist = tb.read_histograms(tmp_path / "tb")
    zero_bias = hist[(hist["run"] == "zero") & (hist["tag"] == "layer_1/bias_hist") & (hist["step"] == 0)]
    grid = tb.density_grid(zero_bias, bins=9)
    assert sorted(grid["share"].round(9).unique()) == [0.0, 1.0]


def test_figures_draw_without_warnings(monitored, tmp_path):
    import warnings

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tb.write_events(tmp_path / "tb", monitored)
    grid = tb.density_grid(tb.read_histograms(tmp_path / "tb"), bins=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = tb.heatmaps(grid, [(r, "layer_1/act1_hist") for r in ("zero", "small", "large")], ncols=2)
        g = tb.ridge(grid, "small", "layer_1/act1_hist")
    assert len(fig.axes) >= 3 and len(g.axes.flat) == 4
    plt.close("all")


def test_spread_tolerance_adds_the_sampling_variance_to_a_draw_minus_a_mean():
    seeds = pd.Series([0.90, 0.92, 0.94])  # sd 0.02
    tol = tb.spread_tolerance(seeds, 0.0003, "batch 10")
    assert tol.source == "seed spread" and "3 seeds at batch 10" in tol.basis
    assert tol.value == pytest.approx(2 * round(math.sqrt(0.02 ** 2 * (1 + 1 / 3) + 0.0003), 4))
    one = tb.spread_tolerance(pd.Series([0.9]), 0.0004, "batch 10")  # one seed: the sampling error alone
    assert one.source == "numerical bound" and one.value == pytest.approx(0.04)


def test_verdict_line_counts_the_verdicts_present():
    rows = [repro.compare("e", q, 1.0, ours, 0.1) for q, ours in (("a", 1.0), ("b", 1.05), ("c", 1.15), ("d", 3.0))]
    assert tb.verdict_line(rows) == "2 match, 1 close, 1 differs"
    assert tb.verdict_line([]) == "none"


def test_an_early_stopped_family_follows_the_full_length_run_until_each_member_stops():
    # sharif-hw2 section 5 trains the lr-2 family twice and draws only the full-length curves
    # beside the early-stopping run's extent: that needs the two runs to coincide until a stop.
    train, valid = toy(200, seed=1), toy(200, seed=2)
    cfg = [dict(dims=(12, 16, 6), activation="sigmoid", init="normal", normal_std=s, lr=2.0, seed=0, label=l)
           for s, l in ((0.1, "small"), (3.0, "large"))]
    common = dict(settings=None, experiment="t", steps=200, batch_size=20, eval_every=5, histograms=False)
    stopped = tb.train_monitored(cfg, train, {"valid": valid}, early_stopping={"split": "valid", "patience": 2}, **common)
    full = tb.train_monitored(cfg, train, {"valid": valid}, **common)
    assert any(s is not None and s < 200 for s in stopped.stopped_at)  # the test needs a member that stopped early
    for k, label in enumerate(stopped.labels):
        end = stopped.stopped_at[k] or int(stopped.history["step"].max())
        curve = lambda run: run.history[(run.history["member"] == k) & (run.history["split"] == "valid")
                                        & (run.history["step"] <= end)].set_index("step")["loss"]
        pd.testing.assert_series_equal(curve(stopped), curve(full))
