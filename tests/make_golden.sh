#!/usr/bin/env bash
# Regenerate tests/golden/<chapter>.ipynb (profile smoke): one papermill run per ATEN_CPU_CAPABILITY
# level this CPU has, with the BLAS/oneDNN paths pinned as in the tests; the native (highest) run is
# kept, images stripped, and the numbers that moved between levels recorded (tests/nbnum.py).
# Usage: tests/make_golden.sh PYTHON CHAPTER...
set -euo pipefail
PY=$1; shift
export MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 REPRO_PROGRESS=0
export REPRO_CACHE_DIR="${REPRO_CACHE_DIR:-$(mktemp -d)}"
runs=build/golden-runs
read -r -a levels <<<"$("$PY" tests/nbnum.py levels)"
for c in "$@"; do
  for l in "${levels[@]}"; do
    echo "golden: $c at ATEN_CPU_CAPABILITY=$l"
    ATEN_CPU_CAPABILITY=$l "$PY" -m repro.run "$c" -p profile smoke -p cache False -o "$runs/$l/$c.ipynb"
  done
  native=${levels[-1]}
  others=()
  for l in "${levels[@]::${#levels[@]}-1}"; do others+=("$runs/$l/$c.ipynb"); done
  "$PY" tests/nbnum.py merge "$runs/$native/$c.ipynb" "${others[@]}" -o "tests/golden/$c.ipynb"
done
