"""The hand-written k-layer batch-norm network of dd2424-a3 (repro.chapters.dd2424_a3)."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import repro
from repro.chapters import dd2424_a3 as bn_net


def toy(n=40, d=12, c=5, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=dtype)
    return x, (x[:, :c] + 0.5 * torch.randn(n, c, generator=g, dtype=dtype)).argmax(1)


def witness_gradients(model, x, y):
    """An independent forward pass, written here with plain torch ops, differentiated by autograd."""
    grads = []
    for k in range(model.n_members):
        ws = [w[k].detach().clone().requires_grad_(True) for w in model.weights]
        bs = [b[k].detach().clone().requires_grad_(True) for b in model.biases]
        a = x
        for l, (w, b) in enumerate(zip(ws, bs)):
            s = a @ w + b
            if l < len(ws) - 1:
                if model.batch_norm:
                    s = (s - s.mean(0)) / torch.sqrt(s.var(0, unbiased=False) + 1e-12)
                a = torch.relu(s)
        p = torch.softmax(s, dim=1)
        cost = -torch.log(p[torch.arange(len(y)), y]).mean() + model.lam[k] * sum((w ** 2).sum() for w in ws)
        grads.append(dict(zip([f"W{l}" for l in range(1, len(ws) + 1)] + [f"b{l}" for l in range(1, len(ws) + 1)],
                              torch.autograd.grad(cost, ws + bs))))
    return grads


@pytest.mark.parametrize("hidden", [(), (8,), (8, 6), (8, 6, 4)], ids=["1-layer", "2-layer", "3-layer", "4-layer"])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "no-bn"])
def test_hand_written_backward_equals_autograd(hidden, batch_norm):
    x, y = toy()
    model = bn_net.BNNetFamily((12, *hidden, 5), 3, batch_norm=batch_norm, lam=[0.0, 0.01, 0.3],
                               dtype=torch.float64).initialize("xavier", [1, 2, 3])
    with torch.no_grad():  # non-zero biases, so that every term of the backward pass is exercised
        for b in model.biases:
            b.normal_(0, 0.1)
    cost, grads = model.gradients(x, y)
    witness = witness_gradients(model, x, y)
    library_witness = bn_net.autograd_gradients(model, x, y)
    for k in range(3):
        for name, g in witness[k].items():
            assert torch.allclose(grads[name][k], g, rtol=1e-10, atol=1e-13), (k, name)
            assert torch.allclose(library_witness[name][k], g, rtol=1e-10, atol=1e-13), (k, name)


def test_bn_backward_is_the_course_formula_in_compact_form():
    g, s = torch.randn(2, 30, 4, dtype=torch.float64), torch.randn(2, 30, 4, dtype=torch.float64)
    mu, var = s.mean(1, keepdim=True), s.var(1, unbiased=False, keepdim=True)
    inv = (var + 1e-12) ** -0.5
    shat = (s - mu) * inv
    compact = inv * (g - g.mean(1, keepdim=True) - shat * (g * shat).mean(1, keepdim=True))
    assert torch.allclose(bn_net.bn_backward(g, s - mu, inv), compact, atol=1e-12)


def test_finite_differences_agree_with_the_hand_written_gradient():
    x, y = toy(n=30)
    model = bn_net.BNNetFamily((12, 7, 6, 5), 1, lam=0.01, dtype=torch.float64).initialize("xavier", 400)
    table = bn_net.gradient_check(model, x, y)
    assert list(table.index) == ["b1", "b2", "b3", "W1", "W2", "W3"]
    assert table.loc["W1", "elements"] == 12 * 7
    assert (table["max"] < 1e-4).all() and (table["max |hand - autograd|"] < 1e-14).all()
    part = bn_net.gradient_check(model, x, y, indices={"W1": range(0, 84, 10)})
    assert part.loc["W1", "elements"] == 9 and part.loc["W2", "elements"] == 42


def test_batch_norm_train_and_eval_modes():
    x, y = toy(n=60)
    model = bn_net.BNNetFamily((12, 6, 5), 1, eta=0.05, rho=0.5, dtype=torch.float64).initialize("xavier", 1)
    first, second = x[:20], x[20:40]

    def batch_stats(batch):
        s = batch @ model.W1[0] + model.b1[0]
        return s.mean(0), s.var(0, unbiased=False)

    # before any training step, eval mode normalizes with the evaluated batch's own statistics
    model.eval()
    assert torch.allclose(model(first), model.train()(first))
    # the cost and forward in train mode have no side effects
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.cost(first, y[:20])
    model.train()(first)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # the first training batch initializes the running averages ...
    m1, v1 = batch_stats(first)
    model.manual_step(first, y[:20])
    assert torch.allclose(model.mean1[0, 0], m1) and torch.allclose(model.var1[0, 0], v1)
    # ... later batches update them with alpha 0.99
    m2, v2 = batch_stats(second)
    model.manual_step(second, y[20:40])
    assert torch.allclose(model.mean1[0, 0], 0.99 * m1 + 0.01 * m2)
    assert torch.allclose(model.var1[0, 0], 0.99 * v1 + 0.01 * v2)
    # eval mode uses the running averages, train-mode forward the batch statistics
    third = x[40:]
    s = third @ model.W1[0] + model.b1[0]
    h = torch.relu((s - model.mean1[0]) / torch.sqrt(model.var1[0] + 1e-12))
    expected = h @ model.W2[0] + model.b2[0]
    assert torch.allclose(model.eval()(third)[0], expected)
    assert not torch.allclose(model.train()(third)[0], expected)


def test_momentum_update_and_eta_decay():
    x, y = toy(n=20)
    model = bn_net.BNNetFamily((12, 6, 5), 2, eta=[0.1, 0.02], rho=[0.9, 0.0], lam=[0.0, 0.1],
                               dtype=torch.float64).initialize("xavier", [3, 4])
    w0 = model.W2.clone()
    _, g1 = model.gradients(x, y)
    model.manual_step(x, y)
    assert torch.allclose(model.W2, w0 - torch.tensor([0.1, 0.02], dtype=torch.float64).view(2, 1, 1) * g1["W2"])
    w1 = model.W2.clone()
    v1 = model.vW2.clone()
    _, g2 = model.gradients(x, y)
    model.manual_step(x, y)
    v2 = torch.tensor([0.9, 0.0], dtype=torch.float64).view(2, 1, 1) * v1 + \
        torch.tensor([0.1, 0.02], dtype=torch.float64).view(2, 1, 1) * g2["W2"]
    assert torch.allclose(model.W2, w1 - v2)
    fresh = bn_net.BNNetFamily((12, 6, 5), 1, eta=0.1, dtype=torch.float64).initialize("xavier", 3)
    h = bn_net.train(fresh, repro.Split(x, y), epochs=3, batch_size=10, evaluate_on={"train": repro.Split(x, y)})
    assert float(fresh.eta[0]) == pytest.approx(0.1 * 0.99 ** 3)
    assert sorted(h["epoch"].unique()) == [0, 1, 2, 3]
    # the recorded cost adds lambda * sum ||W||^2 to the cross-entropy (lambda 0 here)
    assert np.allclose(h["cost"], h["loss"])


def test_batched_family_equals_members_trained_one_by_one():
    x, y = toy(n=60, d=12)
    data = repro.Split(x, y)
    configs = [(0.05, 1e-3, 0.7, 1), (0.3, 1e-5, 0.7, 2), (0.01, 0.0, 0.1, 3)]
    for batch_norm in (True, False):
        family = bn_net.BNNetFamily((12, 8, 6, 5), 3, batch_norm=batch_norm, eta=[c[0] for c in configs],
                                    lam=[c[1] for c in configs], rho=[c[2] for c in configs],
                                    dtype=torch.float64).initialize("xavier", [c[3] for c in configs])
        together = bn_net.train(family, data, epochs=3, batch_size=20, evaluate_on={"train": data})
        for k, (eta, lam, rho, seed) in enumerate(configs):
            alone_model = bn_net.BNNetFamily((12, 8, 6, 5), 1, batch_norm=batch_norm, eta=eta, lam=lam, rho=rho,
                                             dtype=torch.float64).initialize("xavier", seed)
            alone = bn_net.train(alone_model, data, epochs=3, batch_size=20, evaluate_on={"train": data})
            ours = together[together["member"] == k]
            assert np.allclose(ours["cost"], alone["cost"], rtol=1e-9, atol=1e-12)
            assert np.array_equal(ours["accuracy"].to_numpy(), alone["accuracy"].to_numpy())
            assert torch.allclose(family.W1[k], alone_model.W1[0], rtol=1e-9, atol=1e-12)


def test_search_trains_pairs_as_families_and_matches_a_single_run():
    x, y = toy(n=60, d=12)
    train, valid = repro.Split(x[:40], y[:40]), repro.Split(x[40:], y[40:])
    pairs = bn_net.sample_pairs(5, (-2, -0.5), (-5, -3), seed=1)
    result = bn_net.search(pairs, train, valid, dims=(12, 8, 5), epochs=2, rho=0.7, seed=400, batch_size=20,
                           dtype=torch.float64, family_size=2)
    assert len(result) == 5 and list(result.columns[:2]) == ["eta", "lambda"]
    single = bn_net.BNNetFamily((12, 8, 5), 1, eta=pairs["eta"][3], lam=pairs["lambda"][3], rho=0.7,
                                dtype=torch.float64).initialize("xavier", 400)
    h = bn_net.train(single, train, epochs=2, batch_size=20, evaluate_on={"valid": valid})
    assert result["valid_accuracy"][3] == h["accuracy"].iloc[-1]


def test_sampling_is_log_uniform_by_default_and_uniform_on_request():
    logu = bn_net.sample_pairs(2000, (-3, 0), (-6, -3), seed=0)
    assert logu["eta"].between(1e-3, 1).all() and logu["lambda"].between(1e-6, 1e-3).all()
    assert (logu["eta"] < 10 ** -1.5).mean() == pytest.approx(0.5, abs=0.05)  # half the draws below the mid-exponent
    uni = bn_net.sample_pairs(2000, (-3, 0), (-6, -3), log_uniform=False, seed=0)
    assert (uni["eta"] < 10 ** -1.5).mean() < 0.1


def test_numpy_initialization_reproduces_the_course_code_draws():
    model = bn_net.BNNetFamily((30, 7, 5), 2, dtype=torch.float64).initialize("xavier", 400)
    np.random.seed(400)
    w1 = np.random.normal(0, np.sqrt(2 / (7 + 30)), (7, 30))
    w2 = np.random.normal(0, np.sqrt(2 / (5 + 7)), (5, 7))
    assert np.array_equal(model.W1[1].numpy(), w1.T) and np.array_equal(model.W2[0].numpy(), w2.T)
    he = bn_net.BNNetFamily((30, 7, 5), 1, dtype=torch.float64).initialize("he", 400)
    assert np.allclose(he.W1[0].numpy(), w1.T * math.sqrt(2 / 30) / math.sqrt(2 / 37))
    assert bn_net.BNNetFamily((30, 7, 5)).initialize(0.001, 400).W1.std() == pytest.approx(0.001, rel=0.1)
    cut = model.keep_inputs(10)
    assert cut.dims == (10, 7, 5) and torch.equal(cut.W1, model.W1[:, :10]) and torch.equal(cut.W2, model.W2)


def test_global_softmax_shift_loses_rows_that_the_row_shift_keeps():
    model = bn_net.BNNetFamily((2, 3), 1, dtype=torch.float64)
    s = torch.tensor([[[0.0, 1.0, 2.0], [900.0, 0.0, 1.0]]], dtype=torch.float64)
    assert torch.isnan(model.softmax(s)[0, 0]).all()  # exp(0 - 900) underflows: 0/0
    model.softmax_shift = "row"
    assert torch.allclose(model.softmax(s).sum(2), torch.ones(1, 2, dtype=torch.float64))


def test_trace_records_a_divergence_and_stops():
    x, y = toy(n=100, d=12)
    model = bn_net.BNNetFamily((12, 10, 5), 1, batch_norm=False, eta=50.0, rho=0.9,
                               dtype=torch.float64).initialize(0.5, 1)
    steps = bn_net.trace(model, repro.Split(x, y), steps=200, batch_size=20)
    assert not math.isfinite(steps["cost"].iloc[-1]) and len(steps) < 200
    assert steps["step"].tolist() == list(range(1, len(steps) + 1))  # one row per step of fit's loop
    assert bn_net.first_nan_step(steps) == len(steps)  # stops right after the first non-finite weight
    assert {"max |score|", "score gap", "rows lost (0/0)", "|W1|"} <= set(steps.columns)


def test_batched_and_one_at_a_time_differences_agree_and_subsets_are_even():
    x, y = toy(n=30)
    model = bn_net.BNNetFamily((12, 7, 5), 1, lam=0.01, dtype=torch.float64).initialize("xavier", 400)
    batched = bn_net.relative_errors(model, x, y, "W1")
    looped = bn_net.relative_errors(model, x, y, "W1", batched=False)
    # the same differences up to rounding noise (about 1e-16 / h in the gradient)
    assert np.allclose(batched, looped, rtol=0, atol=1e-8) and len(batched) == 84 and batched.max() < 1e-6
    table = bn_net.gradient_check(model, x, y, max_elements=5)
    assert table["elements"].tolist() == [5, 5, 5, 5]
    with torch.no_grad():
        model.W2[0, 0, 0] = float("nan")
    assert model.finite_members().tolist() == [False]


def test_first_nan_step_and_its_words():
    frame = pd.DataFrame({"step": [1, 2, 3], "cost": [2.0, float("inf"), float("nan")], "weights finite": [True, True, False]})
    assert bn_net.first_step(frame, lambda f: f["cost"] == float("inf")) == 2
    assert bn_net.first_nan_step(frame) == 3 and bn_net.nan_outcome(frame) == "at step 3"
    finite = frame.assign(**{"weights finite": True})
    assert bn_net.first_nan_step(finite) == -1 and bn_net.nan_outcome(finite) == "none in 3 steps"


def test_reductions_name_every_cut_and_none_at_the_report_settings():
    reported = repro.report.load_reference("dd2424-a3")
    full = dict(limit=None, big_limit=None, search_pairs=300, search_epochs=(9, 14), final_epochs=20, twolayer_epochs=10)
    assert bn_net.reductions(full, reported) == []
    assert bn_net.reductions(full | {"search_epochs": (9, 13)}, reported) == ["300 pairs x 9/13 epochs per search"]
    smoke = dict(limit={"train": 500}, big_limit=None, search_pairs=4, search_epochs=(1, 1), final_epochs=1, twolayer_epochs=1)
    assert bn_net.reductions(smoke, reported) == ["image subsets", "4 pairs x 1/1 epochs per search", "1 final epoch(s)",
                                                  "1 two-layer epoch(s)"]


def test_headline_says_what_was_cut_and_hides_results_of_image_subsets():
    assert bn_net.headline("best accuracy 0.42", [], subsets=False) == "Best accuracy 0.42"
    assert bn_net.headline("best accuracy 0.42", ["3 final epoch(s)"], subsets=False) == \
        "Reduced run (3 final epoch(s)): best accuracy 0.42"
    assert bn_net.headline("best accuracy 0.42", ["image subsets"], subsets=True) == "Reduced run (image subsets)"
