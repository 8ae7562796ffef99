#!/usr/bin/env bash
# One rank's measured peak memory against `metareuse plan`'s figure, within
# 15%, on two small shapes with whole units recomputed and two with selective
# recompute (bench/memory/memory_probe runs exactly one rank's share of the
# job through the loopback communicator); and on one shape, selective's
# measured peak strictly between keeping everything's and recomputing units'.
#   tests/test_memory_probe.sh MEMORY_PROBE_BINARY
set -euo pipefail
probe="${1:?usage: test_memory_probe.sh MEMORY_PROBE_BINARY}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1
failed=0
check() {
  local name="$1"; shift
  "$probe" "$@" --json "$work/$name.json" > "$work/$name.log" 2>&1 || { cat "$work/$name.log"; echo "FAILED: $name: the probe failed"; failed=1; return; }
  local ratio
  ratio="$(sed -n 's/.*"ratio": \([0-9.e+-]*\).*/\1/p' "$work/$name.json")"
  tail -6 "$work/$name.log"
  if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.85 && r <= 1.15) }'; then
    echo "ok: $name: measured / planned = $ratio"
  else
    echo "FAILED: $name: measured / planned = $ratio, outside [0.85, 1.15]"
    failed=1
  fi
}
check fp32-rank0-of-8 --preset debug-small --layers 2 --ranks 8 --rank 0 --seq 256 --micro-batch 1 --precision fp32
check bf16-rank1-of-2 --preset debug-small --layers 4 --ranks 2 --rank 1 --seq 512 --micro-batch 2 --precision bf16
check bf16-rank1-of-2-selective --preset debug-small --layers 4 --ranks 2 --rank 1 --seq 512 --micro-batch 2 \
  --precision bf16 --recompute selective
# The bench shape's activations at 1 rank, in each mode.
modes="--preset debug-small --layers 4 --ranks 1 --rank 0 --seq 512 --micro-batch 2 --precision fp32"
check fp32-selective $modes --recompute selective
"$probe" $modes --recompute never --json "$work/fp32-never.json" > "$work/fp32-never.log" 2>&1 \
  || { cat "$work/fp32-never.log"; echo "FAILED: fp32-never: the probe failed"; failed=1; }
"$probe" $modes --recompute always --json "$work/fp32-always.json" > "$work/fp32-always.log" 2>&1 \
  || { cat "$work/fp32-always.log"; echo "FAILED: fp32-always: the probe failed"; failed=1; }
peak() { sed -n 's/.*"measured_peak_bytes": \([0-9]*\).*/\1/p' "$work/$1.json"; }
never="$(peak fp32-never)" selective="$(peak fp32-selective)" always="$(peak fp32-always)"
if [ -n "$never" ] && [ -n "$selective" ] && [ -n "$always" ] && [ "$always" -lt "$selective" ] \
   && [ "$selective" -lt "$never" ]; then
  echo "ok: measured peaks: always $always < selective $selective < never $never bytes"
else
  echo "FAILED: measured peaks: always '$always', selective '$selective', never '$never' bytes: not in that order"
  failed=1
fi
exit "$failed"
