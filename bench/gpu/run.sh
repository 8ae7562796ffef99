#!/usr/bin/env bash
# The one prepared GPU check of issue #9 (see ../shared/GPU.md), meant to fit
# in about 8 minutes on the H100/H200 test machines:
#   1. configure against the pip torch's libtorch and the pip nvidia.nccl, with
#      METAREUSE_WITH_NCCL=ON, and build what the check needs with -j 12;
#   2. ctest -L gpu (the NCCL probe, one-rank collectives, fp32 reference
#      trajectory and fp16 vs fp32 on CUDA);
#   3. our trainer's throughput: Llama 3.2 1B and 3B shapes, seq 2048, fp16,
#      one GPU, the largest of the batches tried that fits;
#   4. ../shared/hf_baseline.py eager (1B and 3B), then `compile 3b`, on the
#      same card in the same run;
#   5. a table (tokens/s, TFLOP/s as 6N + attention, peak memory, our ratio to
#      each Python route) and one JSON file in bench/results/.
#
#   bench/gpu/run.sh
# Before the lease: bench/gpu/pack.sh, then run this with carry [".gpu"].
# Environment: BUILD_DIR (default build-gpu), JOBS (12), SHARED_DIR (default the
# first of ../shared, .gpu/shared, ./shared holding hf_baseline.py), BATCHES (4,2,1),
# PREFLIGHT_ONLY=1 (list what the machine has and exit: 0 all found, 1 something
# missing; a few seconds), SKIP_HF=1 (ours only), SKIP_COMPILE=1 (no torch.compile baseline),
# PEAK_TFLOPS (the card's measured fp16 GEMM peak for MFU; 755 on an H200).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build="${BUILD_DIR:-build-gpu}"
jobs="${JOBS:-12}"
batches="${BATCHES:-4,2,1}"
stamp="$(date -u +%Y%m%dT%H%M%SZ)"
work="$build/gpu-run-$stamp"
mkdir -p "$work" bench/results
start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
say() { echo "[run.sh $(elapsed)s] $*"; }

shared="${SHARED_DIR:-}"
if [[ -z "$shared" ]]; then
  for candidate in "$root/../shared" "$root/.gpu/shared" "$root/shared"; do
    if [[ -f "$candidate/hf_baseline.py" ]]; then shared="$(cd "$candidate" && pwd)"; break; fi
  done
fi
[[ -n "$shared" ]] && say "reference folder: $shared" || say "no ../shared or ./shared with hf_baseline.py: fixture tests skip, no HF baseline"

# --- 0. what the machine has
missing=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || say "no nvidia-smi"
torch_prefix="$(python3 -c 'import torch;print(torch.utils.cmake_prefix_path)' 2>/dev/null)" ||
    { say "MISSING: python3 has no torch"; missing=1; [[ "${PREFLIGHT_ONLY:-0}" == 1 ]] || exit 1; }
nccl_root="$(python3 -c 'import nvidia.nccl,os;print(list(nvidia.nccl.__path__)[0])' 2>/dev/null || true)"
[[ -n "$torch_prefix" ]] && say "torch $(python3 -c 'import torch;print(torch.__version__, torch.version.cuda)') at $torch_prefix"
say "NCCL from ${nccl_root:-the system / CUDA toolkit}"
# Dependencies GPU.md did not check: say which are missing before CMake fails on one.
for header in CLI/CLI.hpp spdlog/spdlog.h fmt/format.h xxhash.h catch2/catch.hpp nlohmann/json.hpp \
              hdf5/serial/hdf5.h sentencepiece_processor.h mpi.h; do
  if [[ -f "/usr/include/$header" || -f "/usr/local/include/$header" ||
        -f "/usr/lib/x86_64-linux-gnu/openmpi/include/$header" ]]; then
    say "found header $header"
  elif [[ -f "$root/.gpu/deps/usr/include/$header" ]]; then
    say "header $header: from .gpu/deps (bench/gpu/pack.sh)"
  else
    say "MISSING dependency header: $header"; missing=1
  fi
done
for library in libfmt libspdlog libxxhash libsentencepiece libhdf5_serial libmpi; do
  if ldconfig -p | grep "$library\.so" > /dev/null; then say "found library $library"
  elif compgen -G "$root/.gpu/deps/usr/lib/*/$library.so*" > /dev/null; then say "library $library: from .gpu/deps"
  else say "MISSING library $library"; missing=1; fi
done
[[ -n "$nccl_root" && -f "$nccl_root/include/nccl.h" ]] && say "found $nccl_root/include/nccl.h" || say "no pip NCCL headers"
if [[ "${PREFLIGHT_ONLY:-0}" == 1 ]]; then say "preflight only (missing: $missing)"; exit $missing; fi

# --- 1. configure and build
tests=ON
[[ -f /usr/include/catch2/catch.hpp || -f /usr/local/include/catch2/catch.hpp ]] || tests=OFF
cmake_args=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$torch_prefix"
            -DMETAREUSE_WITH_NCCL=ON -DMETAREUSE_BUILD_TESTS=$tests)
