#!/usr/bin/env bash
# The Slurm templates against a real Slurm on this machine.
#
#   tests/test_slurm.sh SOURCE_DIR METAREUSE_BINARY      (ctest: test_slurm, label e2e)
#
# Starts a private single-node cluster in a temporary folder: munged with its
# own key and socket, slurmctld and slurmd from Debian's slurm-wlm (22.05),
# with a generated slurm.conf (this host's CPUs and memory, no cgroups,
# proctrack/linuxproc, task/none, select/cons_tres, state/spool/logs in the
# folder, free ports). Nothing outside the folder is touched; every daemon and
# job is stopped on exit, failure included. Then:
#   1. demo: `sbatch slurm/demo-cpu.sbatch` (mpirun inside the allocation) runs
#      the whole pipeline; the job must be COMPLETED with exit code 0 and the
#      run folder must hold report.html, eval/eval.json, checkpoints, export.
#   2. requeue, srun: a longer training under `srun --mpi=pmix`; once training
#      has started, `scancel --signal=USR1 <job>`. The ranks must write a stop
#      checkpoint and exit 3, the template must requeue the job, and the
#      requeued run must resume from that checkpoint's step and complete
#      (every step in metrics.jsonl exactly once).
#   3. requeue, mpirun: the same with the default mpirun launcher and
#      `scancel --batch --signal=USR1 <job>` (the batch shell forwards it).
#   4. eval-signal: SIGUSR1 during the eval stage; eval stops after the round
#      in flight (or, in its last round, finishes and the pipeline stops before
#      export) with status 3, and the requeued run goes on from the answers
#      kept and runs export once.
#   5. cancel: `scancel <job>` (SIGTERM) during training; the job must end
#      CANCELLED and must not be requeued.
# Exit 77 (ctest SKIP_RETURN_CODE) when not root or when Slurm cannot be
# installed or started; set METAREUSE_SLURM_INSTALL=0 to skip rather than
# apt-get install slurm-wlm and munge when they are missing, and
# METAREUSE_SLURM_KEEP=1 to keep the temporary folder (it is kept on failure).
set -uo pipefail

readonly skip_status=77
source_dir="$(cd "${1:?usage: test_slurm.sh SOURCE_DIR METAREUSE_BINARY}" && pwd)"
binary="${2:?usage: test_slurm.sh SOURCE_DIR METAREUSE_BINARY}"
test_start=$SECONDS

say() { echo "[test_slurm $(date -u +%T)] $*"; }
skip() { say "SKIP: $*"; exit "$skip_status"; }

if [[ $(id -u) -ne 0 ]]; then
  skip "needs root: it runs munged, slurmctld and slurmd of a private cluster"
fi
[[ -x "$binary" ]] || { say "FAIL: no metareuse binary at $binary"; exit 1; }

# --- slurm-wlm and munge from Debian ------------------------------------------
required=(munged mungekey slurmctld slurmd sbatch scontrol scancel squeue sinfo srun)
missing_commands() {
  local name
  for name in "${required[@]}"; do command -v "$name" >/dev/null 2>&1 || echo "$name"; done
}
if [[ -n "$(missing_commands)" ]]; then
  if [[ "${METAREUSE_SLURM_INSTALL:-1}" == 0 ]]; then
    skip "slurm-wlm/munge not installed ($(missing_commands | tr '\n' ' ')) and METAREUSE_SLURM_INSTALL=0"
  fi
  say "installing slurm-wlm and munge from Debian (launch/setup.sh installs them too)"
  if ! DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
      slurm-wlm munge >/dev/null 2>&1; then
    skip "apt-get install slurm-wlm munge failed (no network or no Debian repository?)"
  fi
  [[ -z "$(missing_commands)" ]] || skip "still missing after install: $(missing_commands | tr '\n' ' ')"
fi

