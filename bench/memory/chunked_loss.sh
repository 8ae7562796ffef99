#!/usr/bin/env bash
# Chunked cross-entropy's memory: one rank's peak in a training step with the
# head's logits whole (train.loss_chunk_rows=0) and in chunks, each measured by
# bench/memory/memory_probe (two AdamW steps, recompute on; peak allocated bytes
# from libtorch's CPU allocator, or the CUDA caching allocator's with DEVICE=cuda)
# beside the memory plan's figure. Prints the machine, both peaks and their ratio.
#
#   bench/memory/chunked_loss.sh [MODEL_DIR] [SEQ] [CHUNK_ROWS]
#     defaults: build/models/SmolLM2-135M-Instruct, 1024, 256 (train.loss_chunk_rows's default)
# Environment: PRECISION (fp32), MICRO_BATCH (1), DEVICE (cpu), METAREUSE_BUILD_DIR (build).
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${METAREUSE_BUILD_DIR:-$repo_root/build}"
probe="$build/bin/memory_probe"
model="${1:-$build/models/SmolLM2-135M-Instruct}"
seq="${2:-1024}"
chunk="${3:-256}"
precision="${PRECISION:-fp32}"
micro_batch="${MICRO_BATCH:-1}"
device="${DEVICE:-cpu}"
[[ -x "$probe" ]] || { echo "needs $probe: cmake --build build --target memory_probe" >&2; exit 1; }
[[ -f "$model/config.json" ]] || { echo "needs a model folder with config.json, got '$model'" >&2; exit 1; }
[[ "$chunk" =~ ^[1-9][0-9]*$ ]] || { echo "CHUNK_ROWS must be a positive integer, got '$chunk'" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "machine: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if [[ "$device" == cuda ]] && command -v nvidia-smi >/dev/null; then
  echo "gpu: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1)"
fi
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $model; 1 rank, seq $seq, micro-batch $micro_batch, $precision, recompute always, device $device"

# A figure of the probe's JSON.
field() { sed -n "s/.*\"$2\": \"\{0,1\}\([^,\"]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -1; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }

printf '%-26s %14s %16s %10s\n' "train.loss_chunk_rows" "planned" "measured peak" "s/step"
for rows in 0 "$chunk"; do
  out="$work/$rows.json"
  if ! "$probe" --model "$model" --ranks 1 --seq "$seq" --micro-batch "$micro_batch" --precision "$precision" \
      --recompute always --device "$device" --loss-chunk-rows "$rows" --json "$out" >"$work/$rows.log" 2>&1; then
    cat "$work/$rows.log"
    echo "FAILED: memory_probe with --loss-chunk-rows $rows" >&2
    exit 1
  fi
  outcome="$(field "$out" outcome)"
  [[ "$outcome" == measured ]] || { cat "$work/$rows.log"; echo "FAILED: $outcome" >&2; exit 1; }
  label="$rows"
  [[ "$rows" == 0 ]] && label="0 (unchunked)"
  printf '%-26s %14s %16s %10.1f\n' "$label" "$(mib "$(field "$out" planned_bytes)")" \
    "$(mib "$(field "$out" measured_peak_bytes)")" "$(field "$out" seconds_per_step)"
done
awk -v c="$(field "$work/$chunk.json" measured_peak_bytes)" -v u="$(field "$work/0.json" measured_peak_bytes)" \
  -v pc="$(field "$work/$chunk.json" planned_bytes)" -v pu="$(field "$work/0.json" planned_bytes)" \
  'BEGIN { printf "chunked / unchunked peak: measured %.3f, planned %.3f\n", c / u, pc / pu }'
