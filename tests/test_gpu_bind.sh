#!/usr/bin/env bash
# launch/gpu_bind.sh: which GPU each local rank sees (ctest test_gpu_bind, label unit).
# Usage: tests/test_gpu_bind.sh <source dir>
set -uo pipefail
bind="${1:?source dir}/launch/gpu_bind.sh"
failures=0
# expect <wanted CUDA_VISIBLE_DEVICES, or "unset"> <env assignments...>: runs
# gpu_bind.sh in a clean environment with those variables and compares.
expect() {
  local wanted="$1"; shift
  local got
  got="$(env -i PATH="$PATH" "$@" "$bind" sh -c 'echo "${CUDA_VISIBLE_DEVICES-unset}"' 2>/dev/null)"
  if [[ "$got" == "$wanted" ]]; then
    echo "ok: $* -> $got"
  else
    echo "FAILED: $* -> '$got', wanted '$wanted'"; failures=$((failures + 1))
  fi
}
# Slurm's list on a partly allocated node: entry r, not physical GPU r.
expect 6 CUDA_VISIBLE_DEVICES=4,5,6,7 SLURM_LOCALID=2
expect 5 CUDA_VISIBLE_DEVICES=4,5 SLURM_LOCALID=1 METAREUSE_GPUS_PER_NODE=4  # the list wins over G
expect GPU-bbb CUDA_VISIBLE_DEVICES=GPU-aaa,GPU-bbb OMPI_COMM_WORLD_LOCAL_RANK=1
# Slurm bound one GPU per task already: kept.
expect 3 CUDA_VISIBLE_DEVICES=3 SLURM_LOCALID=0 METAREUSE_GPUS_PER_NODE=4
# Open MPI's local rank first, then Slurm's, then MPICH's.
expect 1 CUDA_VISIBLE_DEVICES=0,1,2 OMPI_COMM_WORLD_LOCAL_RANK=1 SLURM_LOCALID=2
expect 2 CUDA_VISIBLE_DEVICES=0,1,2 MPI_LOCALRANKID=2
# No list: the whole node, GPU r mod G.
expect 1 METAREUSE_GPUS_PER_NODE=4 SLURM_LOCALID=5
expect 0 METAREUSE_GPUS_PER_NODE=4
# Neither: nothing hidden.
expect unset SLURM_LOCALID=1
# More ranks than listed GPUs: wraps, and says so.
warning="$(env -i PATH="$PATH" CUDA_VISIBLE_DEVICES=4,5 SLURM_LOCALID=3 "$bind" true 2>&1)"
if [[ "$warning" == *"local rank 3 but CUDA_VISIBLE_DEVICES lists 2 GPUs"* ]]; then echo "ok: wrap warned"
else echo "FAILED: no warning for more ranks than GPUs: '$warning'"; failures=$((failures + 1)); fi
# The command and its arguments pass through unchanged, exit status included.
args="$(env -i PATH="$PATH" "$bind" printf '%s|' "a b" "" c)"
if [[ "$args" == "a b||c|" ]]; then echo "ok: arguments passed through"
else echo "FAILED: arguments became '$args'"; failures=$((failures + 1)); fi
env -i PATH="$PATH" "$bind" sh -c 'exit 3'
if [[ $? == 3 ]]; then echo "ok: exit status passed through"
else echo "FAILED: exit status not passed through"; failures=$((failures + 1)); fi
echo "$failures failure(s)"
exit $(( failures > 0 ))
