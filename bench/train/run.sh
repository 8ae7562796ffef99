#!/usr/bin/env bash
# CPU training benchmark: metareuse at 1 and 2 ranks beside its Python peers
# (bench/train/peers.py: a plain PyTorch loop, the same under torch.compile,
# transformers + Trainer padded to the sequence length, transformers + Trainer
# with padding-free packing), all on the project venv's torch (the version of
# the libtorch metareuse links), from the same initial weights, on the same
# documents in the same order. Three workloads (peers.py describes them):
#   (a) random full sequences of 256 tokens;  (b) augmented GSM8K train at sequence length 1024;
#   (c) the real workload: SmolLM2-135M-Instruct fine-tuned from its weights on the augmented
#       GSM8K examples as `metareuse prepare` tokenizes them (its tokenizer and chat template),
#       packed at SEQ_C tokens, 1 rank: metareuse against the Trainer with padding-free
#       packing (hf_packed), each in fp32 and in bf16. Skipped, with a message, without the
#       model folder (MODEL, default build/models/SmolLM2-135M-Instruct).
# Routes run round robin (every route once per round, ROUNDS rounds); each
# row shows its best round. Prints useful tokens/s, metareuse (1 rank, same
# precision) over each route, peak RSS per rank, and the loss after the last
# step with its difference to the reference route's (the eager loop's in (a)
# and (b), the padding-free Trainer's in (c); same data and init: they agree to
# ~1e-3 in fp32).
#
#   bench/train/run.sh [STEPS] [DOCS_PER_STEP] [ROUNDS]     (defaults 3 4 1; build first)
# Environment:
#   ROUTES     the routes of (a) and (b), default all six: eager compiled hf_trainer hf_packed
#              metareuse metareuse2 (eager and metareuse are needed for the ratios and loss differences)
#   WORKLOADS  default "a b c"
#   SEQ_C      (c)'s sequence length, default 1024 (documents longer than it are left out, as
#              prepare leaves them out; the shortest augmented example is about 320 tokens)
#   PROFILE=1  after the timed rounds, one profiled pass of metareuse (1 rank) and the reference
#              route per workload and precision (steps after the first, run under torch's profiler;
#              not the timed steps), and a table of self time per op class side by side
#              (bench/train/op_profile.py holds the classes' rule)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${METAREUSE_BUILD_DIR:-$repo_root/build}"
bin="$build/bin/bench_train"
front="$build/bin/metareuse"
steps="${1:-3}"
per_step="${2:-4}"
rounds="${3:-1}"
read -r -a routes <<<"${ROUTES:-eager compiled hf_trainer hf_packed metareuse metareuse2}"
read -r -a workloads <<<"${WORKLOADS:-a b c}"
seq_c="${SEQ_C:-1024}"
model="${MODEL:-$build/models/SmolLM2-135M-Instruct}"
profile="${PROFILE:-0}"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
python="${PYTHON:-${METAREUSE_VENV:-$repo_root/.venv}/bin/python}"
"$python" -c "import torch, transformers" 2>/dev/null || { echo "needs the project venv (torch, transformers): run launch/setup.sh" >&2; exit 1; }
[[ -x "$bin" && -x "$front" ]] || { echo "needs $bin and $front: cmake --build build --target bench_train metareuse" >&2; exit 1; }
shared="${METAREUSE_SHARED:-$repo_root/../shared}"
[[ -f "$shared/datasets/gsm8k/train.jsonl" && -f "$shared/tokenizers/llama3/tokenizer.json" ]] ||
  { echo "needs ../shared (datasets/gsm8k/train.jsonl, tokenizers/llama3/tokenizer.json); set METAREUSE_SHARED" >&2; exit 1; }
export METAREUSE_SHARED="$shared"
peers="$repo_root/bench/train/peers.py"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export TMPDIR="$work"

selected() {  # selected WORKLOAD: whether WORKLOADS has it
  [[ " ${workloads[*]} " == *" $1 "* ]]
}
if selected c && [[ ! -f "$model/config.json" ]]; then
  echo "workload (c) skipped: no model folder $model (METAREUSE_REAL_MODEL=1 launch/setup.sh makes it, or set MODEL)"
  read -r -a workloads <<<"$(printf '%s ' "${workloads[@]}" | sed 's/\bc\b//g')"
fi

echo "machine: $(uname -srm); $(nproc) cores; $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "torch $("$python" -c 'import torch; print(torch.__version__)'), transformers $("$python" -c 'import transformers; print(transformers.__version__)')"
echo "sizes: $steps steps per route (the first untimed); (a) 4 x 256 tokens per step; (b) $per_step augmented GSM8K examples per step; (c) $per_step of them per step, packed at $seq_c tokens"
echo "workloads: ${workloads[*]}"
"$python" "$peers" init "$work/init" >/dev/null 2>&1
selected a && "$python" "$peers" docs "$work/a.json" a "$steps" 4
# Workloads (b) and (c): the handbook is mined from GSM8K train's first 2000 records and
# they are augmented the way `metareuse run` does; the steps take them in order.
if selected b || selected c; then
  head -n 2000 "$shared/datasets/gsm8k/train.jsonl" >"$work/train.jsonl"
  "$front" patterns --corpus "$work/train.jsonl" --out "$work/handbook.json" >/dev/null 2>&1
  "$front" augment --corpus "$work/train.jsonl" --handbook "$work/handbook.json" --out "$work/augmented.jsonl" >/dev/null 2>&1
