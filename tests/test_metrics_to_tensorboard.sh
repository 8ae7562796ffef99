#!/usr/bin/env bash
# launch/metrics_to_tensorboard.py: a metrics.jsonl converted and read back
# with TensorBoard's own reader (EventAccumulator): every step's loss and lr
# as written, a validation line under validation/, a null grad_norm and a
# broken line left out, a rerun replacing the last event file; a missing
# input is a one-line error. Skips (77) where torch's SummaryWriter or
# tensorboard cannot be imported.
# Usage: test_metrics_to_tensorboard.sh SRC PYTHON
set -euo pipefail
src=$1
python=$2
if ! "$python" -c "import torch.utils.tensorboard, tensorboard.backend.event_processing.event_accumulator" 2>/dev/null; then
  echo "SKIPPED: no tensorboard for $python (pip install tensorboard)"
  exit 77
fi
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cat > "$dir/metrics.jsonl" <<'LINES'
{"epoch":0,"grad_norm":1.5,"loss":4.25,"lr":0.001,"mfu":null,"seconds":0.5,"skipped":false,"step":1,"tokens_per_s":100.0,"traffic":{"sent_bytes":4096,"allgather":{"calls":2}}}
{"epoch":0,"grad_norm":null,"loss":4.0,"lr":0.002,"mfu":null,"seconds":0.5,"skipped":true,"step":2,"tokens_per_s":110.0}
{"best_val_loss":4.5,"epoch":0,"evaluations_without_improvement":0,"seconds":0.25,"step":2,"val_loss":4.5,"val_tokens":64}
{"epoch":0,"grad_norm":1.25,"loss":3.5,"lr
LINES
convert() { "$python" "$src/launch/metrics_to_tensorboard.py" "$dir" --logdir "$dir/tb"; }
out=$(convert)
echo "$out"
grep -q "2 steps, 21 points" <<< "$out"
grep -q "1 unreadable lines skipped" <<< "$out"
convert > /dev/null  # a rerun replaces the first file
"$python" - "$dir/tb" <<'PY'
import glob, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
files = glob.glob(sys.argv[1] + "/events.out.tfevents.*")
assert len(files) == 1, files
events = EventAccumulator(sys.argv[1])
events.Reload()
scalars = lambda tag: [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]
assert scalars("train/loss") == [(1, 4.25), (2, 4.0)], scalars("train/loss")
assert scalars("train/lr") == [(1, 0.001), (2, 0.002)], scalars("train/lr")
assert scalars("train/grad_norm") == [(1, 1.5)], scalars("train/grad_norm")
assert "train/mfu" not in events.Tags()["scalars"], events.Tags()
assert scalars("validation/val_loss") == [(2, 4.5)], scalars("validation/val_loss")
assert scalars("train/traffic/allgather/calls") == [(1, 2.0)], scalars("train/traffic/allgather/calls")
assert scalars("train/seconds") == [(1, 0.5), (2, 0.5)], scalars("train/seconds")  # not the validation line's
assert "train/val_loss" not in events.Tags()["scalars"], events.Tags()
print("read back:", sorted(events.Tags()["scalars"]))
PY
if missing=$("$python" "$src/launch/metrics_to_tensorboard.py" "$dir/no-such-run" 2>&1); then
  echo "a missing run folder exited 0"; exit 1
fi
grep -q "no-such-run.*does not exist" <<< "$missing" || { echo "unexpected error: $missing"; exit 1; }
echo "PASS"
