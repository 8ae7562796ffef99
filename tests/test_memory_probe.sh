#!/usr/bin/env bash
# One rank's measured peak memory against `metareuse plan`'s figure, within
# 15%, on two small shapes (bench/memory/memory_probe runs exactly one rank's
# share of the job through the loopback communicator).
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
exit "$failed"
