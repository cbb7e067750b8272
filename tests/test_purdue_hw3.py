"""Library pieces of the purdue-hw3 chapter: handout optimizers (stateful and reset), label
shuffles (a true permutation and the numpy-on-torch bug), flatness interpolation, the two setups."""
import math
import warnings

import numpy as np
import pytest
import torch

import repro
from repro import models
from repro.chapters import purdue_hw3 as purdue
from repro.optim import FamilyOptimizer


def toy_family(m=2, seed=0, dims=(6, 5, 3)):
    return models.MLPFamily(dims, "tanh", n_members=m, dtype=torch.float64).initialize("glorot", list(range(seed, seed + m)))


def toy_batches(n_steps=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (8,), generator=g))
            for _ in range(n_steps)]


def run(model, opt, batches):
    for x, y in batches:
        logits = model(x)
        loss = sum(torch.nn.functional.cross_entropy(logits[k], y) for k in range(logits.shape[0]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return [p.detach().clone() for p in model.parameters()]


# ------------------------------------------------------------------ optimizers
@pytest.mark.parametrize("method", ["momentum", "nesterov"])
def test_reset_momentum_and_nesterov_are_exactly_sgd(method):
    batches = toy_batches()
    net = toy_family()
    reset = run(net, FamilyOptimizer(net.parameters(), 2, method, rule="handout", lr=0.1, reset_state=True), batches)
    net = toy_family()
    stateful = run(net, FamilyOptimizer(net.parameters(), 2, method, rule="handout", lr=0.1), batches)
    sgd_net = toy_family()
    sgd = run(sgd_net, FamilyOptimizer(sgd_net.parameters(), 2, "sgd", rule="handout", lr=0.1), batches)
    for a, b in zip(sgd, reset):
        assert torch.equal(a, b)
    assert any(not torch.allclose(a, b) for a, b in zip(sgd, stateful)), "with state, momentum must differ from SGD"


def test_reset_adam_steps_are_lr_times_c_of_t_times_sign_of_gradient():
    assert purdue.reset_adam_scale(1) == pytest.approx(1.0)
    assert purdue.reset_adam_scale(10) == pytest.approx(0.484, abs=1e-3)
    assert purdue.reset_adam_scale(100) == pytest.approx(0.976, abs=1e-3)
    w = torch.nn.Parameter(torch.zeros(1000, dtype=torch.float64))
    opt = FamilyOptimizer([w], None, "adam", rule="handout", lr=1e-4, eps=1e-5, reset_state=True)
    g = torch.Generator().manual_seed(0)
    for t in range(1, 13):
        grad = torch.randn(1000, generator=g, dtype=torch.float64).sign() * (1 + torch.rand(1000, generator=g)) * 10  # |g| >> eps
        before = w.detach().clone()
        w.grad = grad
        opt.step()
        step = before - w.detach()
        expected = 1e-4 * purdue.reset_adam_scale(t) * grad.sign()
        assert torch.allclose(step, expected, rtol=1e-4, atol=1e-12)


def test_stateful_adam_and_momentum_match_torch():
    batches = toy_batches(6)
    for ours, theirs in [
        (dict(method="adam", lr=0.01, eps=1e-7), lambda p: torch.optim.Adam(p, lr=0.01, eps=1e-7)),
        (dict(method="momentum", lr=0.05, rho=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9)),
        (dict(method="sgd", lr=0.05, weight_decay=0.3), lambda p: torch.optim.SGD(p, lr=0.05, weight_decay=0.3)),
    ]:
        a, b = toy_family(1), toy_family(1)
        method = ours.pop("method")
        pa = run(a, FamilyOptimizer(a.parameters(), 1, method, rule="handout", **ours), batches)
        pb = run(b, theirs(b.parameters()), batches)
        for x, y in zip(pa, pb):
            assert torch.allclose(x, y, rtol=1e-10, atol=1e-12), method


def test_stateful_nesterov_follows_the_handout_equations():
    # f(x) = 0.5 x^T A x: v <- rho v - lr grad f(x + rho v); x <- x + v (handout eqs. 6-7)
    a = torch.diag(torch.tensor([1.0, 10.0], dtype=torch.float64))
    x = torch.tensor([1.0, 1.0], dtype=torch.float64)
    v = torch.zeros(2, dtype=torch.float64)
    p = torch.nn.Parameter(x.clone())
    opt = FamilyOptimizer([p], None, "nesterov", rule="handout", lr=0.05, rho=0.9)
    for _ in range(20):
        v = 0.9 * v - 0.05 * a @ (x + 0.9 * v)
        x = x + v
        opt.zero_grad()
        (0.5 * p @ a @ p).backward()  # the stored parameter is the look-ahead point
        opt.step()
        assert torch.allclose(p.detach() - 0.9 * opt.state[p]["v"], x, atol=1e-12)


def test_family_members_with_their_own_lr_and_decay_equal_members_alone():
    batches = toy_batches()
    fam = toy_family(2)
    groups = [{"params": list(fam.weights), "weight_decay": [0.0, 0.5]}, {"params": list(fam.biases), "weight_decay": 0.0}]
    together = run(fam, FamilyOptimizer(groups, 2, "momentum", rule="handout", lr=[0.1, 0.02]), batches)
    for k, (lr, wd) in enumerate([(0.1, 0.0), (0.02, 0.5)]):
        one = toy_family(2).member(k)
        g1 = [{"params": list(one.weights), "weight_decay": wd}, {"params": list(one.biases), "weight_decay": 0.0}]
        alone = run(one, FamilyOptimizer(g1, 1, "momentum", rule="handout", lr=lr), batches)
        for t, a in zip(together, alone):
            assert torch.allclose(t[k:k + 1], a, rtol=1e-10, atol=1e-12)


def test_as_run_l2_decays_weights_by_lambda_over_784_and_never_biases():
    net = purdue.init_fan_in_uniform(models.MLPFamily(purdue.DIMS, "relu", n_members=2), [0, 1])
    before = [p.detach().clone() for p in net.parameters()]
    opt = purdue.make_optimizer(net, "as-run", "sgd", [1e-2, 1e-2], [0.0, 1.0])
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p, b in zip(net.weights, before[:3]):
        assert torch.equal(p[0], b[0])
        assert torch.allclose(p[1], b[1] * (1 - 1e-2 * 1.0 / 784))
    for p, b in zip(net.biases, before[3:]):
        assert torch.equal(p, b)
    assert purdue.make_optimizer(net, "as-run", "adam", [1e-4] * 2, [0.0, 1.0]).param_groups[0]["weight_decay"].tolist() == [0.0, 0.0]


# ------------------------------------------------------------------ labels
def test_permutation_shuffle_keeps_every_label_once():
    y = torch.randint(0, 10, (5000,), generator=torch.Generator().manual_seed(0))
    idx = purdue.shuffle_index(len(y), "permutation", seed=3)
    assert torch.equal(idx.sort().values, torch.arange(len(y)))
    shuffled = purdue.shuffle_labels(y, "permutation", seed=3)
    assert torch.equal(torch.bincount(shuffled, minlength=10), torch.bincount(y, minlength=10))
    assert (shuffled == y).double().mean() < 0.15


def test_numpy_shuffle_of_a_torch_tensor_is_the_documented_draw_with_replacement():
    n = 3000
    real = torch.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.RandomState(7).shuffle(real)  # the bug itself
    assert real[0] == 0 and bool((real <= torch.arange(n)).all())  # t[i] = t_original[j_i], j_i <= i
    assert real.unique().numel() < 0.6 * n  # about half the labels are gone
    # the same draws j_i, used as swaps on a numpy array, give numpy's true permutation
    perm = np.arange(n)
    np.random.RandomState(7).shuffle(perm)
    replay = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(real[i])
        replay[i], replay[j] = replay[j], replay[i]
    assert np.array_equal(replay, perm)


def test_our_numpy_on_torch_shuffle_duplicates_and_drops_labels_like_the_bug():
    n = 60_000
    idx = purdue.shuffle_index(n, "numpy-on-torch", seed=0)
    assert idx[0] == 0 and bool((idx <= torch.arange(n)).all())
    real = torch.arange(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        np.random.RandomState(0).shuffle(real)
    ours_left, real_left = idx.unique().numel() / n, real.unique().numel() / n
    assert ours_left == pytest.approx(0.5, abs=0.01) and real_left == pytest.approx(0.5, abs=0.01)
    # position k survives with probability 1 - k/n, in both
    for lo, hi in [(0, n // 4), (n // 2, 3 * n // 4)]:
        expected = 1 - (lo + hi) / 2 / n
        for s in (idx, real):
            kept = torch.isin(torch.arange(lo, hi), s).double().mean()
            assert float(kept) == pytest.approx(expected, abs=0.02)
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(1))
    summary = purdue.shuffle_summary(y, idx)
    assert summary["original labels still present"] == pytest.approx(0.5, abs=0.01)
    assert summary["largest class-count change (%)"] > 0


# ------------------------------------------------------------------ flatness
def test_line_scan_interpolates_between_snapshots_and_restores_the_model():
    data = repro.Split(torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,)))
    net = toy_family(2)
    start = purdue.snapshot(net)
    run(net, FamilyOptimizer(net.parameters(), 2, "sgd", rule="handout", lr=0.5), toy_batches(10))
    end = purdue.snapshot(net)
    mid = purdue.interpolate(start, end, 0.5)
    for k in start:
        assert torch.allclose(mid[k], (start[k] + end[k]) / 2)
        assert torch.equal(purdue.interpolate(start, end, 0.0)[k], start[k])
    scan = purdue.line_scan(net, start, end, [0.0, 1.0, 1.5], {"d": data})
    for alpha, snap in ((0.0, start), (1.0, end)):
        ref = toy_family(2)
        purdue.load_parameters(ref, snap)
        expected = repro.evaluate(ref, data)
        got = scan[scan["alpha"] == alpha].sort_values("member")
        assert np.allclose(got["loss"], expected["loss"]) and np.allclose(got["accuracy"], expected["accuracy"])
    assert set(scan["member"]) == {0, 1} and np.allclose(scan["error_pct"], 100 * (1 - scan["accuracy"]))
    for k, p in purdue.snapshot(net).items():
        assert torch.equal(p, end[k])


# ------------------------------------------------------------------ the two setups
def test_fan_in_uniform_init_and_the_recorded_loss():
    net = purdue.init_fan_in_uniform(models.MLPFamily(purdue.DIMS, "relu", n_members=2), [0, 1])
    for w, b in zip(net.weights, net.biases):
        bound = 1 / math.sqrt(w.shape[1])
        assert w.abs().max() <= bound and b.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert not torch.equal(net.weights[0][0], net.weights[0][1])
    logits = torch.tensor([[0.0, 0.0, 0.0], [100.0, -100.0, 0.0]], requires_grad=True)
    y = torch.tensor([1, 1])
    value = purdue.training_loss(logits, y)
    assert value[0].item() == pytest.approx(math.log(3), rel=1e-6)
    assert value[1].item() == pytest.approx(-math.log(1e-14), rel=1e-6)  # clipped, as printed
    value.sum().backward()
    ce_grad = torch.autograd.grad(torch.nn.functional.cross_entropy(logits, y, reduction="sum"), logits)[0]
    assert torch.allclose(logits.grad, ce_grad)  # trained with the unclipped gradient


def test_train_setup_family_one_step_per_epoch_as_run_and_full_epochs_intended():
    g = torch.Generator().manual_seed(0)
    train = repro.Split(torch.rand(300, 784, generator=g) * 255, torch.randint(0, 10, (300,), generator=g))
    test = repro.Split(torch.rand(50, 784, generator=g) * 255, torch.randint(0, 10, (50,), generator=g))
    configs = [dict(lr=1e-4, l2=0.0, seed=0, label="a"), dict(lr=1e-4, l2=1.0, seed=1, label="b")]
    h = purdue.train_setup_family(configs, train, {"train": train, "test": test}, setup="as-run", batch_size=100,
                                  epochs=4, curve_every=2)
    assert h["step"].max() == 4 and set(h["split"]) == {"train", "test", "minibatch"}
    assert sorted(h.query("split == 'test' and config == 'a'")["step"]) == [0, 2, 4]
    assert (h.query("config == 'b'")["penalty"] > 0).all() and (h.query("config == 'a'")["penalty"] == 0).all()
    finals = purdue.final_numbers(h)
    assert list(finals.index.get_level_values("config")) == ["a", "b"]
    hi = purdue.train_setup_family(configs, train, {"train": train, "test": test}, setup="intended", batch_size=100,
                                   epochs=2, curve_every=1)
    assert hi["step"].max() == 6 and hi["epoch"].max() == 2 and "minibatch" not in set(hi["split"])
    assert purdue.final_numbers(hi).loc[("intended", "a"), "epochs"] == 2


@pytest.mark.parametrize("method", ["sgd", "momentum", "nesterov", "adam"])
def test_handout_rule_freezes_members_and_lets_the_others_train_as_before(method):
    batches = toy_batches(6)
    fam, ref = toy_family(2), toy_family(2)
    opt = FamilyOptimizer(fam.parameters(), 2, method, rule="handout", lr=[0.1, 0.05])
    ref_opt = FamilyOptimizer(ref.parameters(), 2, method, rule="handout", lr=[0.1, 0.05])
    run(fam, opt, batches[:2])
    run(ref, ref_opt, batches[:2])
    frozen = [p.detach()[1].clone() for p in fam.parameters()]
    opt.freeze([1])
    after, moving = run(fam, opt, batches[2:]), run(ref, ref_opt, batches[2:])
    for a, b, f in zip(after, moving, frozen):
        assert torch.equal(a[1], f) and torch.equal(a[0], b[0])
