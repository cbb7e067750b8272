"""Reported-vs-reproduced rows, claims tables, figures and the chapter summary JSON (every chapter).

Every chapter builds its comparison through :func:`compare` / :func:`compare_column` and its
conclusions through :mod:`repro.claims`, and writes ``<results_dir>/<chapter>.json`` with
:func:`write_summary`; the book's scoreboard reads those files. The tolerance rule, the
verdicts (``match``, ``close`` = within 2x, ``differs``, ``not run``, ``not comparable``,
``uninformative``, ``inconsistency``, ``cannot be tested``) and the row kinds live in
:mod:`repro.verdicts`.
"""
from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from .claims import Claim, as_dicts, check_claims, claim_counts, claims_frame
from .store import PLUMBING, git
from .verdicts import (CLOSE_FACTOR, ROW_KINDS, SCORED, TOLERANCE_KINDS, VERDICTS, DuplicateRowError, Row,
                       Tolerance, binomial_bound, cannot_be_tested, check_distinct, column_spread, compare, compare_column, counts, distance,
                       distinct, exact, inconsistency, judge, numerical_bound, printed_precision, seed_spread,
                       verdict)


@dataclass
class Deviation:
    """A place where a report's text and what its authors' code ran disagree."""

    title: str
    report_says: str
    code_did: str
    evidence: str
    effect: str
    section: str = ""
    default: str = "what was run"  # what the chapter reproduces by default (and the parameter for the other)


def deviations(chapter: str, **values) -> list[Deviation]:
    """The chapter's deviations, read from ``reference/<chapter>/deviations.yaml``.

    The file is a list of entries with the fields of :class:`Deviation`; a field may quote this
    run's numbers as ``{name}`` or ``{name:.4f}``, filled from ``values`` (a missing value is an
    error, so a template cannot silently print its placeholder)."""
    import yaml

    path = reference_dir(chapter) / "deviations.yaml"
    entries = yaml.safe_load(path.read_text()) or []
    out = []
    for entry in entries:
        unknown = set(entry) - set(Deviation.__dataclass_fields__)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {sorted(unknown)} in {entry.get('title')!r}")
        try:
            out.append(Deviation(**{k: str(v).format_map(values) for k, v in entry.items()}))
        except KeyError as missing:
            raise ValueError(f"{path}: {entry.get('title')!r} quotes {missing}, which the notebook did not pass") from None
    return out


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    return pd.DataFrame([asdict(r) for r in rows])


TOLERANCE_UNITS = {"abs": "", "rel": " (rel.)", "log10": " decades"}
SOURCE_SHORT = {"printed precision": "printed", "seed spread": "seeds", "numerical bound": "bound", "exact": "exact",
                "unstated": "unstated"}


def comparison_table(rows: list[Row], digits: int = 4, index: str = "quantity", source: bool = False) -> pd.DataFrame:
    """The page's reported | ours | tolerance | verdict table, rounded for reading. ``source``: add
    where each tolerance comes from (printed precision, seed spread, numerical bound, exact)."""
    df = rows_frame(rows)
    tol = df.apply(lambda r: f"±{r.tolerance:g}" + TOLERANCE_UNITS[r.tolerance_kind], axis=1)
    out = pd.DataFrame({index: df[index], "reported": df["reported"], "ours": df["reproduced"], "tolerance": tol})
    if source:
        out["from"] = df["tolerance_source"].map(SOURCE_SHORT)
    out["verdict"] = [v + (f" ({f})" if f else "") for v, f in zip(df["verdict"], df["flag"])]
    return out.set_index(index).round({"reported": digits, "ours": digits})


def verdict_counts(rows: list[Row], kind: str | None = None) -> dict[str, int]:
    return counts(rows, kind)


def kind_counts(rows: list[Row]) -> dict[str, dict[str, int]]:
    """Verdict counts per row kind (only the kinds present)."""
    return {k: {v: n for v, n in counts(rows, k).items() if n} for k in ROW_KINDS if any(r.kind == k for r in rows)}


def claims_table(claims: list[Claim], caption: str, name: str) -> "CaptionedTable":
    """The chapter's claims: statement, section, status, what this run shows, the rule, the evidence."""
    return captioned(claims_frame(claims).set_index("claim"), caption, name)


