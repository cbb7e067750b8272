"""The result store: keys that cover exactly what determines a result, look-up order, planning, verify."""
import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from repro import config, fingerprint, store

LIB = Path(store.__file__).resolve().parents[1]

NOTEBOOK = '''
import torch
from torch import nn
import repro

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 3)

    def forward(self, x):
        return torch.relu(self.lin(x))

SETUP = dict(lr=0.1, momentum=0.9, batch_size=8, epochs=1)
x = torch.arange(32.0).reshape(8, 4) / 32
y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])

def train(setup):
    torch.manual_seed(0)
    model = Net()
    opt = torch.optim.SGD(model.parameters(), lr=setup["lr"], momentum=setup["momentum"])
    return repro.fit(model, repro.Split(x, y), opt, epochs=setup["epochs"], batch_size=setup["batch_size"],
                     progress=False)

compute = lambda: train(SETUP)
'''


def notebook(tmp_path, source=NOTEBOOK, name="cell"):
    """Define ``source`` the way a notebook cell does: module ``__main__``, source readable by inspect."""
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    namespace = {"__name__": "__main__"}
    exec(compile(source, str(path), "exec"), namespace)
    return namespace


def key(ns, config=None):
    return store.key_of("toy", "exp", config if config is not None else ns["SETUP"], ns["compute"])


def test_same_code_and_settings_give_the_same_key(tmp_path):
    assert key(notebook(tmp_path, name="a")) == key(notebook(tmp_path, name="b"))


@pytest.mark.parametrize("old, new", [
    ("lr=0.1", "lr=0.2"),                                    # a hyper-parameter
    ("return torch.relu(self.lin(x))", "return torch.tanh(self.lin(x))"),  # a model's forward
    ("torch.manual_seed(0)", "torch.manual_seed(1)"),        # the training function's body
    ("/ 32", "/ 33"),                                        # the data
])
def test_a_change_that_matters_is_a_miss(tmp_path, old, new):
    assert old in NOTEBOOK
    changed = notebook(tmp_path, NOTEBOOK.replace(old, new), name="changed")
    assert key(notebook(tmp_path)) != key(changed)


def test_comments_and_docstrings_do_not_change_the_key(tmp_path):
    edited = NOTEBOOK.replace("def train(setup):\n", 'def train(setup):\n    """Train."""  # a comment\n')
    assert key(notebook(tmp_path)) == key(notebook(tmp_path, edited, name="edited"))


def test_the_key_covers_the_library_functions_reached():
    ns = {"__name__": "__main__"}
    exec("import repro\ndef f():\n    return repro.fit\n", ns)
    deps = fingerprint.dependencies(ns["f"])
    assert "repro.engine.fit" in deps  # listed with its module, keyed without it


KEY_SCRIPT = textwrap.dedent('''
    import sys, tempfile, pathlib
    sys.path.insert(0, sys.argv[1])
    import repro, repro.store
    src = "import repro\\nSETUP = dict(lr=0.1)\\ndef run():\\n    return repro.fit, SETUP\\n"
    path = pathlib.Path(tempfile.mkdtemp()) / "cell.py"
    path.write_text(src)
    ns = {"__name__": "__main__"}
    exec(compile(src, str(path), "exec"), ns)
    print(repro.store.key_of("toy", "exp", ns["SETUP"], ns["run"]))
''')


