"""The tolerance rule, row kinds, duplicates and claims: each failure the rule exists to catch."""
import json
import math

import pytest

from repro import claims as cl
from repro import config, report
from repro import verdicts as vd

# Table 1 of ift6135-2020, Zero column (as printed): spread 8.9e-4
ZERO = [2.302421418707069, 2.302274667119889, 2.302274667119889, 2.3020252225102973, 2.3019195827656724,
        2.3018249417288428, 2.301740167711852, 2.3016642427439344, 2.301596251583872, 2.3015353717321325]
GLOROT = [1.8435794766083398, 1.386797650896656, 1.0566605762797445, 0.8552241274677513, 0.7294575570267213,
          0.6453375377356994, 0.5854366903072762, 0.540656433662026, 0.505921687711295, 0.4782115510088706]


def column(values, ours, tol, wide="flag"):
    return vd.compare_column("T", [f"e{i}" for i in range(len(values))], values, ours, tol, wide=wide)


def test_a_column_replaced_by_a_constant_cannot_match_it():
    tol = vd.numerical_bound(1e-3, "float32 rounding")
    for constant in (math.log(10), sum(ZERO) / len(ZERO), ZERO[0], ZERO[-1]):
        rows = column(ZERO, [constant] * len(ZERO), tol, wide="cap")
        assert not all(r.verdict == "match" for r in rows), constant
    # flagged instead of capped: the too-wide tolerance makes the column unscored, never "match"
    rows = column(ZERO, [math.log(10)] * len(ZERO), tol)
    assert {r.verdict for r in rows} == {"uninformative"} and "wider than half its column" in rows[0].flag
    # the real column matches itself
    assert {r.verdict for r in column(ZERO, ZERO, tol, wide="cap")} == {"match"}


def test_a_constant_cannot_match_a_wide_column_either():
    tol = vd.numerical_bound(0.05, "rounding")
    rows = column(GLOROT, [1.0] * 10, tol)
    assert sum(r.verdict == "match" for r in rows) <= 1


def test_a_tolerance_wider_than_the_late_steps_of_a_series_is_caught():
    normal = [1.95, 1.575, 1.389, 1.279, 1.136, 1.024, 0.951, 0.903, 0.817, 0.801]
    rows = vd.compare_column("T1", [f"e{i}" for i in range(10)], normal, normal, vd.numerical_bound(0.05, "b"),
                             within="neighbours")
    assert rows[0].verdict == "match" and rows[-1].verdict == "uninformative"  # 0.05 > half of 0.817 - 0.801


def test_a_tolerance_wider_than_its_column_is_caught():
    rows = column([0.97, 0.971, 0.972], [0.97, 0.971, 0.972], vd.numerical_bound(0.002, "b"))
    assert all(r.verdict == "uninformative" and r.flag for r in rows)
    capped = column([0.97, 0.971, 0.972], [0.97, 0.971, 0.972], vd.numerical_bound(0.002, "b"), wide="cap")
    assert all(r.tolerance == pytest.approx(0.001) and "capped" in r.tolerance_basis for r in capped)


def test_a_sign_flip_is_never_a_match():
    assert vd.verdict(3.3e-12, -3.3e-12, 1e-12) == "differs"
    row = vd.compare("T4", "theta 2", -4.4e-12, 4.4e-12, vd.numerical_bound(1e-12, "rounding"))
    assert row.verdict == "differs" and row.flag == "sign flip"
    assert vd.compare("T", "x", -1.0, -1.05, vd.numerical_bound(0.1, "b")).verdict == "match"
    # unsigned quantities (e.g. magnitudes) may opt out
    assert vd.compare("T", "x", -1.0, 1.0, 0.1, kind="log10", signed=False).verdict == "match"


def test_a_tolerance_of_half_the_magnitude_is_uninformative_and_unscored():
    row = vd.compare("T4", "theta 2, N=500000", -6.3e-11, -6.0e-11, vd.numerical_bound(5e-10, "rounding x N"))
    assert row.verdict == "uninformative"
    assert vd.verdict(0.3, 0.2, 0.15) == "uninformative"  # 0.15 = half of 0.3
    assert vd.verdict(2.0, 2.5, 0.5, "rel") == "uninformative"
    assert vd.verdict(1e-8, 1e-9, 1.0, "log10") == "uninformative"  # a decade reaches below half
    assert vd.verdict(1e-8, 1.2e-8, 0.1, "log10") == "match"
    counts = vd.counts([row])
    assert counts["uninformative"] == 1 and sum(counts[v] for v in vd.SCORED) == 0


def test_close_is_twice_the_tolerance():
    assert vd.verdict(1.0, 1.09, 0.1) == "match"
    assert vd.verdict(1.0, 1.19, 0.1) == "close"
    assert vd.verdict(1.0, 1.21, 0.1) == "differs"  # was "close" under the old 3x rule
    assert vd.verdict(1e-5, 1e-7, 1.0 / 4, "log10") == "differs"


def test_exact_counts_and_zero_reported_values():
    assert vd.compare("CNN", "params", 763094, 763094, vd.exact(), row_kind="arithmetic").verdict == "match"
    assert vd.compare("CNN", "params", 763094, 763095, vd.exact(), row_kind="arithmetic").verdict == "differs"
    assert vd.compare("T4", "dead unit", 0.0, 0.0, vd.exact("a dead ReLU: exactly 0")).verdict == "match"


