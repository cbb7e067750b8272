"""The one tolerance rule, row kinds, and the reports' claims (every chapter).

A chapter sets each published number beside ours through :func:`repro.report.compare` (one
number) or :func:`compare_column` (a table column, whose spread caps its tolerances); the
verdict comes from :func:`judge`. A conclusion a report draws is a :class:`Claim`, evaluated
by one of the named calls below (:func:`claim_order`, :func:`claim_best`, ...), never by
hidden notebook logic.

**The tolerance rule** (stated on the book's Methods page):

1. A tolerance comes from one of three sources, recorded on the row: the report's printed
   precision (:func:`printed_precision`), a seed spread measured at the same settings
   (:func:`seed_spread`, which must say at what settings), or a stated numerical bound
   (:func:`numerical_bound`). Counts compare exactly (:func:`exact`).
2. Within a column of reported values, a tolerance is never wider than half the column's
   spread: were it wider, one constant could match every value of the column. A wider
   tolerance is either capped (``wide="cap"``) or the row is flagged ``uninformative``
   (``wide="flag"``, the default).
3. A row whose tolerance reaches half the reported magnitude is ``uninformative``: it is
   shown, and left out of every score.
4. ``match``: within the tolerance; ``close``: within twice the tolerance; ``differs``:
   beyond. A signed quantity is compared with its sign: a sign flip is never a match.

**Row kinds**: ``trained`` (a result of training), ``numerical`` (a numerical check such as a
gradient check), ``arithmetic`` (parameter counts, data sizes), ``inconsistency`` (the report
contradicts itself or has a typo: shown with its evidence, never scored as our failure),
``untestable`` (cannot be tested, e.g. a Kaggle score whose test labels were never published).
One row per distinct quantity: :func:`distinct` merges exact repeats and refuses conflicting
ones; :func:`check_distinct` (called by ``write_summary``) refuses any repeat.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

ROW_KINDS = ("trained", "numerical", "arithmetic", "inconsistency", "untestable")
SOURCES = ("printed precision", "seed spread", "numerical bound", "exact", "unstated")
TOLERANCE_KINDS = ("abs", "rel", "log10")
VERDICTS = ("match", "close", "differs", "not run", "not comparable", "uninformative", "inconsistency",
            "cannot be tested")
SCORED = ("match", "close", "differs")
CLOSE_FACTOR = 2
CLAIM_STATUSES = ("holds", "fails", "not run", "cannot be tested")


class DuplicateRowError(ValueError):
    """Two rows describe the same quantity."""


# ------------------------------------------------------------------------- tolerances
@dataclass(frozen=True)
class Tolerance:
    """A tolerance with where it comes from. ``basis``: the words that justify the value."""

    value: float
    source: str
    basis: str = ""
    kind: str = "abs"

    def __post_init__(self):
        if self.source not in SOURCES:
            raise ValueError(f"tolerance source {self.source!r}; known: {SOURCES}")
        if self.kind not in TOLERANCE_KINDS:
            raise ValueError(f"unknown tolerance kind {self.kind!r}; known: {TOLERANCE_KINDS}")
        if not (self.value >= 0 and math.isfinite(self.value)):
            raise ValueError(f"a tolerance must be finite and >= 0, got {self.value!r}")

    def scaled(self, value: float, note: str) -> "Tolerance":
        return Tolerance(value, self.source, f"{self.basis}; {note}" if self.basis else note, self.kind)


def printed_precision(printed: str | float, basis: str = "") -> Tolerance:
    """Half a unit in the last digit the report printed: '0.9781' -> 5e-05, '3.79e-02' -> 5e-05."""
    text = printed if isinstance(printed, str) else repr(printed)
    m = re.fullmatch(r"\s*[-+]?(\d*)(?:\.(\d*))?(?:[eE]([-+]?\d+))?\s*%?\s*", text)
    if not m:
        raise ValueError(f"not a printed number: {printed!r}")
    decimals = len(m.group(2) or "")
    exponent = int(m.group(3) or 0)
    return Tolerance(0.5 * 10.0 ** (exponent - decimals), "printed precision",
                     basis or f"half a unit in the last printed digit of {text.strip()}")


def seed_spread(sd: float, seeds: int, at: str, factor: float = 2.0) -> Tolerance:
    """``factor`` x the seed-to-seed sd measured over ``seeds`` seeds; ``at`` names the settings
    (epochs, steps, data size), which must be the compared row's own."""
    if seeds < 2 or not math.isfinite(sd):
        raise ValueError(f"a seed spread needs at least 2 seeds and a finite sd (got {seeds}, {sd})")
    if not at:
        raise ValueError("seed_spread: say at which settings the spread was measured (at=...)")
    return Tolerance(factor * sd, "seed spread", f"{factor:g} x sd {sd:.3g} over {seeds} seeds at {at}")


