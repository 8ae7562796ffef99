#!/usr/bin/env bash
# Rehearses bench/gpu/run.sh on CPU (ctest test_gpu_run): a fake $OUT, canned
# result rows, a stub nvidia-smi that finds no GPU (so every GPU stage is
# skipped by the missing device, as it would be on a machine without one), and
# the existing build (REUSE_BUILD=1; `ctest -L gpu` still runs, its cases
# skipping). Checks that the tables print as the stages end and that
# $OUT/results.json and $OUT/table.md come out with the canned rows, our ratio
# and every stage's status.
# Usage: tests/test_gpu_run.sh <source dir> <build dir>
set -uo pipefail
src="${1:?source dir}"; build="${2:?build dir}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin"
printf '#!/bin/sh\nexit 9\n' > "$work/bin/nvidia-smi"
chmod +x "$work/bin/nvidia-smi"
cat > "$work/canned.jsonl" <<'ROWS'
{"run": "metareuse-llama3.2-1b", "route": "metareuse", "precision": "fp16", "seq": 2048, "batch": 4, "step_s": 0.1638, "tokens_per_s": 50000, "tflops": 420.0, "matmul_params": 1235814400, "loss": 11.9, "skipped_steps": 0, "peak_mem_gib": 30.5, "device": "Canned GPU"}
{"run": "llama3.2-1b", "seq": 2048, "batch": 4, "step_s": 0.2048, "tokens_per_s": 40000, "tflops": 336.0, "matmul_params": 1235814400, "loss": 11.9, "peak_mem_gib": 43.8, "device": "Canned GPU"}
ROWS
out="$work/out"
PATH="$work/bin:$PATH" OUT="$out" REUSE_BUILD=1 BUILD_DIR="$build" CANNED_RESULTS="$work/canned.jsonl" \
  SHARED_DIR="$work/no-shared" PEAK_TFLOPS=800 TOTAL_SECONDS=300 bash "$src/bench/gpu/run.sh" > "$work/stdout" 2>&1
rc=$?
cat "$work/stdout"
failures=0
check() { if eval "$2"; then echo "ok: $1"; else echo "FAILED: $1"; failures=$((failures + 1)); fi; }
check "run.sh exits 0 (every stage that ran passed)" '[[ $rc == 0 ]]'
check "the stage table printed after each stage (at least 9 times)" \
  '(( $(grep -c "^Stages (so far" "$work/stdout") >= 9 ))'
check "the final tables printed once" '[[ $(grep -c "^Stages (final" "$work/stdout") == 1 ]]'
check "our ratio to the canned HF row (50000 / 40000)" 'grep -q "| 1.25x | canned |" "$work/stdout"'
check "table.md written" '[[ -s "$out/table.md" ]] && grep -q "HF eager" "$out/table.md"'
python3 - "$out/results.json" <<'PY' || failures=$((failures + 1))
import json, sys
results = json.load(open(sys.argv[1]))
stages = {s["stage"]: s for s in results["stages"]}
problems = []
def want(ok, what):
    print(("ok: " if ok else "FAILED: ") + what)
    if not ok: problems.append(what)
want(results["final"] is True, "results.json is the final one")
want([s["stage"] for s in results["stages"]] == ["preflight", "configure", "build", "gpu_tests", "memcheck", "gemm_peak",
     "ours_1b", "ours_3b", "hf_eager", "hf_compile_3b"], "every stage recorded in order")
# Without a GPU every test_gpu case skips; nccl_probe passes (it checks the error path).
note = stages["gpu_tests"]["note"]
import re
counts = re.search(r"tests failed out of (\d+); (\d+) skipped", note)
want(stages["gpu_tests"]["status"] == "ok" and "100% tests passed" in note and counts is not None
     and int(counts.group(2)) == int(counts.group(1)) - 1, "ctest -L gpu ran: all but nccl_probe skipped (" + note + ")")
for name in ["memcheck", "gemm_peak", "ours_1b", "ours_3b", "hf_eager", "hf_compile_3b"]:
    want(stages[name]["status"] == "skipped" and stages[name]["note"] == "no CUDA device", name + " skipped: no CUDA device")
rows = results["rows"]
want(len(rows) == 2 and all(r["source"] == "canned" for r in rows), "the two canned rows, marked canned")
hf = [r for r in rows if r["route_name"] == "HF eager"]
want(len(hf) == 1 and hf[0]["ratio_ours_over_route"] == "1.25x", "our ratio to HF eager in the JSON")
want(results["peak_tflops"] == 800.0 and abs(hf[0]["mfu"] - 336.0 / 800.0) < 1e-9, "MFU against the given peak")
want(results["commit"] not in ("", None), "the commit recorded")
sys.exit(1 if problems else 0)
PY
echo "$failures failure(s)"
exit $(( failures > 0 ))
