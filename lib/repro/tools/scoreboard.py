"""Generate the book's data-driven pages from the chapters' summary files.

    python -m repro.tools.scoreboard --profile quick [--out book/scoreboard.md]

Reads ``results/<profile>/<chapter>.json`` for every chapter of ``_toc.yml`` and, where
committed, ``results/full/<chapter>.json``, and writes beside ``--out``: the scoreboard,
``deviations.md`` (every place a report's text and its authors' code disagree, collected from
the chapters) and ``build_info.md`` (software versions and machine, included by the methods
page). No number is typed by hand: a chapter without a summary shows as missing.
"""
from __future__ import annotations

import argparse
import functools
import json
import re
from collections import Counter
from pathlib import Path

import pandas as pd

from ..config import PROJECT_ROOT
from ..report import CLOSE_FACTOR, VERDICTS, read_summary
from ..verdicts import CLAIM_STATUSES, ROW_KINDS


def toc_chapters(toc: Path) -> list[str]:
    return re.findall(r"file:\s*book/chapters/([\w.-]+)", toc.read_text())


def load(results: Path, chapters: list[str]) -> dict[str, dict | None]:
    return {c: read_summary(results / f"{c}.json") for c in chapters}


@functools.lru_cache(maxsize=None)
def chapter_anchors(chapter: str, root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The chapter's heading anchors (as MyST makes them), keyed by their letters and digits only."""
    from myst_parser.mdit_to_docutils.base import default_slugify

    try:
        nb = json.loads((root / "notebooks" / f"{chapter}.ipynb").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    anchors = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for title in re.findall(r"^#{1,3} (.+)$", "".join(cell["source"]), re.M):
                slug = default_slugify(re.sub(r"[`*_]", "", title).strip())
                anchors[re.sub(r"[^a-z0-9]", "", slug)] = slug
    return anchors


@functools.lru_cache(maxsize=None)
def chapter_labels(chapter: str, root: Path = PROJECT_ROOT) -> frozenset[str]:
    """The MyST labels ``(name)=`` of the chapter's notebook."""
    try:
        nb = json.loads((root / "notebooks" / f"{chapter}.ipynb").read_text())
    except (OSError, json.JSONDecodeError):
        return frozenset()
    return frozenset(re.findall(r"^\(([\w.:-]+)\)=\s*$", "\n".join("".join(c["source"]) for c in nb["cells"]
                                                                if c["cell_type"] == "markdown"), re.M))


def section_link(chapter: str, section: str, text: str, root: Path = PROJECT_ROOT) -> str:
    """A link to the chapter's section (its MyST label, or a heading that matches); to the
    chapter itself when neither does."""
    if section in chapter_labels(chapter, root):
        return f"{{ref}}`{text.replace('`', '')} <{section}>`"
    slug = chapter_anchors(chapter, root).get(re.sub(r"[^a-z0-9]", "", (section or "").lower()))
    return f"[{text}](chapters/{chapter}.ipynb" + (f"#{slug})" if slug else ")")


def counts_table(summaries: dict[str, dict | None], label: str) -> pd.DataFrame:
    rows = []
    for chapter, s in summaries.items():
        if s is None:
            rows.append({"chapter": chapter, "summary": "missing", **{v: "" for v in VERDICTS}})
            continue
        counts = {v: 0 for v in VERDICTS}
        for r in s["rows"]:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        rows.append({"chapter": chapter, "summary": f"{label} ({s['provenance'].get('started', '?')[:10]})", **counts})
    return pd.DataFrame(rows)


def _kind(row: dict) -> str:
    return row.get("kind", "trained")  # summaries written before row kinds: every row was a trained result


def headline_table(summaries: dict[str, dict | None]) -> pd.DataFrame:
    """Per chapter and overall: the claims held / failed / not run, and the trained results
    match / close / differs (uninformative and not-run rows apart)."""
    rows = []
    for chapter, s in summaries.items():
        if s is None:
            rows.append({"chapter": chapter, "from": "missing"})
            continue
        ruled = "verdicts_by_kind" in s  # written under the tolerance rule (row kinds, claims)
        line = {"chapter": chapter, "from": f"{s.get('profile', '?')} ({s['provenance'].get('started', '?')[:10]})"
                + ("" if ruled else ", before the tolerance rule: re-run to re-judge")}
        claims = s.get("claims")
        listed = claims is not None and s.get("claims_counted") is not None
        for status in CLAIM_STATUSES:
            line[f"claims {status}"] = sum(c["status"] == status for c in claims) if listed else None
        trained = [r for r in s["rows"] if _kind(r) == "trained"]
        for v in ("match", "close", "differs", "not run", "uninformative"):
            line[f"trained {v}"] = sum(r["verdict"] == v for r in trained)
        rows.append(line)
    frame = pd.DataFrame(rows)
    numeric = [c for c in frame.columns if c.startswith(("claims ", "trained "))]
    if len(frame):
        total = {"chapter": "**overall**", "from": ""}
        total.update({c: frame[c].sum(min_count=1) for c in numeric})
        frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    for c in numeric:
        frame[c] = frame[c].map(lambda v: "-" if pd.isna(v) else str(int(v)))
    return frame


def apart_table(summaries: dict[str, dict | None]) -> pd.DataFrame:
    """The rows that are not trained results: numerical checks, arithmetic, report
    inconsistencies, untestable numbers, counted per chapter."""
    rows = []
    for chapter, s in summaries.items():
        for kind in ROW_KINDS[1:]:
            of_kind = [r for r in (s or {}).get("rows", []) if _kind(r) == kind]
            if of_kind:
                found = Counter(r["verdict"] for r in of_kind)
                rows.append({"chapter": chapter, "kind": kind, "rows": len(of_kind),
                             "verdicts": ", ".join(f"{n} {v}" for v, n in found.most_common())})
    return pd.DataFrame(rows)


def failing_claims(summaries: dict[str, dict | None], root: Path = PROJECT_ROOT) -> pd.DataFrame:
    rows = []
    for chapter, s in summaries.items():
        for c in (s or {}).get("claims") or []:
            if c["status"] == "fails":
                evidence = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in c["evidence"].items())
                rows.append({"chapter": chapter, "claim": section_link(chapter, c.get("section", ""), c["statement"], root),
                             "rule": c["rule"], "evidence": evidence})
    return pd.DataFrame(rows)


def rows_table(summaries: dict[str, dict | None], root: Path = PROJECT_ROOT) -> pd.DataFrame:
    rows = []
    for chapter, s in summaries.items():
        for r in (s or {}).get("rows", []):
            link = section_link(chapter, r.get("section", ""), r["experiment"], root)
            tol = f"±{r['tolerance']:g}" + {"abs": "", "rel": " rel.", "log10": " dec."}[r.get("tolerance_kind", "abs")]
            ours = "" if r["reproduced"] is None else f"{r['reproduced']:.6g}"
            sd = r.get("seed_sd")
            rows.append({"chapter": chapter, "experiment": link, "quantity": r["quantity"], "kind": _kind(r),
                         "reported": f"{r['reported']:.6g}", "ours": ours, "tolerance": tol,
                         "from": r.get("tolerance_source", "unstated"),
                         "seed sd": "" if sd is None else f"{sd:.3g}",
                         "verdict": r["verdict"] + (f" ({r['flag']})" if r.get("flag") else "")})
    return pd.DataFrame(rows)


def spread_table(summaries: dict[str, dict | None]) -> pd.DataFrame:
    """The rows whose chapter measured a seed-to-seed spread: tolerance against that spread."""
    rows = []
    for chapter, s in summaries.items():
        for r in (s or {}).get("rows", []):
            sd = r.get("seed_sd")
            if sd is None or r.get("tolerance_kind", "abs") != "abs":
                continue
            rows.append({"chapter": chapter, "quantity": r["quantity"], "tolerance": f"{r['tolerance']:g}",
                         "seed sd": f"{sd:.3g}", "tolerance / sd": f"{r['tolerance'] / sd:.1f}" if sd else "inf",
                         "verdict": r["verdict"]})
    return pd.DataFrame(rows)


def render(profile: str, root: Path = PROJECT_ROOT) -> str:
    chapters = toc_chapters(root / "_toc.yml")
    current = load(root / "results" / profile, chapters)
    full = load(root / "results" / "full", chapters)
    best = {c: (full[c] if full.get(c) and profile != "full" else current[c]) for c in chapters}
    failing = failing_claims(best, root)
    apart = apart_table(best)
    parts = [
        "# Scoreboard\n",
        "Generated by `python -m repro.tools.scoreboard` from the chapters' summary files; nothing here is typed by "
        "hand. Each chapter's numbers come from its committed `full` run (`results/full/`) where there is one, "
        f"else from this build (profile `{profile}`); the `from` column says which. The tolerance rule and the "
        "verdicts are stated on the [Methods](methods.md) page: `match` within the row's tolerance, `close` within "
        f"{CLOSE_FACTOR}x, `differs` beyond; `uninformative` rows (a tolerance reaching half the reported "
        "magnitude, or wider than half its column's spread) and `not run` rows are left out of every score.\n",
        "## Headline: the reports' claims and their trained results\n",
        "A claim is a conclusion the report draws, checked on the run (`not run`: the profile did not run the "
        "report's settings; `-`: the chapter's summary lists no claims yet). Trained results are the published "
        "numbers that come out of training; numerical checks, arithmetic and the reports' own inconsistencies "
        "are counted apart below.\n",
        headline_table(best).to_markdown(index=False), "\n",
        "### Claims that fail\n",
        failing.to_markdown(index=False) if len(failing) else "No claim fails in these summaries.", "\n",
        "## Checks listed apart\n",
        "Numerical checks (gradient checks), arithmetic (parameter counts, data sizes), inconsistencies of a "
        "report with itself (shown with their evidence, never scored as our failure) and numbers that cannot "
        "be tested.\n",
        apart.to_markdown(index=False) if len(apart) else "None in these summaries.", "\n",
        f"## Verdicts of this build (profile `{profile}`)\n",
        counts_table(current, profile).to_markdown(index=False), "\n",
    ]
    if any(full.values()) and profile != "full":
        parts += ["## Verdicts of the committed full-profile runs (`results/full/`)\n",
                  counts_table({c: s for c, s in full.items() if s}, "full").to_markdown(index=False), "\n"]
    best = {c: s for c, s in best.items() if s}
    spread = spread_table(best)
    parts += ["## Tolerances against the measured seed spread\n",
              "Where a chapter trained its headline networks from several seeds, the standard deviation of our "
              "number over those seeds is the yardstick of its tolerance: a tolerance of a few sd means a verdict "
              "is not decided by the luck of one seed; a tolerance well below 1 sd means the chapter reran the "
              "authors' own seed, so that only rounding separates the two numbers. Rows without a measured "
              "spread justify their tolerance in the chapter (rounding, binomial error, data-copy differences).\n",
              spread.to_markdown(index=False) if len(spread) else "No chapter of this build measured a seed spread.",
              "\n## Every published number\n",
              "From the full-profile run where one is committed, else from this build. `kind`: trained result, "
              "numerical check, arithmetic, report inconsistency or untestable; `from`: where the tolerance comes "
              "from; `seed sd`: the measured seed-to-seed standard deviation of ours, where the chapter ran seeds.\n"]
    table = rows_table(best, root)
    parts.append(table.to_markdown(index=False) if len(table) else "No summaries yet.")
    return "\n".join(parts) + "\n"


def render_deviations(profile: str, root: Path = PROJECT_ROOT) -> str:
    chapters = toc_chapters(root / "_toc.yml")
    current = load(root / "results" / profile, chapters)
    parts = ["# The reports vs what was run\n",
             "Every place where a chapter found that a report's text and its authors' code (or result files) "
             "disagree, collected from the chapters' summary files. By default each chapter reproduces what was "
             "run; the text's version is one parameter away. Follow the link for the evidence on the page.\n"]
    for chapter in chapters:
        s = current.get(chapter)
        parts.append(f"## {chapter}\n")
        if s is None:
            parts.append("Summary missing: the chapter has not been run at this profile.\n")
            continue
        if not s.get("deviations"):
            parts.append("No deviation recorded.\n")
            continue
        for d in s["deviations"]:
            link = section_link(chapter, d.get("section", ""), d["title"], root)
            parts.append(f"### {d['title']}\n\n- **Report says:** {d['report_says']}\n- **Code did:** {d['code_did']}\n"
                         f"- **Evidence:** {d['evidence']}\n- **Effect on the numbers:** {d['effect']}\n"
                         f"- **This book:** {d['default']} (see {link})\n")
    return "\n".join(parts) + "\n"


def chapter_title(chapter: str, root: Path = PROJECT_ROOT) -> str:
    """The first Markdown heading of the chapter's source notebook."""
    try:
        nb = json.loads((root / "notebooks" / f"{chapter}.ipynb").read_text())
    except (OSError, json.JSONDecodeError):
        return chapter
    for cell in nb["cells"]:
        if cell["cell_type"] == "markdown":
            for line in "".join(cell["source"]).splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return chapter


def render_reports(profile: str, root: Path = PROJECT_ROOT) -> str:
    """The landing page's table: each report, one line: its claims, its trained results and headline."""
    chapters = toc_chapters(root / "_toc.yml")
    current, full = load(root / "results" / profile, chapters), load(root / "results" / "full", chapters)
    rows = []
    for c in chapters:
        s = full[c] if full.get(c) and profile != "full" else current[c]
        if s is None:
            claims, trained = "summary missing", ""
        else:
            listed = s.get("claims_counted")
            claims = ("claims not listed yet" if not listed else
                      ", ".join(f"{listed[k]} {k}" for k in CLAIM_STATUSES if listed.get(k)) or "none") + f" ({s['profile']})"
            found = Counter(r["verdict"] for r in s["rows"] if _kind(r) == "trained")
            trained = ", ".join(f"{found[v]} {v}" for v in ("match", "close", "differs", "not run", "uninformative")
                                if found[v])
        rows.append({"chapter": f"{{doc}}`{chapter_title(c, root)} <chapters/{c}>`", "claims": claims,
                     "trained results": trained, "headline": "" if s is None else s.get("headline", "")})
    return pd.DataFrame(rows).to_markdown(index=False) + "\n"


def render_build_info(profile: str, root: Path = PROJECT_ROOT) -> str:
    import importlib.metadata as md
    import os
    import platform

    versions = {}
    for name in ("torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn", "jupyter-book", "sphinx",
                 "myst-nb", "papermill", "nbval", "nbclient", "ipykernel", "pytest", "tensorboard"):
        try:
            versions[name] = md.version(name)
        except md.PackageNotFoundError:
            versions[name] = "not installed"
    summaries = {c: s for c, s in load(root / "results" / profile, toc_chapters(root / "_toc.yml")).items() if s}
    runs = pd.DataFrame([{"chapter": c, "started (UTC)": s["provenance"].get("started"),
                          "wall seconds": s["provenance"].get("wall_seconds"), "device": s["provenance"].get("device"),
                          "threads": s["provenance"].get("threads"), "commit": (s["provenance"].get("git_commit") or "")[:10],
                          "dirty": s["provenance"].get("git_dirty")} for c, s in summaries.items()])
    lines = [f"Software of this build (Python {platform.python_version()}, on {platform.machine()} with "
             f"{os.cpu_count()} cores):\n",
             pd.DataFrame({"package": list(versions), "version": list(versions.values())}).to_markdown(index=False),
             f"\n\nThe chapter runs behind this build (profile `{profile}`):\n",
             runs.to_markdown(index=False) if len(runs) else "No chapter summaries yet."]
    lines += ["\n\n" + render_speed(root / "bench" / "results.json")]
    return "\n".join(lines) + "\n"


def render_speed(path: Path) -> str:
    """The latest ``make bench`` figures (bench/results.json, committed), one block per device."""
    try:
        bench = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return "No speed benchmark recorded (`make bench` writes bench/results.json)."
    parts = ["Speed, from the latest `make bench` (bench/results.json):\n"]
    for device, r in sorted(bench.items()):
        parts.append(f"`{device}`, measured {r.get('started', '?')}:\n\n```text\n" + "\n".join(r.get("lines", [])) + "\n```\n")
    return "\n".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.tools.scoreboard")
    p.add_argument("--profile", default="quick")
    p.add_argument("--out", type=Path, default=PROJECT_ROOT / "book" / "scoreboard.md")
    a = p.parse_args(argv)
    a.out.write_text(render(a.profile))
    (a.out.parent / "deviations.md").write_text(render_deviations(a.profile))
    (a.out.parent / "build_info.md").write_text(render_build_info(a.profile))
    (a.out.parent / "reports_table.md").write_text(render_reports(a.profile))
    print(f"wrote {a.out} and, beside it, deviations.md, build_info.md and reports_table.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
