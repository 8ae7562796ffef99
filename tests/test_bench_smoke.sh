#!/usr/bin/env bash
# Smoke runs of the benchmarks (ctest bench_smoke.<case>): each script or binary
# under bench/ at a tiny size, so that a change that breaks a benchmark fails
# the suite. A case passes when the benchmark exits 0 and prints its result
# table or lines; no figure is judged (at these sizes they mean nothing).
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
    # bench/train/run.sh with its Python peers: 2 steps (the first untimed), 1 document per step, 1 round. Every
    # route but torch.compile's, whose compilation alone took over a minute per workload on 2 shared cores, and
    # hf_trainer (hf_packed runs the same Trainer with the padding-free collator), to keep the case near a minute.
    need_shared datasets/gsm8k/train.jsonl tokenizers/llama3/tokenizer.json
    ROUTES="eager hf_packed metareuse metareuse2" PYTHON="$python" METAREUSE_BUILD_DIR="$build" \
      METAREUSE_SHARED="$shared" bench bash "$src/bench/train/run.sh" 2 1 1
    expect "^workload \(a\)" "^workload \(b\)" "^metareuse +1 +[0-9.]+" "^hf_packed +1 " \
      "^metareuse 2 ranks / 1 rank: "
    ;;
  bench_train)
    # bench_train alone on workload (a), which needs no reference data: initial weights and documents from peers.py.
    bench "$python" "$src/bench/train/peers.py" init "$work/init"
    bench "$python" "$src/bench/train/peers.py" docs "$work/a.json" a 2 1
    bench "$build/bin/bench_train" --init "$work/init" --docs "$work/a.json"
    expect '^\{"route": "metareuse", "ranks": 1, "workload": "a", "timed_steps": 1, "useful_tokens_per_s": [0-9.]+' \
      '"overlap": true, "comm_wait_s_per_step": [0-9.]+\}$'
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
