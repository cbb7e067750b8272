"""Execute one chapter notebook with papermill, refusing bad parameter names and types first.

    python -m repro.run ift6135-2020 -p profile quick -p seed 3 [-o out.ipynb]

papermill itself only warns about unknown parameters; this wrapper compares every ``-p``
name with the notebook's parameters cell (``papermill.inspect_notebook``) and each value's
type with its default, and stops with one clear message before anything runs or is written.
The executed notebook goes to ``book/chapters/<chapter>.ipynb`` unless ``-o`` says otherwise.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys
from pathlib import Path

from ..parameters import literal

NOTEBOOKS = Path("notebooks")
OUTPUT = Path("book/chapters")


def check_parameters(notebook: Path, given: dict) -> dict:
    """Names, types, choices and bounds of ``given`` against the notebook's parameters cell
    (:mod:`repro.parameters`, the rules the notebook itself applies); one message for all."""
    from ..config import ParameterError
    from ..parameters import check, declared

    try:
        check(declared(notebook), given)
    except ParameterError as e:
        raise SystemExit(f"{notebook}: {e}") from None
    return given


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m repro.run", description=__doc__.splitlines()[0])
    p.add_argument("chapter", help="notebook stem, e.g. ift6135-2020")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    p.add_argument("-o", "--output", type=Path, default=None)
    p.add_argument("--timeout", type=int, default=7200, help="seconds per cell")
    a = p.parse_args(argv)
    notebook = NOTEBOOKS / f"{a.chapter}.ipynb"
    if not notebook.is_file():
        known = ", ".join(sorted(n.stem for n in NOTEBOOKS.glob("*.ipynb")))
        raise SystemExit(f"no notebook {notebook} (chapters: {known})")
    params = check_parameters(notebook, {k: literal(v) for k, v in a.parameter})
    output = a.output or OUTPUT / f"{a.chapter}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    execute(notebook, output, params, timeout=a.timeout)
    return 0


def execute(notebook: Path, output: Path, params: dict, timeout: int = 7200) -> None:
    """papermill with the kernel on IPC sockets in a private temporary folder: nothing listens on
    a TCP port, and the kernel has no reason to print its "running over TCP without encryption"
    warning on every run."""
    import tempfile

    import papermill
    from traitlets.config import Config

    import nbformat

    output = Path(output)
    running = output.with_name(f".{output.stem}.running.ipynb")  # the last good output stays until this run succeeds
    with tempfile.TemporaryDirectory(prefix="repro-kernel-") as folder:
        config = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(folder) / "kernel")}})
        try:
            papermill.execute_notebook(str(notebook), str(running), parameters=params, cwd=".", config=config,
                                       execution_timeout=timeout, progress_bar=False, kernel_name="python3")
        except BaseException:
            if running.exists():
                os.replace(running, output.with_name(f"{output.stem}.failed.ipynb"))
            raise
    nb = nbformat.read(running, as_version=4)
    for cell in nb.cells:  # papermill's copy of the parameters: plumbing, collapsed on the page
        tags = cell.metadata.get("tags", [])
        if "injected-parameters" in tags and "hide-cell" not in tags:
            cell.metadata["tags"] = tags + ["hide-cell"]
    nbformat.write(nb, running)
    os.replace(running, output)


if __name__ == "__main__":
    sys.exit(main())
