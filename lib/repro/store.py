"""The result store: finished experiments, keyed by what determines them, with provenance.

Every expensive computation of a chapter goes through :func:`cached`. Its key is the chapter,
the experiment's name and :func:`repro.fingerprint.fingerprint` of its explicit settings and of
the compute function (source of the function and of every notebook or library function and class
it reaches, the values it reads, the data by content). A look-up goes

1. the local cache (``~/.cache/dl-repro-book/results`` or ``REPRO_CACHE_DIR``), then
2. the committed store (``results/store/<chapter>/``), filled from ``full`` runs by
   ``python -m repro.store add`` (``make store``), then
3. computes, and writes the local cache.

An entry is ``<experiment>-<key>.pt`` (a torch.save payload followed by its SHA-256, written
atomically; a corrupt entry is never trusted) and a ``.json`` sidecar with its provenance
(commit, date, wall time, machine, threads, device). ``cache=False`` or ``REPRO_NO_CACHE=1``
recomputes everything. Every look-up is logged in ``settings.experiments``; the chapter summary
carries that log, and the page says where each result came from.

``full`` runs plan before they start (:func:`plan`): an expensive experiment the store lacks and
that would take longer than ``max_minutes`` is not started; its knob takes the ``quick`` value,
its rows read ``not run``, and the page gives the estimate and the command that runs it.
"""
from __future__ import annotations

import argparse
import fnmatch
import functools
import hashlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .config import PROJECT_ROOT
from .fingerprint import dependencies, fingerprint

STORE_DIR = PROJECT_ROOT / "results" / "store"
_DIGEST = 32
# Parameters that say where things go or how long we may wait, not what is computed.
PLUMBING = ("profile", "device", "data_dir", "results_dir", "cache", "cache_dir", "max_minutes")


# ----------------------------------------------------------------------------- files
def entry_path(root: Path, chapter: str, experiment: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return Path(root) / chapter / f"{safe}-{key}.pt"


def save(path: Path, value) -> None:
    buf = io.BytesIO()
    torch.save(value, buf)
    payload = buf.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(payload + hashlib.sha256(payload).digest())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class CorruptEntry(Exception):
    pass


class MissingFromStore(RuntimeError):
    """A ``full`` experiment is not stored for the current code and is too long to start here."""


def load(path: Path):
    blob = Path(path).read_bytes()
    payload, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if len(blob) <= _DIGEST or hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry(f"checksum mismatch in {path}")
    return torch.load(io.BytesIO(payload), weights_only=False)


def read_sidecar(path: Path) -> dict:
    try:
        return json.loads(Path(path).with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def enabled(cache_dir) -> bool:
    return cache_dir is not None and os.environ.get("REPRO_NO_CACHE", "") not in ("1", "true", "yes")


# ----------------------------------------------------------------------------- provenance
def git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, timeout=10,
                              cwd=PROJECT_ROOT).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device) -> dict:
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name() if device.type == "cuda" else cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "host": platform.node(),
    }


def run_parameters(settings) -> dict:
    """The parameters that decide what a run computes (where it writes things does not)."""
    return {k: v for k, v in settings.parameters.items() if k not in PLUMBING}


# ----------------------------------------------------------------------------- the look-up
def key_of(chapter: str, experiment: str, config: dict, compute: Callable) -> str:
    text = json.dumps({"chapter": chapter, "experiment": experiment, "inputs": fingerprint(config, compute)})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _jsonable(config) -> dict:
    return json.loads(json.dumps(config, default=str))


def _log(settings, **entry) -> None:
    log = getattr(settings, "experiments", None)
    if log is not None:
        log.append(entry)


