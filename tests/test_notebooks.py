"""Hygiene of the source notebooks, the TOC, the goldens, and parameter refusal."""
import ast
import json
import re
from pathlib import Path

import nbformat
import papermill
import pytest

from repro import run

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "notebooks").glob("*.ipynb"))
CHAPTERS = [p.stem for p in SOURCES]


def code_cells(nb):
    return [c.source for c in nb.cells if c.cell_type == "code" and "injected-parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", SOURCES, ids=CHAPTERS)
def test_source_notebook_is_clean(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged 'parameters'"
    for node in ast.parse(params[0].source).body:
        assert isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant), \
            f"parameters cell must hold literal assignments only: {ast.unparse(node)}"
    source = "\n".join(code_cells(nb))
    assert re.search(r"^import repro\b", source, re.M) and "tests" not in re.findall(r"^(?:from|import) (\w+)", source, re.M)


def test_every_notebook_is_in_the_toc_once():
    toc = re.findall(r"file:\s*book/chapters/([\w.-]+)", (ROOT / "_toc.yml").read_text())
    assert sorted(toc) == CHAPTERS


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_golden_is_up_to_date_with_its_source(chapter):
    golden = ROOT / "tests" / "golden" / f"{chapter}.ipynb"
    assert golden.exists(), "run make golden"
    src = code_cells(nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4))
    gold = nbformat.read(golden, as_version=4)
    assert code_cells(gold) == src, "the golden notebook is stale: run make golden"
    injected = next(c.source for c in gold.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'profile = "smoke"' in injected and "cache = False" in injected


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_run_wrapper_refuses_unknown_names_and_wrong_types(chapter, monkeypatch):
    monkeypatch.chdir(ROOT)
    with pytest.raises(SystemExit, match="unknown parameter 'epochz'"):
        run.main([chapter, "-p", "epochz", "3"])
    with pytest.raises(SystemExit, match="parameter 'seed' must be int"):
        run.main([chapter, "-p", "seed", "three"])


@pytest.mark.parametrize("chapter", CHAPTERS)
@pytest.mark.parametrize("name, value, message", [
    ("profile", "fast", "parameter 'profile' must be one of"),
    ("device", "tpu", "parameter 'device' must be one of"),
    ("data_dir", "/nonexistent/data", "not found in /nonexistent/data"),
])
def test_bad_parameter_stops_early_and_keeps_earlier_results(chapter, name, value, message, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    earlier = results / f"{chapter}.json"
    earlier.write_text(json.dumps({"kept": True}))
    with pytest.raises(papermill.PapermillExecutionError, match=re.escape(message)):
        papermill.execute_notebook(str(ROOT / "notebooks" / f"{chapter}.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={name: value, "results_dir": str(results), "profile": "smoke"} | (
                                       {name: value}), cwd=str(ROOT), progress_bar=False, kernel_name="python3")
    assert json.loads(earlier.read_text()) == {"kept": True}
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    source_cells = [c for c in executed.cells if c.cell_type == "code"
                    and "injected-parameters" not in c.metadata.get("tags", [])]  # papermill adds error banners too
    failed = [i for i, c in enumerate(source_cells) if any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert failed and failed[0] <= 3, "the error must come from the first cells, before any training"


def test_run_uses_ipc_and_prints_no_tcp_warning(tmp_path):
    """repro.run's kernel listens on IPC sockets: no "running over TCP without encryption" noise."""
    import subprocess
    import sys
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                                         nbformat.v4.new_code_cell("print(x + 1)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "t.ipynb")
    code = ("from pathlib import Path; from repro.run import execute; "
            f"execute(Path({str(tmp_path / 't.ipynb')!r}), Path({str(tmp_path / 'out.ipynb')!r}), {{'x': 41}})")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr and "Parent appears to have exited" not in done.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[-1].outputs[0]["text"] == "42\n"
