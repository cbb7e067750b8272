import pandas as pd
import pytest
import torch

import repro
from repro import engine, models, optim, sweep


def toy_problem(n=512, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    w = torch.randn(20, 3, generator=g)
    return repro.Split(x, (x @ w).argmax(1))


def test_engine_learns_a_separable_problem_and_returns_a_tidy_history():
    torch.manual_seed(0)
    data = toy_problem()
    net = models.mlp((20, 32, 3)).initialize("glorot", 0)
    opt = optim.FamilyOptimizer(net.parameters(), 1, lr=0.5)
    h = repro.fit(net, data, opt, epochs=20, batch_size=64, evaluate_on={"train": data}, eval_at_start=True)
    assert list(h.columns) == ["member", "epoch", "step", "split", "loss", "accuracy", "seconds"]
    start, end = h.iloc[0], h.iloc[-1]
    assert start["loss"] > 0.9 and end["loss"] < 0.15 and end["accuracy"] > 0.97
    assert end["step"] == 20 * 8 and end["epoch"] == 20


def test_plain_module_and_torch_optimizer_work_too():
    data = toy_problem()
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(20, 32), torch.nn.ReLU(), torch.nn.Linear(32, 3))
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    h = repro.fit(net, data, opt, steps=100, batch_size=64, eval_every=50, evaluate_on={"train": data},
                  record_running_loss=True)
    assert set(h["split"]) == {"train", "train (running)"}
    assert h.query("split == 'train'")["accuracy"].iloc[-1] > 0.9


def test_batched_family_equals_members_trained_one_by_one():
    data = toy_problem()
    configs = [dict(dims=(20, 16, 8, 3), lr=lr, activation=act, init=init, seed=s, momentum=mu, weight_decay=wd, label=str(i))
               for i, (lr, act, init, s, mu, wd) in enumerate([(0.1, "relu", "glorot", 1, 0.0, 0.0),
                                                              (0.05, "tanh", "normal", 2, 0.9, 1e-3),
                                                              (0.2, "sigmoid", "glorot", 3, 0.5, 0.0)])]
    kw = dict(epochs=3, batch_size=32, shuffle=True, order_seed=7, dtype=torch.float64)
    together = sweep.train_family(configs, data, {"train": data}, **kw)
    for i, c in enumerate(configs):
        alone = sweep.train_family([c], data, {"train": data}, **kw)
        ours = together[together["member"] == i]
        assert ours["loss"].to_numpy() == pytest.approx(alone["loss"].to_numpy(), rel=1e-9, abs=1e-12)