def numerical_bound(value: float, basis: str, kind: str = "abs") -> Tolerance:
    if not basis:
        raise ValueError("numerical_bound: state the bound's reasoning (basis=...)")
    return Tolerance(value, "numerical bound", basis, kind)


def binomial_bound(p: float, n: int, *, scale: float = 1.0, of: str = "an accuracy", digits: int | None = None) -> Tolerance:
    """Two binomial standard deviations of a proportion ``p`` measured on ``n`` items, times ``scale``
    (100 for a percentage, ``n`` for a count of correct answers), rounded to ``digits`` when given:
    the sampling error of an accuracy on a finite evaluation set, a numerical bound. It leaves out
    how much a second training run would move."""
    if not (0 <= p <= 1) or n < 1:
        raise ValueError(f"binomial_bound: need 0 <= p <= 1 and n >= 1, got p={p!r}, n={n!r}")
    value = 2 * scale * math.sqrt(p * (1 - p) / n)
    return numerical_bound(value if digits is None else round(value, digits), f"2 binomial sd of {of} on {n:,} images")


def exact(basis: str = "a count: compared exactly") -> Tolerance:
    return Tolerance(0.0, "exact", basis)


def as_tolerance(tolerance: Tolerance | float, kind: str = "abs") -> Tolerance:
    """A bare number (chapters not yet converted to the rule) becomes an ``unstated`` tolerance."""
    if isinstance(tolerance, Tolerance):
        return tolerance
    return Tolerance(float(tolerance), "unstated", "", kind)


# ------------------------------------------------------------------------- one verdict
def distance(reported: float, reproduced: float, kind: str) -> float:
    if kind == "abs":
        return abs(reproduced - reported)
    if kind == "rel":
        return abs(reproduced - reported) / abs(reported) if reported else (0.0 if reproduced == 0 else math.inf)
    if kind == "log10":
        if reported == 0 or reproduced == 0:
            return 0.0 if reported == reproduced else math.inf
        return abs(math.log10(abs(reproduced)) - math.log10(abs(reported)))
    raise ValueError(f"unknown tolerance kind {kind!r}; known: {TOLERANCE_KINDS}")


def half_magnitude(reported: float, kind: str) -> float:
    """Half the reported magnitude in the tolerance's units (for log10: the decades to r/2)."""
    return {"abs": abs(reported) / 2, "rel": 0.5, "log10": math.log10(2)}[kind]


def is_uninformative(reported: float, tolerance: Tolerance) -> bool:
    return tolerance.value > 0 and tolerance.value >= half_magnitude(reported, tolerance.kind)


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def judge(reported: float, reproduced: float | None, tolerance: Tolerance, *, kind: str = "trained",
          comparable: bool = True, signed: bool = True) -> tuple[str, str]:
    """(verdict, flag) under the rule; ``flag`` says why a row is unscored or failed on its sign."""
    if kind not in ROW_KINDS:
        raise ValueError(f"row kind {kind!r}; known: {ROW_KINDS}")
    if kind == "inconsistency":
        return "inconsistency", ""
    if kind == "untestable":
        return "cannot be tested", ""
    if is_uninformative(reported, tolerance):
        return "uninformative", f"tolerance {tolerance.value:.3g} reaches half the reported magnitude"
    if _missing(reproduced):
        return "not run", ""
    if not comparable:
        return "not comparable", ""
    if signed and reported * reproduced < 0:
        return "differs", "sign flip"
    d = distance(reported, reproduced, tolerance.kind)
    if d <= tolerance.value:
        return "match", ""
    if d <= CLOSE_FACTOR * tolerance.value:
        return "close", ""
    return "differs", ""


def verdict(reported: float, reproduced: float | None, tolerance: float, kind: str = "abs",
            comparable: bool = True) -> str:
    """The verdict of one number under the rule (tolerance given as a bare number)."""
    return judge(reported, reproduced, Tolerance(float(tolerance), "unstated", kind=kind), comparable=comparable)[0]