fi
selected b && "$python" "$peers" docs "$work/b.json" b "$steps" "$per_step" "$work/augmented.jsonl"
if selected c; then
  # (c)'s documents are what `metareuse prepare` makes of the examples with the model's tokenizer and
  # template (the model folder's; loss on the target): its dataset file, exported in record order.
  head -n $((4 * steps * per_step + 50)) "$work/augmented.jsonl" >"$work/augmented_c.jsonl"
  "$front" prepare --input "$work/augmented_c.jsonl" --out "$work/c.h5" --sequence-length "$seq_c" \
    --set "model.path=$model" --set dataset.validation_share=0 >"$work/prepare.log" 2>&1 ||
    { cat "$work/prepare.log" >&2; exit 1; }
  "$bin" --export-documents "$work/c.h5" >"$work/c_documents.jsonl"
  "$python" "$peers" docs "$work/c.json" c "$steps" "$per_step" "$work/c_documents.jsonl"
fi

# run_route WORKLOAD ROUTE PRECISION [EXTRA...]: one route's JSON line on stdout.
run_route() {
  local workload="$1" route="$2" precision="$3"
  shift 3
  local init="$work/init"
  [[ "$workload" == c ]] && init="$model"
  case "$route" in
    metareuse) "$bin" --init "$init" --docs "$work/$workload.json" --precision "$precision" "$@" ;;
    metareuse2) mpirun -np 2 --oversubscribe "$bin" --init "$init" --docs "$work/$workload.json" --precision "$precision" "$@" ;;
    *) "$python" "$peers" run "$route" "$init" "$work/$workload.json" --precision "$precision" "$@" 2>/dev/null | tail -1 ;;
  esac
}
routes_of() {  # routes_of WORKLOAD
  if [[ "$1" == c ]]; then echo "hf_packed metareuse"; else echo "${routes[*]}"; fi
}
precisions_of() {  # precisions_of WORKLOAD
  if [[ "$1" == c ]]; then echo "fp32 bf16"; else echo "fp32"; fi
}

results="$work/results.jsonl"
: >"$results"
for ((round = 1; round <= rounds; ++round)); do
  for workload in "${workloads[@]}"; do
    for precision in $(precisions_of "$workload"); do
      for route in $(routes_of "$workload"); do
        line="$(run_route "$workload" "$route" "$precision")"
        echo "$line" >>"$results"
        echo "round $round: $line" >&2
      done
    done
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"

"$python" - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
best = {}
for r in rows:
    key = (r["workload"], r.get("precision", "fp32"), r["route"], r["ranks"])
    if key not in best or r["useful_tokens_per_s"] > best[key]["useful_tokens_per_s"]:
        best[key] = r
REFERENCE = {"a": "eager", "b": "eager", "c": "hf_packed"}  # the loss column's reference route
for workload, precision in sorted({(k[0], k[1]) for k in best}, key=lambda k: (k[0], k[1] != "fp32")):
    reference = REFERENCE[workload]
    ours = best[(workload, precision, "metareuse", 1)]
    ref_loss = best[(workload, precision, reference, 1)]["last_loss"]
    print(f"\nworkload ({workload})" + (f", {precision}" if workload == "c" else ""))
    print(f"{'route':<12}{'ranks':>6}{'useful tok/s':>14}{'metareuse/route':>17}{'peak RSS/rank':>16}{'last loss':>12}"
          f"{'- ' + reference:>12}")
    for (w, p, route, ranks), r in sorted(best.items(), key=lambda kv: (kv[0][2] != reference, kv[0][2], kv[0][3])):
        if (w, p) != (workload, precision):
            continue
        print(f"{route:<12}{ranks:>6}{r['useful_tokens_per_s']:>14.1f}"
              f"{ours['useful_tokens_per_s'] / r['useful_tokens_per_s']:>17.2f}"
              f"{r['peak_rss_bytes_per_rank'] / 2**20:>12.0f} MiB{r['last_loss']:>12.5f}{r['last_loss'] - ref_loss:>12.1e}")
    two = best.get((workload, precision, "metareuse", 2))
    if two:
        print(f"metareuse 2 ranks / 1 rank: {two['useful_tokens_per_s'] / ours['useful_tokens_per_s']:.2f}x")
    if workload == "c":
        theirs = best[(workload, precision, reference, 1)]
        print(f"metareuse / {reference}: {ours['useful_tokens_per_s'] / theirs['useful_tokens_per_s']:.2f}x useful "
              f"tokens/s at {ours['peak_rss_bytes_per_rank'] / theirs['peak_rss_bytes_per_rank']:.2f}x its peak RSS")
PY

if [[ "$profile" == 1 ]]; then
  # The profiled pass: the same steps again, the first unprofiled, in processes of their own.
  for workload in "${workloads[@]}"; do
    reference=eager
    [[ "$workload" == c ]] && reference=hf_packed
    for precision in $(precisions_of "$workload"); do
      # Their stderr only on failure: kineto reports that it finds no GPU.
      for route in metareuse "$reference"; do
        run_route "$workload" "$route" "$precision" --profile "$work/profile_$route.json" >/dev/null \
          2>"$work/profile.err" || { cat "$work/profile.err" >&2; exit 1; }
      done
      echo
      "$python" "$repo_root/bench/train/op_profile.py" table "$work/profile_metareuse.json" "$work/profile_$reference.json"
    done
  done
fi
