"""repro.parameters: the rules a parameters cell declares in its comments, applied before any work."""
import json

import pytest

from repro import parameters, report
from repro.config import ParameterError

CELL = '''profile = "quick"  # smoke | quick | full
seed = 0  # first seed
device = "auto"  # auto | cpu | cuda
epochs = None  # epochs of each run (report 10), > 0; None: the profile value
budget = None  # images per run, >= 0 (0: no cap); None: the profile value
init = "xavier"  # xavier: what the code ran | he: as the text says
precision = None  # float32 | float64 (the numpy code) | None (the profile value)
early_stopping = True  # True: stop early | False: run all steps
lr = 0.2  # learning rate
'''
PROFILES = {"smoke": dict(epochs=1, budget=100, precision="float32"), "quick": dict(epochs=2, budget=0, precision="float32"),
            "full": dict(epochs=10, budget=0, precision="float64")}


@pytest.fixture
def spec(tmp_path):
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": CELL, "outputs": [],
                     "execution_count": None, "id": "p"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "toy.ipynb"
    path.write_text(json.dumps(nb))
    return parameters.declared(path)


def test_the_comments_declare_choices_and_bounds(spec):
    assert spec["profile"].choices == ("smoke", "quick", "full")
    assert spec["init"].choices == ("xavier", "he")
    assert spec["precision"].choices == ("float32", "float64", None)
    assert spec["early_stopping"].choices == (True, False)
    assert spec["epochs"].bound == ">" and spec["budget"].bound == ">="
    assert spec["seed"].choices is None and spec["seed"].bound is None and spec["lr"].bound is None


def test_defaults_follow_their_own_rules(spec):
    parameters.check(spec, {name: p.default for name, p in spec.items()}, PROFILES)


@pytest.mark.parametrize("name, value, message", [
    ("nope", 1, "unknown parameter 'nope'"),
    ("profile", "huge", "must be one of 'smoke', 'quick', 'full'"),
    ("init", "kaiming", "must be one of 'xavier', 'he'"),
    ("epochs", -3, "'epochs' must be > 0"),
    ("epochs", 0, "'epochs' must be > 0"),
    ("budget", -1, "'budget' must be >= 0"),
    ("epochs", 2.5, "'epochs' must be int"),  # None default: the type of the profile's value
    ("epochs", "10", "'epochs' must be int"),
    ("seed", True, "'seed' must be int"),  # a flag where a number goes is a mistake
    ("lr", "fast", "'lr' must be float"),
    ("early_stopping", 1, "one of True, False"),
    ("precision", "float16", "must be one of"),
])
def test_bad_values_are_refused_with_the_rule(spec, name, value, message):
    with pytest.raises(ParameterError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parameters.check(spec, {name: value}, PROFILES)


def test_good_values_pass(spec):
    parameters.check(spec, {"budget": 0, "epochs": 3, "lr": 1, "precision": None, "early_stopping": False,
                            "init": "he", "seed": 7}, PROFILES)


def test_every_error_is_reported_at_once(spec):
    with pytest.raises(ParameterError) as e:
        parameters.check(spec, {"epochs": -1, "init": "x"}, PROFILES)
    assert "epochs" in str(e.value) and "init" in str(e.value)


def test_every_chapter_declares_rules_its_defaults_obey():
    for path in sorted(parameters.PROJECT_ROOT.glob("notebooks/*.ipynb")):
        spec = parameters.declared(path)
        assert set(parameters.COMMON) <= set(spec), path.name
        parameters.check(spec, {name: p.default for name, p in spec.items()})


def test_deviations_are_read_from_yaml_and_filled_from_the_run(tmp_path, monkeypatch):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "deviations.yaml").write_text(
        "- title: Loss\n  report_says: 0.5\n  code_did: 'ours {loss:.2f}'\n  evidence: file\n  effect: none\n")
    monkeypatch.setattr(report, "reference_dir", lambda chapter: tmp_path / chapter)
    [d] = report.deviations("toy", loss=0.1234)
    assert d.code_did == "ours 0.12" and d.report_says == "0.5" and d.default == "what was run"
    with pytest.raises(ValueError, match="quotes 'loss'"):
        report.deviations("toy")
    (tmp_path / "toy" / "deviations.yaml").write_text("- title: Loss\n  said: 1\n")
    with pytest.raises(ValueError, match="unknown field"):
        report.deviations("toy")
