#!/usr/bin/env bash
# Per-rank wrapper: gives each process on a node its own GPU, then runs the
# command. The local rank comes from Open MPI (OMPI_COMM_WORLD_LOCAL_RANK),
# Slurm (SLURM_LOCALID) or MPICH/PMI (MPI_LOCALRANKID), in that order.
#
#   mpirun ... launch/gpu_bind.sh build/bin/metareuse run --config C
#   srun   ... launch/gpu_bind.sh build/bin/metareuse run --config C
#
# Which GPU local rank r gets:
#   - CUDA_VISIBLE_DEVICES already set (Slurm sets it to the GPUs it gave the job
#     on this node, e.g. "2,3" on a partly allocated node, or GPU UUIDs): entry
#     r of that list (r mod its length). Those entries are what the job may use;
#     replacing them with a physical index r would pick another job's GPU.
#   - else METAREUSE_GPUS_PER_NODE=G set (the whole node is the job's): GPU r mod G.
#   - else nothing is hidden (a machine without GPUs, or one rank).
# The rank then sees its one GPU as cuda:0.
set -euo pipefail
local_rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-${MPI_LOCALRANKID:-0}}}"
if [[ -n "${CUDA_VISIBLE_DEVICES:-}" ]]; then
  IFS=',' read -r -a visible <<< "$CUDA_VISIBLE_DEVICES"
  count=${#visible[@]}
  if (( local_rank >= count && count > 1 )); then
    echo "gpu_bind.sh: local rank $local_rank but CUDA_VISIBLE_DEVICES lists $count GPUs ($CUDA_VISIBLE_DEVICES);" \
         "ranks $((local_rank % count)) and $local_rank share a GPU, which NCCL refuses" >&2
  fi
  export CUDA_VISIBLE_DEVICES="${visible[$((local_rank % count))]}"
elif [[ -n "${METAREUSE_GPUS_PER_NODE:-}" && "${METAREUSE_GPUS_PER_NODE}" -gt 0 ]]; then
  export CUDA_VISIBLE_DEVICES=$((local_rank % METAREUSE_GPUS_PER_NODE))
fi
exec "$@"
