#!/usr/bin/env bash
# The one prepared GPU check (docs/gpu.md, "The GPU run"), sized for one device
# call: about 8 minutes on an H100, every result under $OUT, which is the only
# folder that comes back from the GPU machine.
#   0. preflight: the GPU, torch, NCCL and the libraries the image may lack;
#   1. configure against the pip torch and the pip nvidia.nccl (METAREUSE_WITH_NCCL=ON);
#   2. build only bench_train_gpu, nccl_probe and test_gpu, with -j $JOBS;
#   3. ctest -L gpu (each test capped by METAREUSE_GPU_TEST_TIMEOUT, which test_gpu's
#      own TIMEOUT property takes; ctest's --timeout alone would not override it);
#   4. compute-sanitizer memcheck on the NCCL probe, when the image has it;
#   5. the card's fp16 GEMM peak (for MFU), measured;
#   6. our trainer at fixed batches: 1B at micro-batch 4, 3B at 2 (bench_train_gpu);
#   7. hf_baseline.py eager at the same batches, then `compile 3b` only when at
#      least COMPILE_MIN_SECONDS (150) of the budget remain.
# Every stage runs under `timeout` with its own budget, capped by what is left
# of TOTAL_SECONDS. After each stage the tables so far print, and
# $OUT/results.json and $OUT/table.md are rewritten (bench/gpu/report.py), so a
# run cut short still brings home what it measured. Logs: $OUT/logs/<stage>.log.
#
#   bench/gpu/pack.sh                       (before the device call: fills .gpu/)
#   OUT=/somewhere bench/gpu/run.sh         (the device call: carry [".gpu"])
#
# Environment: OUT (default $BUILD_DIR/run-<time>), TOTAL_SECONDS (470),
# BUILD_DIR (build-gpu), JOBS (16), SHARED_DIR (default .gpu/shared, which
# pack.sh fills; then ../shared), PEAK_TFLOPS (used only when the GEMM stage
# cannot measure it), PREFLIGHT_ONLY=1 (list what the machine has; exit 0 when
# all is found, 1 otherwise), SKIP_HF=1, SKIP_COMPILE=1,
# REUSE_BUILD=1 (skip configure and build; use BUILD_DIR as it is: the CPU
# rehearsal), CANNED_RESULTS=<jsonl> (rows shown as "canned", for the rehearsal).
# Exit status: 0 when every stage that ran passed (skips included), 1 otherwise.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
build="${BUILD_DIR:-build-gpu}"
# Without the device tool's $OUT: a folder in the (ignored) build folder.
OUT="${OUT:-$build/run-$stamp}"
mkdir -p "$OUT/logs"
OUT="$(cd "$OUT" && pwd)"
jobs="${JOBS:-16}"
total="${TOTAL_SECONDS:-470}"
compile_min="${COMPILE_MIN_SECONDS:-150}"
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( total - $(elapsed) )); }
say() { echo "[run.sh $(elapsed)s] $*"; }
: > "$OUT/stages.tsv"
failed=0

report() { python3 "$root/bench/gpu/report.py" "$OUT" "$@" || say "report.py failed"; }
record() {  # record <stage> <status> <seconds> <note>
  printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "${4//$'\t'/ }" >> "$OUT/stages.tsv"
  report
}
skip() { say "$1: skipped ($2)"; record "$1" skipped 0 "$2"; }
# stage <name> <budget s> <command...>: runs the command under timeout (its
# budget, or what is left of the total), output to logs/<name>.log.
stage() {
  local name="$1" budget="$2"; shift 2
  local remaining; remaining=$(left)
  if (( remaining < 10 )); then skip "$name" "no time left of the ${total} s budget"; return 1; fi
  (( budget > remaining )) && budget=$remaining
  say "$name: start (budget ${budget} s)"
  local t0 rc status; t0=$(date +%s)
  timeout -k 10 "$budget" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status="TIMEOUT"; failed=1 ;;
    *) status="FAILED"; failed=1 ;;
  esac
  local seconds=$(( $(date +%s) - t0 ))
  [[ $status != ok ]] && { tail -n 15 "$OUT/logs/$name.log"; }
  local note="${STAGE_NOTE:-exit $rc}"
  # STAGE_SUMMARY: a command whose output (read from the log) becomes the note.
  [[ -n "${STAGE_SUMMARY:-}" ]] && note="$(eval "$STAGE_SUMMARY" 2>/dev/null)"
  say "$name: $status (exit $rc, ${seconds} s)"
  record "$name" "$status" "$seconds" "$note"
  return $rc
}

# --- 0. preflight
commit="$(git rev-parse HEAD 2>/dev/null || cat "$root/.gpu/commit" 2>/dev/null || echo unknown)"
gpu="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)"
if [[ -n "$gpu" ]]; then say "GPU: $gpu"; else say "no GPU (nvidia-smi found none): the GPU stages are skipped"; fi
shared="${SHARED_DIR:-}"
if [[ -z "$shared" ]]; then
  for candidate in "$root/.gpu/shared" "$root/../shared" "$root/shared"; do
    if [[ -f "$candidate/hf_baseline.py" ]]; then shared="$(cd "$candidate" && pwd)"; break; fi
  done
