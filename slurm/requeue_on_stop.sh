#!/usr/bin/env bash
# The stop-and-requeue protocol of the sbatch templates. A template ends with
#
#   exec slurm/requeue_on_stop.sh <launcher command: srun ... or mpirun ...>
#
# so that this script becomes the batch shell (same process) and receives what
# Slurm sends to it. It starts the launcher, then:
#   - SIGUSR1 (from `#SBATCH --signal=B:USR1@120`, or
#     `scancel --batch --signal=USR1 <job>`) is forwarded to the launcher, which
#     forwards it to every rank (srun and Open MPI's mpirun both do). metareuse
#     then stops all ranks at the same step, writes a checkpoint and exits 3.
#     The `B:` matters: without it Slurm signals only the job's steps, and
#     mpirun inside the batch script is not a step, so the ranks would never
#     see the signal. `scancel --signal=USR1 <job>` without --batch reaches the
#     ranks directly when they run under srun (a step), not under mpirun.
#   - metareuse exiting 3 (stopped: signal or train.time_limit, resumable) makes
#     this script requeue the job with `scontrol requeue`; the requeued job runs
#     the template again and `--set train.resume=auto` continues from
#     <run>/checkpoints/latest (finished pipeline stages are skipped).
#   - SIGTERM means Slurm itself is ending the job (scancel, the time limit,
#     a requeue in progress). It is forwarded too (as SIGUSR1, see forward()),
#     so the ranks checkpoint if they have time, but the job is not requeued: a
#     cancelled job stays cancelled.
# Any other status ends the job with that status.
set -uo pipefail
if (($# == 0)); then
  echo "usage: requeue_on_stop.sh LAUNCHER [ARGS...]   (the last line of an sbatch template)" >&2
  exit 64
fi

child=0
interrupted=0
terminating=0
forward() {
  local signal_name="$1"
  interrupted=1
  if [[ "$signal_name" == TERM ]]; then terminating=1; fi
  echo "requeue_on_stop: SIG$signal_name at $(date -u +%FT%TZ), forwarding it to the ranks"
  # Passed on as SIGUSR1 either way: mpirun answers a SIGTERM of its own by
  # killing the ranks one second later (odls_base_sigkill_timeout), which cuts
  # off their checkpoint; SIGUSR1 it forwards, and the ranks stop with one.
  if ((child > 0)); then kill -s USR1 "$child" 2>/dev/null || true; fi
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM

"$@" &
child=$!
# A trapped signal interrupts `wait` (status > 128 without the launcher having
# ended); wait again until the launcher itself has exited. Bash keeps the
# status of a child that ended meanwhile, so the last wait returns it.
while :; do
  interrupted=0
  wait "$child"
  status=$?
  ((interrupted)) || break
done

echo "job ${SLURM_JOB_ID:-?} metareuse exited with $status at $(date -u +%FT%TZ)"
if ((status == 3)); then
  if ((terminating)); then
    echo "stopped at a checkpoint while Slurm ends the job (SIGTERM); not requeueing"
    exit 3
  fi
  if [[ -z "${SLURM_JOB_ID:-}" ]]; then
    echo "stopped at a checkpoint; not inside a Slurm job, run it again to resume"
    exit 3
  fi
  echo "stopped at a checkpoint; requeueing job ${SLURM_JOB_ID}"
  if scontrol requeue "${SLURM_JOB_ID}"; then
    # Slurm now ends this run of the job and queues it again.
    exit 0
  fi
  echo "scontrol requeue failed (is requeueing disabled on this cluster?); submit the job again to resume" >&2
  exit 3
fi
exit "$status"
