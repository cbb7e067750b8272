"""Speed benchmark of the repro library (issues 8 and 17): ``make bench`` or

    .venv/bin/python bench/bench.py [--device auto|cpu|cuda] [--threads N] [--models 50] [--book]
    .venv/bin/python bench/bench.py --full-estimate [--chapters ...]

Measures, side by side in one run, and prints one line per figure:

- the FLOP/s of a large ``torch.mm`` in float32 and in float64 (the matrix-product peaks);
- ``engine vs naive loop``: ``repro.fit`` on an MLP vs a plain ``DataLoader(TensorDataset)``
  + ``nn.Sequential`` + ``torch.optim.SGD`` loop on the same MLP and data (samples/s);
- ``batched sweep vs naive per-model loop`` and ``... vs engine per-model loop``: N small
  same-shaped nets trained as ONE ``repro.models.MLPFamily`` vs one after another
  (model-samples/s: models x steps x batch / seconds);
- ``batched sweep``, ``MLP training`` and the two float64 families of ift6135-2020 (its
  init study and the largest group of its grid) as a percentage of the measured matmul peak
  of their dtype, with FLOPs counted from the matrix products of forward and backward (see
  :func:`mlp_flops`);
- ``CNN``: samples/s of the two CNNs of the book (ift6135-2020's 763,094 parameters,
  ift6135-2019's 570,436) trained by ``repro.fit`` at batch 256, beside the samples/s of
  their convolutions alone (forward + backward of each ``Conv2d`` timed by itself), and the
  same training in channels-last memory format and under ``torch.compile``;
- with ``--book``: ``make chapters`` from a cold result cache vs a warm rebuild (cache hit);
- with ``--full-estimate``: the time of every chapter at its ``full`` profile, estimated by
  running each notebook with every ``repro.fit`` call cut to a short timed slice
  (``bench/estimate.py``), beside the measured wall time of committed full runs.

Timing: warm-up runs excluded, ``time.perf_counter``, CUDA synchronized before each clock
read. The variants compared in one figure run interleaved (A, B, A, B, ...) and each keeps
the best of ``--repeats`` runs, so a burst of load from other processes hits both alike
and the least disturbed run counts. ``/proc/loadavg`` is recorded before and after. Training
uses random tensors shaped like the reports' data (MNIST 784 or 1x28x28, CIFAR-10 3072
inputs, 10 classes): speed does not depend on pixel values. The figures are stored in
``bench/results.json`` under the device type (``cpu``, ``cuda``), so a GPU run is recorded
beside the CPU one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))  # runs from a checkout without `pip install -e .` too

import repro  # noqa: E402
from repro.models import MLPFamily, mlp  # noqa: E402
from repro.optim import FamilyOptimizer  # noqa: E402

# The workloads: the ift6135-2020 MLP (784-784-256-10, batch 64) and nets shaped like the
# dd2424-a3 sweep's (3072-50-30-10, batch 100; plain ReLU MLPs here, without batch norm).
# SGD with momentum 0.9 everywhere; the sweep's members differ in seed and learning rate.
MLP_DIMS, MLP_BATCH = (784, 784, 256, 10), 64
SWEEP_DIMS, SWEEP_BATCH = (3072, 50, 30, 10), 100
MOMENTUM = 0.9
# ift6135-2020 at `full` in float64: the init study (3 members: glorot, zero, normal; lr 7e-4,
# no momentum, no shuffling, batch 64) and the largest family of its grid (784-666-666-10:
# relu, sigmoid, tanh x lr 0.05, 0.01, 0.005).
F64_DIMS, F64_BATCH, F64_LR = (784, 784, 256, 10), 64, 7e-4
GRID_DIMS = (784, 666, 666, 10)
GRID_MEMBERS = [(act, lr) for act in ("relu", "sigmoid", "tanh") for lr in (0.05, 0.01, 0.005)]
CNN_BATCH = 256
GOALS = {"sweep_peak_pct": 70.0, "sweep_vs_naive": 3.0, "mlp_peak_pct": 50.0, "engine_vs_naive": 1.0,
         "float64_peak_pct": 60.0}


def mlp_flops(dims, batch: int, members: int = 1) -> int:
    """Matrix-product FLOPs of one training step (forward + backward) of ``members`` MLPs.

    Each layer (in x out) costs 2*B*in*out for the forward product, the same for the weight
    gradient, and the same again for the gradient of its input - except the first layer,
    whose input (the data) needs no gradient. Elementwise work (activations, loss, the
    update) is not counted: it is the overhead the percentage of peak exposes.
    """
    per_member = sum(2 * batch * a * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])))
    return per_member * members


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(run, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    run()
    sync(device)
    return time.perf_counter() - t0


def best_time(run, device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``run()`` (call it once untimed first to warm up)."""
    return min(timed(run, device) for _ in range(repeats))