fi
[[ -n "$shared" && -f "$shared/hf_baseline.py" ]] && say "reference folder: $shared" ||
    { say "no .gpu/shared (bench/gpu/pack.sh) or ../shared with hf_baseline.py: no HF baseline, fixture tests skip"; shared=""; }
torch_prefix="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)"
nccl_root="$(python3 -c 'import nvidia.nccl,os;print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)"
python3 - "$OUT/run.json" "$commit" "$total" "${gpu:-none}" "${PEAK_TFLOPS:-}" "$stamp" <<'PY'
import json, sys
out, commit, total, gpu, peak, stamp = sys.argv[1:7]
json.dump(dict(commit=commit, budget_s=int(total), nvidia_smi=gpu, peak_tflops=float(peak) if peak else None,
               started=stamp), open(out, "w"), indent=1)
PY
[[ -n "${CANNED_RESULTS:-}" ]] && cp "$CANNED_RESULTS" "$OUT/canned.jsonl" && say "canned rows from $CANNED_RESULTS"
deps="$root/.gpu/deps/usr"
missing=0
{
  [[ -n "$torch_prefix" ]] && echo "torch $(python3 -c 'import torch;print(torch.__version__, torch.version.cuda)') at $torch_prefix" ||
      { echo "MISSING: python3 has no torch"; missing=1; }
  echo "NCCL from ${nccl_root:-the system / CUDA toolkit}"
  for header in CLI/CLI.hpp spdlog/spdlog.h fmt/format.h xxhash.h catch2/catch.hpp nlohmann/json.hpp \
                hdf5/serial/hdf5.h sentencepiece_processor.h mpi.h; do
    if [[ -f "/usr/include/$header" || -f "/usr/local/include/$header" ||
          -f "/usr/lib/x86_64-linux-gnu/openmpi/include/$header" ]]; then echo "found header $header"
    elif [[ -f "$deps/include/$header" ]]; then echo "header $header: from .gpu/deps (bench/gpu/pack.sh)"
    else echo "MISSING dependency header: $header"; missing=1; fi
  done
  for library in libfmt libspdlog libxxhash libsentencepiece libhdf5_serial libmpi; do
    if ldconfig -p | grep "$library\.so" > /dev/null; then echo "found library $library"
    elif compgen -G "$deps/lib/*/$library.so*" > /dev/null; then echo "library $library: from .gpu/deps"
    else echo "MISSING library $library"; missing=1; fi
  done
  command -v compute-sanitizer > /dev/null && echo "compute-sanitizer: $(command -v compute-sanitizer)" ||
      echo "no compute-sanitizer"
} > "$OUT/logs/preflight.log" 2>&1
cat "$OUT/logs/preflight.log"
record preflight "$([[ $missing == 0 ]] && echo ok || echo MISSING)" "$(elapsed)" "${gpu:-no GPU}"
if [[ "${PREFLIGHT_ONLY:-0}" == 1 ]]; then say "preflight only (missing: $missing)"; exit $missing; fi

# --- 1-2. configure and build
# Catch2 from the system or from what pack.sh carried: the tests need it.
tests=OFF
for catch in /usr/include/catch2/catch.hpp /usr/local/include/catch2/catch.hpp "$deps/include/catch2/catch.hpp"; do
  [[ -f "$catch" ]] && tests=ON
done
built=0
if [[ "${REUSE_BUILD:-0}" == 1 ]]; then
  skip configure "REUSE_BUILD=1: $build as it is"
  skip build "REUSE_BUILD=1: $build as it is"
  built=1
elif [[ -z "$torch_prefix" ]]; then
  skip configure "python3 has no torch"; failed=1
else
  cmake_args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix"
              -DMETAREUSE_WITH_NCCL=ON -DMETAREUSE_BUILD_TESTS=$tests -DMETAREUSE_GPU_TEST_TIMEOUT=90)
  [[ -n "$nccl_root" ]] && cmake_args+=(-DNCCL_ROOT="$nccl_root")
  [[ -d "$deps" ]] && cmake_args+=(-DMETAREUSE_DEPS_FALLBACK="$deps")
  [[ -n "$shared" ]] && cmake_args+=(-DMETAREUSE_SHARED_DIR="$shared")
  [[ -d /usr/local/cuda ]] && cmake_args+=(-DCUDAToolkit_ROOT=/usr/local/cuda)
  targets=(bench_train_gpu nccl_probe)
  [[ $tests == ON ]] && targets+=(test_gpu)
  if STAGE_NOTE="tests $tests" stage configure 90 cmake "${cmake_args[@]}"; then
    STAGE_NOTE="${targets[*]} with -j $jobs" stage build 240 cmake --build "$build" -j "$jobs" --target "${targets[@]}" &&
      built=1
  else
    skip build "configure failed"
  fi
