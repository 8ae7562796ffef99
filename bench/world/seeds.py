#!/usr/bin/env python3
"""The reasoning-world experiment at several seeds, and its summary.

One run of configs/reuse-world.json compares two small models trained once each:
with 100 test questions and a 156k-parameter model, the accuracy of one run moves
by several points from seed to seed. This script runs the same config at several
values of run.seed (model initialisation and data order; the corpus is the
committed one) and reports the paired difference over seeds and over questions.

  bench/world/seeds.py run --seeds 1234 2 3 [--binary build/bin/metareuse] [--out-root runs/reuse-world-seeds]
  bench/world/seeds.py summarize RUN_FOLDER [RUN_FOLDER ...]

`run` skips the seeds (and stages) whose outputs are up to date, so it can be
started again after an interruption. Both print, per seed: accuracy of the
baseline, the reuse model and the control, the difference in points, mean
reasoning tokens and their change; then the mean difference over seeds with its
standard error and 95% interval (Student's t), each model's accuracy on the
answers that went the long way (numbered steps) and the short way, and McNemar's
exact test over all (seed, question) pairs: questions only one of the two models
answers right.
"""
import argparse, json, math, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard table values).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def load(folder):
    path = os.path.join(folder, "eval", "eval.json")
    with open(path) as f:
        report = json.load(f)
    models = report.get("models", {})
    for role in ("baseline", "reuse"):
        if role not in models:
            sys.exit(f"{path}: no '{role}' entry (run with experiment.baseline=true)")
    answers = {}
    with open(os.path.join(folder, "eval", "answers.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            answers[(row["model"], row["index"])] = (bool(row["correct"]), way(row["output"]))
    with open(os.path.join(folder, "config.resolved.json")) as f:
        seed = json.load(f).get("run", {}).get("seed")
    return seed, models, answers


LONG_STEP = re.compile(r"^(Step|Round) [0-9]+", re.MULTILINE)


def way(output):
    """The world's long way numbers its steps ("Step 2: ...", "Round 3: ..."); the short way does not."""
    return "long" if LONG_STEP.search(output) else "short"


def mcnemar_exact(b, c):
    """Two-sided exact p-value for b vs c discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def summarize(folders):
    rows = []
    only_baseline = only_reuse = pairs = 0
    by_way = {}  # (model, "long" | "short") -> [correct, answers]
    for folder in folders:
        seed, models, answers = load(folder)
        base, reuse = models["baseline"]["summary"], models["reuse"]["summary"]
        control = models.get("control", {}).get("summary")
        rows.append((seed, base, reuse, control))
        indices = sorted(i for (model, i) in answers if model == "baseline")
        for (model, i), (correct, style) in answers.items():
            tally = by_way.setdefault((model, style), [0, 0])
            tally[0] += correct
            tally[1] += 1
        for i in indices:
            b, r = answers.get(("baseline", i)), answers.get(("reuse", i))
            if b is None or r is None:
                continue
            b, r = b[0], r[0]
            pairs += 1
            only_baseline += b and not r
            only_reuse += r and not b
    print(f"{'seed':>6} {'baseline acc':>12} {'reuse acc':>9} {'diff pts':>8} {'control acc':>11} "
          f"{'base tokens':>11} {'reuse tokens':>12} {'tokens':>8}")
    diffs, token_changes = [], []
    for seed, base, reuse, control in rows:
        diff = 100 * (reuse["accuracy"] - base["accuracy"])
        change = reuse["mean_reasoning_tokens"] / base["mean_reasoning_tokens"] - 1
        diffs.append(diff)
        token_changes.append(change)
        control_acc = f"{100 * control['accuracy']:.1f}%" if control else "-"
        print(f"{seed!s:>6} {100 * base['accuracy']:>11.1f}% {100 * reuse['accuracy']:>8.1f}% {diff:>+8.1f} "
              f"{control_acc:>11} {base['mean_reasoning_tokens']:>11.1f} {reuse['mean_reasoning_tokens']:>12.1f} "
              f"{100 * change:>+7.1f}%")
    n = len(diffs)
    mean = sum(diffs) / n
    print(f"\n{n} seed(s): accuracy difference (reuse - baseline) mean {mean:+.2f} points", end="")
    if n > 1:
        sd = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1))
        se = sd / math.sqrt(n)
        t = T975[n - 2] if n - 1 <= len(T975) else 1.96
        print(f", standard deviation {sd:.2f}, standard error {se:.2f}, 95% interval "
              f"[{mean - t * se:+.2f}, {mean + t * se:+.2f}]")
    else:
        print()
    print(f"reasoning tokens change: mean {100 * sum(token_changes) / n:+.1f}% "
          f"(per seed {min(token_changes) * 100:+.1f}% to {max(token_changes) * 100:+.1f}%)")
    print("accuracy by the way the answer went (all seeds; long = numbered steps):")
    for model in ("baseline", "reuse", "control"):
        parts = []
        for style in ("long", "short"):
            correct, total = by_way.get((model, style), [0, 0])
            parts.append(f"{style} {100 * correct / total:.1f}% of {total}" if total else f"{style} -")
        if any(by_way.get((model, style)) for style in ("long", "short")):
            print(f"  {model:<8} " + ", ".join(parts))
    print(f"McNemar over {pairs} (seed, question) pairs: only the baseline right {only_baseline}, only the reuse model "
          f"right {only_reuse}, exact two-sided p = {mcnemar_exact(only_baseline, only_reuse):.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seeds", nargs="+", type=int, required=True)
    run.add_argument("--binary", default=os.path.join(ROOT, "build", "bin", "metareuse"))
    run.add_argument("--config", default=os.path.join(ROOT, "configs", "reuse-world.json"))
    run.add_argument("--out-root", default=os.path.join(ROOT, "runs", "reuse-world-seeds"))
    show = sub.add_parser("summarize")
    show.add_argument("folders", nargs="+")
    a = ap.parse_args()
    if a.command == "summarize":
        summarize(a.folders)
        return
    folders = []
    for seed in a.seeds:
        folder = os.path.join(a.out_root, f"seed-{seed}")
        command = [a.binary, "run", "--config", a.config, "--set", f"run.seed={seed}", "--set", f"run.out_dir={folder}"]
        print("+", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"seed {seed}: metareuse run exited with {done.returncode}")
        folders.append(folder)
    summarize(folders)


if __name__ == "__main__":
    main()
