"""pyproject.toml declares what the library imports; requirements.txt and environment.yml pin the
same set, inside those ranges."""
import ast
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# import name -> distribution name, where they differ
DIST = {"PIL": "pillow", "myst_parser": "myst-parser", "yaml": "pyyaml"}
# used through another package's API rather than imported: pandas' to_markdown needs tabulate
INDIRECT = {"tabulate", "ipykernel"}


def pins(lines):
    out = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            name, version = line.split("==")
            out[canonicalize_name(name)] = version
    return out


def requirements():
    return pins((ROOT / "requirements.txt").read_text().splitlines())


def environment():
    text = (ROOT / "environment.yml").read_text()
    return pins(m for m in re.findall(r"^\s+- (\S+==\S+)\s*$", text, re.M))


def declared():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in meta["dependencies"]]
    reqs += [Requirement(r) for extra in meta.get("optional-dependencies", {}).values() for r in extra]
    return {canonicalize_name(r.name): r for r in reqs}


def test_requirements_and_environment_pin_the_same_set():
    assert requirements() == environment()
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_every_declared_range_is_pinned_inside_it():
    pinned = requirements()
    for name, req in declared().items():
        assert name in pinned, f"{name} is declared in pyproject.toml but not pinned in requirements.txt"
        assert req.specifier.contains(pinned[name]), f"{name}=={pinned[name]} is outside {req.specifier}"


def test_every_third_party_import_of_the_library_is_declared():
    runtime = {canonicalize_name(Requirement(r).name)
               for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    imported = set()
    for path in (ROOT / "lib" / "repro").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m not in ("repro", "__future__")}
    missing = {canonicalize_name(DIST.get(m, m)) for m in third_party} - runtime
    assert not missing, f"imported by lib/repro but not in pyproject.toml dependencies: {sorted(missing)}"
    assert {canonicalize_name(n) for n in INDIRECT} <= runtime