# ------------------------------------------------------------------------- reference numbers
def reference_dir(chapter: str) -> Path:
    """``reference/<chapter>`` of the project: the report's numbers (``reported.json``) and our notes."""
    from .config import PROJECT_ROOT
    return PROJECT_ROOT / "reference" / chapter


def load_reference(chapter: str) -> dict:
    """The numbers the report printed (``reported.json``, transcribed as printed)."""
    return json.loads((reference_dir(chapter) / "reported.json").read_text())


def authors_file(chapter: str, name: str) -> Path | None:
    """One of the authors' own files (never committed here; see :mod:`repro.authors`), or None
    after printing, on the page, why it is not available."""
    from . import authors
    path = authors.locate(chapter, name)
    if path is None:
        print(authors.unavailable_message(chapter, name))
    return path


def load_reference_csv(chapter: str, name: str, **kw) -> pd.DataFrame:
    """One of the authors' own published result files. When it is not available, a note on the
    page says so and an empty frame with the file's columns comes back, so that the chapter
    still runs and draws its figures without the authors' curves."""
    from . import authors
    path = authors_file(chapter, name)
    if path is not None:
        return pd.read_csv(path, **kw)
    columns = authors.spec(chapter, name).columns
    dtypes = {"str": object, "int": "int64", "float": "float64"}
    return pd.DataFrame({c: pd.Series(dtype=dtypes[t]) for c, t in columns.items()})


# ------------------------------------------------------------------------- provenance
def provenance(settings, started: float) -> dict:
    return {
        "git_commit": git("rev-parse", "HEAD") or None,
        "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_seconds": round(time.time() - started, 1),
        "device": str(settings.device),
        "device_name": torch.cuda.get_device_name() if settings.device.type == "cuda" else platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }


def write_summary(settings, rows: list[Row], started: float, extra: dict | None = None,
                  deviations: list[Deviation] | None = None, headline: str = "",
                  claims: list[Claim] | None = None) -> Path:
    """Write ``<results_dir>/<chapter>.json`` atomically and return its path.

    Refuses rows that repeat a quantity (:func:`repro.verdicts.check_distinct`) and claims named
    twice. ``headline``: one sentence for the landing page, built from this run's results.
    """
    check_distinct(rows)
    check_claims(claims or [])
    summary = {
        "chapter": settings.chapter,
        "profile": settings.profile,
        "parameters": settings.parameters,
        "provenance": provenance(settings, started),
        "verdicts": verdict_counts(rows),
        "verdicts_by_kind": kind_counts(rows),
        "claims_counted": claim_counts(claims) if claims is not None else None,
        "headline": headline,
        "claims": as_dicts(claims or []),
        "rows": [asdict(r) for r in rows],
        "deviations": [asdict(d) for d in deviations or []],
        # the result store's log (what was loaded, from where, or computed) and what a full run left out
        "experiments": getattr(settings, "experiments", []),
        # the training behind the page, loaded or computed (a rebuild from the store trains nothing)
        "training_seconds": round(sum(e.get("wall_seconds") or 0 for e in getattr(settings, "experiments", [])), 1),
        "not_run": dict(settings.plan.not_run) if getattr(settings, "plan", None) else {},
    }
    if extra:
        summary.update(extra)
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    path = settings.results_dir / f"{settings.chapter}.json"
    if _same_results(read_summary(path), summary):
        return path  # a rebuild from the store: keep the summary of the run that trained (its provenance)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=str))
    os.replace(tmp, path)
    return path


