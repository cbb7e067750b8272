import json
import math
from dataclasses import asdict

import pytest
import torch

from repro import config, report
from repro.tools import scoreboard


@pytest.mark.parametrize("reported, ours, tol, kind, expected", [
    (1.0, 1.05, 0.1, "abs", "match"), (1.0, 1.15, 0.1, "abs", "close"), (1.0, 1.25, 0.1, "abs", "differs"),
    (2.0, 2.019, 0.01, "rel", "match"), (2.0, 2.03, 0.01, "rel", "close"), (2.0, 2.05, 0.01, "rel", "differs"),
    (1e-11, 1.5e-11, 0.25, "log10", "match"), (1e-11, 2.5e-11, 0.25, "log10", "close"),
    (0.0, 0.0, 0.25, "log10", "match"), (0.0, 1e-12, 0.25, "log10", "differs"), (0.9, None, 0.1, "abs", "not run"),
])
def test_verdict_rules(reported, ours, tol, kind, expected):
    assert report.verdict(reported, ours, tol, kind) == expected


def test_other_data_is_not_comparable_and_unknown_kind_is_refused():
    assert report.verdict(1.0, 1.0, 0.1, comparable=False) == "not comparable"
    with pytest.raises(ValueError):
        report.distance(1.0, 1.0, "percent")


def settings_for(tmp_path, chapter="toy"):
    return config.resolve(chapter, "smoke", {"smoke": {}}, results_dir=str(tmp_path / "results"),
                          cache_dir=str(tmp_path / "cache"))


def test_summary_json_has_provenance_and_one_row_per_number(tmp_path):
    s = settings_for(tmp_path)
    rows = [report.compare("T1", "a", 1.0, 1.0, 0.1), report.compare("T1", "b", 2.0, None, 0.1)]
    path = report.write_summary(s, rows, started=0.0)
    data = json.loads(path.read_text())
    assert path.name == "toy.json" and data["chapter"] == "toy" and data["profile"] == "smoke"
    assert {"git_commit", "started", "wall_seconds", "device", "torch", "threads"} <= set(data["provenance"])
    assert [r["verdict"] for r in data["rows"]] == ["match", "not run"]
    assert set(data["rows"][0]) >= {"experiment", "quantity", "reported", "reproduced", "tolerance", "verdict"}


def test_scoreboard_counts_verdicts_and_shows_missing_chapters(tmp_path):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("- file: book/chapters/alpha\n- file: book/chapters/beta\n")
    rows = [{"experiment": "T", "quantity": q, "reported": 1.0, "reproduced": r, "tolerance": 0.1,
             "tolerance_kind": "abs", "verdict": v, "section": "s"}
            for q, r, v in (("a", 1.0, "match"), ("b", 1.2, "close"), ("c", 2.0, "differs"), ("d", None, "not run"),
                            ("e", 1.0, "not comparable"))]
    summary = {"chapter": "alpha", "provenance": {"started": "2026-11-30T00:00:00Z"}, "rows": rows}
    (tmp_path / "results" / "quick" / "alpha.json").write_text(json.dumps(summary))
    page = scoreboard.render("quick", root=tmp_path)
    assert "| alpha" in page and "| beta" in page and "missing" in page
    build = page.split("## Verdicts of this build")[1]
    line = next(l for l in build.splitlines() if l.startswith("| alpha"))
    assert [c.strip() for c in line.strip("|").split("|")][2:] == ["1", "1", "1", "1", "1", "0", "0", "0"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(profile="fast"), "profile"), (dict(profile="smoke", device="tpu"), "device"),
    (dict(profile="smoke", seed="1"), "seed"), (dict(profile="smoke", seed=True), "seed"),
    (dict(profile="smoke", data_dir=""), "data_dir"), (dict(profile="smoke", cache="yes"), "cache"),
    (dict(profile="smoke", overrides={"epochs": 0}), "epochs"), (dict(profile="smoke", overrides={"epochs": -2}), "epochs"),
    (dict(profile="smoke", overrides={"epochs": 1.5}), "epochs"), (dict(profile="smoke", overrides={"lr": 1}), "unknown"),
])
def test_bad_parameters_are_refused(kwargs, message):
    table = {p: {"epochs": 1} for p in config.PROFILES}
    with pytest.raises(config.ParameterError, match=message):
        config.resolve("toy", kwargs.pop("profile"), table, knob_checks={"epochs": config.check_positive}, **kwargs)


def test_profile_knobs_are_overridden_only_when_given():
    table = {p: {"epochs": 3} for p in config.PROFILES}
    assert config.resolve("t", "quick", table, overrides={"epochs": None}).knobs["epochs"] == 3
    assert config.resolve("t", "quick", table, overrides={"epochs": 7}).knobs["epochs"] == 7


def test_deviation_and_landing_pages_come_from_the_summaries(tmp_path):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("- file: book/chapters/alpha\n- file: book/chapters/beta\n")
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "alpha.ipynb").write_text(json.dumps(
        {"cells": [{"cell_type": "markdown", "source": ["## Sec. 1\n"], "metadata": {}}]}))
    dev = report.Deviation("Validation is the test set", "validation 98%", "test set used", "train.py", "none", "sec-1")
    s = settings_for(tmp_path, "alpha")
    s.results_dir = tmp_path / "results" / "quick"
    report.write_summary(s, [report.compare("T", "a", 1.0, 1.0, 0.1)], 0.0, deviations=[dev], headline="all good")
    page = scoreboard.render_deviations("quick", root=tmp_path)
    assert "### Validation is the test set" in page and "chapters/alpha.ipynb#sec-1" in page
    assert "## beta" in page and "Summary missing" in page
    landing = scoreboard.render_reports("quick", root=tmp_path)
    assert "all good" in landing and "summary missing" in landing


