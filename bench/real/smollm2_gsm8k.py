#!/usr/bin/env python3
"""SmolLM2-135M-Instruct on GSM8K test before and after one short fine-tune on
augmented GSM8K train, through `metareuse run`.

  bench/real/smollm2_gsm8k.py [--steps 8] [--questions 200] [--max-new-tokens 256]
                              [--batch-size N]
                              [--config configs/smollm2-gsm8k.json] [--out runs/smollm2-gsm8k]
                              [--binary build/bin/metareuse] [--set KEY=VALUE ...]

One run of configs/smollm2-gsm8k.json: patterns mined from GSM8K train,
augment (global top 3), prepare with the model folder's tokenizer and chat
template, --steps AdamW steps of 8 packed sequences of 512 tokens from the
pretrained weights, then one eval stage
that answers the first --questions GSM8K test questions greedily with the
fine-tuned model ("after") and the untouched folder ("before", eval.baseline),
both prompted alike (the handbook's patterns, the folder's template). It prints
the machine, the date, the wall time of each stage, the peak RSS of the run,
and per model: accuracy, mean reasoning tokens, pattern use; then the
measured eval throughput and what the full sizes would take at that rate.
Every figure is read from the run's own files (timings.json, eval.json).
"""
import argparse, json, os, platform, resource, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def machine():
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{platform.node()}: {os.cpu_count()} CPU(s), {cpu}; load average {os.getloadavg()[0]:.1f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=0, help="eval.batch_size (0: the config's)")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "smollm2-gsm8k.json"))
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "smollm2-gsm8k"))
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "bin", "metareuse"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override passed to metareuse run after the script's own (repeatable)")
    a = ap.parse_args()
    for path in (a.config, a.binary):
        if not os.path.exists(path):
            sys.exit(f"smollm2_gsm8k: {path} does not exist")
    print(f"machine: {machine()}")
    print(f"started: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print(f"sizes: {a.config}, {a.steps} steps, {a.questions} test questions, greedy, at most "
          f"{a.max_new_tokens} new tokens")
    command = [a.binary, "run", "--config", a.config, "--set", f"run.out_dir={a.out}",
               "--set", f"train.max_steps={a.steps}", "--set", f"eval.limit={a.questions}",
               "--set", f"eval.max_new_tokens={a.max_new_tokens}"]
    if a.batch_size > 0:
        command += ["--set", f"eval.batch_size={a.batch_size}"]
    for override in a.set:
        command += ["--set", override]
    print("+", " ".join(command), flush=True)
    wall = time.time()
    done = subprocess.run(command, cwd=ROOT)
    wall = time.time() - wall
    if done.returncode != 0:
        sys.exit(f"smollm2_gsm8k: metareuse run exited with {done.returncode}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nfinished: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; wall {wall:.0f} s; "
          f"peak RSS {peak:.0f} MiB; {machine()}")
    with open(os.path.join(a.out, "timings.json")) as f:
        stages = json.load(f)["stages"]
    for name, stage in sorted(stages.items(), key=lambda item: item[1]["sequence"]):
        print(f"  stage {name:<10} {stage['seconds']:8.1f} s")
    with open(os.path.join(a.out, "eval", "eval.json")) as f:
        report = json.load(f)
    models = report["models"]
    print(f"\n{'model':<22} {'accuracy':>9} {'correct':>8} {'reasoning tokens':>17} {'pattern use':>12} "
          f"{'stopped':>8} {'tokens/s':>9}")
    for role, label in (("baseline", "before (SmolLM2)"), ("model", "after (fine-tuned)")):
        s = models[role]["summary"]
        print(f"{label:<22} {100 * s['accuracy']:>8.1f}% {s['correct']:>4}/{s['questions']:<3} "
              f"{s['mean_reasoning_tokens']:>17.1f} {100 * s['pattern_use_rate']:>11.1f}% "
              f"{100 * s['stopped_rate']:>7.1f}% {s['tokens_per_s']:>9.1f}")
    change = report.get("relative_change")
    if change:
        print(f"change after vs before: accuracy {change['accuracy_points']:+.1f} points, reasoning tokens "
              f"{100 * change['mean_reasoning_tokens']:+.1f}%")
    eval_seconds = stages["eval"]["seconds"]
    per_question = eval_seconds / (2 * a.questions)
    print(f"\neval: {eval_seconds:.0f} s for 2 x {a.questions} answers = {per_question:.2f} s per answer; at that rate "
          f"2 x 200 answers take {2 * 200 * per_question / 60:.0f} min and 2 x 1319 (all of GSM8K test) "
          f"{2 * 1319 * per_question / 60:.0f} min")
    train_seconds = stages["train"]["seconds"]
    with open(os.path.join(a.out, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f if line.strip()]
    # A --set train.eval_every run adds validation lines ("val_loss"): not steps.
    losses = [record["loss"] for record in records if "val_loss" not in record]
    print(f"train: {train_seconds:.0f} s for {a.steps} steps = {train_seconds / a.steps:.1f} s per step; loss "
          f"{losses[0]:.4f} at step 1, {losses[-1]:.4f} at step {len(losses)}")


if __name__ == "__main__":
    main()