# --- the private cluster ---------------------------------------------------------
# A short path: unix socket paths are limited to 107 bytes.
tmp="$(mktemp -d /tmp/metareuse-slurm.XXXXXX)"
chmod 755 "$tmp"  # munged wants every folder above its socket searchable by all
mkdir -p "$tmp/munge" "$tmp/munge-key" "$tmp/state" "$tmp/spool" "$tmp/log"
chmod 700 "$tmp/munge-key"
export SLURM_CONF="$tmp/slurm.conf"
daemon_pids=()
job_ids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if ((${#job_ids[@]})); then
    scancel "${job_ids[@]}" >/dev/null 2>&1 || true
    for _ in $(seq 20); do
      [[ -z "$(squeue -h -o %i 2>/dev/null)" ]] && break
      sleep 0.5
    done
  fi
  local pid
  for pid in "${daemon_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${daemon_pids[@]}"; do
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  done
  # Job processes outlive a killed slurmd; ours carry the temporary folder in
  # their command line (the run folders are inside it).
  local proc
  for proc in /proc/[0-9]*; do
    pid="${proc#/proc/}"
    [[ "$pid" == "$$" ]] && continue
    if { tr "\0" " " <"$proc/cmdline"; } 2>/dev/null | grep -qF -- "$tmp/"; then kill -9 "$pid" 2>/dev/null || true; fi
  done
  if ((status != 0 && status != skip_status)) || [[ -n "${METAREUSE_SLURM_KEEP:-}" ]]; then
    say "logs kept in $tmp"
  else
    rm -rf "$tmp"
  fi
  say "finished in $((SECONDS - test_start)) s with status $status"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  say "FAIL: $*"
  local file
  for file in "$tmp"/log/*.log "$tmp"/*.out; do
    [[ -f "$file" ]] || continue
    echo "----- last lines of $file"
    tail -n 25 "$file" | tr '\r' '\n' | tail -n 25
  done
  exit 1
}

# A free TCP port on this machine (nothing answers on it).
free_port() {
  local port
  for _ in $(seq 50); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return 0; fi
  done
  return 1
}

host="$(hostname -s)"
node_line="$(slurmd -C 2>/dev/null | head -n 1)"  # NodeName=<host> CPUs=.. RealMemory=.. of this machine
cpus="$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$node_line")"
[[ "$node_line" == NodeName=* && -n "$cpus" ]] || skip "slurmd -C did not describe this machine: '$node_line'"
node_line="NodeName=$host ${node_line#NodeName=* }"
ranks=$((cpus >= 2 ? 2 : 1))
controller_port="$(free_port)" && node_port="$(free_port)" || skip "no free TCP port found"

mungekey -c -k "$tmp/munge-key/munge.key" >/dev/null 2>&1 || skip "mungekey could not create a key"
munged -F --socket="$tmp/munge/munge.socket" --key-file="$tmp/munge-key/munge.key" \
  --log-file="$tmp/log/munged.log" --pid-file="$tmp/munge/munged.pid" --seed-file="$tmp/munge/munged.seed" \
  >"$tmp/log/munged.stdout" 2>&1 &
daemon_pids+=($!)

touch "$tmp/plugstack.conf"  # no SPANK plugins (Debian's /etc/slurm/plugstack.conf includes a folder)
cat >"$SLURM_CONF" <<EOF
# Generated by tests/test_slurm.sh: a private single-node cluster.
ClusterName=metareuse-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$controller_port
SlurmdPort=$node_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire also sets how long a requeued job waits before it may start again (default 120 s).
AuthInfo=socket=$tmp/munge/munge.socket,cred_expire=10
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$tmp/plugstack.conf
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$tmp/jobcomp.txt
SchedulerType=sched/builtin
# A requeued job waits for cred_expire, then for the next scheduling pass (default every 60 s).
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=10
MinJobAge=600
$node_line State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF

for _ in $(seq 40); do [[ -S "$tmp/munge/munge.socket" ]] && break; sleep 0.25; done
munge -n --socket="$tmp/munge/munge.socket" | unmunge --socket="$tmp/munge/munge.socket" >/dev/null 2>&1 ||
  skip "munged did not start (see $tmp/log/munged.log)"
slurmctld -D -c >"$tmp/log/slurmctld.stdout" 2>&1 &
daemon_pids+=($!)
slurmd -D -N "$host" >"$tmp/log/slurmd.stdout" 2>&1 &
daemon_pids+=($!)
node_state=""
for _ in $(seq 60); do
  node_state="$(sinfo -h -n "$host" -o %T 2>/dev/null)"
  [[ "$node_state" == idle ]] && break
  sleep 0.5
done
if [[ "$node_state" != idle ]]; then
  tail -n 5 "$tmp"/log/slurmctld.stdout "$tmp"/log/slurmd.stdout
  skip "the local Slurm did not come up (node state '$node_state')"
fi
say "cluster up in $((SECONDS - test_start)) s: node $host, $cpus CPU(s), ports $controller_port/$node_port, $ranks rank(s) per job"

# --- helpers ----------------------------------------------------------------------
# Jobs inherit this environment (sbatch --export=ALL): mpirun as root needs the two
# Open MPI variables; the template reads METAREUSE_BINARY.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export METAREUSE_BINARY="$binary"
unset METAREUSE_LAUNCHER METAREUSE_SRUN_MPI

job_field() {  # job_field JOB FIELD -> value in `scontrol show job`
  scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# Submits the demo template from the source folder (SLURM_SUBMIT_DIR is the
# template's repository root) with run.out_dir=$tmp/NAME; sets submitted_job.
submitted_job=""
submit() {  # submit NAME [sbatch options...] -- [template arguments...]
  local name="$1" options=() job
  shift
  while (($#)) && [[ "$1" != -- ]]; do options+=("$1"); shift; done
  shift
  job="$(cd "$source_dir" && sbatch --parsable --job-name="mr-$name" --ntasks="$ranks" \
           --output="$tmp/$name.out" "${options[@]}" slurm/demo-cpu.sbatch configs/demo.json \
           --set run.out_dir="$tmp/$name" "$@")" || fail "sbatch of $name was refused"
  submitted_job="${job%%;*}"
  job_ids+=("$submitted_job")
}

# Waits until JOB reaches a final state (requeues pass through PENDING again).
wait_final() {  # wait_final JOB TIMEOUT_S -> prints the state
  local job="$1" deadline=$((SECONDS + $2)) state
  while ((SECONDS < deadline)); do
    state="$(job_field "$job" JobState)"
    case "$state" in
      COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
        echo "$state"; return 0 ;;
    esac
    sleep 1
  done
  echo "TIMEOUT_WAITING($(job_field "$job" JobState))"
}

# Every step from 1 to LAST appears exactly once in metrics.jsonl.
check_steps_once() {  # check_steps_once FOLDER LAST
  local steps
  steps="$(grep -o '"step":[0-9]*' "$1/metrics.jsonl" | cut -d: -f2)"
  [[ "$(sort -n <<<"$steps" | uniq | wc -l)" == "$2" && "$(wc -l <<<"$steps")" == "$2" &&
     "$(sort -n <<<"$steps" | head -n 1)" == 1 && "$(sort -n <<<"$steps" | tail -n 1)" == "$2" ]] ||
    fail "$1/metrics.jsonl does not hold steps 1..$2 exactly once"
}

# --- 1. the demo template ------------------------------------------------------------
case_start=$SECONDS
submit demo --
job="$submitted_job"
say "demo: job $job submitted"
state="$(wait_final "$job" 300)"
[[ "$state" == COMPLETED ]] || fail "demo job $job ended $state, not COMPLETED"
[[ "$(job_field "$job" ExitCode)" == 0:0 ]] || fail "demo job $job exit code $(job_field "$job" ExitCode)"
for output in report.html eval/eval.json eval/answers.jsonl checkpoints/latest metrics.jsonl handbook.json \
              dataset.h5 export/config.json export/model.safetensors; do
  [[ -s "$tmp/demo/$output" ]] || fail "demo: no $output in the run folder"
done
ls "$tmp"/demo/checkpoints/ckpt-*.h5 >/dev/null 2>&1 || fail "demo: no checkpoint file"
grep -q '"accuracy"' "$tmp/demo/eval/eval.json" || fail "demo: eval.json has no accuracy"
grep -q "metareuse exited with 0" "$tmp/demo.out" || fail "demo: the job log does not show metareuse's exit"
say "demo: job $job COMPLETED with its outputs in $((SECONDS - case_start)) s"

# --- 2./3. stop on SIGUSR1, requeue, resume --------------------------------------------
# Small steps (one sequence per rank) so that training runs long enough to be
# signalled but the requeued run ends quickly; a short eval.
readonly signal_steps=80
signal_case() {  # signal_case NAME LAUNCHER SCANCEL_OPTION...
  local name="$1" launcher="$2"
  shift 2
  local case_start=$SECONDS folder="$tmp/$name" job state stop_step resume_step
  submit "$name" --export="ALL,METAREUSE_LAUNCHER=$launcher" -- --set train.max_steps=$signal_steps \
    --set train.global_batch=$ranks --set train.micro_batch=1 --set checkpoint.every_steps=0 \
    --set eval.limit=4 --set eval.max_new_tokens=24
  job="$submitted_job"
  say "$name: job $job submitted (launcher $launcher)"
  local deadline=$((SECONDS + 180))
  until [[ -s "$folder/metrics.jsonl" ]]; do
    ((SECONDS < deadline)) || fail "$name: training did not start within 180 s"
    [[ "$(job_field "$job" JobState)" =~ ^(PENDING|RUNNING|CONFIGURING)$ ]] ||
      fail "$name: job $job is $(job_field "$job" JobState) before training started"
    sleep 0.2
  done
  say "$name: training started; scancel ${*:+$* }--signal=USR1 $job"
  scancel "$@" --signal=USR1 "$job" || fail "$name: scancel refused"

  state="$(wait_final "$job" 300)"
  [[ "$state" == COMPLETED ]] || fail "$name: job $job ended $state, not COMPLETED"
  local restarts
  restarts="$(job_field "$job" Restarts)"
  [[ "$restarts" == 1 ]] || fail "$name: job $job restarted $restarts time(s), expected 1 requeue"
  local log="$tmp/$name.out"
  # Both runs of the job append to one log (--open-mode=append).
  grep -q "metareuse exited with 3" "$log" || fail "$name: the first run did not exit with status 3"
  grep -q "requeueing job $job" "$log" || fail "$name: the template did not requeue the job"
  grep -q "metareuse exited with 0" "$log" || fail "$name: the requeued run did not exit 0"
  grep -q "restart 1," "$log" || fail "$name: no second start (SLURM_RESTART_COUNT=1) in the log"
  stop_step="$(tr '\r' '\n' <"$log" | sed -n 's/.*checkpoint (stop) step \([0-9]*\) .*/\1/p' | head -n 1)"
  [[ -n "$stop_step" ]] || fail "$name: no stop checkpoint in the log"
  ((stop_step < signal_steps)) || fail "$name: stopped at step $stop_step, not before the end ($signal_steps)"
  resume_step="$(tr '\r' '\n' <"$log" | sed -n 's/.*resumed from .* at step \([0-9]*\) .*/\1/p' | head -n 1)"
  [[ "$resume_step" == "$stop_step" ]] ||
    fail "$name: the requeued run resumed at step '${resume_step}', the stop checkpoint is step $stop_step"
  check_steps_once "$folder" "$signal_steps"
  [[ -s "$folder/report.html" && -s "$folder/eval/eval.json" ]] || fail "$name: no report/eval after the resume"
  say "$name: job $job stopped at step $stop_step (exit 3), was requeued, resumed at step $resume_step" \
      "and COMPLETED in $((SECONDS - case_start)) s"
}

if srun --mpi=list 2>&1 | grep -q pmix; then
  signal_case requeue-srun srun  # plain scancel: the ranks are a job step and get the signal directly
else
  say "requeue-srun: skipped, this Slurm has no pmix MPI plugin (srun --mpi=list)"
fi
signal_case requeue-mpirun mpirun --batch  # mpirun is no step: the batch shell forwards the signal

# --- 4. SIGUSR1 outside training ------------------------------------------------------------
# The signal lands in the eval stage: eval finishes, the pipeline stops before
# export with status 3, the job is requeued, and the requeued run skips every
# finished stage and runs export only. Sampled answers at a high temperature
# rarely stop early, so eval runs for seconds (40 questions x 256 tokens).
case_start=$SECONDS
submit eval-signal -- --set train.max_steps=10 --set eval.greedy=false --set eval.temperature=2.0 \
  --set eval.max_new_tokens=256
job="$submitted_job"
deadline=$((SECONDS + 180))
until grep -q "stage eval       running" "$tmp/eval-signal.out" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "eval-signal: the eval stage did not start within 180 s"
  [[ "$(job_field "$job" JobState)" =~ ^(PENDING|RUNNING|CONFIGURING)$ ]] ||
    fail "eval-signal: job $job is $(job_field "$job" JobState) before eval started"
  sleep 0.1
done
scancel --batch --signal=USR1 "$job" || fail "eval-signal: scancel refused"
state="$(wait_final "$job" 300)"
[[ "$state" == COMPLETED ]] || fail "eval-signal: job $job ended $state, not COMPLETED"
[[ "$(job_field "$job" Restarts)" == 1 ]] || fail "eval-signal: job $job was not requeued once"
log="$tmp/eval-signal.out"
grep -qE "stage eval stopped with status 3|stopping before stage export" "$log" ||
  fail "eval-signal: the pipeline did not stop in eval or before export"
grep -q "metareuse exited with 3" "$log" || fail "eval-signal: the first run did not exit with status 3"
grep -qE "answer\(s\) read back|stage eval       up to date, skipped" "$log" ||
  fail "eval-signal: the requeued run did not go on from the first run's answers"
[[ "$(grep -c "stage export     running" "$log")" == 1 ]] || fail "eval-signal: export did not run exactly once"
[[ -s "$tmp/eval-signal/export/config.json" ]] || fail "eval-signal: no export after the requeue"
say "eval-signal: job $job stopped after eval (exit 3), was requeued, ran export and COMPLETED" \
    "in $((SECONDS - case_start)) s"

# --- 5. a cancelled job stays cancelled --------------------------------------------------
# scancel sends SIGTERM: requeue_on_stop.sh forwards it but must not requeue the job.
case_start=$SECONDS
submit cancel -- --set train.max_steps=100000 --set train.global_batch=$ranks --set train.micro_batch=1
job="$submitted_job"
deadline=$((SECONDS + 180))
until [[ -s "$tmp/cancel/metrics.jsonl" ]]; do
  ((SECONDS < deadline)) || fail "cancel: training did not start within 180 s"
  sleep 0.2
done
scancel "$job" || fail "cancel: scancel refused"
state="$(wait_final "$job" 120)"
[[ "$state" == CANCELLED ]] || fail "cancel: job $job ended $state, not CANCELLED"
sleep 3  # a requeue would show within the scheduling interval
[[ "$(job_field "$job" JobState)" == CANCELLED && "$(job_field "$job" Restarts)" == 0 ]] ||
  fail "cancel: job $job was requeued after scancel ($(job_field "$job" JobState), restarts $(job_field "$job" Restarts))"
say "cancel: job $job CANCELLED and not requeued in $((SECONDS - case_start)) s"

say "all Slurm cases passed"
exit 0
