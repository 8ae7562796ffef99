#!/usr/bin/env bash
# Prints a snapshot of the pipeline's outputs, for showing that a restructuring
# changed no result: run it on two commits' builds and diff.
#   tests/snapshot_outputs.sh BUILD_BIN_DIR > snapshot.txt
# It runs, from the repository root, the demo config and the reuse-world config
# cut to 50 training steps and 10 eval questions (the same flags on both
# commits), and prints:
#   - sha256 of handbook.json, augmented.jsonl and dataset.h5 (the dataset file
#     has no timestamps, so equal contents mean equal bytes);
#   - every step's loss from metrics.jsonl;
#   - every number in eval.json except durations and throughputs.
# The run folder is always the same path (SNAPSHOT_WORK, default
# /tmp/metareuse-snapshot): dataset.h5 stores the resolved config, paths included.
# One torch thread, so that the figures do not depend on the machine's cores.
# Needs jq and sha256sum. Not a ctest: it takes a few minutes.
set -euo pipefail
bin="$(cd "${1:?usage: snapshot_outputs.sh BUILD_BIN_DIR}" && pwd)"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${SNAPSHOT_WORK:-/tmp/metareuse-snapshot}"
rm -rf "$work" && mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
cd "$repo_root"

snapshot() {
  local name="$1" folder="$2"
  echo "== $name"
  for file in handbook.json augmented.jsonl dataset.h5; do
    [[ -f "$folder/$file" ]] && echo "$file $(sha256sum < "$folder/$file" | cut -d' ' -f1)"
  done
  for metrics in $(find "$folder" -name metrics.jsonl | sort); do
    echo "${metrics#"$folder/"}:"
    jq -c '[.step, .loss]' "$metrics"
  done
  for eval_file in $(find "$folder" -name eval.json | sort); do
    echo "${eval_file#"$folder/"}:"
    jq -c 'paths(numbers) as $p | select(($p | map(tostring) | join(".")) | test("seconds|tokens_per_s|_s$|time") | not)
           | [($p | map(tostring) | join(".")), getpath($p)]' "$eval_file"
  done
}

"$bin/metareuse" run --config configs/demo.json --set run.out_dir="$work/demo" > "$work/demo.log" 2>&1 ||
  { tail -20 "$work/demo.log" >&2; exit 1; }
snapshot demo "$work/demo"
"$bin/metareuse" run --config configs/reuse-world.json --set run.out_dir="$work/world" --set train.max_steps=50 \
    --set eval.limit=10 > "$work/world.log" 2>&1 || { tail -20 "$work/world.log" >&2; exit 1; }
snapshot reuse-world-50-steps "$work/world"