def cached(settings, experiment: str, config: dict, compute: Callable[[], object], *, tolerance: float = 1e-4):
    """``compute()``, or its stored result if this exact experiment ran before.

    ``config`` holds the experiment's settings as explicit inputs (hyper-parameters, epochs,
    sizes); ``compute`` is fingerprinted too, so a setting written inside it, a model's
    ``forward`` or a library function it calls is part of the key as well. ``tolerance`` is the
    relative difference ``make verify`` accepts when it recomputes the entry.
    """
    if not enabled(settings.cache_dir):
        started = time.time()
        value = compute()
        _log(settings, experiment=experiment, key=None, source="computed", wall_seconds=round(time.time() - started, 2))
        return value
    key = key_of(settings.chapter, experiment, config, compute)
    config_digest = fingerprint(config)
    verify_keys = _verify_keys()
    store_only = os.environ.get("REPRO_STORE_ONLY") == "1"  # make verify: what the store holds, nothing local
    for source, root in ((("cache", settings.cache_dir),) if not store_only else ()) + (("store", STORE_DIR),):
        path = entry_path(root, settings.chapter, experiment, key)
        if not path.exists():
            continue
        try:
            value = load(path)
        except Exception as e:  # corrupt, truncated or unreadable: never trusted
            warnings.warn(f"result entry {path.name} is unreadable ({e}); recomputing", stacklevel=2)
            continue
        side = read_sidecar(path)
        if key in verify_keys:
            return _verify(settings, experiment, key, value, side, compute)
        _log(settings, experiment=experiment, key=key, source=source, wall_seconds=side.get("wall_seconds"),
             stored=side.get("created"), commit=side.get("commit"), machine=side.get("machine", {}))
        return value
    if store_only:
        return _stale_or_missing(settings, experiment, key, config_digest)
    _refuse_if_too_long(settings, experiment)
    started = time.time()
    value = compute()
    wall = round(time.time() - started, 2)
    path = entry_path(settings.cache_dir, settings.chapter, experiment, key)
    save(path, value)
    sidecar = {"chapter": settings.chapter, "experiment": experiment, "key": key, "config": _jsonable(config),
               "config_digest": config_digest, "depends_on": dependencies(compute),
               "profile": settings.profile, "parameters": run_parameters(settings), "reduced": _is_reduced(settings, experiment),
               "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "wall_seconds": wall,
               "commit": git("rev-parse", "--short", "HEAD") or None,
               "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
               "machine": machine(settings.device), "tolerance": tolerance}
    path.with_suffix(".json").write_text(json.dumps(sidecar, indent=1, default=str))
    _log(settings, experiment=experiment, key=key, source="computed", wall_seconds=wall)
    return value


# ----------------------------------------------------------------------------- planning a full run
@dataclass
class Cost:
    """What one expensive part of a ``full`` run costs, and which knobs size it.

    ``minutes``: the estimate on a 2-core CPU (None: not measured yet, so never started within a
    limit); ``experiments``: names or glob patterns of its :func:`cached` experiments; ``source``:
    where the estimate comes from (a measured run, a timed slice, a FLOP count); ``knobs``: the
    profile knobs that size it (default: the part's own name), all set to their ``quick`` values
    when it is left out.
    """

    minutes: float | None
    experiments: tuple[str, ...]
    source: str
    knobs: tuple[str, ...] = ()
    gpu_minutes: float | None = None


@dataclass
class Plan:
    stored: list = field(default_factory=list)  # parts whose full experiments the store holds
    compute: list = field(default_factory=list)  # parts computed now (within max_minutes)
    not_run: dict = field(default_factory=dict)  # part -> message (estimate and command)


def stored_entries(chapter: str, root: Path | None = None) -> list[dict]:
    return [{**read_sidecar(p), "path": p} for p in sorted((Path(root or STORE_DIR) / chapter).glob("*.pt"))]


def _resolve(module, attrs):
    obj = module
    for attr in attrs:
        obj = getattr(obj, attr, None)
        if obj is None:
            return None
    return obj


@functools.lru_cache(maxsize=1)
def _repro_modules() -> tuple:
    """Every importable ``repro`` module, walked once per process (library_current asks per dependency)."""
    import importlib
    import pkgutil

    import repro

    names = ["repro"] + [m.name for m in pkgutil.walk_packages(repro.__path__, "repro.")]
    out = []
    for name in names:
        try:
            out.append(importlib.import_module(name))
        except ImportError:
            continue
    return tuple(out)


def _library_objects(name: str) -> list:
    """What a recorded dependency ``repro.module.Qual.name`` is today: the object at that path, or,
    for code that moved to another module since (keys ignore the module), every object of that
    qualified name defined in a ``repro`` module."""
    import importlib

    parts = name.split(".")
    for cut in range(len(parts) - 1, 1, -1):  # the longest importable module prefix below "repro"
        try:
            module = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        obj = _resolve(module, parts[cut:])
        if obj is not None:
            return [obj]
        break
    found = []
    for module in _repro_modules():
        for cut in range(1, len(parts)):
            obj = _resolve(module, parts[cut:])
            if getattr(obj, "__module__", None) == module.__name__ and getattr(obj, "__qualname__", None) == ".".join(parts[cut:]):
                found.append(obj)
    return found


