#!/usr/bin/env python3
"""Hugging Face transformers as the live reference of the real-model tests
(tests/test_real.cpp): it reads the same model folder as metareuse and writes
what transformers computes, for the C++ test to compare with.

  hf_reference.py tokenize --model DIR --gsm8k test.jsonl --out ids.json
      every GSM8K question and answer and a set of awkward strings, each with
      the ids of transformers' tokenizer: "plain" with special-token text split
      like any text (metareuse's encode), "special" with it matched
      (encode_with_special).
  hf_reference.py logits --model DIR --out logits.safetensors
      8 prompts of different lengths (ids_<i>) and their fp32 logits (logits_<i>).
  hf_reference.py chat --model DIR --out chat.json
      20 conversations (system, user and assistant turns, with and without the
      generation prompt) rendered by apply_chat_template with the folder's own
      template: the text and the ids.
  hf_reference.py greedy --model DIR --gsm8k test.jsonl --count 8 --new-tokens 64 --out greedy.json
  hf_reference.py generate --model DIR --prompt TEXT --new-tokens 48 --out generated.json
      the first questions put through the folder's chat template
      (apply_chat_template, generation prompt on) and 64 greedy new tokens.

Every model is loaded with output_loading_info: missing, unexpected or
mismatched weights are an error (exit status 4) naming them.

Exit status 0 on success; 3 when transformers cannot be imported (the test skips).
"""
import argparse
import json
import sys

try:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer
except ImportError as error:  # the test skips with this message
    print(f"hf_reference: transformers is not importable: {error}", file=sys.stderr)
    sys.exit(3)

# Strings that have broken byte-level tokenizers: digit runs, emoji (4-byte
# UTF-8, ZWJ sequences, flags), CJK, combining marks, \r\n, runs of spaces and
# tabs, contractions, and the special tokens written as text.
AWKWARD = [
    "1234567890 12 345 6789 3.14159 -42 1,000,000",
    "emoji: \U0001F600\U0001F44D\U0001F3FD \U0001F468\u200D\U0001F469\u200D\U0001F467 \U0001F1EB\U0001F1F7!",
    "\u4e2d\u6587\u5206\u8bcd\u6d4b\u8bd5\uff0c\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3002\ud55c\uad6d\uc5b4",
    "cafe\u0301 nai\u0308ve e\u0301\u0301\u0301 Z\u0351\u0352\u0353a\u0300lgo",
    "line one\r\nline two\r\n\r\n\n\n  indented\r",
    "runs:  two   three    four     five\t\ttabs \t mixed  \n  ",
    "   leading spaces and trailing   ",
    "I'm sure you'll see they've it's we'd I'LL DON'T",
    "<|im_start|>user\nhi<|im_end|>\n<|endoftext|> <|begin_of_text|><|eot_id|>",
    "<|im_start|><|im_start|> <|im_end <| |> <|im_start|x",
    "$<<16-3-4=9>>9 #### 18",
    "\u00a0non-breaking\u2009thin\u3000ideographic space",
    "",
    " ",
    "a",
]


def load_tokenizer(folder):
    return AutoTokenizer.from_pretrained(folder)


def cmd_tokenize(args):
    tokenizer = load_tokenizer(args.model)
    texts = list(AWKWARD)
    with open(args.gsm8k, encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            texts.append(record["question"])
            texts.append(record["answer"])
    out = []
    for text in texts:
        plain = tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        special = tokenizer(text, add_special_tokens=False, split_special_tokens=False)["input_ids"]
        out.append({"text": text, "plain": plain, "special": special})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


PROMPTS = [
    "Hi",
    "The capital of France is",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Question: A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total "
    "does it take?\nAnswer: Let's think step by step.",
    "\u4e2d\u6587 \U0001F600 caf\u00e9 1234567 " * 6,
    "Once upon a time, " * 24,
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins for her "
    "friends every day with four. She sells the remainder at the farmers' market daily for $2 per fresh duck egg. "
    "How much in dollars does she make every day at the farmers' market? " * 3,
]


def load_model(folder):
    """The folder's model in fp32. A folder that does not load cleanly (missing,
    unexpected or mismatched weights: an export that lost its tied embeddings,
    say) is an error naming the keys, exit status 4."""
    model, info = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    problems = {kind: sorted(str(key) for key in keys) for kind, keys in info.items() if keys}
    if problems:
        print(f"hf_reference: {folder} does not load cleanly: {json.dumps(problems)}", file=sys.stderr)
        sys.exit(4)
    model.eval()
    return model


def cmd_logits(args):
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    tensors = {}
    with torch.no_grad():
        for i, prompt in enumerate(PROMPTS):
            ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], dtype=torch.int64)
            tensors[f"ids_{i}"] = ids
            tensors[f"logits_{i}"] = model(input_ids=ids).logits.float().contiguous()
    save_file(tensors, args.out)


