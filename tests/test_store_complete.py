"""The committed result store is complete, or says exactly what it still lacks.

Every expensive part of every chapter's ``full`` profile (its ``FULL_COSTS``) has entries in
``results/store`` made with today's library code, or is declared in ``results/store/pending.json``
with the reason and the estimate. A change that invalidates stored entries therefore fails here
until they are re-computed (or declared pending, visibly); a part that has been stored must leave
the pending list. Every experiment logged by a committed ``results/full`` summary is in the store.
"""
import json
from pathlib import Path

import pytest

from repro import store
from repro.tools import verify

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))
PENDING_FILE = ROOT / "results" / "store" / "pending.json"
PENDING = json.loads(PENDING_FILE.read_text()) if PENDING_FILE.exists() else {}


@pytest.fixture(scope="module")
def missing():
    return verify.missing_parts_in_kernel(CHAPTERS)  # digests as the notebooks' kernels compute them


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_full_part_is_stored_or_declared_pending(chapter, missing):
    missing = missing[chapter]
    declared = PENDING.get(chapter, {})
    assert set(declared) <= set(verify.full_costs(chapter)), "pending.json names a part the chapter does not have"
    newly_missing = {p: why for p, why in missing.items() if p not in declared}
    assert not newly_missing, f"stored full results invalidated or never stored, not declared pending: {newly_missing}"
    stored_now = set(declared) - set(missing)
    assert not stored_now, f"these parts are in the store now: remove them from pending.json: {sorted(stored_now)}"
    for part, why in declared.items():
        assert why.get("reason") and "estimate" in why, f"{part}: pending needs a reason and an estimate"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_a_committed_full_summary_has_every_experiment_in_the_store(chapter):
    path = ROOT / "results" / "full" / f"{chapter}.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    logged = [e for e in summary.get("experiments", []) if e.get("key")]
    if not logged:
        pytest.skip(f"no committed full summary with a store log for {chapter}")
    absent = [e["experiment"] for e in logged
              if not store.entry_path(store.STORE_DIR, chapter, e["experiment"], e["key"]).exists()]
    assert not absent, f"run `make store CHAPTER={chapter}`: not in the store: {absent}"


def test_the_store_stays_under_50_mb():
    assert store.size_bytes() < 50e6
