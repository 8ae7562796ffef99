#!/usr/bin/env bash
# Smoke runs of the benchmarks (ctest bench_smoke.<case>): each script or binary
# under bench/ at a tiny size, so that a change that breaks a benchmark fails
# the suite. A case passes when the benchmark exits 0 and prints its result
# table or lines; no speed figure is judged (at these sizes they mean nothing; a
# case may check what must hold at any size, such as losses that agree).
# A case that needs ../shared or the SmolLM2 folder exits 77 (ctest: skipped)
# with a message when it is absent.
#   tests/test_bench_smoke.sh CASE SOURCE_DIR BUILD_DIR PYTHON SHARED_DIR
set -uo pipefail
case_name="${1:?case}"; src="${2:?source dir}"; build="${3:?build dir}"; python="${4:?python}"; shared="${5:?shared dir}"
smollm2="$build/models/SmolLM2-135M-Instruct"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

skip() { echo "SKIPPED: $*"; exit 77; }
need_shared() {
  local path
  for path in "$@"; do
    [[ -e "$shared/$path" ]] || skip "needs $shared/$path (the reference data folder ../shared)"
  done
}
need_smollm2() {
  [[ -f "$smollm2/config.json" ]] ||
    skip "needs $smollm2 (METAREUSE_REAL_MODEL=1 launch/setup.sh makes it)"
}
# Runs the benchmark, keeping its output in $work/out, and fails with that output when it exits non-zero.
bench() {
  echo "+ $*"
  "$@" >"$work/out" 2>&1
  local rc=$?
  cat "$work/out"
  [[ $rc == 0 ]] || { echo "FAILED: the benchmark exited with $rc"; exit 1; }
}
# Each pattern must match a line of the benchmark's output.
expect() {
  local pattern failed=0
  for pattern in "$@"; do
    if grep -Eq -- "$pattern" "$work/out"; then echo "ok: printed /$pattern/"; else echo "FAILED: no line matches /$pattern/"; failed=1; fi
  done
  exit "$failed"
}

case "$case_name" in
  patterns)
    # 1 MB: the first GSM8K records, enough for exact mode to find repeated sentences.
    need_shared datasets/gsm8k/train.jsonl reference/seed_patterns.py
    METAREUSE_SHARED_DIR="$shared" bench "$python" "$src/bench/patterns/bench_patterns.py" --build "$build" \
      --corpus "$work/corpus.jsonl" --megabytes 1 --repeats 1
    expect "^route +ranks +wall s" "^metareuse patterns --mode exact +2 " "^ratios \(whole process, same run\)" \
      "^exact mode at 2 rank\(s\) identical to the reference"
    ;;
  generate_batched)
    bench "$python" "$src/bench/generate/bench_batched.py" --build "$build" --shape debug-small --batches 1 \
      --new-tokens 2 --repeats 1
    expect "^\| batch \| metareuse tok/s" "^\| 1 \| [0-9.]+ \| [0-9.]+ \| [0-9.]+x \|"
    ;;
  train_run)
    # bench/train/run.sh with its Python peers on workloads (a) and (b): 2 steps (the first untimed), 1 document
    # per step, 1 round, and the profiled pass (PROFILE=1). Every route but torch.compile's, whose compilation
    # alone took over a minute per workload on 2 shared cores, and hf_trainer (hf_packed runs the same Trainer
    # with the padding-free collator), to keep the case near a minute. (c) is train_real's.
    need_shared datasets/gsm8k/train.jsonl tokenizers/llama3/tokenizer.json
    ROUTES="eager hf_packed metareuse metareuse2" WORKLOADS="a b" PROFILE=1 PYTHON="$python" \
      METAREUSE_BUILD_DIR="$build" METAREUSE_SHARED="$shared" bench bash "$src/bench/train/run.sh" 2 1 1
    expect "^workload \(a\)" "^workload \(b\)" "^metareuse +1 +[0-9.]+" "^hf_packed +1 " \
      "^metareuse 2 ranks / 1 rank: " "^profile of workload \(a\)" "^profile of workload \(b\)" \
      "^op class +metareuse +share +eager +share" "^matmul +[0-9.]+ +[0-9.]+% +[0-9.]+ +[0-9.]+%" \
      "^communication +[0-9.]+ " "^optimizer +[0-9.]+ " "^step +[0-9.]+ +100.0% +[0-9.]+ +100.0%"
    ;;
  train_real)
    # Workload (c), the real one: SmolLM2-135M-Instruct from its weights, metareuse against the padding-free
    # Trainer in fp32 and bf16, 2 steps of 1 document at sequence length 512 (the shortest augmented example
    # has about 320 tokens). Besides the tables, the fp32 losses must agree (to 1e-2: a document or loss
    # mask that differs between the routes moves them by far more).
    need_shared datasets/gsm8k/train.jsonl tokenizers/llama3/tokenizer.json
    need_smollm2
    WORKLOADS=c SEQ_C=512 MODEL="$smollm2" PYTHON="$python" METAREUSE_BUILD_DIR="$build" METAREUSE_SHARED="$shared" \
      bench bash "$src/bench/train/run.sh" 2 1 1
    difference="$(awk '/^workload \(c\), fp32/ {table = 1} /^workload \(c\), bf16/ {table = 0}
                       table && $1 == "metareuse" {print $NF}' "$work/out")"
    echo "fp32 last loss, metareuse - hf_packed: ${difference:-none}"
    awk -v d="$difference" 'BEGIN {exit !(d != "" && d + 0 < 1e-2 && d + 0 > -1e-2)}' ||
      { echo "FAILED: the fp32 losses differ by ${difference:-?} (more than 1e-2)"; exit 1; }
    expect "^workload \(c\), fp32" "^workload \(c\), bf16" "^metareuse +1 +[0-9.]+" "^hf_packed +1 +[0-9.]+" \
      "^metareuse / hf_packed: [0-9.]+x useful tokens/s at [0-9.]+x its peak RSS"
    ;;
  bench_train)
    # bench_train alone on workload (a), which needs no reference data: initial weights and documents from
    # peers.py; then with --profile, its dump read by op_profile.py.
    bench "$python" "$src/bench/train/peers.py" init "$work/init"
    bench "$python" "$src/bench/train/peers.py" docs "$work/a.json" a 2 1
    bench "$build/bin/bench_train" --init "$work/init" --docs "$work/a.json"
    grep -Eq '^\{"route": "metareuse", "ranks": 1, "workload": "a", "timed_steps": 1, "precision": "fp32", "useful_tokens_per_s": [0-9.]+' \
      "$work/out" || { echo "FAILED: no result line"; exit 1; }
    bench "$build/bin/bench_train" --init "$work/init" --docs "$work/a.json" --profile "$work/profile.json"
    bench "$python" "$src/bench/train/op_profile.py" table "$work/profile.json"
    expect "^profile of workload \(a\), 1 profiled steps" "^matmul +[0-9.]*[1-9][0-9.]* +[0-9.]+%" \
      "^optimizer +[0-9.]*[1-9][0-9.]* " "^top ops of metareuse .*aten::mm "
    ;;
  op_profile)
    # op_profile.py's rule on fabricated events (ns): nesting, self time, the scopes' precedence, outside ops.
    (cd "$src/bench/train" && "$python" - <<'PY') || exit 1
