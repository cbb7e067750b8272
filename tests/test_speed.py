"""Issue 8 (speed): the benchmark script, the optimizer's cached flags, an interrupted sweep.

Nothing here is timed: the benchmark runs at a tiny size and only its output is checked.
"""
import importlib.util
import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

import repro
from repro import config, models, optim, sweep

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    spec = importlib.util.spec_from_file_location("bench", ROOT / "bench" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def toy_problem(n=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=g)
    return repro.Split(x, (x @ torch.randn(20, 3, generator=g)).argmax(1))


def test_flop_count_is_forward_plus_both_backward_products_except_the_input_gradient():
    bench = load_bench()
    # layer 1 (3x4): forward + weight gradient; layer 2 (4x2): forward + weight + input gradient
    assert bench.mlp_flops((3, 4, 2), batch=5) == 2 * 5 * (3 * 4 * 2 + 4 * 2 * 3)
    assert bench.mlp_flops((3, 4, 2), batch=5, members=7) == 7 * bench.mlp_flops((3, 4, 2), batch=5)


def test_benchmark_prints_every_figure_and_records_the_machine(tmp_path, capsys):
    bench = load_bench()
    out = tmp_path / "results.json"
    out.write_text(json.dumps({"cuda": {"kept": True}}))  # a GPU run recorded earlier stays beside
    bench.main(["--device", "cpu", "--steps", "0.01", "--models", "2", "--repeats", "1", "--peak-size", "128",
                "--cnn-variants", "default,channels_last", "--out", str(out)])
    printed = capsys.readouterr().out.splitlines()
    for start in ("matmul peak: ", "engine vs naive loop: ", "batched sweep vs naive per-model loop: ",
                  "batched sweep vs engine per-model loop: ", "batched sweep: ", "MLP training: ", "float64 family: ",
                  "float64 grid family: ", "CNN ift6135-2020 (763,094 parameters", "CNN ift6135-2019 (570,436 parameters"):
        assert sum(line.startswith(start) for line in printed) == 1, start
    assert "float64" in next(line for line in printed if line.startswith("matmul peak: "))
    assert all("channels-last" in line for line in printed if line.startswith("CNN "))
    assert any(line.startswith("batched sweep vs naive per-model loop: ") and "x (2 models)" in line for line in printed)
    assert any("% of measured matmul peak" in line for line in printed)
    saved = json.loads(out.read_text())
    assert saved["cuda"] == {"kept": True}
    run = saved["cpu"]
    assert {"cores", "torch_threads", "device", "device_name"} <= set(run["machine"])
    assert run["machine"]["device"] == "cpu" and run["machine"]["torch_threads"] == torch.get_num_threads()
    assert all(math.isfinite(v) and v > 0 for v in run["figures"].values())
    assert run["sweep"]["models"] == 2 and run["lines"] == printed[:len(run["lines"])]


def test_family_optimizer_notices_momentum_and_weight_decay_changed_after_construction():
    data = toy_problem()
    x, y = data.x.double(), data.y
    fam = models.mlp((20, 8, 3), dtype=torch.float64).initialize("glorot", 1)
    seq = torch.nn.Sequential(torch.nn.Linear(20, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3)).double()
    with torch.no_grad():
        for lin, w, b in zip((seq[0], seq[2]), fam.weights, fam.biases):
            lin.weight.copy_(w[0].T)
            lin.bias.copy_(b[0, 0])
    ours, ref = optim.FamilyOptimizer(fam.parameters(), 1, lr=0.1), torch.optim.SGD(seq.parameters(), lr=0.1)

    def step():
        for model, opt in ((fam, ours), (seq, ref)):
            opt.zero_grad()
            logits = model(x)
            torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y).backward()
            opt.step()

    step()
    ours.param_groups[0]["momentum"].fill_(0.9)  # changed in place
    ref.param_groups[0]["momentum"] = 0.9
    step()
    step()
    ours.param_groups[0]["weight_decay"] = torch.full((1,), 0.01, dtype=torch.float64)  # replaced
    ref.param_groups[0]["weight_decay"] = 0.01
    step()
    assert fam.weights[0][0].detach().numpy() == pytest.approx(seq[0].weight.detach().T.numpy(), rel=1e-10)
    assert fam.biases[1][0, 0].detach().numpy() == pytest.approx(seq[2].bias.detach().numpy(), rel=1e-10)


