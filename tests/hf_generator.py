#!/usr/bin/env python3
"""Random small Llama models as a live Hugging Face reference (tests/test_hf.cpp,
label hf). For each of --count random configs it writes, under --out/<i>/:

  config.json, model.safetensors   save_pretrained of a random LlamaForCausalLM (fp32)
  reference.safetensors            input_ids, logits, loss, grad.<name> (float64
                                   forward and backward of the same fp32 weights),
                                   batch<s> and loss<s> of 3 AdamW steps
                                   (torch.optim.AdamW in float64), final.<name>,
                                   gen_prompt and gen_greedy (8 greedy tokens)
  case.json                        the config as drawn, for the failure message

The configs cover tied and untied embeddings, GQA ratios 1-4, rope default,
llama3 and linear, head dims that are not powers of two, and vocab sizes that
are not multiples of 64. --seed picks them (the C++ test passes a new seed each run).
Exit status 3 when transformers cannot be imported (the test skips).
"""
import argparse
import json
import os
import random
import sys

try:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig, LlamaForCausalLM
except ImportError as error:
    print(f"hf_generator: transformers is not importable: {error}", file=sys.stderr)
    sys.exit(3)

ADAMW = {"lr": 3e-3, "betas": (0.9, 0.95), "eps": 1e-8, "weight_decay": 0.1}
ROPES = ["default", "llama3", "linear"]


def draw_config(rng, index):
    kv_heads = rng.choice([1, 2, 3, 4])
    ratio = 1 + index % 4  # every GQA ratio 1-4 in each block of four
    head_dim = rng.choice([6, 10, 12, 14, 18, 24])  # even (rotary pairs), not powers of two
    vocab = rng.randrange(97, 700)
    while vocab % 64 == 0:
        vocab += 1
    rope = ROPES[index % 3]
    settings = {
        "vocab_size": vocab,
        # transformers 5 wants hidden_size % heads == 0 even with its own head_dim.
        "hidden_size": kv_heads * ratio * rng.choice([4, 6, 8, 10]),
        "intermediate_size": rng.choice([37, 64, 90, 130]),
        "num_hidden_layers": rng.choice([1, 2, 3]),
        "num_attention_heads": kv_heads * ratio,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "max_position_embeddings": 256,
        "rms_norm_eps": rng.choice([1e-5, 1e-6]),
        "tie_word_embeddings": index % 2 == 0,
        "initializer_range": 0.2,  # wide logits: greedy argmax far from ties
        "bos_token_id": 1,
        "eos_token_id": 2,
    }
    theta = rng.choice([10000.0, 100000.0, 500000.0])
    if rope == "default":
        settings["rope_parameters"] = {"rope_type": "default", "rope_theta": theta}
    elif rope == "linear":
        settings["rope_parameters"] = {"rope_type": "linear", "rope_theta": theta, "factor": rng.choice([2.0, 4.0])}
    else:
        settings["rope_parameters"] = {"rope_type": "llama3", "rope_theta": theta, "factor": rng.choice([8.0, 32.0]),
                                       "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                       "original_max_position_embeddings": rng.choice([16, 64])}
    return settings


def make_case(settings, seed, folder):
    torch.manual_seed(seed)
    config = LlamaConfig(**settings)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(folder)
    reference = model.to(torch.float64)
    vocab = settings["vocab_size"]
    generator = torch.Generator().manual_seed(seed)
    tensors = {}

    ids = torch.randint(0, vocab, (2, 17), generator=generator)
    out = reference(input_ids=ids, labels=ids)
    out.loss.backward()
    tensors["input_ids"] = ids
    tensors["logits"] = out.logits.detach()
    tensors["loss"] = out.loss.detach().reshape(1)
    for name, parameter in reference.named_parameters():
        tensors["grad." + name] = parameter.grad.detach().clone()
    reference.zero_grad(set_to_none=True)

    optimizer = torch.optim.AdamW(reference.parameters(), **ADAMW)
    for step in range(3):
        batch = torch.randint(0, vocab, (2, 12), generator=generator)
        loss = reference(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tensors[f"batch{step}"] = batch
        tensors[f"loss{step}"] = loss.detach().reshape(1)
    for name, parameter in reference.named_parameters():
        tensors["final." + name] = parameter.detach().clone()

    # Greedy from the saved fp32 weights (reloaded: the AdamW steps changed these).
    fresh = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
    prompt = torch.randint(0, vocab, (1, 5), generator=generator)
    with torch.no_grad():
        # An explicit all-ones mask: given only pad_token_id, generate() masks every
        # prompt token equal to it (a random prompt holds id 0 now and then).
        greedy = fresh.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, min_new_tokens=8,
                                do_sample=False, eos_token_id=None, pad_token_id=0)
    tensors["gen_prompt"] = prompt
    tensors["gen_greedy"] = greedy[0, prompt.shape[1]:].clone()
    save_file({k: v.contiguous() for k, v in tensors.items()}, os.path.join(folder, "reference.safetensors"))
    with open(os.path.join(folder, "case.json"), "w") as f:
        json.dump({"seed": seed, "config": settings}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    for index in range(args.count):
        folder = os.path.join(args.out, str(index))
        os.makedirs(folder, exist_ok=True)
        make_case(draw_config(rng, index), args.seed * 1000 + index, folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