from op_profile import summarize
events = [
    ["metareuse::optimizer::step", 1, 0, 100e6], ["aten::mul_", 1, 10e6, 30e6],
    ["metareuse::comm::allreduce", 1, 50e6, 20e6],          # inside the optimizer: communication wins
    ["aten::mm", 1, 200e6, 50e6],
    ["autograd::engine::evaluate_function: MmBackward0", 1, 300e6, 60e6], ["aten::mm", 1, 310e6, 40e6],
    ["aten::scaled_dot_product_attention", 1, 400e6, 50e6], ["aten::bmm", 1, 410e6, 20e6],
    ["metareuse::comm::allgather", 1, 500e6, 30e6], ["aten::empty", 1, 505e6, 5e6],
    ["aten::fill_", 1, 600e6, 10e6], ["aten::add", 1, 700e6, 10e6], ["aten::view", 1, 720e6, 4e6],
]
ms, top = summarize({"route": "x", "workload": "a", "steps": 2, "wall_ns": 2000e6, "events": events})
want = {"optimizer": 40, "communication": 25, "matmul": 45, "other": 12, "attention": 25, "copies/fills": 5,
        "norm/elementwise": 5, "outside ops": (2000 - 100 - 50 - 60 - 50 - 30 - 10 - 10 - 4) / 2}
for klass, value in want.items():
    assert abs(ms[klass] - value) < 1e-9, (klass, ms[klass], value)
