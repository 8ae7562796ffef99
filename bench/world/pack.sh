#!/usr/bin/env bash
# The reasoning world (configs/reuse-world.json) trained unpacked and packed, per
# seed: unpacked is the config's own (sequence length 192, 8 rows per
# step, padded per micro-batch; documents longer than 192 tokens are dropped);
# packed is dataset.pack=true at sequence length 256 with 6 rows per step (the same
# 1536 token slots per step; nothing is dropped). Both train 2 epochs (every
# document twice) and evaluate the reuse model only (experiment.baseline=false).
# Prints per run: steps, train-stage seconds, useful tokens/s, last loss, and
# eval's accuracy, mean tokens and pattern use.
#   bench/world/pack.sh [SEED ...]        (default seeds 1234 2 3; build first)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="${METAREUSE_BUILD_DIR:-$repo_root/build}/bin/metareuse"
python="${PYTHON:-${METAREUSE_VENV:-$repo_root/.venv}/bin/python}"
[[ -x "$bin" ]] || { echo "needs $bin: launch/setup.sh" >&2; exit 1; }
seeds=("$@")
[[ ${#seeds[@]} -gt 0 ]] || seeds=(1234 2 3)
work="${PACK_WORK:-$(mktemp -d)}"
cd "$repo_root"
echo "machine: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
for seed in "${seeds[@]}"; do
  for variant in unpacked packed256; do
    case $variant in
      unpacked) extra=(--set dataset.pack=false) ;;
      packed256) extra=(--set dataset.pack=true --set dataset.sequence_length=256 --set train.global_batch=6
                        --set train.micro_batch=6) ;;
    esac
    out="$work/$variant-$seed"
    rm -rf "$out"
    "$bin" run --config configs/reuse-world.json --set run.out_dir="$out" --set run.seed="$seed" \
      --set train.max_steps=0 --set train.epochs=2 --set experiment.baseline=false "${extra[@]}" >"$out.log" 2>&1
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
"$python" - "$work" "${seeds[@]}" <<'PY'
import json, re, sys
work, seeds = sys.argv[1], sys.argv[2:]
print("| seed | variant | steps | train s | useful tokens/s | last loss | accuracy | mean tokens | pattern use |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for seed in seeds:
    for variant in ("unpacked", "packed256"):
        folder = f"{work}/{variant}-{seed}"
        train = json.load(open(folder + "/timings.json"))["stages"]["train"]["seconds"]
        lines = [json.loads(l) for l in open(folder + "/metrics.jsonl")]
        lines = [l for l in lines if "val_loss" not in l]  # validation lines are not steps
        useful = sum(l["useful_tokens_per_s"] * l["seconds"] for l in lines)
        seconds = sum(l["seconds"] for l in lines)
        log = open(folder + ".log").read()
        m = re.search(r"eval model: accuracy ([\d.]+)% .*?mean ([\d.]+) tokens, mean [\d.]+ steps, pattern use ([\d.]+)%", log)
        print(f"| {seed} | {variant} | {len(lines)} | {train:.1f} | {useful / seconds:.0f} | {lines[-1]['loss']:.4f} "
              f"| {m.group(1)}% | {m.group(2)} | {m.group(3)}% |")
PY
