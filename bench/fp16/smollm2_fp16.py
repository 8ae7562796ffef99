"""How much headroom fp16 has on a real model, and what each fp16 forward costs.

On SmolLM2-135M-Instruct (build/models/, made by launch/smollm2.py) and the
first N questions of GSM8K's test split, it measures:
  1. the logits error against transformers in fp32 of
       - transformers under torch.autocast("cpu", dtype=torch.float16),
       - metareuse's training forward in fp16 and bf16 (fp32 residual stream,
         matmuls and attention in the low precision: bench/fp16/fp16_forward),
       - the same weights run wholly in fp16 (metareuse, as model.half());
     as max |error| / max |logit| and the mean of |error| over the real tokens;
  2. per layer, max |x| of the residual stream (each decoder layer's output)
     and of the SwiGLU product (down_proj's input) in transformers fp32,
     against fp16's largest finite value, 65,504.

  .venv/bin/python bench/fp16/smollm2_fp16.py --model build/models/SmolLM2-135M-Instruct \
      --binary build/bin/fp16_forward --questions ../shared/datasets/gsm8k/test.jsonl --json out.json
"""
import argparse
import json
import os
import platform
import subprocess
import tempfile
import time

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

FP16_MAX = 65504.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--binary", required=True, help="build/bin/fp16_forward")
    parser.add_argument("--questions", required=True, help="GSM8K-style JSON Lines (question field)")
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    torch.manual_seed(0)

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    questions = []
    with open(args.questions) as lines:
        for line in lines:
            questions.append(json.loads(line)["question"])
            if len(questions) == args.count:
                break
    # Right-padded to the longest; the padding's logits are left out of every figure.
    encoded = [tokenizer(q)["input_ids"] for q in questions]
    length = max(len(e) for e in encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.tensor([e + [pad] * (length - len(e)) for e in encoded], dtype=torch.int64)
    real = torch.tensor([[1] * len(e) + [0] * (length - len(e)) for e in encoded], dtype=torch.bool)

    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation="eager")
    model.eval()
    swiglu = {}

    def keep_max(layer):
        def hook(_module, inputs):
            x = inputs[0].detach().float()[real]
            swiglu[layer] = max(swiglu.get(layer, 0.0), x.abs().max().item())
        return hook

    handles = [layer.mlp.down_proj.register_forward_pre_hook(keep_max(i)) for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        out = model(ids, attention_mask=real.long(), output_hidden_states=True)
    for handle in handles:
        handle.remove()
    reference = out.logits.float()
    # hidden_states[0] is the embedding output; [i + 1] is layer i's output
    # (the last one after the final norm in transformers 5, so layer L-1's
    # residual is measured on the pre-norm stream by a hook instead).
    residual = {}

    def keep_residual(layer):
        def hook(_module, _inputs, output):
            x = (output[0] if isinstance(output, tuple) else output).detach().float()[real]
            residual[layer] = max(residual.get(layer, 0.0), x.abs().max().item())
        return hook

    handles = [layer.register_forward_hook(keep_residual(i)) for i, layer in enumerate(model.model.layers)]
    start = time.time()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        autocast_logits = model(ids, attention_mask=real.long()).logits.float()
    autocast_seconds = time.time() - start
    for handle in handles:
        handle.remove()
    # The residual maxima above are from the autocast run; the fp32 ones:
    residual_autocast = dict(residual)
    residual.clear()
    handles = [layer.register_forward_hook(keep_residual(i)) for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(ids, attention_mask=real.long())
    for handle in handles:
        handle.remove()

    with tempfile.TemporaryDirectory() as work:
        save_file({"input_ids": ids.contiguous()}, os.path.join(work, "ids.safetensors"))
        start = time.time()
        subprocess.run([args.binary, args.model, os.path.join(work, "ids.safetensors"),
                        os.path.join(work, "logits.safetensors")], check=True)
        ours_seconds = time.time() - start
        ours = load_file(os.path.join(work, "logits.safetensors"))

    scale = reference[real].abs().max().item()

    def error(logits):
        difference = (logits[real] - reference[real]).abs()
        finite = bool(torch.isfinite(logits[real]).all())
        return {"max_relative": difference.max().item() / scale, "mean_abs": difference.mean().item(),
                "finite": finite}

    routes = {"transformers autocast fp16 (eager attention)": error(autocast_logits)}
    for kernel, suffix in (("sdpa", ""), ("eager", "_eager")):
        routes[f"metareuse fp32, {kernel}"] = error(ours["fp32" + suffix])
        routes[f"metareuse mixed fp16 (training), {kernel}"] = error(ours["mixed_fp16" + suffix])
        routes[f"metareuse mixed bf16 (training), {kernel}"] = error(ours["mixed_bf16" + suffix])
        routes[f"metareuse pure fp16 (model.half()), {kernel}"] = error(ours["pure_fp16" + suffix])
    print(f"SmolLM2-135M-Instruct, {len(questions)} GSM8K questions ({int(real.sum())} tokens), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"logits against transformers fp32 (max |logit| {scale:.2f}):")
    print(f"  {'route':48s} {'max |err| / max |logit|':>24s} {'mean |err|':>12s}")
    for name, figures in routes.items():
        note = "" if figures["finite"] else "  (non-finite logits)"
        print(f"  {name:48s} {figures['max_relative']:24.2e} {figures['mean_abs']:12.2e}{note}")
    print(f"per layer, max |x| (fp16's largest finite value is {FP16_MAX:,.0f}):")
    print(f"  {'layer':>5s} {'residual fp32':>14s} {'% of max':>9s} {'residual autocast':>18s} "
          f"{'SwiGLU fp32':>12s} {'% of max':>9s}")
    layers = []
    for layer in sorted(residual):
        row = {"layer": layer, "residual_fp32": residual[layer], "residual_autocast": residual_autocast[layer],
               "swiglu_fp32": swiglu[layer]}
        layers.append(row)
        print(f"  {layer:5d} {residual[layer]:14.1f} {100 * residual[layer] / FP16_MAX:8.1f}% "
              f"{residual_autocast[layer]:18.1f} {swiglu[layer]:12.1f} {100 * swiglu[layer] / FP16_MAX:8.1f}%")
    print(f"seconds: transformers autocast forward {autocast_seconds:.1f}; fp16_forward (eight forwards and "
          f"loading) {ours_seconds:.1f}")
    if args.json:
        with open(args.json, "w") as out_file:
            json.dump({"questions": len(questions), "tokens": int(real.sum()), "max_logit": scale,
                       "routes": routes, "layers": layers}, out_file, indent=2)


if __name__ == "__main__":
    main()
