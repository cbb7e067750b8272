"""Speed benchmark of the repro library (issue 8): ``make bench`` or

    .venv/bin/python bench/bench.py [--device auto|cpu|cuda] [--threads N] [--models 50] [--book]

Measures, side by side in one run, and prints one line per figure:

- the FLOP/s of a large ``torch.mm`` (the matrix-product peak of this machine, float32);
- ``engine vs naive loop``: ``repro.fit`` on an MLP vs a plain ``DataLoader(TensorDataset)``
  + ``nn.Sequential`` + ``torch.optim.SGD`` loop on the same MLP and data (samples/s);
- ``batched sweep vs naive per-model loop`` and ``... vs engine per-model loop``: N small
  same-shaped nets trained as ONE ``repro.models.MLPFamily`` vs one after another
  (model-samples/s: models x steps x batch / seconds);
- ``batched sweep`` and ``MLP training`` as a percentage of the measured matmul peak, with
  FLOPs counted from the matrix products of forward and backward (see :func:`mlp_flops`);
- with ``--book``: ``make chapters`` from a cold result cache vs a warm rebuild (cache hit).

Timing: warm-up runs excluded, ``time.perf_counter``, CUDA synchronized before each clock
read, best of ``--repeats`` runs (the run least disturbed by other processes). Training uses
random tensors shaped like the reports' data (MNIST 784, CIFAR-10 3072 inputs, 10 classes):
speed does not depend on pixel values. The figures are stored in ``bench/results.json``
under the device type (``cpu``, ``cuda``), so a GPU run is recorded beside the CPU one.
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
from repro.optim import FamilySGD  # noqa: E402

# The workloads: the ift6135-2020 MLP (784-784-256-10, batch 64) and nets shaped like the
# dd2424-a3 sweep's (3072-50-30-10, batch 100; plain ReLU MLPs here, without batch norm).
# SGD with momentum 0.9 everywhere; the sweep's members differ in seed and learning rate.
MLP_DIMS, MLP_BATCH = (784, 784, 256, 10), 64
SWEEP_DIMS, SWEEP_BATCH = (3072, 50, 30, 10), 100
MOMENTUM = 0.9
GOALS = {"sweep_peak_pct": 70.0, "sweep_vs_naive": 3.0, "mlp_peak_pct": 50.0}


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


def best_time(run, device, repeats: int) -> float:
    """Fastest of ``repeats`` timed calls of ``run()`` (call it once untimed first to warm up)."""
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        run()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_peak(device: torch.device, repeats: int, n: int | None = None) -> dict:
    """FLOP/s of a large float32 ``torch.mm`` (TF32 stays off, torch's default)."""
    n = n or (8192 if device.type == "cuda" else 2048)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device)
    b = torch.randn(n, n, generator=g).to(device)
    inner = 10 if device.type == "cuda" else 3

    def run():
        for _ in range(inner):
            torch.mm(a, b)
    run()
    seconds = best_time(run, device, repeats) / inner
    return {"n": n, "dtype": "float32", "seconds": seconds, "flops_per_s": 2 * n ** 3 / seconds}


def random_data(n: int, features: int, seed: int, device) -> repro.Split:
    g = torch.Generator().manual_seed(seed)
    return repro.Split(torch.rand(n, features, generator=g).to(device), torch.randint(0, 10, (n,), generator=g).to(device))


# ---------------------------------------------------------------------------- the three ways to train
def naive_models(dims, lrs, device, seed: int = 0):
    """nn.Sequential + torch.optim.SGD, one per learning rate (what a homework writes)."""
    torch.manual_seed(seed)
    out = []
    for lr in lrs:
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        net = nn.Sequential(*layers[:-1]).to(device)
        out.append((net, torch.optim.SGD(net.parameters(), lr=lr, momentum=MOMENTUM)))
    return out


def naive_train(models, data: repro.Split, steps: int, batch: int, device) -> None:
    """The plain loop: a shuffling DataLoader over a CPU TensorDataset, batches moved to the device."""
    dataset = TensorDataset(data.x.cpu(), data.y.cpu())
    for net, opt in models:
        loader = DataLoader(dataset, batch_size=batch, shuffle=True)
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
    """repro.models.mlp (a family of one) + FamilySGD, one per learning rate."""
    out = []
    for k, lr in enumerate(lrs):
        net = mlp(dims, device=device).initialize("glorot", k)
        out.append((net, FamilySGD(net.parameters(), 1, lr=lr, momentum=MOMENTUM)))
    return out


