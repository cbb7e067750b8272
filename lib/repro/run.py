"""``python -m repro.run CHAPTER -p name value ...``: the command the README teaches (see :mod:`repro.tools.run`)."""
from .tools.run import *  # noqa: F401,F403  (re-exported for ``from repro.run import execute``)
from .tools.run import main

if __name__ == "__main__":
    raise SystemExit(main())
