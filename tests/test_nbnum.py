"""The number-aware nbval comparison (tests/nbnum.py) on its own: what it accepts and what it refuses."""
import json
from pathlib import Path

import pytest

import nbnum

GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.mark.parametrize("ref, test", [
    ("acc 0.9277 |  loss 1e-4", "acc 0.9277 | loss 1e-4"),          # padding follows column widths
    ("|---:|--------:|\n| 0.50 |", "|------:|---:|\n| 0.5 |"),      # rules too; 0.50 == 0.5 as a number
    ("wrote ift6135-2020.json: 12 numbers", "wrote ift6135-2020.json: 12 numbers"),
])
def test_equal_accepts_the_same_numbers(ref, test):
    assert nbnum.equal(ref, test) is None


@pytest.mark.parametrize("ref, test, why", [
    ("acc 0.9277", "acc 0.9279", "0.9279 where the golden has 0.9277"),  # three decimals would have hidden it
    ("gap 1e-4", "gap 3e-4", "3e-4 where the golden has 1e-4"),
    ("verdict match", "verdict close", "text differs"),
    ("3 rows: 1, 2, 3", "3 rows: 1, 2", "text differs"),  # a missing number shows as missing text
])
def test_equal_refuses_a_changed_number_or_text(ref, test, why):
    assert why in nbnum.equal(ref, test)


def test_a_recorded_spread_is_widened_once_by_itself():
    ranges = [[1, 8.868e-12, 9.09e-12]]  # number 1 moved between capability levels
    ref = "N=1000: 8.868e-12"
    assert nbnum.equal(ref, "N=1000: 9.2e-12", ranges) is None           # inside [lo - w, hi + w]
    assert "outside the platform spread" in nbnum.equal(ref, "N=1000: 9.4e-12", ranges)
    assert "where the golden has 1000" in nbnum.equal(ref, "N=1001: 8.868e-12", ranges)  # number 0: exact


def test_spread_of_records_only_numbers_that_differ_and_refuses_other_text():
    def nb(text):
        return {"cells": [{"cell_type": "code", "outputs": [
            {"output_type": "execute_result", "data": {"text/plain": text, "image/png": "iVBOR"}}]}]}
    spread = nbnum.spread_of([nb("a 1.5 b 2.25"), nb("a 1.5 b 2.5"), nb("a  1.50 b 2.0")], lambda s: s)
    assert spread == {0: {"text/plain#0": [[1, 2.0, 2.5]]}}
    with pytest.raises(SystemExit, match="different text"):
        nbnum.spread_of([nb("a 1 match"), nb("a 1 close")], lambda s: s)


def test_levels_follow_the_cpu_flags():
    assert nbnum.levels("flags : fpu sse2") == ["default"]
    assert nbnum.levels("flags : sse2 avx2 fma") == ["default", "avx2"]
    assert nbnum.levels("flags : avx2 fma avx512f avx512bw avx512vl avx512dq") == ["default", "avx2", "avx512"]


@pytest.mark.parametrize("golden", sorted(GOLDEN.glob("*.ipynb")), ids=lambda p: p.stem)
def test_goldens_hold_no_images_and_well_formed_spreads(golden):
    nb = json.loads(golden.read_text())
    for cell in nb["cells"]:
        for output in cell.get("outputs", []):
            assert not {"image/png", "image/jpeg", "image/svg+xml"} & set(output.get("data", {})), "run make golden"
        for key, spans in cell.get("metadata", {}).get("nbval_numbers", {}).items():
            assert all(lo < hi for _, lo, hi in spans), key


def test_the_pins_are_the_same_in_the_makefile_the_golden_script_and_nbnum():
    root = GOLDEN.parents[1]
    for name, value in nbnum.PINNED.items():
        assert f"{name}={value}" in (root / "Makefile").read_text()
        assert f"{name}={value}" in (root / "tests" / "make_golden.sh").read_text()
