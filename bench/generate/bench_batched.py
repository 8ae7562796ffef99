#!/usr/bin/env python3
"""Batched greedy generation: `metareuse generate --prompts` against Hugging Face
transformers' batched `generate`, same torch, same weights, same
prompts, in the same run, round robin.

  bench/generate/bench_batched.py [--build build] [--model DIR] [--shape smollm2-135m|debug-small]
                                  [--batches 1,8,32] [--new-tokens 16] [--repeats 2]

Without --model, the script builds a Llama of the chosen shape with random
weights through transformers (seed 0), saves it as config.json +
model.safetensors, and both routes load that folder. Prompts are random token
ids of 8..40 tokens (seed 1), so a batch pads. Both routes decode greedily
for exactly --new-tokens tokens (no eos stop), in fp32 on the CPU, with
torch's default threads. Each route runs in its own process; the time is the
generation alone (metareuse: its "generated ... in X s" log line; transformers:
around model.generate), the peak RSS is the process's (os.wait4). Each round
runs every (route, batch) once; each cell keeps its fastest round. The script
also counts the prompts whose greedy tokens are the same on both routes.
Goal: metareuse >= 1.5x transformers at every batch size.
"""
import argparse, json, os, platform, random, re, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

SHAPES = {
    # HuggingFaceTB/SmolLM2-135M-Instruct's config (hidden 576, 30 layers, GQA 9:3, tied).
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64, rope_theta=100000.0,
                         max_position_embeddings=8192, rms_norm_eps=1e-5, tie_word_embeddings=True),
    # metareuse's preset debug-small (src/model/config.cpp).
    "debug-small": dict(vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                        num_attention_heads=8, num_key_value_heads=4, head_dim=32, rope_theta=500000.0,
                        max_position_embeddings=2048, rms_norm_eps=1e-5, tie_word_embeddings=True),
}


def make_model(shape, folder):
    import torch, transformers
    torch.manual_seed(0)
    config = transformers.LlamaConfig(bos_token_id=1, eos_token_id=2, **SHAPES[shape])
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder, safe_serialization=True)


def hf_worker(args):
    """One transformers run: prints {"seconds", "tokens", "outputs"} as JSON."""
    import torch, transformers
    prompts = [json.loads(line) for line in open(args.prompts)]
    model = transformers.LlamaForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model.eval()
    longest = max(len(p) for p in prompts)
    outputs, seconds = [], 0.0
    for first in range(0, len(prompts), args.batch):
        batch = prompts[first:first + args.batch]
        width = max(len(p) for p in batch)
        ids = torch.tensor([[0] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens,
                                 min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=0,
                                 eos_token_id=None)
        seconds += time.perf_counter() - start
        outputs += out[:, width:].tolist()
    print(json.dumps({"seconds": seconds, "tokens": sum(len(o) for o in outputs), "outputs": outputs,
                      "longest": longest}))


def run(command):
    """Runs command; returns (stdout, stderr, peak RSS MiB)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(command, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
        if status != 0:
            sys.exit(f"failed ({status}): {' '.join(command)}\n{stderr[-3000:]}")
        return stdout, stderr, usage.ru_maxrss / 1024.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--model", help="HF Llama folder; default: random weights of --shape")
    parser.add_argument("--shape", default="smollm2-135m", choices=sorted(SHAPES))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--hf-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hf_worker:
        return hf_worker(args)

    import torch, transformers
    binary = os.path.join(args.build, "bin", "metareuse")
    if not os.access(binary, os.X_OK):
        sys.exit(f"{binary} not found: build it first (launch/setup.sh)")
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            model = os.path.join(folder, "model")
            make_model(args.shape, model)
        vocab = json.load(open(os.path.join(model, "config.json")))["vocab_size"]
        rng = random.Random(1)
        # As many prompts as the largest batch, so every batch size generates the same tokens.
        count = max(batches)
        prompts = [[1] + [rng.randrange(3, vocab) for _ in range(rng.randrange(7, 40))] for _ in range(count)]
        prompt_file = os.path.join(folder, "prompts.jsonl")
        with open(prompt_file, "w") as f:
            for p in prompts:
                f.write(json.dumps(p) + "\n")

        best = {}  # (route, batch) -> (tokens/s, peak MiB)
        outputs = {}
        for round_index in range(args.repeats):
            for batch in batches:
                ours_out, ours_err, ours_rss = run(
                    [binary, "generate", "--model", model, "--prompts", prompt_file, "--batch-size", str(batch),
                     "--max-new-tokens", str(args.new_tokens), "--greedy", "--no-stop"])
                match = re.search(r"generated (\d+) tokens for \d+ prompts in ([0-9.]+) s", ours_err + ours_out)
                if not match:
                    sys.exit("no 'generated ... in X s' line from metareuse generate:\n" + ours_err[-2000:])
                ours_rate = int(match.group(1)) / float(match.group(2))
                outputs[("metareuse", batch)] = [json.loads(line)["ids"] for line in ours_out.splitlines()
                                                 if line.startswith('{"ids"')]
                hf_out, _, hf_rss = run([sys.executable, os.path.abspath(__file__), "--hf-worker", "--model", model,
                                         "--prompts", prompt_file, "--batch", str(batch),
                                         "--new-tokens", str(args.new_tokens)])
                hf = json.loads(hf_out.strip().splitlines()[-1])
                outputs[("transformers", batch)] = hf["outputs"]
                for route, rate, rss in (("metareuse", ours_rate, ours_rss),
                                         ("transformers", hf["tokens"] / hf["seconds"], hf_rss)):
                    old = best.get((route, batch))
                    best[(route, batch)] = (max(rate, old[0]) if old else rate, max(rss, old[1]) if old else rss)
                print(f"round {round_index + 1} batch {batch}: metareuse {ours_rate:.1f} tok/s, "
                      f"transformers {hf['tokens'] / hf['seconds']:.1f} tok/s", flush=True)

    load = os.getloadavg()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    print(f"\nmachine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs, load average {load[0]:.1f} at the end; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"model: {args.model or args.shape + ' shape, random weights'}; {count} prompts of 8-40 tokens; "
          f"{args.new_tokens} new tokens each, greedy, fp32; best of {args.repeats} rounds, round robin\n")
    print("| batch | metareuse tok/s | transformers tok/s | ratio | metareuse peak RSS | transformers peak RSS "
          "| same greedy tokens |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for batch in batches:
        ours, hf = best[("metareuse", batch)], best[("transformers", batch)]
        same = sum(a == b for a, b in zip(outputs[("metareuse", batch)], outputs[("transformers", batch)]))
        print(f"| {batch} | {ours[0]:.1f} | {hf[0]:.1f} | {ours[0] / hf[0]:.2f}x | {ours[1]:.0f} MiB | "
              f"{hf[1]:.0f} MiB | {same}/{count} |")


if __name__ == "__main__":
    main()