def test_a_duplicated_row_is_caught_and_exact_repeats_merge():
    a = vd.compare("Table 3", "(784, 256) relu lr 0.05: valid", 0.9781, 0.978, vd.numerical_bound(0.002, "b"))
    b = vd.compare("Table 2", "(784, 256) relu lr 0.05: valid", 0.9781, 0.978, vd.numerical_bound(0.002, "b"))
    with pytest.raises(vd.DuplicateRowError):
        vd.check_distinct([a, b])  # same quantity, same number, two tables
    assert len(vd.distinct([a, b])) == 1
    merged = vd.distinct([a, vd.compare("Table 2", "x", 0.9781, 0.978, vd.numerical_bound(0.002, "b"), key=a.key)])
    assert len(merged) == 1 and merged[0].also_in == "Table 2"
    c = vd.compare("Table 2", "other", 0.9782, 0.978, vd.numerical_bound(0.002, "b"), key=a.key)
    with pytest.raises(vd.DuplicateRowError, match="inconsistency"):
        vd.distinct([a, c])  # one quantity, two printed values: a report inconsistency, not a merge


def test_write_summary_refuses_duplicates_and_records_kinds_and_claims(tmp_path):
    s = config.resolve("toy", "smoke", {"smoke": {}}, results_dir=str(tmp_path / "r"), cache_dir=str(tmp_path / "c"))
    a = report.compare("T1", "a", 1.0, 1.0, vd.printed_precision("1.0"))
    with pytest.raises(vd.DuplicateRowError):
        report.write_summary(s, [a, report.compare("T2", "a", 1.0, 1.0, 0.1)], 0.0)
    typo = vd.inconsistency("Text", "parameters (text)", 26505, "the table prints 26,506; 26,505 is one off")
    kaggle = vd.cannot_be_tested("Kaggle", "public score", 0.91, "test labels never published")
    claims = [cl.claim_between("gap", "train and valid close", "1", 0.01, -math.inf, 0.02, "train - valid"),
              cl.cannot_be_tested("kaggle", "our Kaggle score", "5", "test labels never published")]
    data = json.loads(report.write_summary(s, [a, typo, kaggle], 0.0, claims=claims).read_text())
    assert [r["kind"] for r in data["rows"]] == ["trained", "inconsistency", "untestable"]
    assert [r["verdict"] for r in data["rows"]] == ["match", "inconsistency", "cannot be tested"]
    assert data["claims_counted"] == {"holds": 1, "fails": 0, "not run": 0, "cannot be tested": 1}
    assert data["rows"][0]["tolerance_source"] == "printed precision"


def test_tolerance_sources_are_recorded_and_checked():
    assert vd.printed_precision("0.9781").value == pytest.approx(5e-5)
    assert vd.printed_precision("3.79e-02").value == pytest.approx(5e-5)
    assert vd.printed_precision("98.31").value == pytest.approx(0.005)
    t = vd.seed_spread(0.004, 3, at="10 epochs, 50,000 images")
    assert t.value == pytest.approx(0.008) and "10 epochs" in t.basis
    with pytest.raises(ValueError):
        vd.seed_spread(0.004, 3, at="")
    with pytest.raises(ValueError):
        vd.numerical_bound(1e-3, "")
    with pytest.raises(ValueError):
        vd.Tolerance(0.1, "a few times the usual spread")


def test_a_binomial_bound_is_the_sampling_error_of_the_evaluation_set():
    t = vd.binomial_bound(0.93, 2999, digits=4)
    assert t.source == "numerical bound" and t.value == pytest.approx(0.0093) and "2,999 images" in t.basis
    assert vd.binomial_bound(0.9859, 10_000, scale=100, digits=2).value == pytest.approx(0.24)
    assert vd.binomial_bound(0.95, 10_000, scale=10_000).value == pytest.approx(2 * math.sqrt(10_000 * 0.95 * 0.05))
    assert vd.binomial_bound(1.0, 10).value == 0  # a perfect score has no sampling error: compared exactly
    # held against a column like any tolerance: four test accuracies within 0.8 points, 0.7-point bounds
    rows = column([85.6, 86.4, 85.9, 86.3], [86.0] * 4, [vd.binomial_bound(p / 100, 10_000, scale=100, digits=2)
                                                        for p in (85.6, 86.4, 85.9, 86.3)])
    assert {r.verdict for r in rows} == {"uninformative"}
    with pytest.raises(ValueError):
        vd.binomial_bound(93, 2999)


def test_claims_are_evaluated_by_named_calls():
    order = cl.claim_order("init", "Glorot < Normal < Zero", "1", {"glorot": 0.48, "normal": 0.8, "zero": 2.3},
                           ["glorot", "normal", "zero"], lower_is_better=True)
    assert order.status == "holds"
    assert cl.claim_order("init", "s", "1", {"a": 1.0, "b": 2.0}, ["a", "b"]).status == "fails"
    best = cl.claim_best("best", "relu best", "2", {"relu": 0.95, "tanh": 0.96}, "relu")
    assert best.status == "fails" and "tanh (best here)" in best.evidence
    assert cl.claim_best("best", "s", "2", {"relu": 0.96, "tanh": 0.96}, "relu").status == "fails"  # a tie is no win
    reduced = cl.claim_between("wd", "L2 costs about half a point", "4", 0.1, 0.25, 0.75, "cost", ran=False,
                               why="1 epoch of 10")
    assert reduced.status == "not run" and reduced.observed == "fails" and "1 epoch of 10" in reduced.sentence()
    with pytest.raises(ValueError):
        cl.claim_between("x", "s", "1", 0.1, 0, 1, "v", ran=False)  # not run without a why
    every = cl.claim_all("all", "s", "1", {"a": True, "b": False}, "every size")
    assert every.status == "fails" and every.evidence["first failing"] == "b"
    table = cl.claims_frame([order, reduced])
    assert list(table["status"]) == ["holds", "not run"]