def column_spread(values, kind: str = "abs") -> float:
    """The spread of a column of reported values, in the tolerance's units."""
    vals = [float(v) for v in values if not _missing(v)]
    if kind == "log10":
        vals = [math.log10(abs(v)) for v in vals if v != 0]
    elif kind == "rel":
        centre = sum(abs(v) for v in vals) / len(vals) if vals else 0.0
        vals = [v / centre for v in vals] if centre else []
    return max(vals) - min(vals) if len(vals) > 1 else math.inf


def cap_to_column(tolerance: Tolerance, spread: float, wide: str = "flag") -> tuple[Tolerance, str]:
    """(tolerance, flag): a tolerance above half the column's spread is capped or flagged."""
    if wide not in ("flag", "cap"):
        raise ValueError(f"wide must be 'flag' or 'cap', got {wide!r}")
    limit = spread / 2
    if tolerance.value <= limit:
        return tolerance, ""
    if wide == "cap":
        return tolerance.scaled(limit, f"capped from {tolerance.value:.3g} to half the column's spread"), ""
    return tolerance, f"tolerance {tolerance.value:.3g} wider than half its column's spread ({limit:.3g})"


# ------------------------------------------------------------------------- rows
@dataclass
class Row:
    experiment: str
    quantity: str
    reported: float
    reproduced: float | None
    tolerance: float
    verdict: str
    tolerance_kind: str = "abs"
    section: str = ""
    note: str = ""
    seed_sd: float | None = None  # measured seed-to-seed standard deviation of ours, where the chapter ran seeds
    kind: str = "trained"  # one of ROW_KINDS
    tolerance_source: str = "unstated"  # one of SOURCES
    tolerance_basis: str = ""
    flag: str = ""  # why the row is unscored, or failed on its sign
    key: str = ""  # identity of the quantity across tables (default: experiment | quantity)
    also_in: str = ""  # other tables that print the same quantity (merged by distinct)


def compare(experiment: str, quantity: str, reported: float, reproduced: float | None,
            tolerance: Tolerance | float, kind: str = "abs", section: str = "", note: str = "",
            comparable: bool = True, seed_sd: float | None = None, *, row_kind: str = "trained",
            signed: bool = True, key: str = "", column_spread_: float | None = None, wide: str = "flag") -> Row:
    """One published number beside ours, judged by the rule. ``tolerance``: a :class:`Tolerance`
    (a bare number is recorded as ``unstated``); ``seed_sd``: the seed-to-seed sd of ours, when
    measured. ``column_spread_``: the spread of the column the number sits in (see
    :func:`compare_column`)."""
    tol = as_tolerance(tolerance, kind)
    flag = ""
    if column_spread_ is not None:
        tol, flag = cap_to_column(tol, column_spread_, wide)
    reproduced = None if _missing(reproduced) else float(reproduced)
    seed_sd = None if _missing(seed_sd) else float(seed_sd)
    verdict_, why = judge(float(reported), reproduced, tol, kind=row_kind, comparable=comparable, signed=signed)
    if flag and verdict_ not in ("inconsistency", "cannot be tested"):
        verdict_, why = "uninformative", flag
    return Row(experiment, quantity, float(reported), reproduced, tol.value, verdict_, tol.kind, section, note, seed_sd,
               row_kind, tol.source, tol.basis, why, key or f"{experiment} | {quantity}")


def compare_column(experiment: str, quantities: list[str], reported: list[float], reproduced: list,
                   tolerance, *, wide: str = "flag", within: str = "column", **kw) -> list[Row]:
    """A column of a report's table beside ours. ``tolerance``: one :class:`Tolerance`, or one per
    row; each is checked against half the spread of the reported values it is compared within
    (rule 2): the whole column, or, for a series such as a loss per epoch (``within="neighbours"``),
    the row and its neighbours, so that a constant cannot match a stretch of the curve either."""
    if not (len(quantities) == len(reported) == len(reproduced)):
        raise ValueError("compare_column: quantities, reported and reproduced differ in length")
    if within not in ("column", "neighbours"):
        raise ValueError(f"within must be 'column' or 'neighbours', got {within!r}")
    tols = list(tolerance) if isinstance(tolerance, (list, tuple)) else [tolerance] * len(reported)
    kinds = {as_tolerance(t).kind for t in tols}
    if len(kinds) != 1:
        raise ValueError("compare_column: one tolerance kind per column")
    kind = kinds.pop()
    if within == "column":
        spreads = [column_spread(reported, kind)] * len(reported)
    else:
        spreads = [column_spread(reported[max(0, i - 1):i + 2], kind) for i in range(len(reported))]
    return [compare(experiment, q, r, o, t, column_spread_=sp, wide=wide, **kw)
            for q, r, o, t, sp in zip(quantities, reported, reproduced, tols, spreads)]