def library_current(depends_on) -> bool:
    """False when a library function or class the entry was computed with has changed since.

    Only ``repro`` code can be checked before a run (a notebook's own functions exist only once
    its cells run; an edit there is caught by the key at look-up). Code that moved to another
    module is found by its qualified name, as the key finds it. Digests are those of a Jupyter
    kernel, where every key is computed (``tqdm.auto`` resolves differently outside one): check
    from a plain process with :func:`repro.tools.verify.missing_parts_in_kernel`.
    """
    import inspect

    from .fingerprint import part_digest

    for name, digest in (depends_on or {}).items() if isinstance(depends_on, dict) else ():
        if not name.startswith("repro."):
            continue
        objects = _library_objects(name)
        if not objects:
            continue
        # A decorated method (torch.no_grad) is recorded under the same name as the function it wraps.
        candidates = set()
        for obj in objects:
            try:
                candidates |= {part_digest(obj)} | ({part_digest(inspect.unwrap(obj))} if hasattr(obj, "__wrapped__") else set())
            except KeyError:  # not code the fingerprint covers (a builtin slot such as object.__init__)
                continue
        if candidates and digest not in candidates:
            return False
    return True


def _matches(experiment: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(experiment, p) for p in patterns)


def _choices(parameters: dict, knobs) -> dict:
    """A run's choices (seeds, data set, variants), without the knobs that size its parts."""
    return {k: v for k, v in parameters.items() if k not in knobs and k not in PLUMBING}


def in_store(settings, patterns, wanted: dict | None = None, root: Path | None = None) -> bool:
    """True when the store holds full-size entries of these experiments, made with this run's choices.

    Only a look-up can tell whether an entry fits the current code exactly (its key); a planned
    part that then misses is refused with a clear message, never silently started.
    """
    wanted = _choices(settings.parameters, settings.knobs) if wanted is None else wanted
    found = [e for e in stored_entries(settings.chapter, root)
             if _matches(e.get("experiment", ""), patterns) and not e.get("reduced") and e.get("profile") == "full"
             and not e.get("partial_run")
             and _choices(e.get("parameters", {}), settings.knobs) == wanted and library_current(e.get("depends_on"))]
    return all(any(_matches(e["experiment"], [p]) for e in found) for p in patterns)


def plan(settings, costs: dict[str, Cost], quick_knobs: dict) -> Plan:
    """Decide, before any work, which expensive ``full`` experiments are loaded, run or skipped.

    A knob whose experiments the store lacks and whose estimate exceeds ``max_minutes`` takes
    its ``quick`` value (its rows then read ``not run``); the message gives the estimate and the
    command. ``settings.max_minutes`` None: no limit (the default on a GPU).
    """
    max_minutes = settings.max_minutes
    result = Plan()
    settings.plan = result
    settings.costs = costs
    if settings.profile != "full":
        return result
    on_gpu = settings.device.type == "cuda"
    wanted = _choices(settings.parameters, settings.knobs)
    for part, cost in costs.items():
        minutes = cost.gpu_minutes if on_gpu and cost.gpu_minutes is not None else cost.minutes
        if enabled(settings.cache_dir) and in_store(settings, cost.experiments, wanted):
            result.stored.append(part)
        elif max_minutes is None or (minutes is not None and minutes <= max_minutes):
            result.compute.append(part)
        else:
            knobs = cost.knobs or (part,)
            for knob in knobs:
                settings.knobs[knob] = quick_knobs[knob]
                settings.parameters[knob] = quick_knobs[knob]
            where = "GPU" if on_gpu else "CPU"
            took = "an unmeasured time" if minutes is None else f"about {minutes:,.0f} min"
            result.not_run[part] = (
                f"{part} at the report's setting is not in the result store and would take {took} on this "
                f"{where} ({cost.source}), more than max_minutes = {max_minutes:g}; this page shows the `quick` "
                f"setting ({', '.join(f'{k} = {quick_knobs[k]}' for k in knobs)}) instead. Run it with "
                f"`python -m repro.run {settings.chapter} -p profile full -p max_minutes 0`, then `make store`"
                + (f" (on a GPU about {cost.gpu_minutes:,.0f} min)" if cost.gpu_minutes and not on_gpu else "") + ".")
    return result


