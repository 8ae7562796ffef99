#!/usr/bin/env python3
"""Writes a corpus in the seed's format ({"question", "reasoning", "solution"}) of about
--megabytes MB: GSM8K train records repeated, each copy with its numbers re-drawn, so that
sentences rarely repeat exactly (the hard case for exact mode's candidate table).
Usage: make_corpus.py GSM8K_TRAIN.jsonl OUT.jsonl [--megabytes 200] [--seed 1]"""
import argparse, json, random, re

NUMBER = re.compile(r"\d+")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gsm8k_train")
    ap.add_argument("out")
    ap.add_argument("--megabytes", type=float, default=200)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    records = [json.loads(line) for line in open(a.gsm8k_train, encoding="utf-8") if line.strip()]
    target = int(a.megabytes * 1e6)
    written = 0
    copy = 0
    with open(a.out, "w", encoding="utf-8") as out:
        while written < target:
            for rec in records:
                if written >= target:
                    break
                # copy 0 keeps the original numbers; later copies re-draw each number
                renumber = (lambda m: m.group(0)) if copy == 0 else (lambda m: str(rng.randint(1, 999)))
                reasoning, _, solution = rec["answer"].partition("####")
                line = json.dumps({"question": NUMBER.sub(renumber, rec["question"]),
                                   "reasoning": NUMBER.sub(renumber, reasoning),
                                   "solution": NUMBER.sub(renumber, solution.strip())}, ensure_ascii=False) + "\n"
                out.write(line)
                written += len(line.encode("utf-8"))
            copy += 1
    print(f"wrote {written / 1e6:.1f} MB ({copy} passes over GSM8K train) to {a.out}")

if __name__ == "__main__":
    main()
