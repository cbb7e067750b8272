"""The reports' conclusions as claims, each evaluated by a named call on the run's numbers (every chapter).

A claim carries the report's statement, its section, the rule that decides it (in words), the
evidence (the numbers that decide it, glued into the page by :func:`glue_claims`) and a
status: ``holds``, ``fails``, ``not run`` (the profile did not run the report's settings; what
this run's numbers show is still given, as ``this run``) or ``cannot be tested`` (with why).

    c = claims.claim_order("init-order", "Glorot learns fastest, then Normal; Zero does not learn",
                           "1", {"glorot": 0.48, "normal": 0.80, "zero": 2.30}, ["glorot", "normal", "zero"],
                           lower_is_better=True, ran=faithful)
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field

import pandas as pd

from .verdicts import CLAIM_STATUSES


@dataclass
class Claim:
    name: str  # short identifier; glue names start with claim_<name>
    statement: str  # the report's conclusion, in its words where possible
    section: str  # where the report draws it
    status: str  # holds | fails | not run | cannot be tested
    rule: str  # what the run must show for the claim to hold
    evidence: dict = field(default_factory=dict)  # label -> number
    observed: str = ""  # holds | fails on this run's numbers, also when the status is "not run"
    why: str = ""  # why not run / cannot be tested

    def evidence_text(self, digits: int = 4) -> str:
        return ", ".join(f"{k} {_fmt(v, digits)}" for k, v in self.evidence.items())

    def sentence(self) -> str:
        """One generated sentence: what the run shows about the claim."""
        if self.status == "cannot be tested":
            return f"cannot be tested: {self.why}"
        if self.status == "not run":
            if not self.observed:
                return f"not run ({self.why})"
            return (f"not run at the report's settings ({self.why}); this run's numbers: it {self.observed} "
                    f"({self.evidence_text()})")
        return f"{self.status}: {self.evidence_text()}"


def _fmt(v, digits: int) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.{digits}g}"


def _name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9_]+", name):
        raise ValueError(f"claim name {name!r}: lower-case letters, digits and _ only (it names glue keys)")
    return name


def _evidence(values: dict) -> dict:
    out = {}
    for k, v in values.items():
        if isinstance(v, (bool, str)) or v is None:
            out[str(k)] = v
        elif isinstance(v, int):
            out[str(k)] = int(v)
        else:
            out[str(k)] = float(v)
    return out


def claim(name: str, statement: str, section: str, holds: bool | None, rule: str, evidence: dict,
          ran: bool = True, why: str = "") -> Claim:
    """The common path of every evaluator: ``holds`` computed by the caller (a named evaluator)."""
    if holds is None:
        observed = ""
    else:
        observed = "holds" if holds else "fails"
    if not ran and not why:
        raise ValueError(f"claim {name}: say why it was not run")
    status = (observed or "not run") if ran else "not run"
    if ran and not observed:
        raise ValueError(f"claim {name}: run but not evaluated")
    return Claim(_name(name), statement, section, status, rule, _evidence(evidence), observed, why if not ran else "")


def cannot_be_tested(name: str, statement: str, section: str, why: str, evidence: dict | None = None) -> Claim:
    if not why:
        raise ValueError(f"claim {name}: say why it cannot be tested")
    return Claim(_name(name), statement, section, "cannot be tested", "", _evidence(evidence or {}), "", why)


def not_run(name: str, statement: str, section: str, why: str, rule: str = "") -> Claim:
    """A claim no profile of this chapter can evaluate yet (its experiment is not implemented or
    not run); ``why`` says which."""
    return claim(name, statement, section, None, rule, {}, ran=False, why=why)


# ------------------------------------------------------------------------- named evaluators
def claim_order(name: str, statement: str, section: str, values: dict, order: list, *,
                lower_is_better: bool = False, margin: float = 0.0, ran: bool = True, why: str = "") -> Claim:
    """``order`` (best first) holds when each value beats the next by more than ``margin``."""
    missing = [k for k in order if k not in values]
    if missing:
        raise KeyError(f"claim {name}: no value for {missing}")
    seq = [values[k] for k in order]
    better = (lambda a, b: b - a > margin) if lower_is_better else (lambda a, b: a - b > margin)
    holds = all(better(a, b) for a, b in zip(seq, seq[1:]))
    word = "below" if lower_is_better else "above"
    rule = f"each {word} the next by more than {margin:g}: " + " > ".join(map(str, order)) if margin else \
        f"{' then '.join(map(str, order))}, each {word} the next"
    return claim(name, statement, section, holds, rule, {k: values[k] for k in order}, ran, why)


def claim_best(name: str, statement: str, section: str, values: dict, expected, *, lower_is_better: bool = False,
               ran: bool = True, why: str = "") -> Claim:
    """Holds when ``expected`` is the best of ``values`` (strictly: a tie is not a win)."""
    if expected not in values:
        raise KeyError(f"claim {name}: {expected!r} not among the values")
    key = (lambda k: -values[k]) if lower_is_better else (lambda k: values[k])
    ranked = sorted(values, key=key, reverse=True)
    holds = ranked[0] == expected and (len(ranked) == 1 or values[ranked[0]] != values[ranked[1]])
    ev = {f"{expected} (claimed best)": values[expected]}
    if ranked[0] != expected:
        ev[f"{ranked[0]} (best here)"] = values[ranked[0]]
    elif len(ranked) > 1:
        ev[f"{ranked[1]} (runner-up)"] = values[ranked[1]]
    return claim(name, statement, section, holds, f"{expected} is the {'lowest' if lower_is_better else 'highest'}",
                 ev, ran, why)


def claim_between(name: str, statement: str, section: str, value: float, low: float, high: float, label: str, *,
                  ran: bool = True, why: str = "", extra: dict | None = None) -> Claim:
    """Holds when ``low <= value <= high`` (either bound may be +-inf)."""
    holds = (not math.isnan(value)) and low <= value <= high
    if math.isinf(low):
        rule = f"{label} <= {high:g}"
    elif math.isinf(high):
        rule = f"{label} >= {low:g}"
    else:
        rule = f"{low:g} <= {label} <= {high:g}"
    return claim(name, statement, section, holds, rule, {label: value, **(extra or {})}, ran, why)


def claim_all(name: str, statement: str, section: str, checks: dict, rule: str, *, evidence: dict | None = None,
              ran: bool = True, why: str = "") -> Claim:
    """Holds when every check (label -> bool) is true; the failing labels are part of the evidence."""
    failing = [k for k, ok in checks.items() if not ok]
    ev = {"cases": len(checks), "failing": len(failing)}
    if failing:
        ev["first failing"] = str(failing[0])
    holds = (not failing) if checks else None  # nothing to check (e.g. one epoch of a per-epoch trend): no reading
    return claim(name, statement, section, holds, rule, {**ev, **(evidence or {})}, ran, why)


# ------------------------------------------------------------------------- showing claims
def section_label(section: str) -> str:
    """A section's short name: the MyST label 'dd2424-a3-s2' (or an older heading slug
    '2-hyper-parameter-search-...') -> '§2'; a section without a number is kept."""
    m = re.search(r"-s(\d+)$", section) or re.match(r"(\d+)[.-]", section)
    return f"§{m.group(1)}" if m else section


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([{"claim": c.statement, "section": section_label(c.section), "status": c.status,
                          "this run": c.observed or "-", "rule": c.rule or c.why,
                          "evidence": c.evidence_text()} for c in claims])


def claim_counts(claims: list[Claim]) -> dict[str, int]:
    counts = {s: 0 for s in CLAIM_STATUSES}
    for c in claims:
        counts[c.status] += 1
    return counts


def glue_claims(claims: list[Claim]) -> None:
    """Glue each claim's status, sentence and evidence numbers: ``claim_<name>``,
    ``claim_<name>_text`` and ``claim_<name>_<evidence label as a slug>``."""
    from myst_nb import glue

    for c in claims:
        glue(f"claim_{c.name}", c.status, display=False)
        glue(f"claim_{c.name}_text", c.sentence(), display=False)
        for k, v in c.evidence.items():
            glue(f"claim_{c.name}_{re.sub(r'[^a-z0-9]+', '_', k.lower()).strip('_')}", v, display=False)


def check_claims(claims: list[Claim]) -> None:
    names = [c.name for c in claims]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"claims named twice: {sorted(dup)}")
    for c in claims:
        if c.status not in CLAIM_STATUSES:
            raise ValueError(f"claim {c.name}: status {c.status!r}")


def as_dicts(claims: list[Claim]) -> list[dict]:
    return [asdict(c) for c in claims]
