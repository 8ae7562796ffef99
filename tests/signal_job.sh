#!/usr/bin/env bash
# Runs a job (mpiexec or a launcher script) in its own process group, waits
# until WAIT_FILE is non-empty (training has started), optionally runs a second
# command while the job runs, then sends SIGNAL to one process of the job and
# waits for the job to end. For the 2-rank tests of test_train_cli.cpp.
#
#   signal_job.sh WAIT_FILE TARGET SIGNAL [--during CMD] -- JOB...
#
# TARGET: `launcher` (the job's first process: mpiexec, or the launcher script),
# `mpirun` (the mpiexec/mpirun process under it), `rank0`, `rank1` (a rank, found
# by OMPI_COMM_WORLD_RANK in its environment), or `none` (no signal: the job
# ends by itself). Prints `during_status=N during_seconds=S` (with --during),
# `job_alive_after_during=0|1`, `signalled=PID` and finally `job_status=N`;
# exits with the job's status. Every wait is bounded (a hang is status 124).
set -uo pipefail
wait_file="$1" target="$2" signal="$3"
shift 3
during=""
if [[ "${1:-}" == --during ]]; then during="$2"; shift 2; fi
[[ "${1:-}" == -- ]] && shift

set -m  # the job gets its own process group, as a job started from a terminal would
"$@" &
job=$!
set +m

for _ in $(seq 600); do
  [[ -s "$wait_file" ]] && break
  kill -0 "$job" 2>/dev/null || break
  sleep 0.2
done
[[ -s "$wait_file" ]] || echo "signal_job: $wait_file stayed empty"

# The job's processes: the job and its descendants (Open MPI puts each rank
# in a process group of its own, so the group alone would miss them).
descendants() {
  local pid child
  for pid in "$@"; do
    echo "$pid"
    for child in $(pgrep -P "$pid"); do descendants "$child"; done
  done
}
find_target() {
  local pid
  for pid in $(descendants "$job"); do
    case "$1" in
      mpirun) [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" =~ ^(mpiexec|mpirun|orterun)$ ]] && echo "$pid" && return ;;
      rank*)
        [[ "$(cat /proc/"$pid"/comm 2>/dev/null)" == metareuse* ]] &&
          tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=${1#rank}" &&
          echo "$pid" && return ;;
    esac
  done
}

if [[ -n "$during" ]]; then
  start=$SECONDS
  bash -c "$during"
  echo "during_status=$? during_seconds=$((SECONDS - start))"
  if kill -0 "$job" 2>/dev/null; then echo "job_alive_after_during=1"; else echo "job_alive_after_during=0"; fi
fi

case "$target" in
  none) pid="" ;;
  launcher) pid="$job" ;;
  *) pid="$(find_target "$target")" ;;
esac
if [[ "$target" != none ]]; then
  if [[ -z "$pid" ]]; then
    echo "signal_job: no process '$target' in the job"
    kill -KILL $(descendants "$job") 2>/dev/null
  else
    echo "signalled=$pid"
    kill -s "$signal" "$pid"
  fi
fi

# Bounded wait for the job: 240 s, then the whole group is killed (status 124).
for _ in $(seq 1200); do
  kill -0 "$job" 2>/dev/null || break
  sleep 0.2
done
hung=0
if kill -0 "$job" 2>/dev/null; then
  hung=1
  echo "signal_job: the job hung; killed"
  kill -KILL $(descendants "$job") 2>/dev/null
fi
wait "$job"
status=$?
((hung)) && status=124
echo "job_status=$status"
exit "$status"
