"""Profiles, seeds, device and parameter validation shared by every chapter.

Each notebook's second cell calls :func:`resolve` with its parameters; a bad value stops
there with one :class:`ParameterError`, before any data is read or any result is written.
"""
from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

PROFILES = ("smoke", "quick", "full")
DEVICES = ("auto", "cpu", "cuda")
PROJECT = "dl-repro-book"
# The checkout this package lives in (lib/repro/ -> the project root): relative defaults such
# as results/<profile> resolve against it, whatever the working directory (nbval runs the
# golden notebooks from tests/golden).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Smoke runs fix the thread count: CPU float results depend on it, and nbval needs bit-stable
# outputs. Quick/full runs use every core.
SMOKE_THREADS = 1


class ParameterError(ValueError):
    """A notebook parameter is invalid; raised before any work starts."""


def default_data_dir() -> Path:
    """The one place data is read from: $DATA_DIR, else ~/.cache/dl-repro-book/data."""
    return Path(os.environ.get("DATA_DIR") or Path.home() / ".cache" / PROJECT / "data").expanduser()


def default_cache_dir() -> Path:
    return Path(os.environ.get("REPRO_CACHE_DIR") or Path.home() / ".cache" / PROJECT / "results").expanduser()


def check_type(name: str, value, expected: type | tuple[type, ...]):
    # bool is an int in Python; a flag passed where a number is expected is a mistake.
    bad_bool = isinstance(value, bool) and bool not in (expected if isinstance(expected, tuple) else (expected,))
    if bad_bool or not isinstance(value, expected):
        names = " or ".join(t.__name__ for t in (expected if isinstance(expected, tuple) else (expected,)))
        raise ParameterError(f"parameter {name!r} must be {names}, got {value!r} ({type(value).__name__})")
    return value


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ParameterError(f"parameter {name!r} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return value


def check_positive(name: str, value, kind: type = int, allow_zero: bool = False):
    check_type(name, value, (int, float) if kind is float else int)
    if value < 0 or (value == 0 and not allow_zero):
        raise ParameterError(f"parameter {name!r} must be {'>= 0' if allow_zero else '> 0'}; got {value!r}")
    return value


def pick_device(name: str = "auto") -> torch.device:
    check_choice("device", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise ParameterError("parameter 'device' is 'cuda' but no CUDA device is available here")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Settings:
    """Resolved run settings: what the profile and overrides say, ready to use."""

    chapter: str
    profile: str
    seed: int
    device: torch.device
    data_dir: Path
    results_dir: Path
    cache_dir: Path | None
    threads: int
    knobs: dict = field(default_factory=dict)
    parameters: dict = field(default_factory=dict)
    max_minutes: float | None = None  # a full experiment missing from the store may take this long (None: no limit)
    experiments: list = field(default_factory=list)  # the result store's log: what was loaded or computed
    plan: object = None  # repro.store.Plan of a full run
    costs: dict = field(default_factory=dict)  # knob -> repro.store.Cost

    def __getitem__(self, key):
        return self.knobs[key]


def compute_threads() -> int:
    """Torch threads for quick/full runs: every core, or ``REPRO_THREADS`` when set.

    On a busy 2-core machine two torch threads fight the other processes (measured: a chapter
    slowed 5x); ``REPRO_THREADS=1`` is then faster. Smoke runs always use SMOKE_THREADS so that
    their floats stay bit-stable for nbval.
    """
    raw = os.environ.get("REPRO_THREADS", "").strip()
    if not raw:
        return os.cpu_count() or 1
    if not raw.isdigit() or int(raw) < 1:
        raise ParameterError(f"REPRO_THREADS must be a positive integer, not {raw!r}")
    return int(raw)


def resolve(chapter: str, profile: str, profile_table: dict, *, seed: int = 0, device: str = "auto",
            data_dir: str = "auto", results_dir: str = "auto", cache: bool = True,
            cache_dir: str = "auto", max_minutes: float | None = None,
            overrides: dict | None = None, knob_checks: dict | None = None, costs: dict | None = None) -> Settings:
    """Validate a chapter's parameters and merge the profile's knobs with explicit overrides.

    ``profile_table`` maps profile -> {knob: value}. ``overrides`` holds the notebook's own
    knobs; a value of ``None`` means "take the profile's". ``knob_checks`` maps knob -> a
    callable(name, value) that raises ParameterError.
    """
    check_type("profile", profile, str)
    check_choice("profile", profile, PROFILES)
    check_type("seed", seed, int)
    check_type("device", device, str)
    check_type("data_dir", data_dir, str)
    check_type("results_dir", results_dir, str)
    check_type("cache", cache, bool)
    check_type("cache_dir", cache_dir, str)
    if max_minutes is not None:
        check_positive("max_minutes", max_minutes, float, allow_zero=True)
    for name, value in (("data_dir", data_dir), ("results_dir", results_dir), ("cache_dir", cache_dir)):
        if not value:
            raise ParameterError(f"parameter {name!r} must be a folder or 'auto', not empty")
    knobs = dict(profile_table[profile])
    for name, value in (overrides or {}).items():
        if name not in knobs:
            raise ParameterError(f"unknown parameter {name!r}; known: {', '.join(sorted(knobs))}")
        if value is not None:
            knobs[name] = value
    for name, check in (knob_checks or {}).items():
        check(name, knobs[name])
    dev = pick_device(device)
    # An experiment missing from the store may take 10 minutes on a CPU, any time on a GPU; 0 lifts the limit.
    limit = (None if dev.type == "cuda" else 10.0) if max_minutes is None else (max_minutes or None)
    threads = SMOKE_THREADS if profile == "smoke" else compute_threads()
    torch.set_num_threads(threads)
    if profile == "smoke":
        torch.use_deterministic_algorithms(True, warn_only=True)
    results = PROJECT_ROOT / "results" / profile if results_dir == "auto" else Path(results_dir).expanduser()
    cdir = (default_cache_dir() if cache_dir == "auto" else Path(cache_dir).expanduser()) if cache else None
    parameters = dict(profile=profile, seed=seed, device=device, data_dir=data_dir,
                      results_dir=str(results), cache=cache, **knobs)
    settings = Settings(chapter=chapter, profile=profile, seed=seed, device=dev,
                    data_dir=default_data_dir() if data_dir == "auto" else Path(data_dir).expanduser(),
                    results_dir=results, cache_dir=cdir, threads=threads, knobs=knobs,
                    parameters={**parameters, "max_minutes": limit}, max_minutes=limit)
    if costs:
        from .store import plan  # what a full run loads, computes or leaves out (before any work)
        plan(settings, costs, profile_table.get("quick", knobs))
    return settings