def cmd_greedy(args):
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    out = []
    with open(args.gsm8k, encoding="utf-8") as lines:
        questions = [json.loads(line)["question"] for _, line in zip(range(args.count), lines)]
    with torch.no_grad():
        for question in questions:
            prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=True,
                                                   add_generation_prompt=True, return_dict=False)
            if isinstance(prompt, dict) or hasattr(prompt, "keys"):
                prompt = prompt["input_ids"]
            ids = torch.tensor([list(prompt)], dtype=torch.int64)
            # Exactly new_tokens tokens: no stop at the end-of-turn token.
            generated = model.generate(ids, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens,
                                       do_sample=False, eos_token_id=None, pad_token_id=0)
            out.append({"question": question, "prompt": ids[0].tolist(),
                        "greedy": generated[0, ids.shape[1]:].tolist()})
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def cmd_generate(args):
    """Greedy generation as a transformers user gets it from the folder: its
    chat template and its generation_config.json (eos ids, pad id), so it
    stops where that file says."""
    tokenizer = load_tokenizer(args.model)
    model = load_model(args.model)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": args.prompt}], tokenize=True,
                                           add_generation_prompt=True, return_dict=False)
    if hasattr(prompt, "keys"):
        prompt = prompt["input_ids"]
    ids = torch.tensor([list(prompt)], dtype=torch.int64)
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=args.new_tokens, do_sample=False)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump({"prompt": ids[0].tolist(), "new": generated[0, ids.shape[1]:].tolist(),
                   "eos_token_id": model.generation_config.eos_token_id}, f)


def conversations():
    """20 conversations: system or not, 1-6 turns, awkward content (spaces to
    trim, newlines, unicode, braces), ending on a user or an assistant turn."""
    contents = ["Hi", "  What is 2 + 3?  ", "Natalia sold clips to 48 of her friends.\nHow many?",
                "\n\nleading newlines", "{{ not a tag }} {% neither %}", "caf\u00e9 \u4e2d\u6587 \U0001F600",
                "tabs\tand\r\nCRLF", "The answer is 5.\n#### 5", "", "trailing spaces   "]
    out = []
    for i in range(20):
        messages = []
        if i % 3 == 0:
            messages.append({"role": "system", "content": ["You are a careful tutor.", " Be brief. "][i % 2]})
        turns = 1 + i % 6
        for t in range(turns):
            role = "user" if t % 2 == 0 else "assistant"
            messages.append({"role": role, "content": contents[(i * 7 + t * 3) % len(contents)]})
        out.append({"messages": messages, "add_generation_prompt": i % 2 == 0})
    return out


def cmd_chat(args):
    tokenizer = load_tokenizer(args.model)
    out = []
    for case in conversations():
        text = tokenizer.apply_chat_template(case["messages"], tokenize=False,
                                             add_generation_prompt=case["add_generation_prompt"])
        ids = tokenizer.apply_chat_template(case["messages"], tokenize=True,
                                            add_generation_prompt=case["add_generation_prompt"], return_dict=False)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        out.append(dict(case, text=text, ids=list(ids)))
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    tokenize = commands.add_parser("tokenize")
    tokenize.add_argument("--model", required=True)
    tokenize.add_argument("--gsm8k", required=True)
    tokenize.add_argument("--out", required=True)
    logits = commands.add_parser("logits")
    logits.add_argument("--model", required=True)
    logits.add_argument("--out", required=True)
    chat = commands.add_parser("chat")
    chat.add_argument("--model", required=True)
    chat.add_argument("--out", required=True)
    greedy = commands.add_parser("greedy")
    greedy.add_argument("--model", required=True)
    greedy.add_argument("--gsm8k", required=True)
    greedy.add_argument("--count", type=int, default=8)
    greedy.add_argument("--new-tokens", type=int, default=64)
    greedy.add_argument("--out", required=True)
    generate = commands.add_parser("generate")
    generate.add_argument("--model", required=True)
    generate.add_argument("--prompt", required=True)
    generate.add_argument("--new-tokens", type=int, default=48)
    generate.add_argument("--out", required=True)
    args = parser.parse_args()
    {"tokenize": cmd_tokenize, "logits": cmd_logits, "chat": cmd_chat, "greedy": cmd_greedy,
     "generate": cmd_generate}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
