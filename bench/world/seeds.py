#!/usr/bin/env python3
"""The reasoning-world experiment at several seeds, and its summary.

One run of configs/reuse-world.json compares two small models trained once each:
with 100 test questions and a 156k-parameter model, the accuracy of one run moves
by several points from seed to seed. This script runs the same config at several
values of run.seed (model initialisation and data order; the corpus is the
committed one) and reports the paired difference over seeds and over questions.

  bench/world/seeds.py run --seeds 1234 2 3 [--binary build/bin/metareuse] [--out-root runs/reuse-world-seeds]
                           [--set KEY=VALUE ...]
  bench/world/seeds.py summarize RUN_FOLDER [RUN_FOLDER ...]

`run` skips the seeds (and stages) whose outputs are up to date, so it can be
started again after an interruption. Both print, per seed: accuracy of the
baseline, the reuse model, the control and (experiment.bc_sft) the BC-SFT
student, with mean reasoning, prompt and total tokens; then, for the reuse model
and the student against the baseline, the mean accuracy difference over seeds
with its 95% interval (Student's t), the token changes per seed and McNemar's
exact test over all (seed, question) pairs (questions only one of the two
answers right); the BC-SFT goal, met or missed; and each model's accuracy on the
answers that went the long way (numbered steps) and the short way.
"""
import argparse, json, math, os, re, subprocess, sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard table values).
T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


MODELS = ("baseline", "reuse", "control", "bc-sft")
CANDIDATES = ("reuse", "bc-sft")  # each compared with the baseline


def load(folder):
    path = os.path.join(folder, "eval", "eval.json")
    with open(path) as f:
        report = json.load(f)
    models = {role: entry["summary"] for role, entry in report.get("models", {}).items()}
    for role in ("baseline", "reuse"):
        if role not in models:
            sys.exit(f"{path}: no '{role}' entry (run with experiment.baseline=true)")
    answers = {}
    tokens = {}  # role -> [prompt, total] sums over its answers, for eval.json files older than those figures
    with open(os.path.join(folder, "eval", "answers.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            answers[(row["model"], row["index"])] = (bool(row["correct"]), way(row["output"]))
            sums = tokens.setdefault(row["model"], [0, 0, 0])
            sums[0] += row["prompt_tokens"]
            sums[1] += row["prompt_tokens"] + row["generated_tokens"]
            sums[2] += 1
    for role, (prompt, total, n) in tokens.items():
        models[role].setdefault("mean_prompt_tokens", prompt / n)
        models[role].setdefault("mean_total_tokens", total / n)
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


def interval(values):
    """Mean, and with more than one value its standard deviation and 95% interval (Student's t)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return f"mean {mean:+.2f}"
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    se = sd / math.sqrt(n)
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    return f"mean {mean:+.2f}, standard deviation {sd:.2f}, 95% interval [{mean - t * se:+.2f}, {mean + t * se:+.2f}]"


def change(new, old):
    """new against old as a signed percentage, or n/a where old is 0 (a baseline that wrote no reasoning,
    as eval's own summary says)."""
    return f"{100 * (new / old - 1):+.1f}%" if old else "n/a"


def summarize(folders):
    runs = [load(folder) for folder in folders]
    roles = [m for m in MODELS if all(m in models for _, models, _ in runs)]
    print(f"{'seed':>6} {'model':<9} {'accuracy':>8} {'reasoning tok':>13} {'prompt tok':>10} {'total tok':>9}")
    for seed, models, _ in runs:
        for role in roles:
            m = models[role]
            print(f"{seed!s:>6} {role:<9} {100 * m['accuracy']:>7.1f}% {m['mean_reasoning_tokens']:>13.1f} "
                  f"{m['mean_prompt_tokens']:>10.1f} {m['mean_total_tokens']:>9.1f}")
    for role in (r for r in CANDIDATES if r in roles):
        diffs = [100 * (models[role]["accuracy"] - models["baseline"]["accuracy"]) for _, models, _ in runs]
        reasoning = [change(models[role]["mean_reasoning_tokens"], models["baseline"]["mean_reasoning_tokens"])
                     for _, models, _ in runs]
        total = [change(models[role]["mean_total_tokens"], models["baseline"]["mean_total_tokens"])
                 for _, models, _ in runs]
        only_baseline = only_model = pairs = 0
        for _, _, answers in runs:
            for (model, i), (correct, _) in answers.items():
                if model != "baseline" or (role, i) not in answers:
                    continue
                other = answers[(role, i)][0]
                pairs += 1
                only_baseline += correct and not other
                only_model += other and not correct
        print(f"\n{role} against the baseline over {len(runs)} seed(s):")
        print(f"  accuracy difference in points: {interval(diffs)}")
        print("  reasoning tokens change per seed: " + ", ".join(reasoning))
        print("  total tokens (prompt + generated) change per seed: " + ", ".join(total))
        print(f"  McNemar over {pairs} (seed, question) pairs: only the baseline right {only_baseline}, only {role} "
              f"right {only_model}, exact two-sided p = {mcnemar_exact(only_baseline, only_model):.3f}")
    if "bc-sft" in roles:
        # The goal BC-SFT was set: fewer reasoning tokens in every seed, accuracy kept, cheaper than prompting.
        fewer = all(m["bc-sft"]["mean_reasoning_tokens"] <= 0.75 * m["baseline"]["mean_reasoning_tokens"]
                    for _, m, _ in runs)
        mean_diff = sum(100 * (m["bc-sft"]["accuracy"] - m["baseline"]["accuracy"]) for _, m, _ in runs) / len(runs)
        cheaper = all(m["bc-sft"]["mean_total_tokens"] < m["reuse"]["mean_total_tokens"] for _, m, _ in runs)
        print("\ngoal (bc-sft against the baseline): at least 25% fewer reasoning tokens in every seed: "
              f"{'met' if fewer else 'missed'}; mean accuracy difference >= -2 points: "
              f"{'met' if mean_diff >= -2 else 'missed'} ({mean_diff:+.2f}); fewer total tokens than reuse in every "
              f"seed: {'met' if cheaper else 'missed'}")
    by_way = {}  # (model, "long" | "short") -> [correct, answers]
    for _, _, answers in runs:
        for (model, _), (correct, style) in answers.items():
            tally = by_way.setdefault((model, style), [0, 0])
            tally[0] += correct
            tally[1] += 1
    print("\naccuracy by the way the answer went (all seeds; long = numbered steps):")
    for model in MODELS:
        parts = []
        for style in ("long", "short"):
            correct, n = by_way.get((model, style), [0, 0])
            parts.append(f"{style} {100 * correct / n:.1f}% of {n}" if n else f"{style} -")
        if any(by_way.get((model, style)) for style in ("long", "short")):
            print(f"  {model:<8} " + ", ".join(parts))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--seeds", nargs="+", type=int, required=True)
    run.add_argument("--binary", default=os.path.join(ROOT, "build", "bin", "metareuse"))
    run.add_argument("--config", default=os.path.join(ROOT, "configs", "reuse-world.json"))
    run.add_argument("--out-root", default=os.path.join(ROOT, "runs", "reuse-world-seeds"))
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="a config override passed to metareuse run after the seed's own (repeatable)")
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
        for override in a.set:
            command += ["--set", override]
        print("+", " ".join(command), flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode != 0:
            sys.exit(f"seed {seed}: metareuse run exited with {done.returncode}")
        folders.append(folder)
    summarize(folders)


if __name__ == "__main__":
    main()
