#!/usr/bin/env python3
"""A run's metrics.jsonl as TensorBoard scalars.

    python launch/metrics_to_tensorboard.py RUN [--logdir DIR]
    tensorboard --logdir RUN/tensorboard

RUN is a run folder (its metrics.jsonl) or a metrics.jsonl file. Each line with
a numeric "step" becomes one point of every numeric field at that step: a
training line's (loss, lr, grad_norm, tokens_per_s, mfu, ...) as the scalar
train/<field>, a validation line's (the one with "val_loss": val_loss,
best_val_loss, ...) as validation/<field>, a nested object's numbers as
<group>/<field>/<key> (train/traffic/sent_bytes); null fields (a skipped
step's grad_norm, an unknown mfu) are left out. The event file is
written by torch's own writer, torch.utils.tensorboard.SummaryWriter, which
needs the tensorboard package (pip install tensorboard; it is not in
launch/requirements.txt). A new conversion replaces the event files of the last
one in DIR (default RUN/tensorboard), so it can be rerun as the run goes on.
Exit 0 when every readable line was written; 1 with one line on stderr when
the input is missing or tensorboard is not installed.
"""
import argparse
import glob
import json
import math
import os
import sys

# The writer's file name suffix: how a rerun finds the files it replaces.
SUFFIX = ".metareuse"


def numbers(tree, prefix):
    """(tag, value) for every finite number in `tree`, nested objects joined with /
    (the "traffic" object's traffic/allgather/sent_bytes); nulls and text left out."""
    for field, value in tree.items():
        tag = f"{prefix}/{field}"
        if isinstance(value, dict):
            yield from numbers(value, tag)
        elif isinstance(value, (int, float)) and math.isfinite(float(value)):
            yield tag, float(value)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", help="run folder or metrics.jsonl")
    parser.add_argument("--logdir", help="TensorBoard log folder (default: <run folder>/tensorboard)")
    args = parser.parse_args()

    metrics = os.path.join(args.run, "metrics.jsonl") if os.path.isdir(args.run) else args.run
    if not os.path.isfile(metrics):
        sys.exit(f"metrics_to_tensorboard: {metrics} does not exist (give a run folder or its metrics.jsonl)")
    logdir = args.logdir or os.path.join(os.path.dirname(os.path.abspath(metrics)), "tensorboard")
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        sys.exit(f"metrics_to_tensorboard: needs the tensorboard package (pip install tensorboard): {error}")

    points = []  # (step, tag, value)
    bad = 0
    with open(metrics) as lines:
        for text in lines:
            if not text.strip():
                continue
            try:
                line = json.loads(text)
            except json.JSONDecodeError:
                bad += 1  # a line being written, or a broken one: skipped, as report.html skips it
                continue
            step = line.get("step") if isinstance(line, dict) else None
            if isinstance(step, bool) or not isinstance(step, int):
                continue
            group = "validation" if "val_loss" in line else "train"
            for tag, value in numbers(line, group):
                if tag != group + "/step":
                    points.append((step, tag, value))

    os.makedirs(logdir, exist_ok=True)
    for old in glob.glob(os.path.join(logdir, "events.out.tfevents.*" + SUFFIX)):
        os.remove(old)
    writer = SummaryWriter(log_dir=logdir, filename_suffix=SUFFIX)
    for step, tag, value in points:
        writer.add_scalar(tag, value, global_step=step)
    writer.close()
    steps = len({step for step, _, _ in points})
    skipped = f" ({bad} unreadable lines skipped)" if bad else ""
    print(f"metrics_to_tensorboard: {steps} steps, {len(points)} points from {metrics} to {logdir}{skipped}")


if __name__ == "__main__":
    main()