def engine_train(models, data: repro.Split, steps: int, batch: int) -> None:
    for k, (net, opt) in enumerate(models):
        repro.fit(net, data, opt, steps=steps, batch_size=batch, shuffle=True, order_seed=k)


def family_model(dims, lrs, device):
    """All nets as ONE MLPFamily, each member with its own seed and learning rate."""
    fam = MLPFamily(dims, "relu", n_members=len(lrs), device=device).initialize("glorot", list(range(len(lrs))))
    return fam, FamilySGD(fam.parameters(), len(lrs), lr=list(lrs), momentum=MOMENTUM)


# ---------------------------------------------------------------------------- figures
def time_training(make, train, n_models: int, steps: int, batch: int, dims, device, repeats: int) -> dict:
    """Build the models (untimed), warm up on a few steps, then time ``steps`` steps per model."""
    models = make()
    train(models, min(steps, 3))
    seconds = best_time(lambda: train(models, steps), device, repeats)
    samples = n_models * steps * batch
    return {"seconds": seconds, "samples_per_s": samples / seconds,
            "flops_per_s": mlp_flops(dims, batch, n_models) * steps / seconds}


def bench_mlp(device, steps: int, repeats: int) -> dict:
    data = random_data(MLP_BATCH * 100, MLP_DIMS[0], 1, device)
    lr = [0.01]
    common = dict(n_models=1, steps=steps, batch=MLP_BATCH, dims=MLP_DIMS, device=device, repeats=repeats)
    engine = time_training(lambda: engine_models(MLP_DIMS, lr, device),
                           lambda ms, s: engine_train(ms, data, s, MLP_BATCH), **common)
    naive = time_training(lambda: naive_models(MLP_DIMS, lr, device),
                          lambda ms, s: naive_train(ms, data, s, MLP_BATCH, device), **common)
    return {"dims": MLP_DIMS, "batch": MLP_BATCH, "steps": steps, "engine": engine, "naive": naive}


def bench_sweep(device, n_models: int, steps: int, repeats: int) -> dict:
    data = random_data(SWEEP_BATCH * 50, SWEEP_DIMS[0], 2, device)
    lrs = [float(v) for v in torch.logspace(-3, -2, n_models, dtype=torch.float64)]
    common = dict(n_models=n_models, steps=steps, batch=SWEEP_BATCH, dims=SWEEP_DIMS, device=device, repeats=repeats)
    batched = time_training(lambda: family_model(SWEEP_DIMS, lrs, device),
                            lambda fo, s: repro.fit(fo[0], data, fo[1], steps=s, batch_size=SWEEP_BATCH, shuffle=True),
                            **common)
    engine = time_training(lambda: engine_models(SWEEP_DIMS, lrs, device),
                           lambda ms, s: engine_train(ms, data, s, SWEEP_BATCH), **common)
    naive = time_training(lambda: naive_models(SWEEP_DIMS, lrs, device),
                          lambda ms, s: naive_train(ms, data, s, SWEEP_BATCH, device), **common)
    return {"dims": SWEEP_DIMS, "batch": SWEEP_BATCH, "models": n_models, "steps": steps,
            "batched": batched, "engine_per_model": engine, "naive_per_model": naive}


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
    peak = r["matmul_peak"]["flops_per_s"]
    m, s = r["mlp"], r["sweep"]
    return {
        "engine_vs_naive": m["engine"]["samples_per_s"] / m["naive"]["samples_per_s"],
        "sweep_vs_naive": s["batched"]["samples_per_s"] / s["naive_per_model"]["samples_per_s"],
        "sweep_vs_engine": s["batched"]["samples_per_s"] / s["engine_per_model"]["samples_per_s"],
        "sweep_peak_pct": 100 * s["batched"]["flops_per_s"] / peak,
        "naive_per_model_peak_pct": 100 * s["naive_per_model"]["flops_per_s"] / peak,
        "mlp_peak_pct": 100 * m["engine"]["flops_per_s"] / peak,
        "mlp_naive_peak_pct": 100 * m["naive"]["flops_per_s"] / peak,
    }