[[ -n "$nccl_root" ]] && cmake_args+=(-DNCCL_ROOT="$nccl_root")
# What bench/gpu/pack.sh carried (taken only where the image lacks a library).
[[ -d "$root/.gpu/deps/usr" ]] && cmake_args+=(-DMETAREUSE_DEPS_FALLBACK="$root/.gpu/deps/usr")
[[ -n "$shared" ]] && cmake_args+=(-DMETAREUSE_SHARED_DIR="$shared")
[[ -d /usr/local/cuda ]] && cmake_args+=(-DCUDAToolkit_ROOT=/usr/local/cuda)
if ! cmake "${cmake_args[@]}" > "$work/configure.log" 2>&1; then
  tail -30 "$work/configure.log"; say "configure FAILED (log: $work/configure.log)"; exit 1
fi
targets=(bench_train_gpu)
[[ $tests == ON ]] && targets+=(test_gpu)
if ! cmake --build "$build" -j "$jobs" --target "${targets[@]}" > "$work/build.log" 2>&1; then
  grep -m 20 -E "error|Error" "$work/build.log"; say "build FAILED (log: $work/build.log)"; exit 1
fi
say "built ${targets[*]}"

# --- 2. gpu tests
test_status="not built (no Catch2)"
if [[ $tests == ON ]]; then
  if ctest --test-dir "$build" -L gpu --output-on-failure --timeout 300 > "$work/ctest.log" 2>&1; then
    test_status="passed"
  else
    test_status="FAILED"
  fi
  tail -15 "$work/ctest.log"
  say "gpu tests: $test_status"
fi

# --- 3. our trainer
ours="$work/metareuse.jsonl"
for shape in 1b 3b; do
  "$build/bin/bench_train_gpu" --shapes "$shape" --seq 2048 --batches "$batches" --precision fp16 \
      --steps 8 --warmup 3 --out "$ours" 2>&1 | tee -a "$work/bench.log" || say "bench_train_gpu $shape FAILED"
done

# --- 4. the Python route on the same card
hf="$work/hf.jsonl"
if [[ -n "$shared" && "${SKIP_HF:-0}" != 1 ]]; then
  (cd "$work" && python3 "$shared/hf_baseline.py" hf_eager.json 2>"$work/hf_eager.err" | tee -a "$hf") ||
      say "hf_baseline eager FAILED (see $work/hf_eager.err)"
  if [[ "${SKIP_COMPILE:-0}" != 1 ]]; then
    (cd "$work" && python3 "$shared/hf_baseline.py" hf_compile.json compile 3b 2>"$work/hf_compile.err" | tee -a "$hf") ||
        say "hf_baseline compile FAILED (see $work/hf_compile.err)"
  fi
fi

# --- 5. table and JSON
python3 - "$ours" "$hf" "bench/results/gpu-$stamp.json" "$test_status" "${PEAK_TFLOPS:-}" "$(elapsed)" <<'EOF'
import json, os, subprocess, sys
ours_path, hf_path, out_path, test_status, peak, seconds = sys.argv[1:7]
def rows(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                try: out.append(json.loads(line))
                except ValueError: pass
    return [r for r in out if "tokens_per_s" in r]
ours, hf = rows(ours_path), rows(hf_path)
device = (ours + hf)[0]["device"] if ours + hf else "unknown"
peak = float(peak) if peak else (755.0 if "H200" in device else None)
def shape(r): return "3B" if "3b" in r["run"] else "1B"
def route(r):
    if r.get("route") == "metareuse": return "metareuse (C++)"
    return "HF torch.compile" if "compile" in r["run"] else "HF eager"
print(f"\nGPU benchmark on {device}: Llama 3.2 shapes, seq 2048, fp16, one GPU (gpu tests: {test_status})")
print(f"| shape | route | batch | step s | tokens/s | TFLOP/s | MFU | peak GiB | ours / this route |")
print(f"|---|---|---|---|---|---|---|---|---|")
table = []
for r in sorted(ours + hf, key=lambda r: (shape(r), route(r))):
    mine = [o for o in ours if shape(o) == shape(r)]
    ratio = f"{mine[0]['tokens_per_s'] / r['tokens_per_s']:.2f}x" if mine and r not in ours else ""
    mfu = f"{100 * r['tflops'] / peak:.0f}%" if peak else "-"
    print(f"| {shape(r)} | {route(r)} | {r['batch']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
          f"{r['tflops']:.0f} | {mfu} | {r['peak_mem_gib']:.1f} | {ratio} |")
    table.append(dict(r, shape=shape(r), route_name=route(r), ratio_ours_over_route=ratio or None))
try: commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
except OSError: commit = ""
json.dump(dict(device=device, commit=commit, peak_tflops=peak, gpu_tests=test_status, seconds=int(seconds),
               rows=table), open(out_path, "w"), indent=1)
print(f"\nwrote {out_path}")
EOF
say "done"