def key_with_library(lib_dir: Path) -> str:
    out = subprocess.run([sys.executable, "-c", KEY_SCRIPT, str(lib_dir)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip()


def test_moving_a_function_to_another_module_keeps_the_key(tmp_path):
    copy = tmp_path / "lib"
    shutil.copytree(LIB, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = key_with_library(copy)
    engine = copy / "repro" / "engine.py"
    text = engine.read_text()
    # a layout change: the engine's module moves to repro/core/engine.py, re-exported under its old name
    (copy / "repro" / "core").mkdir()
    (copy / "repro" / "core" / "__init__.py").write_text("")
    (copy / "repro" / "core" / "engine.py").write_text(text.replace("from .", "from .."))
    engine.write_text("from .core.engine import *  # noqa\nfrom .core.engine import fit, evaluate, cross_entropy  # noqa\n")
    assert key_with_library(copy) == before


def test_editing_an_unrelated_module_is_a_hit_and_editing_the_engine_a_miss(tmp_path):
    copy = tmp_path / "lib"
    shutil.copytree(LIB, copy, ignore=shutil.ignore_patterns("__pycache__"))
    before = key_with_library(copy)
    for unrelated in ("tools/sitecheck.py", "tools/scoreboard.py"):
        (copy / "repro" / unrelated).write_text((copy / "repro" / unrelated).read_text() + "\nEDITED = True\n")
    assert key_with_library(copy) == before
    engine = copy / "repro" / "engine.py"
    lines = engine.read_text().splitlines(keepends=True)
    fit = next(n for n in ast.parse("".join(lines)).body if isinstance(n, ast.FunctionDef) and n.name == "fit")
    last = fit.body[-1]
    lines.insert(last.lineno - 1, " " * last.col_offset + "_edited = True\n")  # one more statement in fit's body
    engine.write_text("".join(lines))
    assert key_with_library(copy) != before


def settings_for(tmp_path, profile="smoke", **kw):
    table = {p: {"epochs": {"smoke": 1, "quick": 2, "full": 10}[p]} for p in config.PROFILES}
    return config.resolve("toy", profile, table, results_dir=str(tmp_path / "results"),
                          cache_dir=str(tmp_path / "cache"), **kw)


def test_an_attribute_named_like_a_global_is_not_an_input(tmp_path):
    source = "import torch\nclass Box:\n    weights = 1\nbox = Box()\nweights = torch.zeros(2)\ncompute = lambda: box.weights\n"
    a = notebook(tmp_path, source, "a")
    b = notebook(tmp_path, source.replace("torch.zeros(2)", "torch.ones(2)"), "b")
    assert key(a, {}) == key(b, {})


def test_a_progress_bar_is_not_an_input(tmp_path):
    # tqdm.auto is tqdm.notebook's class in a kernel and tqdm.std's in a plain process
    source = "from tqdm.std import tqdm\ncompute = lambda: [v for v in tqdm([1, 2], disable=True)]\n"
    script = notebook(tmp_path, source, "script")
    kernel = notebook(tmp_path, source.replace("tqdm.std", "tqdm.notebook"), "kernel")
    assert key(script, {}) == key(kernel, {})


def test_cache_hits_misses_logs_and_recovers_from_corruption(tmp_path):
    s = settings_for(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or {"x": torch.arange(3)}
    first = store.cached(s, "exp", {"a": 1}, compute)
    again = store.cached(s, "exp", {"a": 1}, compute)
    assert len(calls) == 1 and torch.equal(first["x"], again["x"])
    assert [e["source"] for e in s.experiments] == ["computed", "cache"]
    store.cached(s, "exp", {"a": 2}, compute)
    assert len(calls) == 2
    side = json.loads(next((tmp_path / "cache" / "toy").glob("exp-*.json")).read_text())
    assert {"commit", "created", "wall_seconds", "machine", "config", "depends_on"} <= set(side)
    assert {"device", "device_name", "threads", "torch"} <= set(side["machine"])
    for entry in (tmp_path / "cache" / "toy").glob("exp-*.pt"):
        entry.write_bytes(entry.read_bytes()[:-10])  # truncated
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        store.cached(s, "exp", {"a": 1}, compute)
    assert len(calls) == 3 and any("recomputing" in str(x.message) for x in w)


def test_cache_can_be_switched_off(tmp_path, monkeypatch):
    s = settings_for(tmp_path)
    calls = []
    compute = lambda: calls.append(1) or 1
    monkeypatch.setenv("REPRO_NO_CACHE", "1")
    store.cached(s, "exp", {}, compute)
    store.cached(s, "exp", {}, compute)
    assert len(calls) == 2
    assert config.resolve("toy", "smoke", {"smoke": {}}, cache=False).cache_dir is None


TRAIN_LONG = "import torch\ncompute = lambda: {'loss': torch.tensor([2.0, 1.0])}\n"


def committed_store(tmp_path, monkeypatch):
    """A full run computed into the local cache, then ``add``-ed to a store under tmp_path."""
    root = tmp_path / "store"
    monkeypatch.setattr(store, "STORE_DIR", root)
    monkeypatch.setattr(store, "PROJECT_ROOT", tmp_path)
    s = settings_for(tmp_path, "full")
    store.cached(s, "train-long", {"epochs": 10}, notebook(tmp_path, TRAIN_LONG, "long")["compute"])
    (tmp_path / "results" / "full").mkdir(parents=True, exist_ok=True)
    (tmp_path / "results" / "full" / "toy.json").write_text(json.dumps({"experiments": s.experiments}))
    assert len(store.add(["toy"], cache_dir=tmp_path / "cache", root=root)) == 1
    return root


def test_look_up_goes_cache_then_committed_store(tmp_path, monkeypatch):
    committed_store(tmp_path, monkeypatch)
    shutil.rmtree(tmp_path / "cache")
    s = settings_for(tmp_path, "full")
    monkeypatch.setenv("REPRO_STORE_ONLY", "1")  # a miss would raise instead of computing
    value = store.cached(s, "train-long", {"epochs": 10}, notebook(tmp_path, TRAIN_LONG, "long")["compute"])
    assert value["loss"].tolist() == [2.0, 1.0] and s.experiments[0]["source"] == "store"
    assert "loaded from the result store" in store.sources_markdown(s)


def test_a_finished_full_run_adopts_the_entries_of_a_run_cut_short(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PROJECT_ROOT", tmp_path)
    root = tmp_path / "store"
    monkeypatch.setattr(store, "STORE_DIR", root)
    cut_short = settings_for(tmp_path, "full", costs=COSTS, max_minutes=0)
    store.cached(cut_short, "train-long", {"epochs": 10}, notebook(tmp_path, TRAIN_LONG, "long")["compute"])
    assert len(store.add_from_cache(["toy"], cache_dir=tmp_path / "cache", root=root)) == 1
    shutil.rmtree(tmp_path / "cache")
    assert settings_for(tmp_path, "full", costs=COSTS).plan.stored == []  # found by key, but a cut-short run's part does not count
    finished = settings_for(tmp_path, "full", costs=COSTS, max_minutes=0)
    store.cached(finished, "train-long", {"epochs": 10}, notebook(tmp_path, TRAIN_LONG, "long")["compute"])
    assert finished.experiments[0]["source"] == "store"
    (tmp_path / "results" / "full").mkdir(parents=True, exist_ok=True)
    (tmp_path / "results" / "full" / "toy.json").write_text(json.dumps({"experiments": finished.experiments}))
    store.add(["toy"], cache_dir=tmp_path / "cache", root=root)
    assert settings_for(tmp_path, "full", costs=COSTS).plan.stored == ["epochs"]


def test_the_store_refuses_model_weights(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "PROJECT_ROOT", tmp_path)
    s = settings_for(tmp_path, "full")
    store.cached(s, "model", {}, lambda: {"net": torch.nn.Linear(2, 2)})
    (tmp_path / "results" / "full").mkdir(parents=True)
    (tmp_path / "results" / "full" / "toy.json").write_text(json.dumps({"experiments": s.experiments}))
    with pytest.raises(SystemExit, match="weights"):
        store.add(["toy"], cache_dir=tmp_path / "cache", root=tmp_path / "store")


COSTS = {"epochs": store.Cost(minutes=600, experiments=("train-long",), source="measured")}


def test_a_long_full_experiment_missing_from_the_store_is_not_started(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "STORE_DIR", tmp_path / "empty-store")
    s = settings_for(tmp_path, "full", costs=COSTS)
    assert s.knobs["epochs"] == 2 and "epochs" in s.plan.not_run  # the quick value, not 10
    message = s.plan.not_run["epochs"]
    assert "about 600 min" in message and "python -m repro.run toy -p profile full -p max_minutes 0" in message
    unlimited = settings_for(tmp_path, "full", costs=COSTS, max_minutes=0)
    assert unlimited.knobs["epochs"] == 10 and unlimited.plan.compute == ["epochs"]


def test_a_stored_full_experiment_is_planned_from_the_store(tmp_path, monkeypatch):
    committed_store(tmp_path, monkeypatch)
    s = settings_for(tmp_path, "full", costs=COSTS)
    assert s.knobs["epochs"] == 10 and s.plan.stored == ["epochs"]
    # stored under other code: not silently started, a clear error instead
    with pytest.raises(store.MissingFromStore, match="max_minutes 0"):
        store.cached(s, "train-long", {"epochs": 10}, notebook(tmp_path, TRAIN_LONG.replace("1.0", "0.5"), "edited")["compute"])


def test_verify_recomputes_and_catches_a_changed_result(tmp_path, monkeypatch):
    committed_store(tmp_path, monkeypatch)
    s = settings_for(tmp_path, "full")
    compute = notebook(tmp_path, TRAIN_LONG, "long")["compute"]
    k = store.key_of("toy", "train-long", {"epochs": 10}, compute)
    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setenv("REPRO_VERIFY", k)
    store.cached(s, "train-long", {"epochs": 10}, compute)
    assert s.experiments[-1]["source"] == "verified" and s.experiments[-1]["verified"]
    assert store.compare_values({"loss": torch.tensor([2.0, 1.0])}, {"loss": torch.tensor([2.0, 1.1])}, 1e-4)
    assert not store.compare_values({"loss": torch.tensor([2.0, 1.0])}, {"loss": torch.tensor([2.0, 1.0 + 1e-7])}, 1e-4)
    import pandas as pd
    timed = lambda s: pd.DataFrame({"loss": [2.0, 1.0], "seconds": [s, s]})
    assert not store.compare_values(timed(3.0), timed(5.0), 1e-4)  # wall-clock columns never reproduce
    assert store.compare_values(timed(3.0).assign(loss=[2.0, 1.5]), timed(3.0), 1e-4)


def test_store_only_mode_never_computes(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "STORE_DIR", tmp_path / "empty-store")
    monkeypatch.setenv("REPRO_STORE_ONLY", "1")
    s = settings_for(tmp_path, "full")
    with pytest.raises(store.MissingFromStore):
        store.cached(s, "exp", {}, lambda: pytest.fail("computed in store-only mode"))
    assert s.experiments[-1]["source"] == "missing"


def test_max_minutes_is_checked_before_any_work(tmp_path):
    for bad in (-1, "10", True):
        with pytest.raises(config.ParameterError, match="max_minutes"):
            settings_for(tmp_path, "full", max_minutes=bad)


def test_verify_samples_the_cheapest_entries_within_the_budget(tmp_path, monkeypatch):
    from repro.tools import verify

    entries = {"a": [dict(chapter="a", key="k1", wall_seconds=5), dict(chapter="a", key="k2", wall_seconds=500)],
               "b": [dict(chapter="b", key="k3", wall_seconds=20)]}
    monkeypatch.setattr(verify, "stored_entries", lambda chapter: entries[chapter])
    chosen = verify.sample(["a", "b"], budget_s=30)
    assert {c: [e["key"] for e in es] for c, es in chosen.items()} == {"a": ["k1"], "b": ["k3"]}


def test_a_rebuild_from_the_store_keeps_the_training_runs_summary(tmp_path):
    from repro import report

    s = settings_for(tmp_path, "full")
    s.experiments.append({"experiment": "e", "key": "k", "source": "computed"})
    path = report.write_summary(s, [report.compare("T", "a", 1.0, 1.0, 0.1)], started=0.0)
    trained = path.read_text()
    s.experiments[0]["source"] = "store"
    report.write_summary(s, [report.compare("T", "a", 1.0, 1.0, 0.1)], started=100.0)
    assert path.read_text() == trained  # same rows, same experiments: the record of the run that trained stays
    report.write_summary(s, [report.compare("T", "a", 1.0, 1.01, 0.1)], started=100.0)
    assert path.read_text() != trained


def test_a_stored_entry_made_with_older_library_code_is_planned_as_missing(tmp_path, monkeypatch):
    from repro import engine

    committed_store(tmp_path, monkeypatch)
    side_path = next((tmp_path / "store" / "toy").glob("*.json"))
    side = json.loads(side_path.read_text())
    assert store.library_current(side["depends_on"])
    side["depends_on"] = {"repro.engine.fit": "0" * 64}  # fit has changed since the entry was made
    side_path.write_text(json.dumps(side))
    assert not store.library_current(side["depends_on"])
    s = settings_for(tmp_path, "full", costs=COSTS)
    assert "epochs" in s.plan.not_run and s.knobs["epochs"] == 2  # not a failure at look-up: planned as missing
    assert store.library_current({"repro.engine.fit": fingerprint.part_digest(engine.fit)})