def test_an_interrupted_sweep_resumes_with_the_groups_it_had_finished(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_NO_CACHE", raising=False)
    settings = config.resolve("toy", "smoke", {"smoke": {}}, results_dir=str(tmp_path / "results"),
                              cache_dir=str(tmp_path / "cache"))
    data = toy_problem()
    configs = [dict(dims=(20, h, 3), lr=lr, label=f"{h}-{lr}") for h in (4, 8) for lr in (0.1, 0.2)]
    calls = []
    real = sweep.train_family

    def interrupted_once(members, *args, **kw):
        width = members[0]["dims"][1]
        calls.append(width)
        if width == 8 and calls.count(8) == 1:
            raise RuntimeError("interrupted")  # the second group dies the first time
        return real(members, *args, **kw)

    monkeypatch.setattr(sweep, "train_family", interrupted_once)
    kw = dict(settings=settings, experiment="grid", epochs=2, batch_size=32)
    with pytest.raises(RuntimeError, match="interrupted"):
        sweep.train_mlp_sweep(configs, data, {"train": data}, **kw)
    assert calls == [4, 8]
    resumed = sweep.train_mlp_sweep(configs, data, {"train": data}, **kw)
    assert calls == [4, 8, 8]  # the first group came from the cache, only the second one trained
    again = sweep.train_mlp_sweep(configs, data, {"train": data}, **kw)
    assert calls == [4, 8, 8]  # nothing changed: nothing recomputed
    fresh = sweep.train_mlp_sweep(configs, data, {"train": data}, epochs=2, batch_size=32)  # no cache
    assert calls == [4, 8, 8, 4, 8]
    assert sorted(resumed["config"].unique()) == ["4-0.1", "4-0.2", "8-0.1", "8-0.2"]
    for other in (again, fresh):
        pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), other.drop(columns="seconds"))


def test_book_timing_runs_make_chapters_cold_then_warm_on_a_fresh_cache(tmp_path):
    bench = load_bench()
    chapters = tmp_path / "book" / "chapters"
    chapters.mkdir(parents=True)
    stale = tmp_path / "build" / "bench-cache" / "old-entry.pt"
    stale.parent.mkdir(parents=True)
    stale.write_text("x")
    seen = []

    def fake_make(cmd, cwd, env, check):
        seen.append((cmd, sorted(p.name for p in chapters.glob("*.ipynb")), env["REPRO_CACHE_DIR"],
                     (tmp_path / "build" / "bench-cache" / "old-entry.pt").exists()))
        (chapters / "a.ipynb").write_text("{}")  # make writes the executed chapter

    out = bench.bench_book("quick", root=tmp_path, run=fake_make)
    assert [s[0] for s in seen] == [["make", "chapters", "PROFILE=quick"]] * 2
    assert [s[1] for s in seen] == [[], []]  # every chapter re-executed, both times
    assert {s[2] for s in seen} == {str(tmp_path / "build" / "bench-cache")} and not any(s[3] for s in seen)
    assert set(out) == {"profile", "cold_seconds", "warm_seconds"}


def test_family_first_layer_is_stored_in_the_wide_products_layout_and_trains_bit_for_bit_as_before():
    """Issue 17: the first layer of a float32 family is stored (M, out, in), so the wide product
    reads a view of the parameter and its gradient lands in the parameter's own layout (no copy on
    accumulation); training gives exactly the numbers of the member-first storage (under the
    tests' pinned MKL path the transposed operand changes no bit)."""
    data = toy_problem(96)
    fam = models.MLPFamily((20, 8, 5, 3), ["relu", "tanh", "sigmoid"]).initialize("glorot", [0, 1, 2])
    w = fam.weights[0]
    assert w.shape == (3, 20, 8) and w.transpose(1, 2).is_contiguous()
    assert all(v.is_contiguous() for v in list(fam.weights)[1:])  # the batched layers: (M, in, out)
    assert models._wide(w).data_ptr() == w.data_ptr() and models._wide(w)._base is not None  # a view
    old = models.MLPFamily((20, 8, 5, 3), ["relu", "tanh", "sigmoid"])
    with torch.no_grad():
        old.weights[0].data = fam.weights[0].detach().contiguous()  # member-first (M, in, out)
        for dst, src in zip(list(old.weights)[1:] + list(old.biases), list(fam.weights)[1:] + list(fam.biases)):
            dst.copy_(src)
    histories = []
    for net in (fam, old):
        opt = optim.FamilyOptimizer(net.parameters(), 3, lr=[0.1, 0.05, 0.2], momentum=[0.9, 0.0, 0.5], weight_decay=1e-3)
        histories.append(repro.fit(net, data, opt, epochs=2, batch_size=32, order_seed=4, evaluate_on={"train": data}))
        assert net.weights[0].grad is None or net.weights[0].grad.stride() == net.weights[0].stride()
    pd.testing.assert_frame_equal(histories[0].drop(columns="seconds"), histories[1].drop(columns="seconds"),
                                  check_exact=True)
    assert torch.equal(fam.weights[0], old.weights[0]) and fam.weights[0].stride() != old.weights[0].stride()
    # the layout survives what the chapters do with a family: a copy of one member, a state round trip
    one = fam.member(1)
    assert torch.equal(one.weights[0][0], fam.weights[0][1])
    fam.load_state_dict({k: v.clone() for k, v in fam.state_dict().items()})
    assert fam.weights[0].transpose(1, 2).is_contiguous()
    # per-member batches (M, B, in): the batched product's gradient lands in place too
    fam.zero_grad(set_to_none=True)
    x = torch.randn(3, 16, 20)
    torch.nn.functional.cross_entropy(fam(x).reshape(-1, 3), torch.randint(0, 3, (48,))).backward()
    assert fam.weights[0].grad.stride() == fam.weights[0].stride()
    torch.testing.assert_close(fam(x), torch.cat([fam.member(k)(x[k:k + 1]) for k in range(3)]))
    # float64 families (exact-arithmetic replications) keep the input-major (in, M, out) layout
    f64 = models.MLPFamily((20, 8, 3), "relu", n_members=3, dtype=torch.float64)
    assert f64.weights[0].transpose(0, 1).is_contiguous()