def _is_reduced(settings, experiment: str) -> bool:
    p = getattr(settings, "plan", None)
    costs = getattr(settings, "costs", {}) or {}
    return bool(p and any(_matches(experiment, costs[k].experiments) for k in p.not_run))


def _refuse_if_too_long(settings, experiment: str) -> None:
    """A planned-as-stored experiment that misses (code changed since) is not silently started."""
    p = getattr(settings, "plan", None)
    if not p or settings.profile != "full":
        return
    for part in p.stored:
        cost = settings.costs[part]
        limit = settings.max_minutes
        if _matches(experiment, cost.experiments) and limit is not None and (cost.minutes or float("inf")) > limit:
            raise MissingFromStore(
                f"{settings.chapter}: experiment {experiment!r} is stored only for older code or settings "
                f"(the store's entry no longer matches its key) and takes about {cost.minutes or float('inf'):,.0f} min here. "
                f"Re-run it with `python -m repro.run {settings.chapter} -p profile full -p max_minutes 0` "
                f"and `make store`, or see `make verify`.")


# ----------------------------------------------------------------------------- verification
def _verify_keys() -> set[str]:
    raw = os.environ.get("REPRO_VERIFY", "")
    return set(raw.split(",")) - {""}


def is_timing(name) -> bool:
    """Wall-clock measurements inside a result (seconds per epoch, ...): they never reproduce."""
    return any(word in str(name).lower() for word in ("second", "elapsed", "wall", "timing"))


def compare_values(stored, fresh, rtol: float, path: str = "value") -> list[str]:
    """Differences beyond ``rtol`` (relative to each array's scale) between two results (timings skipped)."""
    if isinstance(stored, pd.DataFrame) and isinstance(fresh, pd.DataFrame):
        if list(stored.columns) != list(fresh.columns) or len(stored) != len(fresh):
            return [f"{path}: shape or columns differ"]
        return [d for c in stored.columns if not is_timing(c)
                for d in compare_values(stored[c].to_numpy(), fresh[c].to_numpy(), rtol, f"{path}[{c}]")]
    if isinstance(stored, pd.Series):
        return compare_values(stored.to_numpy(), pd.Series(fresh).to_numpy(), rtol, path)
    if isinstance(stored, dict) and isinstance(fresh, dict):
        if set(stored) != set(fresh):
            return [f"{path}: keys differ"]
        return [d for k in stored if not is_timing(k) for d in compare_values(stored[k], fresh[k], rtol, f"{path}[{k!r}]")]
    if isinstance(stored, (list, tuple)) and isinstance(fresh, (list, tuple)):
        if len(stored) != len(fresh):
            return [f"{path}: lengths differ"]
        return [d for i, (a, b) in enumerate(zip(stored, fresh)) for d in compare_values(a, b, rtol, f"{path}[{i}]")]
    if isinstance(stored, torch.Tensor):
        stored, fresh = stored.detach().cpu().numpy(), torch.as_tensor(fresh).detach().cpu().numpy()
    if isinstance(stored, (np.ndarray, float, int, np.generic)) and not isinstance(stored, bool):
        a, b = np.asarray(stored), np.asarray(fresh)
        if a.shape != b.shape:
            return [f"{path}: shape {a.shape} vs {b.shape}"]
        if a.dtype.kind in "fciu" and b.dtype.kind in "fciu":
            a, b = a.astype(float), b.astype(float)
            scale = np.nanmax(np.abs(a)) if a.size and np.isfinite(a).any() else 0.0
            diff = np.abs(a - b)
            diff = np.where(np.isnan(a) & np.isnan(b), 0.0, diff)
            worst = float(np.nanmax(diff)) if diff.size else 0.0
            return [f"{path}: max difference {worst:.3g} > {rtol:g} x scale {scale:.3g}"] if worst > rtol * max(scale, 1e-12) else []
        return [] if np.array_equal(a, b) else [f"{path}: values differ"]
    return [] if repr(stored) == repr(fresh) else [f"{path}: {type(stored).__name__} differs"]