def report_lines(r: dict) -> list[str]:
    f, m, s, mach = r["figures"], r["mlp"], r["sweep"], r["machine"]
    dims = lambda d: "-".join(map(str, d))  # noqa: E731
    goal = lambda key, value: f"goal >= {GOALS[key]:g}: {'met' if value >= GOALS[key] else 'missed'}"  # noqa: E731
    n = s["models"]
    lines = [
        f"machine: {mach['cores']} cores, {mach['torch_threads']} torch threads, {mach['device']} ({mach['device_name']}), "
        f"torch {mach['torch']}",
        f"matmul peak: {r['matmul_peak']['flops_per_s'] / 1e9:.1f} GFLOP/s (torch.mm {r['matmul_peak']['n']}^2 float32)",
        f"engine vs naive loop: {f['engine_vs_naive']:.2f} x (MLP {dims(m['dims'])}, batch {m['batch']}: "
        f"{m['engine']['samples_per_s']:,.0f} vs {m['naive']['samples_per_s']:,.0f} samples/s)",
        f"batched sweep vs naive per-model loop: {f['sweep_vs_naive']:.2f} x ({n} models) "
        f"[{goal('sweep_vs_naive', f['sweep_vs_naive'])}]",
        f"batched sweep vs engine per-model loop: {f['sweep_vs_engine']:.2f} x ({n} models)",
        f"batched sweep: {f['sweep_peak_pct']:.0f}% of measured matmul peak ({n} x {dims(s['dims'])}, batch {s['batch']}; "
        f"naive per-model loop {f['naive_per_model_peak_pct']:.0f}%) [{goal('sweep_peak_pct', f['sweep_peak_pct'])}]",
        f"MLP training: {f['mlp_peak_pct']:.0f}% of measured matmul peak (naive loop {f['mlp_naive_peak_pct']:.0f}%) "
        f"[{goal('mlp_peak_pct', f['mlp_peak_pct'])}]",
    ]
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
    p.add_argument("--repeats", type=int, default=3, help="timed runs per figure; the fastest counts")
    p.add_argument("--peak-size", type=int, default=None, help="n of the n x n torch.mm (default 2048, 8192 on CUDA)")
    p.add_argument("--book", action="store_true", help="also time a cold vs warm `make chapters`")
    p.add_argument("--book-profile", default="quick", choices=("smoke", "quick", "full"))
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    a = parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = repro.config.pick_device(a.device)
    steps = lambda n: max(2, round(n * a.steps))  # noqa: E731
    r = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine(device),
         "settings": {"models": a.models, "steps_scale": a.steps, "repeats": a.repeats, "momentum": MOMENTUM,
                      "timing": "perf_counter, warm-up excluded, best of repeats"}}
    cpu0 = time.process_time()
    wall0 = time.perf_counter()
    r["matmul_peak"] = matmul_peak(device, a.repeats, a.peak_size)
    r["mlp"] = bench_mlp(device, steps(400), a.repeats)
    r["sweep"] = bench_sweep(device, a.models, steps(60), a.repeats)
    # CPU seconds per wall second per thread: well under 1 means other processes took the cores.
    r["machine"]["cpu_utilisation"] = (time.process_time() - cpu0) / (time.perf_counter() - wall0) / torch.get_num_threads()
    r["figures"] = figures(r)
    if a.book:
        r["book"] = bench_book(a.book_profile)
    r["lines"] = report_lines(r)
    for line in r["lines"]:
        print(line, flush=True)
    if device.type == "cpu" and r["machine"]["cpu_utilisation"] < 0.85:
        print(f"warning: this process got {100 * r['machine']['cpu_utilisation']:.0f}% of its {torch.get_num_threads()} "
              "threads' time - other processes share the CPU, so the figures are low and noisy", flush=True)
    previous = {}
    if a.out.exists():
        try:
            previous = json.loads(a.out.read_text())
        except json.JSONDecodeError:
            previous = {}
    previous[device.type] = r
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_name(a.out.name + ".tmp")
    tmp.write_text(json.dumps(previous, indent=1, default=list) + "\n")
    tmp.replace(a.out)
    return r


if __name__ == "__main__":
    main()
