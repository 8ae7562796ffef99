#!/usr/bin/env bash
# Per-rank wrapper: gives each process on a node its own GPU, then runs the
# command. The local rank comes from Open MPI (OMPI_COMM_WORLD_LOCAL_RANK),
# Slurm (SLURM_LOCALID) or MPICH/PMI (MPI_LOCALRANKID), in that order.
#
#   mpirun ... launch/gpu_bind.sh build/bin/metareuse run --config C
#   srun   ... launch/gpu_bind.sh build/bin/metareuse run --config C
#
# Local rank r sees only GPU r (of METAREUSE_GPUS_PER_NODE, when set: rank r
# gets GPU r mod G), as cuda:0. On a machine without GPUs nothing is hidden.
set -euo pipefail
local_rank="${OMPI_COMM_WORLD_LOCAL_RANK:-${SLURM_LOCALID:-${MPI_LOCALRANKID:-0}}}"
if [[ -n "${METAREUSE_GPUS_PER_NODE:-}" && "${METAREUSE_GPUS_PER_NODE}" -gt 0 ]]; then
  export CUDA_VISIBLE_DEVICES=$((local_rank % METAREUSE_GPUS_PER_NODE))
fi
exec "$@"