def interleaved(runs: dict, device, repeats: int) -> dict:
    """{name: fastest of ``repeats`` timed calls}, the calls taken in turn (A, B, A, B, ...)."""
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run, device))
    return best


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def matmul_peak(device: torch.device, repeats: int, n: int | None = None, dtype=torch.float32) -> dict:
    """FLOP/s of a large ``torch.mm`` of ``dtype`` (TF32 stays off, torch's default)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    inner = 10 if device.type == "cuda" else (3 if dtype == torch.float32 else 2)

    def run():
        for _ in range(inner):
            torch.mm(a, b)
    run()
    seconds = best_time(run, device, repeats) / inner
    return {"n": n, "dtype": str(dtype).replace("torch.", ""), "seconds": seconds, "flops_per_s": 2 * n ** 3 / seconds}


def random_data(n: int, features, seed: int, device, dtype=torch.float32) -> repro.Split:
    shape = (n, *features) if isinstance(features, tuple) else (n, features)
    g = torch.Generator().manual_seed(seed)
    return repro.Split(torch.rand(shape, generator=g, dtype=dtype).to(device),
                       torch.randint(0, 10, (n,), generator=g).to(device))


# ---------------------------------------------------------------------------- the three ways to train
def naive_models(dims, lrs, device, seed: int = 0, momentum: float = MOMENTUM, dtype=torch.float32,
                 activations=None):
    """nn.Sequential + torch.optim.SGD, one per learning rate (what a homework writes)."""
    torch.manual_seed(seed)
    out = []
    for k, lr in enumerate(lrs):
        act = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}[activations[k] if activations else "relu"]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), act()]
        net = nn.Sequential(*layers[:-1]).to(device=device, dtype=dtype)
        out.append((net, torch.optim.SGD(net.parameters(), lr=lr, momentum=momentum)))
    return out


def naive_train(models, data: repro.Split, steps: int, batch: int, device, shuffle: bool = True) -> None:
    """The plain loop: a DataLoader over a CPU TensorDataset, batches moved to the device."""
    dataset = TensorDataset(data.x.cpu(), data.y.cpu())
    for net, opt in models:
        loader = DataLoader(dataset, batch_size=batch, shuffle=shuffle)
        done = 0
        while done < steps:
            for x, y in loader:
                x, y = x.to(device), y.to(device)
                loss = F.cross_entropy(net(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                done += 1
                if done == steps:
                    break


def engine_models(dims, lrs, device):
    """repro.models.mlp (a family of one) + FamilyOptimizer, one per learning rate."""
    out = []
    for k, lr in enumerate(lrs):
        net = mlp(dims, device=device).initialize("glorot", k)
        out.append((net, FamilyOptimizer(net.parameters(), 1, lr=lr, momentum=MOMENTUM)))
    return out


def engine_train(models, data: repro.Split, steps: int, batch: int) -> None:
    for k, (net, opt) in enumerate(models):
        repro.fit(net, data, opt, steps=steps, batch_size=batch, shuffle=True, order_seed=k)


def family_model(dims, lrs, device, activations="relu", inits="glorot", momentum=MOMENTUM, dtype=torch.float32):
    """All nets as ONE MLPFamily, each member with its own seed and learning rate."""
    m = len(lrs)
    fam = MLPFamily(dims, activations, n_members=m, dtype=dtype, device=device).initialize(inits, list(range(m)))
    return fam, FamilyOptimizer(fam.parameters(), m, lr=list(lrs), momentum=momentum)


# ---------------------------------------------------------------------------- figures
def rates(seconds: float, n_models: int, steps: int, batch: int, dims) -> dict:
    return {"seconds": seconds, "samples_per_s": n_models * steps * batch / seconds,
            "flops_per_s": mlp_flops(dims, batch, n_models) * steps / seconds}


def compare_training(variants: dict, steps: int, device, repeats: int) -> dict:
    """variants: {name: (build() -> state, train(state, steps))}. Builds all (untimed), warms
    each up on a few steps, then times ``steps`` steps of each, interleaved."""
    states = {name: build() for name, (build, _) in variants.items()}
    for name, (_, train) in variants.items():
        train(states[name], min(steps, 3))
    best = interleaved({name: (lambda name=name: variants[name][1](states[name], steps)) for name in variants},
                       device, repeats)
    best["_states"] = states
    return best


def split_states(t: dict) -> tuple[dict, dict]:
    states = t.pop("_states")
    return t, states


def bench_mlp(device, steps: int, repeats: int) -> dict:
    data = random_data(MLP_BATCH * 100, MLP_DIMS[0], 1, device)
    lr = [0.01]
    t = compare_training({
        "engine": (lambda: engine_models(MLP_DIMS, lr, device), lambda ms, s: engine_train(ms, data, s, MLP_BATCH)),
        "naive": (lambda: naive_models(MLP_DIMS, lr, device), lambda ms, s: naive_train(ms, data, s, MLP_BATCH, device)),
    }, steps, device, repeats)
    t, states = split_states(t)
    few = max(2, steps // 4)
    return {"dims": MLP_DIMS, "batch": MLP_BATCH, "steps": steps,
            **{name: rates(sec, 1, steps, MLP_BATCH, MLP_DIMS) for name, sec in t.items()},
            "engine_breakdown": breakdown(lambda: engine_train(states["engine"], data, few, MLP_BATCH), few, device),
            "naive_breakdown": breakdown(lambda: naive_train(states["naive"], data, few, MLP_BATCH, device), few, device)}


def bench_sweep(device, n_models: int, steps: int, repeats: int) -> dict:
    data = random_data(SWEEP_BATCH * 50, SWEEP_DIMS[0], 2, device)
    lrs = [float(v) for v in torch.logspace(-3, -2, n_models, dtype=torch.float64)]
    t = compare_training({
        "batched": (lambda: family_model(SWEEP_DIMS, lrs, device),
                    lambda fo, s: repro.fit(fo[0], data, fo[1], steps=s, batch_size=SWEEP_BATCH, shuffle=True)),
        "engine_per_model": (lambda: engine_models(SWEEP_DIMS, lrs, device),
                             lambda ms, s: engine_train(ms, data, s, SWEEP_BATCH)),
        "naive_per_model": (lambda: naive_models(SWEEP_DIMS, lrs, device),
                            lambda ms, s: naive_train(ms, data, s, SWEEP_BATCH, device)),
    }, steps, device, repeats)
    t, states = split_states(t)
    fam, opt = states["batched"]
    few = max(2, steps // 4)
    return {"dims": SWEEP_DIMS, "batch": SWEEP_BATCH, "models": n_models, "steps": steps,
            **{name: rates(sec, n_models, steps, SWEEP_BATCH, SWEEP_DIMS) for name, sec in t.items()},
            "batched_breakdown": breakdown(lambda: repro.fit(fam, data, opt, steps=few, batch_size=SWEEP_BATCH), few,
                                           device)}


def bench_float64(device, steps: int, repeats: int) -> dict:
    """ift6135-2020's float64 families through the engine: the init study (vs its three nets
    trained one after another by the naive loop) and the largest family of the grid."""
    data = random_data(F64_BATCH * 100, F64_DIMS[0], 3, device, torch.float64)
    init = ["glorot", "zero", "normal"]
    lrs = [F64_LR] * len(init)

    def fit_family(fo, s):
        repro.fit(fo[0], data, fo[1], steps=s, batch_size=F64_BATCH, shuffle=False)
    t = compare_training({
        "init_family": (lambda: family_model(F64_DIMS, lrs, device, inits=init, momentum=0.0, dtype=torch.float64),
                        fit_family),
        "init_naive_per_model": (lambda: naive_models(F64_DIMS, lrs, device, momentum=0.0, dtype=torch.float64),
                                 lambda ms, s: naive_train(ms, data, s, F64_BATCH, device, shuffle=False)),
    }, steps, device, repeats)
    t, states = split_states(t)
    few = max(2, steps // 4)
    init_breakdown = breakdown(lambda: fit_family(states["init_family"], few), few, device)
    grid_steps = max(2, steps // 3)
    acts, grid_lrs = [a for a, _ in GRID_MEMBERS], [lr for _, lr in GRID_MEMBERS]
    g = compare_training({"grid_family": (
        lambda: family_model(GRID_DIMS, grid_lrs, device, activations=acts, momentum=0.0, dtype=torch.float64),
        fit_family)}, grid_steps, device, repeats)
    g, _ = split_states(g)
    out = {"init_family_breakdown": init_breakdown,"dims": F64_DIMS, "batch": F64_BATCH, "members": len(init), "steps": steps,
           **{name: rates(sec, len(init), steps, F64_BATCH, F64_DIMS) for name, sec in t.items()},
           "grid_dims": GRID_DIMS, "grid_members": len(GRID_MEMBERS), "grid_steps": grid_steps,
           "grid_family": rates(g["grid_family"], len(GRID_MEMBERS), grid_steps, F64_BATCH, GRID_DIMS)}
    return out


PRODUCTS = ("aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm")


def breakdown(run, steps: int, device) -> dict:
    """Where the time of ``run()`` (``steps`` training steps) goes, per step, from one profiled run:
    the matrix products (self time of mm/bmm/addmm/baddbmm), the optimizer's update (everything
    inside ``Optimizer.step``), every other op (elementwise, loss, copies, indexing), and the
    rest of the wall time (Python and dispatch outside any op). The profiler itself adds a few
    microseconds per op, so the proportions count, not the sum."""
    from torch.profiler import ProfilerActivity, profile
    sync(device)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        run()
        sync(device)
        wall = time.perf_counter() - t0
    events = prof.key_averages()
    products = sum(e.self_cpu_time_total for e in events if e.key in PRODUCTS) / 1e6
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#")) / 1e6
    all_ops = sum(e.self_cpu_time_total for e in events if e.key.startswith("aten::")) / 1e6
    other_ops = max(all_ops - products - optimizer, 0.0)  # the update's own ops are inside ``optimizer``
    rest = max(wall - products - optimizer - other_ops, 0.0)
    per = lambda v: 1e3 * v / steps  # noqa: E731 - ms per step
    return {"ms_per_step": per(wall), "products_ms": per(products), "optimizer_ms": per(optimizer),
            "other_ops_ms": per(other_ops), "python_and_dispatch_ms": per(rest)}


def breakdown_text(b: dict) -> str:
    return (f"{b['ms_per_step']:.2f} ms/step profiled = matrix products {b['products_ms']:.2f} + optimizer update "
            f"{b['optimizer_ms']:.2f} + other ops {b['other_ops_ms']:.2f} + Python/dispatch {b['python_and_dispatch_ms']:.2f}")


# ---------------------------------------------------------------------------- CNNs
def cnn_ift6135_2020() -> nn.Module:
    """ift6135-2020's CNN (the notebook's ``CNN``, same layers in the same order): 763,094 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 128, 5, stride=2, padding=2), nn.ReLU(),
        nn.Conv2d(128, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(256 * 3 * 3, 100), nn.Linear(100, 10))