def inconsistency(experiment: str, quantity: str, reported: float, evidence: str, section: str = "",
                  ours: float | None = None, key: str = "") -> Row:
    """A place where the report contradicts itself (a typo, two values for one quantity): shown
    with its evidence, never scored as our failure."""
    if not evidence:
        raise ValueError("inconsistency: give the evidence")
    return compare(experiment, quantity, reported, ours, Tolerance(0.0, "exact", evidence), section=section,
                   note=evidence, row_kind="inconsistency", key=key)


def cannot_be_tested(experiment: str, quantity: str, reported: float, why: str, section: str = "",
                     key: str = "") -> Row:
    if not why:
        raise ValueError("cannot_be_tested: say why")
    return compare(experiment, quantity, reported, None, Tolerance(0.0, "exact", why), section=section,
                   note=why, row_kind="untestable", key=key)


def _identity(row: Row) -> tuple:
    return (row.quantity, row.reported, row.reproduced)


def duplicates(rows: list[Row]) -> list[tuple[Row, Row]]:
    """Pairs of rows that describe the same quantity: the same key, or the same quantity printed
    with the same number in two tables."""
    seen_key, seen_id, pairs = {}, {}, []
    for r in rows:
        for table, ident in ((seen_key, r.key or f"{r.experiment} | {r.quantity}"), (seen_id, _identity(r))):
            if ident in table:
                pairs.append((table[ident], r))
                break
        else:
            seen_key[r.key or f"{r.experiment} | {r.quantity}"] = r
            seen_id[_identity(r)] = r
    return pairs


def check_distinct(rows: list[Row]) -> None:
    """Refuse rows that repeat a quantity (merge them with :func:`distinct` first)."""
    pairs = duplicates(rows)
    if pairs:
        listed = "; ".join(f"{a.experiment}: {a.quantity} = {b.experiment}: {b.quantity}" for a, b in pairs[:5])
        raise DuplicateRowError(f"{len(pairs)} duplicated row(s): {listed}. One row per distinct quantity: "
                                "merge them with repro.report.distinct or give them distinct keys")


def distinct(rows: list[Row]) -> list[Row]:
    """One row per quantity: rows with the same key (or the same quantity printed with the same
    number, as :func:`duplicates` finds them) and the same reported and reproduced numbers merge
    into the first (its ``also_in`` names the other tables); the same key with different reported
    numbers is a report inconsistency and is refused here (record it with :func:`inconsistency`)."""
    out: dict[str, Row] = {}
    by_identity: dict[tuple, str] = {}
    for r in rows:
        k = r.key or f"{r.experiment} | {r.quantity}"
        k = k if k in out else by_identity.get(_identity(r), k)  # the same quantity printed with the same number
        if k not in out:
            out[k] = r
            by_identity[_identity(r)] = k
            continue
        first = out[k]
        if first.reported != r.reported:
            raise DuplicateRowError(f"{k}: the report prints {first.reported!r} ({first.experiment}) and "
                                    f"{r.reported!r} ({r.experiment}); record it as a report inconsistency")
        if first.reproduced != r.reproduced or first.tolerance != r.tolerance:
            raise DuplicateRowError(f"{k}: one quantity compared twice with different numbers or tolerances")
        tables = [t for t in (first.also_in.split(", ") if first.also_in else []) + [r.experiment]
                  if t and t != first.experiment]
        first.also_in = ", ".join(dict.fromkeys(tables))
    return list(out.values())


def counts(rows: list[Row], kind: str | None = None) -> dict[str, int]:
    """Verdict counts, of one row kind when given."""
    c = {v: 0 for v in VERDICTS}
    for r in rows:
        if kind is None or r.kind == kind:
            c[r.verdict] += 1
    return c
