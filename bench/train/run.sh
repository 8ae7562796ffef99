#!/usr/bin/env bash
# CPU training benchmark: metareuse at 1 and 2 ranks beside its Python peers
# (bench/train/peers.py: a plain PyTorch loop, the same under torch.compile,
# transformers + Trainer padded to the sequence length, transformers + Trainer
# with padding-free packing), all on the project venv's torch (the version of
# the libtorch metareuse links), from the same initial weights, on the same
# documents in the same order. Two workloads (peers.py describes them):
#   (a) random full sequences of 256 tokens;  (b) augmented GSM8K train at sequence length 1024.
# Routes run round robin (every route once per round, ROUNDS rounds); each
# row shows its best round. Prints useful tokens/s, metareuse (1 rank) over
# each route, peak RSS per rank, and the loss after the last step with its
# difference to the eager loop's (same data and init: they agree to ~1e-3).
#
#   bench/train/run.sh [STEPS] [DOCS_PER_STEP] [ROUNDS]     (defaults 3 4 1; build first)
# ROUTES (environment) picks the routes, default all six: eager compiled
# hf_trainer hf_packed metareuse metareuse2 (eager and metareuse are needed for
# the table's ratios and loss differences).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${METAREUSE_BUILD_DIR:-$repo_root/build}/bin/bench_train"
front="${METAREUSE_BUILD_DIR:-$repo_root/build}/bin/metareuse"
steps="${1:-3}"
per_step="${2:-4}"
rounds="${3:-1}"
read -r -a routes <<<"${ROUTES:-eager compiled hf_trainer hf_packed metareuse metareuse2}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python="${PYTHON:-${METAREUSE_VENV:-$repo_root/.venv}/bin/python}"
"$python" -c "import torch, transformers" 2>/dev/null || { echo "needs the project venv (torch, transformers): run launch/setup.sh" >&2; exit 1; }
[[ -x "$bin" && -x "$front" ]] || { echo "needs $bin and $front: cmake --build build --target bench_train metareuse" >&2; exit 1; }
shared="${METAREUSE_SHARED:-$repo_root/../shared}"
[[ -f "$shared/datasets/gsm8k/train.jsonl" && -f "$shared/tokenizers/llama3/tokenizer.json" ]] ||
  { echo "needs ../shared (datasets/gsm8k/train.jsonl, tokenizers/llama3/tokenizer.json); set METAREUSE_SHARED" >&2; exit 1; }
export METAREUSE_SHARED="$shared"
peers="$repo_root/bench/train/peers.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TMPDIR="$work"

echo "machine: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "torch $("$python" -c 'import torch; print(torch.__version__)'), transformers $("$python" -c 'import transformers; print(transformers.__version__)')"
echo "sizes: $steps steps per route (the first untimed); (a) 4 x 256 tokens per step; (b) $per_step augmented GSM8K examples per step"
"$python" "$peers" init "$work/init" >/dev/null 2>&1
"$python" "$peers" docs "$work/a.json" a "$steps" 4
# Workload (b): the handbook is mined from GSM8K train's first 2000 records and
# they are augmented the way `metareuse run` does; the steps take them in order.
head -n 2000 "$shared/datasets/gsm8k/train.jsonl" >"$work/train.jsonl"
"$front" patterns --corpus "$work/train.jsonl" --out "$work/handbook.json" >/dev/null 2>&1
"$front" augment --corpus "$work/train.jsonl" --handbook "$work/handbook.json" --out "$work/augmented.jsonl" >/dev/null 2>&1
"$python" "$peers" docs "$work/b.json" b "$steps" "$per_step" "$work/augmented.jsonl"

results="$work/results.jsonl"
for ((round = 1; round <= rounds; ++round)); do
  for workload in a b; do
    for route in "${routes[@]}"; do
      case "$route" in
        metareuse) line="$("$bin" --init "$work/init" --docs "$work/$workload.json")" ;;
        metareuse2) line="$(mpirun -np 2 --oversubscribe "$bin" --init "$work/init" --docs "$work/$workload.json")" ;;
        *) line="$("$python" "$peers" run "$route" "$work/init" "$work/$workload.json" 2>/dev/null | tail -1)" ;;
      esac
      echo "$line" >>"$results"
      echo "round $round: $line" >&2
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
best = {}
for r in rows:
    key = (r["workload"], r["route"], r["ranks"])
    if key not in best or r["useful_tokens_per_s"] > best[key]["useful_tokens_per_s"]:
        best[key] = r
for workload in ("a", "b"):
    ours = best[(workload, "metareuse", 1)]["useful_tokens_per_s"]
    eager_loss = best[(workload, "eager", 1)]["last_loss"]
    print(f"\nworkload ({workload})")
    print(f"{'route':<12}{'ranks':>6}{'useful tok/s':>14}{'metareuse/route':>17}{'peak RSS/rank':>16}{'last loss':>12}{'- eager':>10}")
    for (w, route, ranks), r in sorted(best.items(), key=lambda kv: (kv[0][0], kv[0][1] != "eager", kv[0][1], kv[0][2])):
        if w != workload:
            continue
        print(f"{route:<12}{ranks:>6}{r['useful_tokens_per_s']:>14.1f}{ours / r['useful_tokens_per_s']:>17.2f}"
              f"{r['peak_rss_bytes_per_rank'] / 2**20:>12.0f} MiB{r['last_loss']:>12.5f}{r['last_loss'] - eager_loss:>10.1e}")
    two = best.get((workload, "metareuse", 2))
    if two:
        print(f"metareuse 2 ranks / 1 rank: {two['useful_tokens_per_s'] / ours:.2f}x")
PY