def _verify(settings, experiment, key, stored, side, compute):
    started = time.time()
    fresh = compute()
    wall = round(time.time() - started, 2)
    problems = compare_values(stored, fresh, side.get("tolerance", 1e-4))
    _log(settings, experiment=experiment, key=key, source="verified", wall_seconds=wall,
         stored_wall_seconds=side.get("wall_seconds"), verified=not problems, problems=problems[:5])
    return stored


def _stale_or_missing(settings, experiment, key, config_digest):
    """Store-only mode (``make verify``): never compute; log the miss, continue with an older entry if any."""
    older = [e for e in stored_entries(settings.chapter)
             if e.get("experiment") == experiment and e.get("config_digest") == config_digest]
    _log(settings, experiment=experiment, key=key, source="missing", older_key=older[0]["key"] if older else None)
    if older:
        return load(older[0]["path"])
    raise MissingFromStore(f"{settings.chapter}: {experiment!r} is not in the result store (key {key})")


# ----------------------------------------------------------------------------- what the page says
def sources_markdown(settings) -> str:
    """One paragraph for the top of a chapter page: where its results came from."""
    log = getattr(settings, "experiments", [])
    by = {s: [e for e in log if e["source"] == s] for s in ("computed", "cache", "store", "verified", "missing")}
    parts = []
    if by["store"]:
        commits = sorted({e.get("commit") or "?" for e in by["store"]})
        dates = sorted(e.get("stored") or "?" for e in by["store"])
        machines = sorted({f"{e['machine'].get('device_name', '?')} ({e['machine'].get('device', '?')}, "
                           f"{e['machine'].get('threads', '?')} thread(s))" for e in by["store"] if e.get("machine")})
        wall = sum(e.get("wall_seconds") or 0 for e in by["store"])
        parts.append(f"**{len(by['store'])} experiment(s) loaded from the result store** (`results/store/`): "
                     f"computed {dates[0][:10]}" + (f" to {dates[-1][:10]}" if dates[-1][:10] != dates[0][:10] else "")
                     + f" at commit {', '.join(commits)} on {'; '.join(machines)}, {wall / 60:,.1f} min of training in all.")
    if by["cache"]:
        parts.append(f"**{len(by['cache'])} experiment(s) from the local cache** of an earlier run on this machine.")
    if by["computed"]:
        wall = sum(e.get("wall_seconds") or 0 for e in by["computed"])
        timing = "" if settings.profile == "smoke" else f" ({wall / 60:,.1f} min)"  # smoke pages are nbval goldens
        parts.append(f"**{len(by['computed'])} experiment(s) computed in this run**{timing}.")
    if by["verified"]:
        ok = sum(e["verified"] for e in by["verified"])
        parts.append(f"{len(by['verified'])} stored experiment(s) re-computed to verify them: {ok} reproduced.")
    if by["missing"]:
        parts.append(f"{len(by['missing'])} experiment(s) missing from the store for the current code.")
    plan_ = getattr(settings, "plan", None)
    if plan_ and plan_.not_run:
        parts.extend(f"Not run: {m}" for m in plan_.not_run.values())
    if not parts:
        parts.append("No experiment of this page goes through the result store.")
    return f"Profile `{settings.profile}`. " + " ".join(parts)


# ----------------------------------------------------------------------------- command line
def add(chapters: list[str], profile: str = "full", cache_dir: Path | None = None, root: Path | None = None) -> list[Path]:
    """Copy the entries a finished run used from the local cache into the committed store."""
    from .config import default_cache_dir

    cache_dir = Path(cache_dir or default_cache_dir())
    root = Path(root or STORE_DIR)
    added = []
    for chapter in chapters:
        summary_path = PROJECT_ROOT / "results" / profile / f"{chapter}.json"
        if not summary_path.is_file():
            raise SystemExit(f"no summary {summary_path}: run `python -m repro.run {chapter} -p profile {profile}` first")
        summary = json.loads(summary_path.read_text())
        for e in summary.get("experiments", []):
            if e.get("source") == "store" and e.get("key"):
                # Stored from a run cut short (partial_run): this finished run used it, so it now counts.
                adopt_partial(entry_path(root, chapter, e["experiment"], e["key"]))
            if e.get("source") not in ("computed", "cache") or not e.get("key"):
                continue
            src = entry_path(cache_dir, chapter, e["experiment"], e["key"])
            if not src.exists():
                raise SystemExit(f"{chapter}: entry {src.name} is not in the local cache {cache_dir}")
            check_no_weights(load(src), src.name)
            dst = entry_path(root, chapter, e["experiment"], e["key"])
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            shutil.copyfile(src.with_suffix(".json"), dst.with_suffix(".json"))
            added.append(dst)
    return added