def answer(settings, rows: list[Row], claims: list[Claim], headline: str = "") -> str:
    """The chapter's answer in two sentences, for the top of its page: what became of the
    report's conclusions and of its trained numbers, at which settings."""
    held = claim_counts(claims)
    decided = held.get("holds", 0) + held.get("fails", 0)
    trained = counts(rows, "trained")
    scored = {v: n for v, n in trained.items() if v in SCORED and n}
    where = ("at the report's own settings" if settings.profile == "full" and not getattr(settings.plan, "not_run", None)
             else f"on the `{settings.profile}` profile" + (" (parts of it reduced, see below)" if settings.profile == "full" else
                                                          ", a reduced run: read the verdicts as a test of the code, not of the report"))
    verb = lambda n, one, many: f"{n} {one if n == 1 else many}"  # noqa: E731
    parts = [f"**Our answer** ({where}): of the report's {len(claims)} conclusions, {verb(held.get('holds', 0), 'holds', 'hold')} "
             f"and {verb(held.get('fails', 0), 'fails', 'fail')}"
             + (f" ({len(claims) - decided} cannot be decided here)" if decided < len(claims) else "")]
    if scored:  # every verdict of the trained numbers: 'uninformative' ones are not hidden behind the matches
        parts.append(f"of its {sum(trained.values())} trained numbers, "
                     + ", ".join(f"{n} {v}" for v, n in trained.items() if n))
    text = "; ".join(parts) + "."
    return f"{text} {headline}" + ("" if headline.endswith(".") else ".") if headline else text


def finish(settings, started: float, rows: list[Row], claims: list[Claim], *, deviations: list[Deviation] = (),
           headline: str = "", extra: dict | None = None, name: str | None = None) -> "CaptionedTable":
    """The end of every chapter: write the summary file, glue the page's opening answer
    (``answer``) and the store's log (``result_sources``), and show every claim."""
    from IPython.display import Markdown
    from myst_nb import glue

    from .store import sources_markdown

    path = write_summary(settings, rows, started, extra=extra, deviations=list(deviations), headline=headline, claims=claims)
    glue("answer", Markdown(answer(settings, rows, claims, headline)), display=False)
    glue("result_sources", Markdown(sources_markdown(settings)), display=False)
    print(f"wrote {path.name}: {len(rows)} distinct published numbers, {len(claims)} claims")
    return claims_table(claims, "Every conclusion of the report, checked on this run", name or f"tab-{settings.chapter}-claims")


def _same_results(old: dict | None, new: dict) -> bool:
    """Same chapter, parameters, rows and experiments (by key): a rebuild that changed nothing."""
    plain = lambda v: json.loads(json.dumps(v, default=str))
    choices = lambda s: {k: v for k, v in plain(s.get("parameters", {})).items() if k not in PLUMBING}
    if not old or choices(old) != choices(new) or any(old.get(k) != plain(new.get(k))
                                                      for k in ("chapter", "profile", "rows", "claims", "not_run")):
        return False
    keys = lambda s: sorted(str(e.get("key")) for e in s.get("experiments", []))
    return keys(old) == keys(new) and all(e.get("key") for e in new.get("experiments", []))


def read_summary(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------- tables
def markdown_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose labels read well in a Markdown table: multi-level labels joined with
    spaces (not printed as tuples) and ``|`` escaped in labels and text cells."""
    def flat(labels):
        if isinstance(labels, pd.MultiIndex):
            return [" ".join(str(part) for part in label if str(part)) for label in labels]
        return [str(label) for label in labels]

    def escape(value):
        return value.replace("|", "\\|") if isinstance(value, str) else value

    out = frame.copy()
    out.columns = [escape(c) for c in flat(out.columns)]
    if isinstance(out.index, pd.MultiIndex):
        name = escape(" ".join(str(n) for n in out.index.names if n is not None)) or None
        out.index = pd.Index([escape(i) for i in flat(out.index)], name=name)
    else:
        out.index = out.index.map(escape)
    return out.map(escape)


class CaptionedTable:
    """A DataFrame shown as a numbered, captioned table in the book, and as plain text elsewhere.

    The book (myst-nb with ``nb_render_markdown_format: myst``) renders the Markdown form, a
    MyST ``{table}`` directive, so Sphinx numbers it; nbval and terminals compare the text form.
    """

    def __init__(self, frame: pd.DataFrame, caption: str, name: str, floatfmt: str = "g"):
        self.frame, self.caption, self.name, self.floatfmt = frame, caption, name, floatfmt

    def _repr_markdown_(self) -> str:
        body = markdown_safe(self.frame).to_markdown(floatfmt=self.floatfmt)
        return f"```{{table}} {self.caption}\n:name: {self.name}\n\n{body}\n```\n"

    def __repr__(self) -> str:
        return self.frame.to_string()


def captioned(frame: pd.DataFrame, caption: str, name: str, floatfmt: str = "g") -> CaptionedTable:
    return CaptionedTable(frame, caption, name, floatfmt)
