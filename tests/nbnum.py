"""Number-aware comparison of notebook outputs for nbval, and the golden notebooks that feed it.

A smoke-profile golden holds the text a chapter printed. Most of its numbers come out the same on
every x86-64 CPU once the BLAS and oneDNN kernel paths are pinned (see ``PINNED`` and the
Makefile); the rest move with ATen's vectorized kernels (``ATEN_CPU_CAPABILITY``: default, avx2,
avx512), whose reductions add in a different order. So ``make golden`` runs every chapter once
per capability level this CPU has, keeps the native run's notebook, and records, per output, the
numbers that differed between the levels with their smallest and largest value
(``metadata.nbval_numbers``). The comparison then asks:

- text between numbers: identical (runs of spaces collapsed, since table padding follows width);
- a number the levels agreed on: equal as printed (``0.9277`` and ``0.9279`` differ; ``1e-4`` and
  ``3e-4`` differ);
- a number the levels disagreed on: inside [lo - w, hi + w] with w = hi - lo, i.e. within the
  measured platform spread, widened once by itself.

Images never enter the comparison and are not stored in the goldens (:func:`strip_images`).
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?![\w.])")
SPACES = re.compile(r"[ \t]+")
RULES = re.compile(r"-{3,}")  # table rules follow the column widths too
SKIP = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
        "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg", "image/svg+xml",
        "text/html", "application/javascript")  # stderr is compared: a warning on a page is a failure
# Kernel paths pinned for the tests and the goldens (ATen's capability is deliberately left free).
PINNED = {"MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def split(text: str) -> tuple[list[str], list[str]]:
    """(the text between numbers, whitespace runs collapsed; the numbers as printed)."""
    parts, numbers, last = [], [], 0
    for m in NUMBER.finditer(text):
        parts.append(_squeeze(text[last:m.start()]))
        numbers.append(m.group())
        last = m.end()
    parts.append(_squeeze(text[last:]))
    return parts, numbers


def _squeeze(s: str) -> str:
    return RULES.sub("---", SPACES.sub(" ", s))


def equal(ref: str, test: str, ranges=()) -> str | None:
    """None when ``test`` matches ``ref`` (see the module docstring), else the first difference."""
    rparts, rnums = split(ref)
    tparts, tnums = split(test)
    if rparts != tparts or len(rnums) != len(tnums):
        for a, b in zip(rparts, tparts):
            if a != b:
                return f"text differs: {a!r} vs {b!r}"
        return f"{len(rnums)} numbers expected, {len(tnums)} found"
    spread = {int(i): (float(lo), float(hi)) for i, lo, hi in ranges}
    for i, (a, b) in enumerate(zip(rnums, tnums)):
        x = float(b)
        if i in spread:
            lo, hi = spread[i]
            w = hi - lo
            if not lo - w <= x <= hi + w:
                return f"number {i}: {b} is outside the platform spread [{lo:g}, {hi:g}] widened by {w:g}"
        elif float(a) != x and not (math.isnan(float(a)) and math.isnan(x)):
            return f"number {i}: {b} where the golden has {a}"
    return None


def sanitizer(path: Path):
    """The regex replacements of an nbval sanitize file, as one function."""
    pairs, regex = [], None
    for line in Path(path).read_text().splitlines():
        if line.startswith("regex:"):
            regex = line.split(":", 1)[1].strip()
        elif line.startswith("replace:") and regex is not None:
            pairs.append((re.compile(regex), line.split(":", 1)[1].strip()))
            regex = None
    return lambda s: s if not isinstance(s, str) else _apply(pairs, s)


def _apply(pairs, s):
    for regex, replace in pairs:
        s = regex.sub(replace, s)
    return s


def flatten(outputs, sanitize=lambda s: s) -> dict[str, list]:
    """nbval's view of a cell's outputs: streams merged by name, MIME data flattened, skipped keys dropped."""
    merged, streams = [], {}
    for o in outputs:
        if o.get("output_type") == "stream":
            if o["name"] in streams:
                streams[o["name"]]["text"] += _text(o["text"])
                continue
            o = {"output_type": "stream", "name": o["name"], "text": _text(o["text"])}
            streams[o["name"]] = o
        merged.append(o)
    flat: dict[str, list] = {}
    for o in merged:
        items = {o["name"]: o["text"]} if o.get("output_type") == "stream" else o
        for key, value in items.items():
            if key in SKIP:
                continue
            if key == "data":
                for mime, v in value.items():
                    if mime not in SKIP:
                        flat.setdefault(mime, []).append(sanitize(_text(v)))
            else:
                flat.setdefault(key, []).append(sanitize(_text(value)))
    return flat


def _text(v):
    return "".join(v) if isinstance(v, list) else v


# ----------------------------------------------------------------------------- nbval
def compare_outputs(self, test, ref, skip_compare=None):
    """Replaces nbval's ``IPyNbCell.compare_outputs``: the same outputs, compared by :func:`equal`
    with the cell's recorded spread (``metadata.nbval_numbers``)."""
    got, want = flatten(test, self.sanitize), flatten(ref, self.sanitize)
    self.comparison_traceback = []
    if set(got) != set(want):
        self.comparison_traceback.append(f"output kinds differ: golden {sorted(want)}, run {sorted(got)}")
        return False
    spread = self.cell.get("metadata", {}).get("nbval_numbers", {})
    for key, values in want.items():
        if len(values) != len(got[key]):
            self.comparison_traceback.append(f"{len(values)} {key} outputs in the golden, {len(got[key])} in the run")
            return False
        for j, (a, b) in enumerate(zip(values, got[key])):
            problem = equal(a, b, spread.get(f"{key}#{j}", ())) if isinstance(a, str) else \
                (None if a == b else "values differ")
            if problem:
                self.comparison_traceback.append(f"{key}: {problem}")
                self.format_output_compare(key, a, b)
                return False
    return True


