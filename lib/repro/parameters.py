"""A chapter's parameters cell is the one declaration of what a reader may set.

Each line of the cell reads ``name = default  # help``. The help comment is documentation for
the reader and, in two fixed forms, the rule the value must follow:

- alternatives ``a | b: what b means | None (the profile value)``: the value must be one of the
  first words (``None``, ``True`` and ``False`` are Python's);
- a bound ``> 0`` or ``>= 0`` anywhere in the comment: a number above (or not below) zero.

The type is the default's (an int is accepted for a float), or, for a default of ``None`` that
means "the profile's value", the type of that value in the chapter's profile table.
``python -m repro.run`` checks the names, types and choices of its ``-p`` values with
:func:`check` before papermill starts; the notebook checks all of them again with
:func:`setup`, so a plain papermill run is refused the same way, before any work.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

from .config import PROJECT_ROOT, ParameterError, Settings, resolve

# Parameters every chapter has: where things go and how the run is set up (see config.resolve).
COMMON = ("profile", "seed", "device", "data_dir", "results_dir", "cache", "cache_dir", "max_minutes")
_BOUND = re.compile(r"(?<![<>=!])(>=?)\s*0(?![\d.])")


@dataclass(frozen=True)
class Parameter:
    name: str
    default: object
    help: str
    choices: tuple | None  # allowed values, from "a | b | c" in the help
    bound: str | None  # ">" or ">=" (zero), from the help


def literal(text: str):
    """A Python literal (``None``, ``True``, ``3``, ``(1, 2)``), or the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def choices_in(help_text: str) -> tuple | None:
    """``"xavier: std ... | he: std ..."`` -> ``("xavier", "he")``; None when the help lists no alternatives."""
    if " | " not in help_text:
        return None
    words = []
    for alternative in help_text.split(" | "):
        word = re.match(r"\s*([^\s:(;,]+)", alternative)
        if not word:
            return None
        words.append(literal(word.group(1)))
    return tuple(words)


def bound_in(help_text: str) -> str | None:
    found = _BOUND.search(help_text)
    return found.group(1) if found else None


def notebook_of(chapter: str) -> Path:
    return PROJECT_ROOT / "notebooks" / f"{chapter}.ipynb"


def parameters_cell(path: Path) -> str:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and "parameters" in cell.metadata.get("tags", []):
            return cell.source
    raise ParameterError(f"{path} has no cell tagged 'parameters'")


def declared(notebook: Path | str) -> dict[str, Parameter]:
    """The parameters cell of ``notebook`` (a path, or a chapter name), as :class:`Parameter` s.

    Parsed with Python's own ``ast`` and ``tokenize`` (papermill's inspector skips a line whose
    comment contains ``=``, such as ``>= 0``)."""
    import io
    import tokenize

    path = Path(notebook) if str(notebook).endswith(".ipynb") else notebook_of(str(notebook))
    if not path.is_file():
        raise ParameterError(f"no notebook {path}")
    source = parameters_cell(path)
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(source).readline) if tok.type == tokenize.COMMENT}
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, text = node.targets[0].id, comments.get(node.end_lineno, "")
            default = ast.literal_eval(node.value)
            out[name] = Parameter(name, default, text, choices_in(text), bound_in(text))
    return out


def _type_error(p: Parameter, value, expected) -> str | None:
    if expected is None or value is None:
        return None
    if isinstance(expected, bool) or isinstance(value, bool):
        ok = isinstance(value, bool) and isinstance(expected, bool)
    elif isinstance(expected, float):
        ok = isinstance(value, (int, float))
    elif isinstance(expected, (tuple, list)):
        ok = isinstance(value, (tuple, list))
    else:
        ok = isinstance(value, type(expected))
    return None if ok else (f"parameter {p.name!r} must be {type(expected).__name__} like {expected!r}, "
                            f"got {value!r} ({type(value).__name__})")


def check(spec: dict[str, Parameter], given: dict, profile_table: dict | None = None) -> None:
    """Raise one :class:`~repro.config.ParameterError` naming every bad value in ``given``."""
    errors = []
    for name, value in given.items():
        p = spec.get(name)
        if p is None:
            errors.append(f"unknown parameter {name!r} (known: {', '.join(spec)})")
            continue
        if p.choices is not None and not any(value == c and type(value) is type(c) for c in p.choices):
            errors.append(f"parameter {name!r} must be one of {', '.join(map(repr, p.choices))}; got {value!r}")
            continue
        expected = p.default
        if expected is None and profile_table:  # None: the profile's value, which has the type to follow
            expected = next((row[name] for row in profile_table.values() if row.get(name) is not None), None)
        problem = _type_error(p, value, expected)
        if problem:
            errors.append(problem)
            continue
        if p.bound and value is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
            if value < 0 or (value == 0 and p.bound == ">"):
                errors.append(f"parameter {name!r} must be {p.bound} 0; got {value!r}")
    if errors:
        raise ParameterError("; ".join(errors))


def setup(chapter: str, values: dict, profile_table: dict, costs: dict | None = None) -> Settings:
    """Check every parameter of ``chapter``'s parameters cell (read from ``values``, the notebook's
    globals), then :func:`repro.config.resolve` the profile: the one call a chapter's setup makes."""
    spec = declared(chapter)
    given = {name: values[name] for name in spec}
    check(spec, given, profile_table)
    profile = given["profile"]
    if profile not in profile_table:
        raise ParameterError(f"parameter 'profile' must be one of {', '.join(profile_table)}; got {profile!r}")
    overrides = {name: value for name, value in given.items() if name in profile_table[profile]}
    common = {name: given[name] for name in COMMON[1:] if name in given}
    return resolve(chapter, profile, profile_table, **common, overrides=overrides, costs=costs)