def test_family_matches_torch_sgd_on_an_nn_module():
    data = toy_problem()
    fam = models.mlp((20, 16, 3), dtype=torch.float64).initialize("glorot", 5)
    seq = torch.nn.Sequential(torch.nn.Linear(20, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).double()
    with torch.no_grad():
        for lin, w, b in zip((seq[0], seq[2]), fam.weights, fam.biases):
            lin.weight.copy_(w[0].T)
            lin.bias.copy_(b[0, 0])
    x = repro.Split(data.x.double(), data.y)
    kw = dict(epochs=2, batch_size=50, shuffle=True, order_seed=3, evaluate_on={"train": x})
    h1 = repro.fit(fam, x, optim.FamilyOptimizer(fam.parameters(), 1, lr=0.1, momentum=0.9, weight_decay=1e-3), **kw)
    h2 = repro.fit(seq, x, torch.optim.SGD(seq.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3), **kw)
    assert h1["loss"].to_numpy() == pytest.approx(h2["loss"].to_numpy(), rel=1e-10)


def test_numpy_initialization_reproduces_numpy_stream():
    import numpy as np
    net = models.mlp((5, 4, 3), dtype=torch.float64).initialize("glorot", 250, rng="numpy")
    np.random.seed(250)
    w1 = np.random.uniform(-np.sqrt(6 / 9), np.sqrt(6 / 9), size=(5, 4))
    w2 = np.random.uniform(-np.sqrt(6 / 7), np.sqrt(6 / 7), size=(4, 3))
    assert np.array_equal(net.weights[0][0].detach().numpy(), w1) and np.array_equal(net.weights[1][0].detach().numpy(), w2)


def test_early_stopping_freezes_members_and_restores_their_best_weights():
    data = toy_problem(256)
    noisy = repro.Split(data.x, torch.randint(0, 3, (256,), generator=torch.Generator().manual_seed(1)))
    fam = models.MLPFamily((20, 64, 3), "relu", n_members=2).initialize("glorot", [0, 1])
    opt = optim.FamilyOptimizer(fam.parameters(), 2, lr=[0.5, 0.0])  # member 1 never improves
    h = repro.fit(fam, noisy, opt, epochs=200, batch_size=32, evaluate_on={"valid": data},
                  early_stopping={"split": "valid", "patience": 3})
    stopped = h.attrs["stopped_at_step"]
    assert stopped[1] is not None and stopped[1] <= 4 * 8
    assert h["step"].max() < 200 * 8
    best = repro.evaluate(fam, data)
    valid = h[h["split"] == "valid"]
    assert best.loc[0, "loss"] == pytest.approx(valid[valid["member"] == 0]["loss"].min(), rel=1e-5)


def test_on_step_sees_every_step_and_stops_training_when_it_returns_true():
    data = toy_problem(100)  # 4 steps per epoch at batch 32, the last of 4 images

    def run(on_step=None, steps=10):
        fam = models.MLPFamily((20, 16, 3), "relu", n_members=2).initialize("glorot", [0, 1])
        opt = optim.FamilyOptimizer(fam.parameters(), 2, lr=0.1)
        h = repro.fit(fam, data, opt, steps=steps, batch_size=32, evaluate_on={"train": data}, on_step=on_step)
        return fam, h.drop(columns="seconds")

    seen = []

    def look(step, model, x, y, logits, per_member):
        seen.append((step, len(x), tuple(logits.shape), tuple(per_member.shape), logits.requires_grad))

    plain, h_plain = run()
    looked, h_looked = run(look)
    assert seen == [(s, 4 if s % 4 == 0 else 32, (2, 4 if s % 4 == 0 else 32, 3), (2,), False) for s in range(1, 11)]
    pd.testing.assert_frame_equal(h_plain, h_looked, check_exact=True)  # a hook that returns None changes nothing
    assert all(torch.equal(a, b) for a, b in zip(plain.parameters(), looked.parameters()))

    calls = []
    stopped, h_stopped = run(lambda step, *_: calls.append(step) or step == 6)
    short, h_short = run(steps=6)
    assert calls == [1, 2, 3, 4, 5, 6]
    assert h_stopped["step"].tolist() == [4, 4, 6, 6]  # the epoch's evaluation, then a final one at the stop
    pd.testing.assert_frame_equal(h_stopped, h_short, check_exact=True)
    assert all(torch.equal(a, b) for a, b in zip(stopped.parameters(), short.parameters()))


def test_fit_refuses_bad_lengths():
    data = toy_problem(64)
    net = models.mlp((20, 3))
    opt = optim.FamilyOptimizer(net.parameters(), 1, lr=0.1)
    with pytest.raises(ValueError, match="> 0"):
        repro.fit(net, data, opt, epochs=0)
    with pytest.raises(ValueError, match="exactly one"):
        repro.fit(net, data, opt, epochs=1, steps=1)


def test_sweep_groups_by_shape_and_labels_configs():
    data = toy_problem(128)
    configs = [dict(dims=(20, h, 3), lr=lr, label=f"{h}-{lr}") for h in (4, 8) for lr in (0.1, 0.2)]
    assert sweep.group_configs(configs) == [[0, 1], [2, 3]]
    h = sweep.train_mlp_sweep(configs, data, {"train": data}, epochs=1, batch_size=64)
    assert sorted(h["config"].unique()) == ["4-0.1", "4-0.2", "8-0.1", "8-0.2"]
    assert isinstance(h, pd.DataFrame) and set(h["lr"]) == {0.1, 0.2}


def test_clipped_loss_only_changes_extreme_probabilities():
    logits = torch.tensor([[0.0, 0.0], [100.0, -100.0]])
    y = torch.tensor([0, 1])
    clipped = engine.clipped_cross_entropy(1e-6)(logits, y)
    assert clipped[0].item() == pytest.approx(torch.log(torch.tensor(2.0)).item())
    assert clipped[1].item() == pytest.approx(-torch.log(torch.tensor(1e-6, dtype=torch.float64)).item())


def test_per_member_repeats_a_number_and_checks_the_count():
    like = torch.zeros(2, dtype=torch.float32)
    assert torch.equal(optim.per_member(0.5, 3, "lr", like), torch.full((3,), 0.5))
    assert optim.per_member([1, 2], 2, "lr").dtype == torch.float64
    assert torch.equal(optim.per_member(torch.tensor([0.1, 0.2]), 2, "lr", like), torch.tensor([0.1, 0.2]))
    with pytest.raises(ValueError, match="lr: expected one value or 3 values"):
        optim.per_member([0.1, 0.2], 3, "lr")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_torch_rule_updates_large_parameters_block_by_block_with_the_same_bits(monkeypatch, dtype):
    """The block-by-block update (CPU) is the whole-tensor update: same operations, same bits."""
    g = torch.Generator().manual_seed(0)
    fam = models.MLPFamily((40, 30, 5), "relu", n_members=3, dtype=dtype).initialize("glorot", [0, 1, 2])
    raw = torch.randn(3, 17, 11, generator=g, dtype=dtype)  # member-first layout: blocks along members
    grads = [[torch.randn(p.shape, generator=g, dtype=dtype) for p in list(fam.parameters()) + [raw]] for _ in range(4)]
    finals = []
    for block_bytes in (1 << 30, 256):  # one block; blocks of 256 bytes
        monkeypatch.setattr(optim, "_BLOCK_BYTES", block_bytes)
        optim._block_plan.cache_clear()
        params = [p.detach().clone().requires_grad_() for p in list(fam.parameters()) + [raw]]
        opt = optim.FamilyOptimizer(params, 3, lr=[0.1, 0.05, 0.2], momentum=[0.9, 0.0, 0.5],
                                    weight_decay=[1e-3, 0.0, 1e-2], nesterov=True)
        for k, step in enumerate(grads):
            for p, grad in zip(params, step):
                p.grad = grad
            opt.step()
            if k == 1:
                opt.freeze([2])
        finals.append(params)
    assert len(optim._blocks(finals[1][0])) > 1 and len(optim._blocks(finals[1][-1])) > 1
    optim._block_plan.cache_clear()
    for a, b in zip(*finals):
        assert torch.equal(a, b)