def adopt_partial(entry: Path) -> None:
    """Drop the ``partial_run`` mark of a stored entry that a complete full run has used."""
    side = read_sidecar(entry)
    if side.pop("partial_run", False):
        entry.with_suffix(".json").write_text(json.dumps(side, indent=1, default=str))


def add_from_cache(chapters: list[str], cache_dir: Path | None = None, root: Path | None = None) -> list[Path]:
    """Copy every ``full``-profile entry of these chapters from the local cache into the store.

    For a full run that has not finished (a session can end in the middle of one): what it has
    computed so far is kept, and the next run loads it instead of starting again.
    """
    from .config import default_cache_dir

    cache_dir, root = Path(cache_dir or default_cache_dir()), Path(root or STORE_DIR)
    added = []
    for chapter in chapters:
        for src in sorted((cache_dir / chapter).glob("*.pt")):
            side = read_sidecar(src)
            if side.get("profile") != "full":
                continue
            check_no_weights(load(src), src.name)
            dst = root / chapter / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            # From a run cut short: a look-up by key finds the entry (no recompute), but a plan never
            # counts its part as stored, since the part's other entries may be missing.
            dst.with_suffix(".json").write_text(json.dumps({**side, "partial_run": True}, indent=1, default=str))
            added.append(dst)
    return added


def check_no_weights(value, name: str) -> None:
    """The store keeps histories, metrics and predictions, never a model's weights."""
    def walk(v, depth=0):
        if isinstance(v, torch.nn.Module):
            raise SystemExit(f"{name}: holds a model ({type(v).__name__}); store its results, not its weights")
        if depth < 6 and isinstance(v, dict):
            for x in v.values():
                walk(x, depth + 1)
        elif depth < 6 and isinstance(v, (list, tuple)):
            for x in v:
                walk(x, depth + 1)
    walk(value)


def prune(chapters: list[str], profile: str = "full", root: Path | None = None) -> list[Path]:
    """Remove store entries that the chapter's committed summary no longer uses."""
    root = Path(root or STORE_DIR)
    removed = []
    for chapter in chapters:
        summary = json.loads((PROJECT_ROOT / "results" / profile / f"{chapter}.json").read_text())
        used = {e["key"] for e in summary.get("experiments", []) if e.get("key")}
        for p in (Path(root) / chapter).glob("*.pt"):
            if p.stem.rsplit("-", 1)[-1] not in used:
                p.unlink()
                p.with_suffix(".json").unlink(missing_ok=True)
                removed.append(p)
    return removed


def size_bytes(root: Path | None = None) -> int:
    return sum(p.stat().st_size for p in Path(root or STORE_DIR).rglob("*") if p.is_file())


def _main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.store", description="The committed result store.")
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("add", help="copy the entries of finished full runs (results/full/<chapter>.json) into results/store")
    a.add_argument("chapters", nargs="+")
    a.add_argument("--prune", action="store_true", help="also remove entries the summaries no longer use")
    a.add_argument("--from-cache", action="store_true",
                   help="copy every full-profile entry of the local cache (a run still going or cut short)")
    sub.add_parser("list", help="the store's entries with their provenance")
    args = p.parse_args(argv)
    if args.command == "add":
        added = add_from_cache(args.chapters) if args.from_cache else add(args.chapters)
        removed = prune(args.chapters) if args.prune else []
        print(f"added {len(added)} entries, removed {len(removed)}; store is {size_bytes() / 1e6:.1f} MB")
    else:
        for chapter_dir in sorted(STORE_DIR.glob("*")):
            for e in stored_entries(chapter_dir.name):
                print(f"{chapter_dir.name:14s} {e.get('experiment', '?'):28s} {e.get('wall_seconds', 0):8.1f} s "
                      f"{e.get('created', '?')} {e.get('commit', '?')} {e.get('machine', {}).get('device_name', '?')}")
        print(f"store: {size_bytes() / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
