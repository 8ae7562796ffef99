#!/usr/bin/env bash
# Multi-node launch with Open MPI: one process per GPU, local rank r on GPU r.
#
#   launch/mpirun.sh --hostfile hosts.txt --gpus-per-node 8 [--dry-run] [-- metareuse arguments]
#
# The hostfile lists one node per line ("node01 slots=8"); without metareuse
# arguments it runs `metareuse run --config configs/llama3.2-3b-p100x8.json
# --set train.resume=auto`. Ranks = nodes x GPUs per node. --dry-run prints the mpirun
# command instead of running it. The exit status is metareuse's: 3 means
# "stopped at the time limit or on a signal, resumable" (run it again).
#
# Environment it sets for every rank (override any of them by exporting it first):
#   OMP_NUM_THREADS=1              one CPU thread per rank for torch's CPU ops (the GPU does the work)
#   NCCL_DEBUG=WARN                NCCL prints only problems (INFO shows the rings/trees it picked)
#   NCCL_SOCKET_IFNAME             network interface for NCCL's bootstrap and socket transport;
#                                  left to NCCL unless METAREUSE_IFNAME is set (e.g. ib0, eth0)
#   NCCL_IB_DISABLE=0              use InfiniBand when present (1 forces TCP sockets)
#   NCCL_P2P_LEVEL                 not set: NCCL picks NVLink or PCIe peer-to-peer (set NVL to forbid PCIe P2P)
#   METAREUSE_GPUS_PER_NODE        read by launch/gpu_bind.sh to map local rank -> GPU
# and these Open MPI MCA parameters (mpirun --mca):
#   btl_tcp_if_include / oob_tcp_if_include = METAREUSE_IFNAME, when set: the interface for MPI traffic
#   pml ob1, btl ^openib           plain TCP/shared-memory transports; NCCL carries the tensor traffic
# A hung or failed NCCL collective is bounded by metareuse itself (dist.collective_timeout: it polls
# each collective and ncclCommGetAsyncError, and inits NCCL non-blocking; docs/gpu.md), not by an
# environment variable: NCCL_ASYNC_ERROR_HANDLING is read only by PyTorch's ProcessGroupNCCL.
# mpirun flags: --map-by ppr:G:node fills each node with G ranks in order, so
# rank = node * G + local rank; --bind-to none leaves CPU placement to the OS.
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
binary="${METAREUSE_BINARY:-$repo_root/build/bin/metareuse}"

hostfile=""
gpus_per_node=""
dry_run=0
while (($#)); do
  case "$1" in
    --hostfile) hostfile="$2"; shift 2 ;;
    --gpus-per-node) gpus_per_node="$2"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    --) shift; break ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "mpirun.sh: unknown argument '$1' (see --help)" >&2; exit 64 ;;
  esac
done
if [[ -z "$hostfile" || -z "$gpus_per_node" ]]; then
  echo "mpirun.sh: give --hostfile FILE and --gpus-per-node G" >&2
  exit 64
fi
if [[ ! -r "$hostfile" ]]; then
  echo "mpirun.sh: cannot read hostfile '$hostfile'" >&2
  exit 64
fi
if ! [[ "$gpus_per_node" =~ ^[0-9]+$ ]] || ((gpus_per_node < 1)); then
  echo "mpirun.sh: --gpus-per-node must be a positive integer, got '$gpus_per_node'" >&2
  exit 64
fi
nodes=$(grep -cvE '^[[:space:]]*(#|$)' "$hostfile" || true)
if ((nodes < 1)); then
  echo "mpirun.sh: hostfile '$hostfile' lists no nodes" >&2
  exit 64
fi
ranks=$((nodes * gpus_per_node))
if (($# == 0)); then
  set -- run --config configs/llama3.2-3b-p100x8.json --set train.resume=auto
fi

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export NCCL_DEBUG="${NCCL_DEBUG:-WARN}"
export NCCL_IB_DISABLE="${NCCL_IB_DISABLE:-0}"
export METAREUSE_GPUS_PER_NODE="$gpus_per_node"
env_flags=(-x OMP_NUM_THREADS -x NCCL_DEBUG -x NCCL_IB_DISABLE -x METAREUSE_GPUS_PER_NODE -x PATH)
if [[ -n "${LD_LIBRARY_PATH:-}" ]]; then env_flags+=(-x LD_LIBRARY_PATH); fi
mca_flags=(--mca pml ob1 --mca btl '^openib')
if [[ -n "${NCCL_P2P_LEVEL:-}" ]]; then env_flags+=(-x NCCL_P2P_LEVEL); fi
if [[ -n "${METAREUSE_IFNAME:-}" ]]; then
  export NCCL_SOCKET_IFNAME="$METAREUSE_IFNAME"
  env_flags+=(-x NCCL_SOCKET_IFNAME)
  mca_flags+=(--mca btl_tcp_if_include "$METAREUSE_IFNAME" --mca oob_tcp_if_include "$METAREUSE_IFNAME")
fi

command=(mpirun --hostfile "$hostfile" -np "$ranks" --map-by "ppr:${gpus_per_node}:node" --bind-to none
         "${mca_flags[@]}" "${env_flags[@]}" "$repo_root/launch/gpu_bind.sh" "$binary" "$@")
echo "mpirun.sh: $nodes node(s) x $gpus_per_node GPU(s) = $ranks ranks" >&2
if ((dry_run)); then
  printf '%q ' "${command[@]}"
  echo
  exit 0
fi
cd "$repo_root"
# mpirun handles SIGINT and SIGTERM itself by ending the job: SIGTERM to every
# rank, SIGKILL one second later (odls_base_sigkill_timeout) and status 1, so a
# checkpoint that takes longer is cut off. Instead the first Ctrl-C or SIGTERM
# reaches mpirun as SIGUSR1, which it forwards to every rank: they stop at the
# same step with a checkpoint and the status is 3. A second Ctrl-C or SIGTERM
# is passed on as it is (the job ends at once). `set -m` gives mpirun a process
# group of its own, so a terminal's Ctrl-C reaches only this script.
set +e  # the statuses below are read, not fatal
stops=0
forward_stop() {
  stops=$((stops + 1))
  if ((stops == 1)); then
    echo "mpirun.sh: SIG$1: the ranks stop at the next step with a checkpoint (again: end at once)" >&2
    kill -USR1 "$child" 2>/dev/null || true
  else
    kill -s "$1" "$child" 2>/dev/null || true
  fi
}
trap 'forward_stop INT' INT
trap 'forward_stop TERM' TERM
set -m
"${command[@]}" &
child=$!
set +m
# A trapped signal interrupts `wait`; wait again until mpirun itself has ended.
while :; do
  wait "$child"
  status=$?
  kill -0 "$child" 2>/dev/null || break
done
exit "$status"
