#!/usr/bin/env bash
# CPU training benchmark: metareuse's sharded trainer at 1 and 2 ranks and the
# plain PyTorch loop (the project venv's torch, the libtorch metareuse links) on
# the same shape, in one run.
# Prints tokens/s, the ratio to the PyTorch loop, and peak RSS per rank.
#   bench/train/run.sh [steps]     (default 10; build first with launch/setup.sh)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${METAREUSE_BUILD_DIR:-$repo_root/build}/bin/bench_train"
steps="${1:-10}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# The project's venv (launch/setup.sh): the same torch version as the libtorch linked.
python="${PYTHON:-${METAREUSE_VENV:-$repo_root/.venv}/bin/python}"
"$python" -c "import torch" 2>/dev/null || { echo "needs the project venv's torch: run launch/setup.sh" >&2; exit 1; }
results=()
results+=("$("$python" "$repo_root/bench/train/torch_loop.py" "$steps")")
results+=("$("$bin" "$steps")")
results+=("$(mpirun -np 2 --oversubscribe "$bin" "$steps")")
"$python" - "${results[@]}" <<'PY'
import json, sys
rows = [json.loads(r) for r in sys.argv[1:]]
base = rows[0]["tokens_per_s"]
print(f"{'route':<12}{'ranks':>6}{'tokens/s':>12}{'x PyTorch':>11}{'peak RSS/rank':>16}{'threads':>9}")
for r in rows:
    print(f"{r['route']:<12}{r['ranks']:>6}{r['tokens_per_s']:>12.0f}{r['tokens_per_s'] / base:>11.2f}"
          f"{r['peak_rss_bytes_per_rank'] / 2**20:>13.0f} MiB{r['torch_threads']:>9}")
PY
