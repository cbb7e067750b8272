"""The goldens are portable across x86-64 vector levels, and the comparison still catches a change.

Each test runs nbval in a fresh pytest process on copies of golden notebooks, with
``ATEN_CPU_CAPABILITY`` forced to one level this CPU supports (``default`` always; ``avx2`` and
``avx512`` where the CPU has them), which stands in for a machine whose best level is that one.
By default one chapter under the levels below the native one (make test's nbval run covers the
native level), to keep ``make test`` short; ``REPRO_PORTABILITY=all`` (``make test-portability``)
runs every golden under every level.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import nbnum

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
GOLDENS = sorted((TESTS / "golden").glob("*.ipynb"))
# The quickest golden (about 30 s here), and the one with the most numbers the levels move (83:
# round-off in its gradient checks, the last digits of its trained costs).
DEFAULT_CHAPTER = "dd2424-a3"
SELECTED = os.environ.get("REPRO_PORTABILITY", DEFAULT_CHAPTER)
CHOSEN = GOLDENS if SELECTED == "all" else [p for p in GOLDENS if p.stem in SELECTED.split(",")]


def run_nbval(notebooks: list[Path], level: str, tmp_path: Path) -> subprocess.CompletedProcess:
    work = tmp_path / "nb"
    work.mkdir(exist_ok=True)
    copies = []
    for nb in notebooks:
        copies.append(work / nb.name)
        if not copies[-1].exists():
            shutil.copy(nb, copies[-1])
    env = dict(os.environ, ATEN_CPU_CAPABILITY=level, REPRO_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(TESTS), str(ROOT / "lib"), os.environ.get("PYTHONPATH", "")]),
               **nbnum.PINNED)
    cmd = [sys.executable, "-m", "pytest", "-p", "nbnum", "-p", "no:cacheprovider", "-q", "--nbval",
           "--nbval-current-env", "--nbval-sanitize-with", str(TESTS / "nbval_sanitize.cfg"),
           "--nbval-cell-timeout=900", "--rootdir", str(work), *map(str, copies)]
    return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=3600)


# make test's own nbval run already covers the native (highest) level; REPRO_PORTABILITY=all runs every level.
LEVELS = nbnum.levels() if SELECTED == "all" else nbnum.levels()[:-1]


@pytest.mark.parametrize("level", LEVELS)
def test_goldens_pass_under_every_capability_level_of_this_cpu(level, tmp_path):
    assert CHOSEN, f"no golden named {SELECTED!r}"
    done = run_nbval(CHOSEN, level, tmp_path)
    assert done.returncode == 0, done.stdout[-6000:]
    assert re.search(r"\d+ passed", done.stdout)


def change_one_trained_number(golden: Path, target: Path) -> tuple[str, str]:
    """Copy ``golden`` to ``target`` with one trained number changed in its last printed digit: the
    first decimal number of our own results in a captioned table (a table captioned "Ours...", or a
    column headed "ours") whose output holds no number the capability levels moved. Returns (old, new)."""
    import json
    nb = json.loads(golden.read_text())
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        spread = cell.get("metadata", {}).get("nbval_numbers", {})
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/markdown")
            if text is None or any(k.startswith("text/markdown") for k in spread):
                continue
            lines = "".join(text).split("\n")
            header = next((n for n, line in enumerate(lines) if line.startswith("|")), None)
            if header is None:
                continue
            names = [c.strip() for c in lines[header].split("|")]
            columns = [i for i, name in enumerate(names) if "ours" in name.split()
                       or (lines[0].startswith("```{table} Ours") and i > 1)]
            for n in range(header + 2, len(lines)):
                cells = lines[n].split("|")
                for i in columns:
                    if i < len(cells) and re.fullmatch(r"\s*-?\d+\.\d+\s*", cells[i]):
                        old = cells[i].strip()
                        new = old[:-1] + ("8" if old[-1] == "9" else str(int(old[-1]) + 1))
                        cells[i] = cells[i].replace(old, new)
                        lines[n] = "|".join(cells)
                        output["data"]["text/markdown"] = "\n".join(lines)
                        target.write_text(json.dumps(nb, indent=1, ensure_ascii=False))
                        return old, new
    raise AssertionError(f"{golden.name}: no table of our results to change")


def test_a_changed_trained_number_still_fails(tmp_path):
    golden = CHOSEN[0]
    (tmp_path / "nb").mkdir()
    old, new = change_one_trained_number(golden, tmp_path / "nb" / golden.name)
    done = run_nbval([golden], nbnum.levels()[-1], tmp_path)  # the native level: only the change differs
    assert done.returncode == 1, done.stdout[-4000:]
    assert re.search(r"\b1 failed\b", done.stdout), done.stdout[-4000:]
    assert f"{old} where the golden has {new}" in done.stdout