def cnn_ift6135_2019() -> nn.Module:
    """ift6135-2019's CNN (the authors' CNNModel2): 570,436 parameters."""
    return nn.Sequential(
        nn.Conv2d(1, 18, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(18, 36, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(36, 72, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(72, 72, 3, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(72 * 3 * 3, 750), nn.ReLU(), nn.Linear(750, 10))


CNNS = {"ift6135-2020": (cnn_ift6135_2020, 763_094, 0.003), "ift6135-2019": (cnn_ift6135_2019, 570_436, 0.01)}


def conv_inputs(model: nn.Module, batch: int, device) -> list[tuple[nn.Conv2d, tuple]]:
    """Each Conv2d of ``model`` with the shape of its input for a batch of 1x28x28 images."""
    seen = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: seen.append((mod, tuple(inp[0].shape))))
             for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(batch, 1, 28, 28, device=device))
    for h in hooks:
        h.remove()
    return seen


def conv_flops(conv: nn.Conv2d, shape: tuple, first: bool) -> int:
    b, _, h, w = shape
    ho = (h + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
    wo = (w + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
    forward = 2 * b * conv.out_channels * ho * wo * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    return forward * (2 if first else 3)  # + weight gradient (+ input gradient except for the data)


def time_convs_alone(model: nn.Module, batch: int, device, repeats: int, channels_last: bool = False) -> dict:
    """Forward + backward of every Conv2d by itself (the same shapes as in training), summed."""
    total, flops = 0.0, 0
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i, (conv, shape) in enumerate(conv_inputs(model, batch, device)):
        x = torch.randn(shape, device=device).contiguous(memory_format=fmt).requires_grad_(i > 0)
        layer = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding).to(
            device=device, memory_format=fmt)
        grad = torch.randn_like(layer(x))

        def run():
            layer(x).backward(grad)
        run()
        total += best_time(run, device, repeats)
        flops += conv_flops(conv, shape, first=i == 0)
    return {"seconds_per_batch": total, "samples_per_s": batch / total, "flops_per_s": flops / total,
            "flops_per_batch": flops}


def bench_cnn(device, steps: int, repeats: int, variants=("default", "channels_last", "compile")) -> dict:
    """Training samples/s of each CNN (repro.fit, SGD momentum 0.9, batch 256) in each variant,
    interleaved, beside the samples/s of its convolutions alone."""
    data = random_data(CNN_BATCH * 8, (1, 28, 28), 4, device)
    out = {}
    for name, (build, n_params, lr) in CNNS.items():
        model = build().to(device)
        count = sum(p.numel() for p in model.parameters())
        if count != n_params:
            raise AssertionError(f"{name} CNN: {count} parameters, expected {n_params}")
        res = {"parameters": count, "batch": CNN_BATCH, "steps": steps}
        compile_seconds = {}

        def build_variant(v, build=build, lr=lr):
            torch.manual_seed(0)
            net = build().to(device)
            if v == "channels_last":
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
            if v == "compile":
                net = torch.compile(net)
                t0 = time.perf_counter()
                repro.fit(net, data, opt, steps=2, batch_size=CNN_BATCH, shuffle=True)  # compiles here
                compile_seconds[v] = time.perf_counter() - t0
            return net, opt

        def train(state, s):
            repro.fit(state[0], data, state[1], steps=s, batch_size=CNN_BATCH, shuffle=True)
        runs = {v: (lambda v=v: build_variant(v), train) for v in variants}
        try:
            t = compare_training(runs, steps, device, repeats)
        except Exception as e:  # noqa: BLE001 - e.g. torch.compile without a C++ compiler
            if "compile" not in runs:
                raise
            res["compile"] = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
            runs.pop("compile")
            t = compare_training(runs, steps, device, repeats)
        t, _ = split_states(t)
        for v, sec in t.items():
            res[v] = {"seconds": sec, "samples_per_s": steps * CNN_BATCH / sec}
        if "compile" in res and "compile" in compile_seconds:
            res["compile"]["compile_seconds"] = compile_seconds["compile"]
        res["convs_alone"] = time_convs_alone(model, CNN_BATCH, device, repeats)
        if "channels_last" in variants:
            res["convs_alone_channels_last"] = time_convs_alone(model, CNN_BATCH, device, repeats, channels_last=True)
        res["training_flops_per_batch"] = res["convs_alone"]["flops_per_batch"]
        out[name] = res
    return out


# ---------------------------------------------------------------------------- the book
def bench_book(profile: str, root: Path = ROOT, run=subprocess.run) -> dict:
    """``make chapters`` twice with a fresh result cache: cold (empty cache) then warm (cache hits).

    The executed chapters (book/chapters/*.ipynb, build outputs) are deleted before each run
    so that make re-executes every notebook; the cache lives in build/bench-cache (emptied
    first; the default cache in ~/.cache is left alone).
    """
    cache = root / "build" / "bench-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "REPRO_CACHE_DIR": str(cache)}
    env.pop("REPRO_NO_CACHE", None)
    out = {"profile": profile}
    for label in ("cold", "warm"):
        for done in (root / "book" / "chapters").glob("*.ipynb"):
            done.unlink()
        t0 = time.perf_counter()
        run(["make", "chapters", f"PROFILE={profile}"], cwd=root, env=env, check=True)
        out[f"{label}_seconds"] = time.perf_counter() - t0
    return out


def machine(device: torch.device) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    info = {"cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
            "cpu": cpu, "torch": torch.__version__, "python": platform.python_version()}
    try:
        info["git_commit"] = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                            text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        info["git_commit"] = None
    return info


def figures(r: dict) -> dict:
    """The headline ratios from the raw measurements."""
    peak, peak64 = r["matmul_peak"]["flops_per_s"], r["matmul_peak_float64"]["flops_per_s"]
    m, s, d = r["mlp"], r["sweep"], r["float64"]
    f = {
        "engine_vs_naive": m["engine"]["samples_per_s"] / m["naive"]["samples_per_s"],
        "sweep_vs_naive": s["batched"]["samples_per_s"] / s["naive_per_model"]["samples_per_s"],
        "sweep_vs_engine": s["batched"]["samples_per_s"] / s["engine_per_model"]["samples_per_s"],
        "sweep_peak_pct": 100 * s["batched"]["flops_per_s"] / peak,
        "naive_per_model_peak_pct": 100 * s["naive_per_model"]["flops_per_s"] / peak,
        "mlp_peak_pct": 100 * m["engine"]["flops_per_s"] / peak,
        "mlp_naive_peak_pct": 100 * m["naive"]["flops_per_s"] / peak,
        "float64_peak_pct": 100 * d["init_family"]["flops_per_s"] / peak64,
        "float64_naive_peak_pct": 100 * d["init_naive_per_model"]["flops_per_s"] / peak64,
        "float64_vs_naive": d["init_family"]["samples_per_s"] / d["init_naive_per_model"]["samples_per_s"],
        "float64_grid_peak_pct": 100 * d["grid_family"]["flops_per_s"] / peak64,
    }
    for name, c in r.get("cnn", {}).items():
        f[f"cnn_{name}_vs_convs_alone"] = c["default"]["samples_per_s"] / c["convs_alone"]["samples_per_s"]
    return f


def report_lines(r: dict) -> list[str]:
    f, m, s, d, mach = r["figures"], r["mlp"], r["sweep"], r["float64"], r["machine"]
    dims = lambda dd: "-".join(map(str, dd))  # noqa: E731

    def goal(key, value):
        return f"goal >= {GOALS[key]:g}: {'met' if value >= GOALS[key] else 'missed'}"
    n = s["models"]
    load = r.get("loadavg", {})
    lines = [
        f"machine: {mach['cores']} cores, {mach['torch_threads']} torch threads, {mach['device']} ({mach['device_name']}), "
        f"torch {mach['torch']}; load average {load.get('before')} before, {load.get('after')} after",
        f"matmul peak: {r['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s (torch.mm {r['matmul_peak']['n']}^2 float32), "
        f"{r['matmul_peak_float64']['flops_per_s'] / 1e9:.1f} GFLOP/s float64",
        f"engine vs naive loop: {f['engine_vs_naive']:.2f} x (MLP {dims(m['dims'])}, batch {m['batch']}: "
        f"{m['engine']['samples_per_s']:,.0f} vs {m['naive']['samples_per_s']:,.0f} samples/s) "
        f"[{goal('engine_vs_naive', f['engine_vs_naive'])}]",
        f"batched sweep vs naive per-model loop: {f['sweep_vs_naive']:.2f} x ({n} models) "
        f"[{goal('sweep_vs_naive', f['sweep_vs_naive'])}]",
        f"batched sweep vs engine per-model loop: {f['sweep_vs_engine']:.2f} x ({n} models)",
        f"batched sweep: {f['sweep_peak_pct']:.0f}% of measured matmul peak ({n} x {dims(s['dims'])}, batch {s['batch']}; "
        f"naive per-model loop {f['naive_per_model_peak_pct']:.0f}%) [{goal('sweep_peak_pct', f['sweep_peak_pct'])}]",
        f"MLP training: {f['mlp_peak_pct']:.0f}% of measured matmul peak (engine; naive loop {f['mlp_naive_peak_pct']:.0f}%) "
        f"[{goal('mlp_peak_pct', f['mlp_peak_pct'])}]",
        f"  where the time goes, batched sweep: {breakdown_text(s['batched_breakdown'])}",
        f"  where the time goes, MLP engine: {breakdown_text(m['engine_breakdown'])}; "
        f"naive loop: {breakdown_text(m['naive_breakdown'])}",
        f"float64 family: {f['float64_peak_pct']:.0f}% of measured float64 matmul peak ({d['members']} x {dims(d['dims'])}, "
        f"batch {d['batch']}, ift6135-2020's init study; naive per-model loop {f['float64_naive_peak_pct']:.0f}%, "
        f"family {f['float64_vs_naive']:.2f} x naive) [{goal('float64_peak_pct', f['float64_peak_pct'])}]",
        f"float64 grid family: {f['float64_grid_peak_pct']:.0f}% of measured float64 matmul peak "
        f"({d['grid_members']} x {dims(d['grid_dims'])}, relu/sigmoid/tanh, batch {d['batch']})",
        f"  where the time goes, float64 init family: {breakdown_text(d['init_family_breakdown'])}",
    ]
    for name, c in r.get("cnn", {}).items():
        alone = c["convs_alone"]
        parts = [f"CNN {name} ({c['parameters']:,} parameters, batch {c['batch']}): "
                 f"{c['default']['samples_per_s']:,.0f} samples/s training; its convolutions alone "
                 f"{alone['samples_per_s']:,.0f} samples/s ({alone['flops_per_s'] / 1e9:.0f} GFLOP/s, "
                 f"{100 * alone['flops_per_s'] / r['matmul_peak']['flops_per_s']:.0f}% of matmul peak): "
                 f"training at {100 * f[f'cnn_{name}_vs_convs_alone']:.0f}% of the convolutions' speed"]
        for v, label in (("channels_last", "channels-last"), ("compile", "torch.compile")):
            if v in c and "samples_per_s" in c[v]:
                parts.append(f"{label} {c[v]['samples_per_s']:,.0f} ({c[v]['samples_per_s'] / c['default']['samples_per_s']:.2f} x)")
            elif v in c:
                parts.append(f"{label} failed: {c[v]['error']}")
        lines.append("; ".join(parts))
    if "book" in r:
        b = r["book"]
        lines.append(f"book at {b['profile']}: cold build {b['cold_seconds']:.0f} s, warm rebuild (cache hit) "
                     f"{b['warm_seconds']:.0f} s")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")
    p.add_argument("--models", type=int, default=50, help="nets in the sweep family (default 50)")
    p.add_argument("--steps", type=float, default=1.0,
                   help="scale of the number of training steps (1 = the default run; 0.2 for a fast check)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure, interleaved; the fastest counts")
    p.add_argument("--peak-size", type=int, default=None, help="n of the n x n torch.mm (default 2048, 8192 on CUDA)")
    p.add_argument("--cnn-variants", default="default,channels_last,compile",
                   help="comma-separated CNN variants to time (default, channels_last, compile), or 'none'")
    p.add_argument("--book", action="store_true", help="also time a cold vs warm `make chapters`")
    p.add_argument("--book-profile", default="quick", choices=("smoke", "quick", "full"))
    p.add_argument("--full-estimate", action="store_true",
                   help="estimate each chapter's `full` profile from short timed slices (bench/estimate.py) instead")
    p.add_argument("--chapters", nargs="*", default=None, help="with --full-estimate: these chapters only")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    return p.parse_args(argv)


def save(out: Path, key: str, value: dict) -> None:
    previous = {}
    if out.exists():
        try:
            previous = json.loads(out.read_text())
        except json.JSONDecodeError:
            previous = {}
    previous[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(previous, indent=1, default=list) + "\n")
    tmp.replace(out)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.full_estimate:
        import estimate  # bench/estimate.py, beside this file
        r = estimate.main(chapters=a.chapters, root=ROOT)
        save(a.out, "full_estimate", r)
        return r
    device = repro.config.pick_device(a.device)
    steps = lambda n: max(2, round(n * a.steps))  # noqa: E731
    variants = () if a.cnn_variants == "none" else tuple(v for v in a.cnn_variants.split(",") if v)
    r = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(device),
         "settings": {"models": a.models, "steps_scale": a.steps, "repeats": a.repeats, "momentum": MOMENTUM,
                      "timing": "perf_counter, warm-up excluded, variants interleaved, best of repeats"},
         "loadavg": {"before": loadavg()}}
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    r["matmul_peak"] = matmul_peak(device, a.repeats, a.peak_size)
    r["matmul_peak_float64"] = matmul_peak(device, a.repeats, a.peak_size, torch.float64)
    r["mlp"] = bench_mlp(device, steps(400), a.repeats)
    r["sweep"] = bench_sweep(device, a.models, steps(60), a.repeats)
    r["float64"] = bench_float64(device, steps(150), a.repeats)
    if variants:
        r["cnn"] = bench_cnn(device, steps(20), a.repeats, variants)
    # CPU seconds per wall second per thread: well under 1 means other processes took the cores.
    r["machine"]["cpu_utilisation"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0) / torch.get_num_threads()
    r["loadavg"]["after"] = loadavg()
    r["figures"] = figures(r)
    if a.book:
        r["book"] = bench_book(a.book_profile)
    r["lines"] = report_lines(r)
    for line in r["lines"]:
        print(line, flush=True)
    if device.type == "cpu" and r["machine"]["cpu_utilisation"] < 0.85:
        print(f"warning: this process got {100 * r['machine']['cpu_utilisation']:.0f}% of its {torch.get_num_threads()} "
              "threads' time - other processes share the CPU, so the figures are low and noisy", flush=True)
    save(a.out, device.type, r)
    return r


if __name__ == "__main__":
    main()