def test_a_single_net_stores_contiguous_in_out_matrices():
    """A family of one (repro.mlp): every weights[i][0] is a contiguous (in, out) matrix (what the
    gradient checks perturb through a flat view), and its gradient keeps that layout."""
    net = models.mlp((20, 8, 5, 3), activation="tanh", dtype=torch.float64).initialize("glorot", 0)
    assert all(w[0].is_contiguous() for w in net.weights)
    x = torch.randn(16, 20, dtype=torch.float64)
    logits = net(x)
    expected = x
    for i, (w, b) in enumerate(zip(net.weights, net.biases)):
        expected = expected @ w[0] + b[0]
        expected = torch.tanh(expected) if i < 2 else expected
    torch.testing.assert_close(logits[0], expected)
    torch.nn.functional.cross_entropy(logits[0], torch.tensor([0, 1, 2, 0] * 4)).backward()
    assert all(w.grad.stride() == w.stride() for w in net.weights)


def test_family_gradient_is_accumulated_without_a_copy():
    fam = models.MLPFamily((20, 8, 3), "relu", n_members=4).initialize("glorot", [0, 1, 2, 3])
    x, y = toy_problem(16).x, toy_problem(16).y
    logits = fam(x)
    torch.nn.functional.cross_entropy(logits.reshape(-1, 3), y.repeat(4)).backward()
    g = fam.weights[0].grad
    assert g.stride() == fam.weights[0].stride() and models._wide(g)._base is not None


def test_full_estimate_slices_every_fit_and_extrapolates_to_the_planned_length(tmp_path):
    """The sliced fit trains a few steps, times one evaluation, and returns a history as long as the
    real one; the log line extrapolates from the measured seconds per step."""
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    import estimate

    data = toy_problem(256)
    log = tmp_path / "log.jsonl"

    def run():
        net = models.mlp((20, 8, 3)).initialize("glorot", 0)
        return sweep.fit(net, data, optim.FamilyOptimizer(net.parameters(), 1, lr=0.1), epochs=40, batch_size=32,
                         evaluate_on={"train": data, "valid": data}, eval_at_start=True, record_running_loss=True)
    real = run()
    uninstall = estimate.install(str(log), slice_seconds=0.05)
    try:
        assert sweep.fit is not repro.engine.fit and repro.fit is sweep.fit
        fake = run()
    finally:
        uninstall()
    assert sweep.fit is repro.engine.fit and repro.fit is repro.engine.fit
    assert list(fake.columns) == list(real.columns) and len(fake) == len(real)
    assert fake[["step", "split", "member"]].equals(real[["step", "split", "member"]])
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["steps"] == 40 * 8 and 9 <= entry["measured_steps"] <= 3 * entry["steps"]
    assert entry["evaluations"] == 41
    assert entry["estimate_seconds"] == pytest.approx(
        entry["seconds_per_step"] * 320 + entry["seconds_per_evaluation"] * 41)


def test_full_estimate_reads_the_committed_full_runs_wall_time(tmp_path):
    import sys
    sys.path.insert(0, str(ROOT / "bench"))
    import estimate

    (tmp_path / "results" / "full").mkdir(parents=True)
    (tmp_path / "results" / "full" / "a.json").write_text(json.dumps({"provenance": {"wall_seconds": 12.5, "git_commit": "abc"}}))
    (tmp_path / "results" / "full" / "b.json").write_text(json.dumps({"provenance": {}}))
    assert estimate.committed_full_runs(tmp_path) == {
        "a": {"wall_seconds": 12.5, "git_commit": "abc", "threads": None, "started": None}}
    with pytest.raises(SystemExit, match="no notebook"):
        estimate.main(["no-such-chapter"], root=tmp_path)