def test_speed_section_reads_the_benchmark_file(tmp_path):
    from repro.tools.scoreboard import render_speed
    assert "No speed benchmark" in render_speed(tmp_path / "missing.json")
    (tmp_path / "bench.json").write_text(json.dumps({"cpu": {"started": "2026-11-30", "lines": ["matmul peak: 1 GFLOP/s"]}}))
    text = render_speed(tmp_path / "bench.json")
    assert "`cpu`, measured 2026-11-30" in text and "matmul peak: 1 GFLOP/s" in text


def test_captioned_tables_flatten_multilevel_labels_and_escape_pipes():
    import pandas as pd
    from repro.report import captioned
    frame = pd.DataFrame({("mean", "test"): [1.0], ("sd", "test"): [0.1]},
                         index=pd.MultiIndex.from_tuples([("lr|x", 1)], names=["k", "n"]))
    text = captioned(frame, "A caption", "tab-test")._repr_markdown_()
    assert text.startswith("```{table} A caption\n:name: tab-test\n")
    assert "mean test" in text and "('mean'" not in text and "lr\\|x 1" in text


def test_scoreboard_sets_tolerances_against_the_measured_seed_spread(tmp_path):
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("- file: book/chapters/alpha\n")
    rows = [asdict(report.compare("T", "acc", 0.90, 0.91, 0.02, seed_sd=0.005)),
            asdict(report.compare("T", "loss", 1.0, 1.0, 0.1, seed_sd=float("nan")))]
    summary = {"chapter": "alpha", "provenance": {"started": "2026-11-30T00:00:00Z"}, "rows": rows}
    (tmp_path / "results" / "quick" / "alpha.json").write_text(json.dumps(summary))
    page = scoreboard.render("quick", root=tmp_path)
    spread = page.split("## Tolerances against the measured seed spread")[1].split("## Every published number")[0]
    assert "acc" in spread and "0.005" in spread and "loss" not in spread  # NaN spread = not measured


def test_scoreboard_headline_counts_claims_and_trained_rows_apart_from_checks(tmp_path):
    from repro import claims as cl
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("- file: book/chapters/alpha\n- file: book/chapters/beta\n")
    s = settings_for(tmp_path, "alpha")
    s.results_dir = tmp_path / "results" / "quick"
    rows = [report.compare("T", "acc", 0.9, 0.9, report.printed_precision("0.9")),
            report.compare("T", "loss", 1.0, 1.5, report.printed_precision("1.0")),
            report.compare("G", "grad error", 1e-8, 1.1e-8, report.numerical_bound(0.1, "b", "log10"), row_kind="numerical"),
            report.compare("P", "parameters", 100, 100, report.exact(), row_kind="arithmetic")]
    claims = [cl.claim_between("a", "accuracy high", "T", 0.9, 0.8, 1.0, "acc"),
              cl.claim_between("b", "loss low", "T", 1.5, 0.0, 1.2, "loss")]
    report.write_summary(s, rows, 0.0, claims=claims)
    page = scoreboard.render("quick", root=tmp_path)
    head = page.split("## Headline")[1].split("### Claims that fail")[0]
    line = next(l for l in head.splitlines() if l.startswith("| alpha"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[2:6] == ["1", "1", "0", "0"]  # claims held, failed, not run, cannot be tested
    assert cells[6:9] == ["1", "0", "1"]  # trained match, close, differs: the gradient and count rows are apart
    assert "**overall**" in head and "loss low" in page.split("### Claims that fail")[1]
    apart = page.split("## Checks listed apart")[1].split("## Verdicts of this build")[0]
    assert "numerical" in apart and "arithmetic" in apart


def test_resolve_changes_torch_state_and_the_test_fixture_restores_it():
    import torch
    from conftest import restore_torch_state, torch_state
    before = torch_state()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(False)
    outside = torch_state()
    config.resolve("toy", "smoke", {"smoke": {}}, cache=False)
    assert torch_state() == (1, True, True) != outside  # what a smoke run sets
    restore_torch_state(outside)
    assert torch_state() == outside
    restore_torch_state(before)


def test_find_chromium_uses_chromium_variable_then_path_then_says_what_to_install(monkeypatch, tmp_path):
    from repro.tools import sitecheck
    fake = tmp_path / "my-chrome"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CHROMIUM", str(fake))
    assert sitecheck.find_chromium() == str(fake)
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "nothing"))
    with pytest.raises(SystemExit, match="is not an executable"):
        sitecheck.find_chromium()
    monkeypatch.delenv("CHROMIUM")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))           # no chromium on PATH
    monkeypatch.setenv("PLAYWRIGHT_BROWSERS_PATH", str(tmp_path / "pw"))  # and no Playwright browser
    with pytest.raises(SystemExit, match="make browser"):
        sitecheck.find_chromium()


def test_the_page_opens_with_an_answer_counted_from_the_run(tmp_path):
    from repro import claims

    settings = settings_for(tmp_path)
    rows = [report.compare("T", "a", 0.5, 0.5, 0.01), report.compare("T", "b", 0.5, 0.9, 0.01)]
    said = [claims.claim("one", "A", "toy-s1", True, "rule", {"x": 1}),
            claims.claim("two", "B", "toy-s1", False, "rule", {"x": 2}),
            claims.not_run("three", "C", "toy-s2", "profile quick")]
    text = report.answer(settings, rows, said)
    assert "of the report's 3 conclusions, 1 holds and 1 fails (1 cannot be decided here)" in text
    assert "of its 2 trained numbers, 1 match, 1 differs." in text
    assert "reduced run" in text  # a quick run says what it is