fi

# --- 3. gpu tests
if (( built )) && [[ -f "$build/CTestTestfile.cmake" ]]; then
  # The note: ctest's summary line and how many tests it skipped (no GPU: all of test_gpu).
  STAGE_SUMMARY='echo "$(grep -E "tests passed|tests failed out of" "$OUT/logs/gpu_tests.log" | tail -1); $(grep -c "[*][*][*]Skipped" "$OUT/logs/gpu_tests.log") skipped"' \
    stage gpu_tests 150 ctest --test-dir "$build" -L gpu --output-on-failure --timeout 90
else
  skip gpu_tests "nothing built"
fi

# --- 4. compute-sanitizer on the NCCL path
if [[ -z "$gpu" ]]; then skip memcheck "no CUDA device"
elif ! command -v compute-sanitizer > /dev/null; then skip memcheck "no compute-sanitizer on the image"
elif [[ ! -x "$build/bin/nccl_probe" ]]; then skip memcheck "nccl_probe not built"
else stage memcheck 60 compute-sanitizer --tool memcheck --error-exitcode 9 "$build/bin/nccl_probe"
fi

# --- 5. the card's fp16 GEMM peak, for MFU
if [[ -z "$gpu" ]]; then skip gemm_peak "no CUDA device"
else
  stage gemm_peak 45 python3 -c '
import json, sys, time, torch
n = 8192
a = torch.randn(n, n, device="cuda", dtype=torch.float16); b = torch.randn(n, n, device="cuda", dtype=torch.float16)
for _ in range(5): a @ b
torch.cuda.synchronize(); t = time.perf_counter(); k = 30
for _ in range(k): a @ b
torch.cuda.synchronize(); s = (time.perf_counter() - t) / k
json.dump(dict(device=torch.cuda.get_device_name(), tflops=round(2 * n ** 3 / s / 1e12, 1), n=n), open(sys.argv[1], "w"))
' "$OUT/gemm.json"
fi

# --- 6. our trainer at fixed batches
for shape_batch in 1b:4 3b:2; do
  shape="${shape_batch%:*}"; batch="${shape_batch#*:}"
  if [[ -z "$gpu" ]]; then skip "ours_$shape" "no CUDA device"
  elif [[ ! -x "$build/bin/bench_train_gpu" ]]; then skip "ours_$shape" "bench_train_gpu not built"
  else
    STAGE_NOTE="llama3.2-$shape micro-batch $batch" stage "ours_$shape" 75 "$build/bin/bench_train_gpu" \
        --shapes "$shape" --seq 2048 --batches "$batch" --precision fp16 --steps 8 --warmup 3 --out "$OUT/metareuse.jsonl"
  fi
done

# --- 7. the Python route on the same card, at the same batches
hf_script="$OUT/hf_baseline_fixed_batches.py"
hf_ready=0
if [[ -n "$shared" ]]; then
  # hf_baseline.py tries batches 4, 2, 1 and takes the first that fits; on an H100
  # the 3B shape at 4 runs out of memory first. Fixed batches save that attempt.
  python3 - "$shared/hf_baseline.py" "$hf_script" <<'PY' && hf_ready=1
import sys
text = open(sys.argv[1]).read()
old = '[("llama3.2-1b", L32_1B, 2048, [4, 2, 1]), ("llama3.2-3b", L32_3B, 2048, [4, 2, 1])]'
new = '[("llama3.2-1b", L32_1B, 2048, [4]), ("llama3.2-3b", L32_3B, 2048, [2])]'
if old not in text:
    sys.exit("hf_baseline.py's batch list changed; running it unmodified")
open(sys.argv[2], "w").write(text.replace(old, new))
PY
  (( hf_ready )) || hf_script="$shared/hf_baseline.py"
fi
hf_collect() { grep -h '^{' "$OUT/logs/$1.log" >> "$OUT/hf.jsonl" 2>/dev/null || true; report > /dev/null; }
if [[ -z "$gpu" ]]; then skip hf_eager "no CUDA device"; skip hf_compile_3b "no CUDA device"
elif [[ -z "$shared" || "${SKIP_HF:-0}" == 1 ]]; then skip hf_eager "no hf_baseline.py or SKIP_HF=1"; skip hf_compile_3b "no HF"
else
  STAGE_NOTE="1B at 4, 3B at 2" stage hf_eager 120 python3 "$hf_script" "$OUT/hf_eager.json"; hf_collect hf_eager
  if [[ "${SKIP_COMPILE:-0}" == 1 ]]; then skip hf_compile_3b "SKIP_COMPILE=1"
  elif (( $(left) < compile_min )); then skip hf_compile_3b "only $(left) s left (< ${compile_min} s)"
  else
    STAGE_NOTE="3B at 2" stage hf_compile_3b "$(left)" python3 "$hf_script" "$OUT/hf_compile.json" compile 3b
    hf_collect hf_compile_3b
  fi
fi

say "done in $(elapsed) s; results in $OUT"
report --final
exit $failed