assert abs(sum(ms.values()) - 1000) < 1e-9, sum(ms.values())
print("op classes as expected:", ms)
PY
    ;;
  fp16)
    need_shared datasets/gsm8k/test.jsonl
    need_smollm2
    bench "$python" "$src/bench/fp16/smollm2_fp16.py" --model "$smollm2" --binary "$build/bin/fp16_forward" \
      --questions "$shared/datasets/gsm8k/test.jsonl" --count 1 --json "$work/fp16.json"
    expect "^logits against transformers fp32" "metareuse mixed fp16 \(training\), sdpa" "^per layer, max \|x\|" \
      "^ +29 " "^seconds: transformers autocast forward"
    ;;
  smollm2_gsm8k)
    # One AdamW step on one packed 256-token row, one test question, 2 new tokens, 200 train records.
    need_shared datasets/gsm8k/train.jsonl datasets/gsm8k/test.jsonl
    need_smollm2
    head -n 200 "$shared/datasets/gsm8k/train.jsonl" >"$work/train.jsonl"
    bench "$python" "$src/bench/real/smollm2_gsm8k.py" --binary "$build/bin/metareuse" --out "$work/run" \
      --steps 1 --questions 1 --max-new-tokens 2 \
      --set "corpus.files=[\"$work/train.jsonl\"]" --set "eval.questions=$shared/datasets/gsm8k/test.jsonl" \
      --set "model.path=$smollm2" --set "eval.baseline=$smollm2" --set dataset.sequence_length=256 \
      --set train.global_batch=1 --set train.micro_batch=1
    expect "^model +accuracy +correct" "^before \(SmolLM2\) " "^after \(fine-tuned\) " "^eval: [0-9]+ s for 2 x 1 answers" \
      "^train: [0-9]+ s for 1 steps"
    ;;
  world_seeds)
    # The reuse-world experiment shrunk as test_world_cli shrinks it (a 300-record world, 10 test questions,
    # 4 steps). Without experiment.bc_sft: a 4-step teacher answers nothing right, which distill refuses.
    bench "$build/bin/metareuse" world --out "$work/world" --train 300 --test 10
    (cd "$src" && bench "$python" "$src/bench/world/seeds.py" run --seeds 1 --binary "$build/bin/metareuse" \
      --out-root "$work/seeds" --set "corpus.files=[\"$work/world/train.jsonl\"]" \
      --set "eval.questions=$work/world/test.jsonl" --set train.max_steps=4 --set train.global_batch=4 \
      --set train.micro_batch=4 --set eval.max_new_tokens=12) || exit 1
    expect "^ +seed model +accuracy" "^ +1 baseline " "^ +1 reuse " "^reuse against the baseline over 1 seed" \
      "^  McNemar over 10 \(seed, question\) pairs" "^accuracy by the way the answer went"
    ;;
  gpu_report)
    # report.py only formats what bench/gpu/run.sh's stages left: a fabricated OUT folder.
    out="$work/out-dir"
    mkdir -p "$out"
    printf 'preflight\tok\t3\tfabricated\nours_1b\tok\t40\tfabricated\n' >"$out/stages.tsv"
    echo '{"commit": "0000000", "budget_s": 900, "device": "Fabricated GPU", "peak_tflops": "800"}' >"$out/run.json"
    echo '{"run": "metareuse-llama3.2-1b", "route": "metareuse", "precision": "fp16", "seq": 2048, "batch": 4, "step_s": 0.2, "tokens_per_s": 41000, "tflops": 300.0, "matmul_params": 1235814400, "loss": 11.9, "peak_mem_gib": 30.0, "device": "Fabricated GPU"}' >"$out/metareuse.jsonl"
    echo '{"run": "llama3.2-1b", "seq": 2048, "batch": 4, "step_s": 0.25, "tokens_per_s": 32800, "tflops": 240.0, "matmul_params": 1235814400, "loss": 11.9, "peak_mem_gib": 40.0, "device": "Fabricated GPU"}' >"$out/hf.jsonl"
    bench "$python" "$src/bench/gpu/report.py" "$out" --final
    [[ -s "$out/results.json" && -s "$out/table.md" ]] || { echo "FAILED: results.json or table.md missing"; exit 1; }
    expect "^Stages \(final; 43 s of the 900 s budget\)" "^\| ours_1b \| ok \| 40 \|" "^Throughput on Fabricated GPU" \
      "\| 1.25x \|"
    ;;
  bench_tokenizer)
    # The first 200 GSM8K records, one pass.
    need_shared tokenizers/llama3/tokenizer.json datasets/gsm8k/train.jsonl
    head -n 200 "$shared/datasets/gsm8k/train.jsonl" >"$work/train.jsonl"
    bench "$build/bin/bench_tokenizer" "$shared/tokenizers/llama3/tokenizer.json" "$work/train.jsonl" 1
    expect "^encode, piece cache \(warm\) +[0-9.]+ MB/s" "^ratio cached / " "^ids identical across all encoders: yes"
    ;;
  chunked_loss)
    # One rank of SmolLM2 at 64 tokens, the head's logits whole and in 24-token chunks (not a divisor).
    need_smollm2
    METAREUSE_BUILD_DIR="$build" bench bash "$src/bench/memory/chunked_loss.sh" "$smollm2" 64 24
    expect "^machine: " "^0 \(unchunked\) +[0-9.]+ MiB +[0-9.]+ MiB" "^24 +[0-9.]+ MiB +[0-9.]+ MiB" \
      "^chunked / unchunked peak: measured [0-9.]+, planned [0-9.]+"
    ;;
  bench_generate)
    bench "$build/bin/bench_generate" --lengths 8,16 --steps 2 --new-tokens 4
    expect "^ +length +KV cache ms/tok" "^ +16 +[0-9.]+ +[0-9.]+" "^per-token time from length 8 to 16" \
      "^generate\(16-token prompt, 4 new\): .*same tokens: yes"
    ;;
  *)
    echo "unknown case $case_name"
    exit 2
    ;;
esac