def install() -> None:
    try:
        from nbval.plugin import IPyNbCell
    except ImportError:  # nbval not installed: nothing to patch
        return
    IPyNbCell.compare_outputs = compare_outputs


def pytest_configure(config):  # as a plugin: pytest -p nbnum (tests/ on PYTHONPATH)
    install()


# ----------------------------------------------------------------------------- goldens
def strip_images(nb: dict) -> None:
    for cell in nb["cells"]:
        for o in cell.get("outputs", []):
            for mime in ("image/png", "image/jpeg", "image/svg+xml"):
                o.get("data", {}).pop(mime, None)


def spread_of(variants: list[dict], sanitize) -> dict:
    """Per code cell: {"<key>#<j>": [[number index, lo, hi], ...]} where the variants' numbers differ."""
    out = {}
    cells = [[c for c in nb["cells"] if c["cell_type"] == "code"] for nb in variants]
    for k, native in enumerate(cells[0]):
        tags = set(native.get("metadata", {}).get("tags", []))
        if tags & {"nbval-ignore-output", "nbval-skip"}:
            continue  # nbval does not compare these outputs
        flats = [flatten(cs[k].get("outputs", []), sanitize) for cs in cells]
        record = {}
        for key, values in flats[0].items():
            for j, text in enumerate(values):
                parts, nums = split(text)
                others = [split(f[key][j]) if len(f.get(key, [])) > j else (None, None) for f in flats[1:]]
                if any(p != parts or len(n) != len(nums) for p, n in others):
                    raise SystemExit(f"cell {k} output {key}#{j}: the capability levels printed different text, "
                                     "not only different numbers; make that output platform-independent")
                spans = []
                for i, a in enumerate(nums):
                    values_i = [float(a)] + [float(n[i]) for _, n in others]
                    if any(v != values_i[0] for v in values_i):
                        spans.append([i, min(values_i), max(values_i)])
                if spans:
                    record[f"{key}#{j}"] = spans
        if record:
            out[k] = record
    return out


def merge(native: Path, others: list[Path], target: Path, sanitize_file: Path) -> int:
    """Write ``target``: the native run, images stripped, with the measured spread in cell metadata."""
    nbs = [json.loads(Path(p).read_text()) for p in [native, *others]]
    spread = spread_of(nbs, sanitizer(sanitize_file))
    nb = nbs[0]
    strip_images(nb)
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for k, cell in enumerate(code):
        cell["metadata"].pop("nbval_numbers", None)
        if k in spread:
            cell["metadata"]["nbval_numbers"] = spread[k]
    target.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return sum(len(s) for r in spread.values() for s in r.values())


def levels(cpuinfo: str | None = None) -> list[str]:
    """The ATEN_CPU_CAPABILITY levels this CPU can run (torch's criteria), lowest first."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ["default"]
    flags = set(next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), []))
    found = ["default"]
    if {"avx2", "fma"} <= flags:
        found.append("avx2")
        if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
            found.append("avx512")
    return found


if __name__ == "__main__":  # python tests/nbnum.py merge NATIVE OTHER... -o TARGET | levels
    args = sys.argv[1:]
    if args == ["levels"]:
        print(" ".join(levels()))
        raise SystemExit(0)
    if not args or args[0] != "merge" or "-o" not in args:
        raise SystemExit("usage: python tests/nbnum.py merge NATIVE.ipynb [OTHER.ipynb ...] -o TARGET.ipynb")
    o = args.index("-o")
    n = merge(Path(args[1]), [Path(a) for a in args[2:o]], Path(args[o + 1]),
              Path(__file__).with_name("nbval_sanitize.cfg"))
    print(f"{args[o + 1]}: {n} numbers move with the CPU capability level (recorded as ranges)")
