"""``bench/bench.py --full-estimate``: how long each chapter takes at its ``full`` profile.

Every chapter trains through ONE function, :func:`repro.engine.fit`. Each notebook is executed
at ``profile=full`` with nothing cached (results and cache in a temporary folder, so nothing
committed is touched), after a first cell that replaces ``fit`` - as ``repro.fit`` and in
every ``repro`` module that imported it - by a sliced version (see :func:`install`). That
times short slices of the real training (two warm-up steps, then three slices of about
``SLICE_SECONDS / 3`` each, the fastest counting) and one real evaluation of every split, writes one line per call to a log, and returns a history of the full length whose
numbers are those of the slice (meaningless: the executed notebook is thrown away; a cell
that fails on them is counted and the next cell still runs). The estimate of one call is

    seconds per step x steps it would run + seconds per evaluation x evaluations it would run

(early stopping, which only ends a run sooner, is not simulated: an upper bound), and the
estimate of a chapter is the sum over its calls plus everything else its notebook did, which
ran for real at ``full`` (data loading, gradient checks, figures): the notebook's wall time
minus the time spent inside the sliced calls.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import pkgutil
import sys
import tempfile
import time
from pathlib import Path

SLICE_SECONDS = 2.0
CHAPTERS = ("ift6135-2020", "ift6135-2019", "sharif-hw2", "dd2424-a3", "purdue-hw3")
GPU_ONLY = ("VGG",)  # model classes whose `full` training the issue counts as GPU work (hours on 2 CPU cores)


def model_name(model) -> str:
    """The model's class; "VGG" for the nn.Sequential that repro.chapters.ift6135_2019.vgg builds
    (recognised by its first layer, the VGG's input standardisation)."""
    model = getattr(model, "_orig_mod", model)
    first = next(iter(model.children()), None)
    if type(model).__name__ == "Sequential" and type(first).__name__ == "Standardize":
        return "VGG"
    return type(model).__name__


def _timed(run) -> tuple[float, object]:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    out = run()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t0, out


def install(log: str, slice_seconds: float = SLICE_SECONDS):
    """Replace repro's ``fit`` everywhere by the sliced version that logs to ``log``; returns a
    function that puts the real one back."""
    import repro
    from repro import engine
    real = engine.fit
    for info in pkgutil.iter_modules(repro.__path__):
        try:
            importlib.import_module(f"repro.{info.name}")
        except Exception:  # noqa: BLE001 - a module that cannot import here does not train here either
            pass

    def sliced_fit(model, train, optimizer, *, epochs=None, steps=None, batch_size=64, evaluate_on=None,
                   eval_every=None, eval_at_start=False, scheduler=None, early_stopping=None, on_evaluate=None,
                   desc="", **kw):
        import pandas as pd
        t_in = time.perf_counter()
        per_epoch = math.ceil(len(train) / batch_size)
        total = steps if steps is not None else epochs * per_epoch
        every = eval_every or per_epoch
        evals = sorted(set(range(every, total + 1, every)) | {total} | ({0} if eval_at_start else set()))
        common = dict(batch_size=batch_size, **kw)
        warm = min(2, total)
        t_warm, _ = _timed(lambda: real(model, train, optimizer, steps=warm, **common))
        per_step, measured = t_warm / warm, warm
        if total > warm:
            t3, _ = _timed(lambda: real(model, train, optimizer, steps=min(3, total), **common))
            # three slices of about slice_seconds / 3 each; the fastest counts (the least disturbed
            # by other processes, like the benchmark's best of repeats)
            k = int(min(total, max(3, slice_seconds / 3 / max(t3 / 3, 1e-6))))
            tk = min(_timed(lambda: real(model, train, optimizer, steps=k, **common))[0] for _ in range(3))
            per_step, measured = min(tk / k, t3 / 3), 3 * k
        # one step + one evaluation of every split (and the on_evaluate hook), for the evaluation cost
        t_eval, one = _timed(lambda: real(model, train, optimizer, steps=1, evaluate_on=evaluate_on,
                                          on_evaluate=on_evaluate, **common))
        per_eval = max(t_eval - per_step, 0.0) if evaluate_on or on_evaluate else 0.0
        estimate = per_step * total + per_eval * len(evals)
        members = getattr(model, "n_members", 1)
        entry = {"model": model_name(model), "members": members, "desc": desc,
                 "train": len(train), "batch_size": batch_size, "steps": total, "measured_steps": measured,
                 "seconds_per_step": per_step, "evaluations": len(evals), "seconds_per_evaluation": per_eval,
                 "estimate_seconds": estimate, "spent_seconds": time.perf_counter() - t_in}
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")
        # a history of the full length, every evaluation a copy of the one measured
        rows = []
        for s in evals:
            at = one[one["split"] != "train (running)"] if s == 0 else one  # no running loss before training
            rows.append(at.assign(step=s, epoch=s / per_epoch, seconds=s * per_step))
        history = pd.concat(rows, ignore_index=True) if rows else one
        if early_stopping:
            history.attrs["stopped_at_step"] = [None] * members
            history.attrs["best_step"] = [total] * members
        return history

    sliced_fit.__doc__ = real.__doc__
    patched = [module for name, module in list(sys.modules.items())
               if (name == "repro" or name.startswith("repro.")) and name != "repro.engine"
               and getattr(module, "fit", None) is real]
    for module in patched:
        module.fit = sliced_fit

    def uninstall():
        for module in patched:
            module.fit = real
    return uninstall


def run_chapter(chapter: str, root: Path, work: Path, timeout: int = 3600) -> dict:
    """Execute one notebook at ``full`` with sliced training; its log entries and timings."""
    import nbclient
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    log = work / f"{chapter}.jsonl"
    log.unlink(missing_ok=True)
    nb = load_notebook_node(str(root / "notebooks" / f"{chapter}.ipynb"))
    nb = parameterize_notebook(nb, {"profile": "full", "cache": False, "max_minutes": 0,
                                    "results_dir": str(work / "results"), "cache_dir": str(work / "cache")})
    patch = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
             f"import estimate as _estimate; _estimate.install({str(log)!r})")
    nb.cells.insert(0, nbformat.v4.new_code_cell(patch))
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(root)}})
    env_before = dict(os.environ)
    os.environ["REPRO_NO_CACHE"] = "1"
    t0 = time.perf_counter()
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    wall = time.perf_counter() - t0
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.append(f"cell {i}: {out.get('ename')}: {str(out.get('evalue'))[:120]}")
    entries = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    spent = sum(e["spent_seconds"] for e in entries)
    trained = sum(e["estimate_seconds"] for e in entries)
    gpu = sum(e["estimate_seconds"] for e in entries if any(g in e["model"] for g in GPU_ONLY))
    other = max(wall - spent, 0.0)
    return {"chapter": chapter, "fit_calls": len(entries), "training_estimate_seconds": trained,
            "gpu_only_estimate_seconds": gpu, "other_seconds": other, "notebook_wall_seconds": wall,
            "estimate_seconds": trained + other, "cpu_estimate_seconds": trained - gpu + other,
            "cell_errors": errors, "calls": entries}


