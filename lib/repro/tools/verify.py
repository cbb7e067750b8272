"""``make verify``: re-compute a sample of the committed store and list what it lacks.

    python -m repro.tools.verify [--budget 300] [--chapter CH ...]

Every chapter with a committed ``full`` summary (``results/full/<chapter>.json``) is executed at
profile ``full`` in *store-only* mode (``REPRO_STORE_ONLY=1``): nothing is trained except the
sampled entries, every other experiment is loaded from ``results/store``. The sample is the
cheapest entries first (by their recorded wall time) until half the time budget is spent; each
is re-computed with the thread count it was stored with and compared with the stored value at
its float tolerance (relative to each array's scale, recorded in the entry). The run fails
when an entry does not reproduce or a notebook fails; an experiment with no entry for the
current code (a code change invalidated it, or it was never run at ``full``) is listed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ..config import PROJECT_ROOT
from ..store import PLUMBING, STORE_DIR, stored_entries

NOTEBOOKS = PROJECT_ROOT / "notebooks"


def committed_chapters() -> list[str]:
    return sorted(p.stem for p in (PROJECT_ROOT / "results" / "full").glob("*.json")
                  if (NOTEBOOKS / f"{p.stem}.ipynb").is_file())


def full_costs(chapter: str) -> dict:
    """A chapter's ``FULL_COSTS`` (the expensive parts of profile ``full``), read without running it.

    The assignment is taken from the notebook's code and evaluated with the parameters cell's
    defaults, so the store's completeness can be checked in a unit test.
    """
    import ast

    import nbformat

    from .. import store as store_module

    nb = nbformat.read(NOTEBOOKS / f"{chapter}.ipynb", as_version=4)
    namespace = {"repro": __import__("repro")}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tree = ast.parse(cell.source)
        if "parameters" in cell.metadata.get("tags", []):
            exec(compile(tree, chapter, "exec"), namespace)
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "FULL_COSTS" for t in node.targets):
                exec(compile(ast.Module([node], []), chapter, "exec"), namespace)
                return namespace["FULL_COSTS"]
    return {}


def missing_parts(chapter: str) -> dict[str, str]:
    """Parts of a chapter's full profile the store lacks for today's library code (part -> why)."""
    from ..store import _matches, library_current, stored_entries

    entries = [e for e in stored_entries(chapter) if e.get("profile") == "full" and not e.get("reduced")
               and not e.get("partial_run")]
    out = {}
    for part, cost in full_costs(chapter).items():
        for pattern in cost.experiments:
            found = [e for e in entries if _matches(e.get("experiment", ""), [pattern])]
            if not found:
                out[part] = f"no entry for {pattern!r}"
                break
            if not all(library_current(e.get("depends_on")) for e in found):
                out[part] = f"the entries for {pattern!r} were made with older library code"
                break
    return out


def missing_parts_in_kernel(chapters: list[str]) -> dict[str, dict[str, str]]:
    """:func:`missing_parts` evaluated in a Jupyter kernel, where the notebooks compute their keys."""
    import nbclient
    import nbformat

    code = ("import json, repro.tools.verify as v\n"
            f"print(json.dumps({{c: v.missing_parts(c) for c in {list(chapters)!r}}}))")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(PROJECT_ROOT)}}).execute()
    return json.loads(nb.cells[0].outputs[0]["text"])


def sample(chapters: list[str], budget_s: float) -> dict[str, list[dict]]:
    """The cheapest stored entries first, until their recorded wall times fill the budget."""
    entries = sorted((e for c in chapters for e in stored_entries(c)), key=lambda e: e.get("wall_seconds") or 0)
    chosen, spent = {}, 0.0
    for e in entries:
        cost = e.get("wall_seconds") or 0
        if spent + cost > budget_s:
            break
        chosen.setdefault(e["chapter"], []).append(e)
        spent += cost
    return chosen


def run_parameters_of(chapter: str) -> dict:
    """The committed run's own choices (not where it wrote things, not the profile's knobs)."""
    import papermill

    summary = json.loads((PROJECT_ROOT / "results" / "full" / f"{chapter}.json").read_text())
    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{chapter}.ipynb"))
    return {k: v for k, v in summary.get("parameters", {}).items()
            if k in declared and k not in PLUMBING and declared[k]["default"] != "None"}


def verify_chapter(chapter: str, keys: list[str], threads: int | None, workdir: Path) -> dict:
    from .run import execute  # the kernel on IPC sockets, as repro.run starts it

    env_before = dict(os.environ)
    os.environ.update(REPRO_STORE_ONLY="1", REPRO_VERIFY=",".join(keys), REPRO_PROGRESS="0")
    if threads:
        os.environ["REPRO_THREADS"] = str(threads)
    started, error = time.time(), None
    try:
        execute(NOTEBOOKS / f"{chapter}.ipynb", workdir / f"{chapter}.ipynb",
                {**run_parameters_of(chapter), "profile": "full", "results_dir": str(workdir)})
    except Exception as e:  # the notebook's own error says which experiment is missing
        error = str(e).strip().splitlines()[-1][:400] if str(e).strip() else type(e).__name__
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    summary_path = workdir / f"{chapter}.json"
    log = json.loads(summary_path.read_text()).get("experiments", []) if summary_path.exists() else []
    return {"chapter": chapter, "seconds": round(time.time() - started, 1), "error": error, "log": log}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.tools.verify", description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=300, help="seconds for the whole check (default 300)")
    p.add_argument("--chapter", action="append", default=None, help="only these chapters")
    a = p.parse_args(argv)
    if a.budget <= 0:
        raise SystemExit("--budget must be positive")
    chapters = a.chapter or committed_chapters()
    if not chapters:
        print(f"verify: no committed full summaries in {PROJECT_ROOT / 'results' / 'full'}; nothing to check")
        return 0
    chosen = sample(chapters, a.budget / 2)  # the other half: loading everything else, the notebooks' own cells
    failures, absent, started = [], [], time.time()
    with tempfile.TemporaryDirectory(prefix="repro-verify-") as tmp:
        for chapter in chapters:
            picked = chosen.get(chapter, [])
            threads = Counter(e.get("machine", {}).get("threads") for e in picked).most_common(1)
            result = verify_chapter(chapter, [e["key"] for e in picked], threads[0][0] if threads else None, Path(tmp))
            log = result["log"]
            verified = [e for e in log if e["source"] == "verified"]
            missing = [e for e in log if e["source"] == "missing"]
            loaded = [e for e in log if e["source"] in ("store", "cache")]
            print(f"{chapter}: {len(loaded)} loaded, {len(verified)} re-computed "
                  f"({sum(e['verified'] for e in verified)} reproduced), {len(missing)} missing, {result['seconds']:.0f} s")
            for e in verified:
                status = "reproduced" if e["verified"] else "DOES NOT REPRODUCE: " + "; ".join(e["problems"])
                print(f"  {e['experiment']}: {e['wall_seconds']:.1f} s (stored {e.get('stored_wall_seconds')} s) {status}")
                if not e["verified"]:
                    failures.append(f"{chapter}/{e['experiment']}")
            for e in missing:
                print(f"  MISSING for the current code: {e['experiment']} (key {e['key']}"
                      + (f"; the store holds it under older code, key {e['older_key']}" if e.get("older_key") else "") + ")")
                absent.append(f"{chapter}/{e['experiment']}")
            if result["error"] and "MissingFromStore" in result["error"]:
                print(f"  MISSING for the current code, and the rest of the chapter unchecked: {result['error']}")
                absent.append(chapter)
            elif result["error"]:
                print(f"  notebook failed: {result['error']}")
                failures.append(f"{chapter} notebook")
    print(f"verify: {time.time() - started:.0f} s, store {STORE_DIR.relative_to(PROJECT_ROOT)}: "
          + (f"{len(failures)} problem(s): {', '.join(failures)}" if failures else "every sampled entry reproduces")
          + (f"; missing for the current code: {', '.join(absent)}" if absent else "; nothing missing"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
