"""A result cache so that a rebuild recomputes only what changed.

Each entry is keyed by (chapter, experiment, its full settings, a version of the code it
depends on) and stored as ``<cache_dir>/<chapter>/<experiment>-<key>.pt``: a torch.save
payload followed by its SHA-256, written to a temporary file and renamed (atomic). A
truncated or corrupted entry fails its checksum, is reported with a warning and recomputed.
A sweep caches each member group separately, so an interrupted sweep resumes where it
stopped. ``cache=False`` (``-p cache False``) or ``REPRO_NO_CACHE=1`` forces recomputation.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

_DIGEST = 32
_LIB = Path(__file__).resolve().parent


def code_version(extra: str = "") -> str:
    """Hash of the library's source (plus ``extra``, e.g. a notebook's model code)."""
    h = hashlib.sha256(extra.encode())
    for path in sorted(_LIB.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def key_of(chapter: str, experiment: str, config: dict, code: str = "") -> str:
    text = json.dumps({"chapter": chapter, "experiment": experiment, "config": config, "code": code_version(code)},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _path(cache_dir: Path, chapter: str, experiment: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return Path(cache_dir) / chapter / f"{safe}-{key}.pt"


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


def load(path: Path):
    blob = Path(path).read_bytes()
    payload, digest = blob[:-_DIGEST], blob[-_DIGEST:]
    if len(blob) <= _DIGEST or hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry(f"checksum mismatch in {path}")
    return torch.load(io.BytesIO(payload), weights_only=False)


def enabled(cache_dir) -> bool:
    return cache_dir is not None and os.environ.get("REPRO_NO_CACHE", "") not in ("1", "true", "yes")


def cached(settings, experiment: str, config: dict, compute: Callable[[], object], code: str = ""):
    """Return ``compute()``, or its stored result if this exact experiment ran before.

    ``settings`` gives the chapter and cache folder (None = caching off); ``config`` must
    hold every setting that changes the result (profile knobs, seeds, sizes, device type).
    """
    cache_dir = settings.cache_dir
    if not enabled(cache_dir):
        return compute()
    config = {**config, "device_type": settings.device.type}
    path = _path(cache_dir, settings.chapter, experiment, key_of(settings.chapter, experiment, config, code))
    if path.exists():
        try:
            return load(path)
        except Exception as e:  # corrupt, truncated or unreadable: never trusted
            warnings.warn(f"cache entry {path.name} is unreadable ({e}); recomputing", stacklevel=2)
    value = compute()
    save(path, value)
    return value