def committed_full_runs(root: Path) -> dict:
    """Wall seconds of the committed full runs (results/full/<chapter>.json provenance)."""
    out = {}
    for path in sorted((root / "results" / "full").glob("*.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        prov = summary.get("provenance", {})
        if "wall_seconds" in prov:  # the training behind the summary (a rebuild from the store trains nothing)
            seconds = summary.get("training_seconds") or prov["wall_seconds"]
            out[path.stem] = {"wall_seconds": seconds, "git_commit": prov.get("git_commit"),
                              "threads": prov.get("threads"), "started": prov.get("started")}
    return out


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def main(chapters=None, root: Path | None = None) -> dict:
    root = root or Path(__file__).resolve().parents[1]
    chapters = list(chapters or CHAPTERS)
    unknown = [c for c in chapters if not (root / "notebooks" / f"{c}.ipynb").is_file()]
    if unknown:
        raise SystemExit(f"no notebook for {', '.join(unknown)} (chapters: {', '.join(CHAPTERS)})")
    committed = committed_full_runs(root)
    load_before = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    results, lines = [], []
    with tempfile.TemporaryDirectory(prefix="repro-estimate-") as tmp:
        for chapter in chapters:
            r = run_chapter(chapter, root, Path(tmp))
            results.append(r)
            measured = committed.get(chapter)
            biggest = sorted(r["calls"], key=lambda e: -e["estimate_seconds"])[:3]
            line = (f"{chapter} at full: {hours(r['cpu_estimate_seconds'])} (estimate: {r['fit_calls']} training runs "
                    f"{hours(r['training_estimate_seconds'] - r['gpu_only_estimate_seconds'])}, the rest of the notebook "
                    f"{hours(r['other_seconds'])})")
            if r["gpu_only_estimate_seconds"]:
                line += f"; GPU-only training (VGG) not counted: {hours(r['gpu_only_estimate_seconds'])} on this CPU"
            line += (f"; committed full run: {hours(measured['wall_seconds'])} measured (commit {measured['git_commit'][:7]})"
                     if measured else "; no committed full run")
            if r["cell_errors"]:
                line += f"; {len(r['cell_errors'])} cells failed on the sliced numbers"
            lines.append(line)
            lines.append("  largest: " + ", ".join(
                f"{e['members']} x {e['model']} {e['steps']:,} steps ({hours(e['estimate_seconds'])})" for e in biggest))
            print(lines[-2], flush=True)
            print(lines[-1], flush=True)
    total = sum(r["cpu_estimate_seconds"] for r in results)
    lines.append(f"full book on this CPU: {total / 3600:.1f} h (estimate; goal <= 3 h: "
                 f"{'met' if total <= 3 * 3600 else 'missed'})")
    print(lines[-1], flush=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    import torch
    return {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "threads": torch.get_num_threads(),
            "loadavg": {"before": load_before, "after": load_after}, "chapters": results,
            "committed_full_runs": committed, "total_cpu_estimate_seconds": total, "lines": lines}
