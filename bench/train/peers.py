#!/usr/bin/env python3
"""The Python peers of the CPU training benchmark (bench/train/run.sh), written
by the metareuse project. Every route trains the same Llama shape from the same
initial weights on the same documents in the same order, so the losses after
the last step agree across routes (packing with a document mask computes what
padding computes).

    peers.py init OUT_DIR                       shared initial weights (HF folder)
    peers.py docs OUT.json WORKLOAD STEPS DOCS [AUGMENTED.jsonl | DOCUMENTS.jsonl]
                                                the documents of every step
    peers.py run ROUTE INIT_DIR DOCS.json [--precision fp32|bf16] [--profile OUT.json]
                                                one route; prints one JSON line

Model (workloads a, b): vocab 8192, hidden 256, 4 layers, 8 heads, 4 KV heads, FFN 688, tied
embeddings (the bench shape, preset debug-small), fp32, AdamW (lr 3e-4, betas
0.9/0.95, eps 1e-8, weight decay 0.1 on matrices), grad clip 1.0, constant lr.

Workloads:
  a  random full sequences: DOCS x 256 tokens per step;
  b  augmented GSM8K train: run.sh mines a handbook from the first records of
     ../shared/datasets/gsm8k/train.jsonl (first 2000 records) and augments them (`metareuse patterns`,
     `metareuse augment`, default modes); each document is an example's prompt
     ("Consider these behaviors: ... question") + target (the worked answer),
     in order, tokenized with the Llama 3 tokenizer, ids folded into the
     8192-row vocabulary (id % 8192, so the shape stays small), DOCS documents
     per step, at most 1024 tokens;
  c  the real workload: SmolLM2-135M-Instruct fine-tuned from its weights
     (INIT_DIR is its folder) on the same augmented GSM8K examples, as
     `metareuse prepare` tokenizes them (the model's own tokenizer and chat
     template, loss on the target only, documents longer than the sequence
     length dropped): run.sh exports them with `bench_train
     --export-documents`, and DOCUMENTS.jsonl is that output; DOCS documents
     per step in record order. Routes hf_packed and metareuse, in fp32 and in
     bf16 (the Trainer's bf16=True: autocast over fp32 weights; metareuse's
     train.precision bf16: bf16 compute over fp32 master weights).

Routes (ROUTE):
  eager       a plain PyTorch loop: rows padded to the step's longest document
  compiled    the same loop under torch.compile (CPU inductor, dynamic shapes)
  hf_trainer  transformers LlamaForCausalLM + Trainer, rows padded to 1024 (max_length)
  hf_packed   transformers + Trainer with DataCollatorWithFlattening (padding-free)
Useful tokens are the documents' tokens (padding excluded); the first step is a
warmup and is not timed.

--profile: the steps after the first run under torch.profiler (CPU), and its
events are written in op_profile.py's dump format (eager, compiled; and the
Trainer routes, from the second step's start to the end of training).
"""
import json
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile, record_function

from op_profile import dump_profile

V, C, L, H, KVH, FF = 8192, 256, 4, 8, 4, 688
D = C // H
THETA, EPS = 500000.0, 1e-5
LR, BETAS, ADAM_EPS, DECAY, CLIP = 3e-4, (0.9, 0.95), 1e-8, 0.1, 1.0
SEQ_B = 1024
A_T = 256


def hf_config():
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=V, hidden_size=C, intermediate_size=FF, num_hidden_layers=L,
                       num_attention_heads=H, num_key_value_heads=KVH, max_position_embeddings=2048,
                       rms_norm_eps=EPS, rope_theta=THETA, tie_word_embeddings=True, bos_token_id=1,
                       eos_token_id=2, pad_token_id=0)


def make_init(out_dir):
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    LlamaForCausalLM(hf_config()).save_pretrained(out_dir)


def make_docs(out, workload, steps, per_step, augmented=None):
    masks = None
    sequence_length = SEQ_B if workload == "b" else A_T
    if workload == "a":
        g = torch.Generator().manual_seed(5)
        batches = [[torch.randint(0, V, (A_T,), generator=g).tolist() for _ in range(per_step)] for _ in range(steps)]
    elif workload == "c":
        with open(augmented) as f:
            sequence_length = json.loads(f.readline())["sequence_length"]
            documents = [json.loads(line) for line, _ in zip(f, range(steps * per_step))]
        if len(documents) < steps * per_step:
            sys.exit(f"peers.py docs: {augmented} has {len(documents)} documents, {steps} steps of {per_step} need "
                     f"{steps * per_step}")
        batches = [[d["ids"] for d in documents[s * per_step:(s + 1) * per_step]] for s in range(steps)]
        masks = [[d["loss_mask"] for d in documents[s * per_step:(s + 1) * per_step]] for s in range(steps)]
    else:
        from tokenizers import Tokenizer

        here = os.path.dirname(os.path.abspath(__file__))
        shared = os.environ.get("METAREUSE_SHARED", os.path.join(here, "..", "..", "..", "shared"))
        tok = Tokenizer.from_file(os.path.join(shared, "tokenizers", "llama3", "tokenizer.json"))
        docs = []
        with open(augmented) as f:
            for line in f:
                example = json.loads(line)
                ids = tok.encode(example["prompt"] + example["target"]).ids  # bos first
                docs.append([i % V for i in ids][:SEQ_B])
                if len(docs) == steps * per_step:
                    break
        batches = [docs[s * per_step:(s + 1) * per_step] for s in range(steps)]
    docs = {"workload": workload, "sequence_length": sequence_length, "steps": batches}
    if masks is not None:  # 1 where the token is a training target; without them, every token is
        docs["loss_masks"] = masks
    with open(out, "w") as f:
        json.dump(docs, f)


# ------------------------------------------------------------- eager model ----

class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS))


def rotate(x, cos, sin):
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm, self.post_attention_layernorm = RMSNorm(), RMSNorm()
        self.q_proj = nn.Linear(C, H * D, bias=False)
        self.k_proj = nn.Linear(C, KVH * D, bias=False)
        self.v_proj = nn.Linear(C, KVH * D, bias=False)
        self.o_proj = nn.Linear(H * D, C, bias=False)
        self.gate_proj = nn.Linear(C, FF, bias=False)
        self.up_proj = nn.Linear(C, FF, bias=False)
        self.down_proj = nn.Linear(FF, C, bias=False)

    def forward(self, x, cos, sin):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        q = rotate(self.q_proj(h).view(b, t, H, D).transpose(1, 2), cos, sin)
        k = rotate(self.k_proj(h).view(b, t, KVH, D).transpose(1, 2), cos, sin)
        v = self.v_proj(h).view(b, t, KVH, D).transpose(1, 2)
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.o_proj(a.transpose(1, 2).reshape(b, t, C))
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(V, C)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.norm = RMSNorm()
        self.register_buffer("inv_freq", 1.0 / (THETA ** (torch.arange(0, D, 2).float() / D)), persistent=False)

    def forward(self, ids):
        t = ids.shape[1]
        freqs = torch.outer(torch.arange(t, dtype=torch.float32), self.inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.embed_tokens(ids)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.norm(x) @ self.embed_tokens.weight.t()


def load_eager(init_dir):
    from safetensors.torch import load_file

    state = {k.removeprefix("model."): v for k, v in load_file(os.path.join(init_dir, "model.safetensors")).items()
             if k != "lm_head.weight"}
    state = {k.replace("self_attn.", "").replace("mlp.", ""): v for k, v in state.items()}
    model = Llama()
    model.load_state_dict(state)
    return model


def decay_groups(model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    rest = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decay, "weight_decay": DECAY}, {"params": rest, "weight_decay": 0.0}]


def padded(docs, length=None):
    length = length or max(len(d) for d in docs)
    ids = torch.zeros(len(docs), length, dtype=torch.long)
    labels = torch.full((len(docs), length), -100, dtype=torch.long)
    for r, d in enumerate(docs):
        ids[r, :len(d)] = torch.tensor(d)
        labels[r, :len(d)] = torch.tensor(d)
    return ids, labels


def start_profiler():
    profiler = profile(activities=[ProfilerActivity.CPU])
    profiler.start()
    return profiler, time.perf_counter()


def stop_profiler(profiler, started, path, meta, steps):
    profiler.stop()
    dump_profile(path, profiler, meta, steps, int((time.perf_counter() - started) * 1e9))


def run_loop(init_dir, steps, compiled, profile_path=None, meta=None):
    torch.manual_seed(0)
    model = load_eager(init_dir)
    opt = torch.optim.AdamW(decay_groups(model), lr=LR, betas=BETAS, eps=ADAM_EPS)
    forward = torch.compile(model, dynamic=True) if compiled else model
    batches = [padded(docs) for docs in steps]  # before the clock, as bench_train packs its rows
    seconds, useful, loss, profiler = 0.0, 0, None, None
    for s, (docs, (ids, labels)) in enumerate(zip(steps, batches)):
        if s == 1 and profile_path:
            profiler, started = start_profiler()
        start = time.perf_counter()
        opt.zero_grad()
        logits = forward(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), labels[:, 1:].reshape(-1), ignore_index=-100)
        loss.backward()
        with record_function("Optimizer.clip_grad_norm_"):  # a profile counts the clipping as the optimizer
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()
        if s > 0:
            seconds += time.perf_counter() - start
            useful += sum(len(d) for d in docs)
    if profiler is not None:
        stop_profiler(profiler, started, profile_path, meta, len(steps) - 1)
    return seconds, useful, loss.item()


def run_hf(init_dir, steps, packed, pad_to, masks=None, bf16=False, profile_path=None, meta=None):
    from transformers import (DataCollatorWithFlattening, LlamaForCausalLM, Trainer, TrainerCallback,
                              TrainingArguments)

    torch.manual_seed(0)
    model = LlamaForCausalLM.from_pretrained(init_dir, torch_dtype=torch.float32, attn_implementation="sdpa")
    features = [{"input_ids": d} for docs in steps for d in docs]
    if masks is not None:  # loss on the target only: labels -100 elsewhere (the collators shift them)
        for feature, mask in zip(features, (m for step_masks in masks for m in step_masks)):
            feature["labels"] = [i if keep else -100 for i, keep in zip(feature["input_ids"], mask)]
    per_step = len(steps[0])
    flatten = DataCollatorWithFlattening(return_tensors="pt", return_position_ids=True)

    def pad_collate(batch):  # the seed's route: every row padded to the full sequence length
        ids, labels = padded([b["input_ids"] for b in batch], pad_to)
        attention_mask = (labels != -100).long()  # padded() labels every document token
        for r, b in enumerate(batch):
            if "labels" in b:
                labels[r, :len(b["labels"])] = torch.tensor(b["labels"])
        return {"input_ids": ids, "labels": labels, "attention_mask": attention_mask}

    class Timer(TrainerCallback):
        def __init__(self):
            self.start, self.seconds, self.step = 0.0, 0.0, 0
            self.profiler = None

        def on_step_begin(self, args, state, control, **kw):
            if self.step == 1 and profile_path:
                self.profiler, self.profile_start = start_profiler()
            self.start = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            if self.step > 0:
                self.seconds += time.perf_counter() - self.start
            self.step += 1

        def on_train_end(self, args, state, control, **kw):
            if self.profiler is not None:
                stop_profiler(self.profiler, self.profile_start, profile_path, meta, self.step - 1)

    losses = []

    class Losses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(logs["loss"])

    timer = Timer()
    args = TrainingArguments(output_dir=os.environ.get("TMPDIR", "/tmp") + "/peers_hf", per_device_train_batch_size=per_step,
                             learning_rate=LR, adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=ADAM_EPS,
                             weight_decay=DECAY, max_grad_norm=CLIP, lr_scheduler_type="constant", warmup_steps=0,
                             num_train_epochs=1, logging_steps=1, save_strategy="no", report_to=[],
                             use_cpu=True, bf16=bf16, dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=features,
                      data_collator=flatten if packed else pad_collate, callbacks=[timer, Losses()])
    # The same order as the other routes: no shuffling.
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(features)
    trainer.train()
    useful = sum(len(d) for docs in steps[1:] for d in docs)
    return timer.seconds, useful, losses[-1]


def main():
    command = sys.argv[1]
    if command == "init":
        make_init(sys.argv[2])
        return
    if command == "docs":
        make_docs(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), *sys.argv[6:7])
        return
    route, init_dir, docs_path = sys.argv[2], sys.argv[3], sys.argv[4]
    options = dict(zip(sys.argv[5::2], sys.argv[6::2]))
    unknown = set(options) - {"--precision", "--profile"}
    if unknown or len(sys.argv[5:]) % 2:
        sys.exit(f"peers.py run: unknown or incomplete options {sys.argv[5:]} (--precision fp32|bf16, --profile OUT)")
    precision, profile_path = options.get("--precision", "fp32"), options.get("--profile")
    if precision not in ("fp32", "bf16"):
        sys.exit(f"peers.py run: --precision must be fp32 or bf16, got {precision}")
    with open(docs_path) as f:
        workload = json.load(f)
    steps = workload["steps"]
    meta = {"route": route, "workload": workload["workload"], "precision": precision}
    if route in ("eager", "compiled"):
        if workload["workload"] == "c" or precision != "fp32":
            sys.exit(f"peers.py run: the {route} loop is the bench shape's, fp32 (workloads a and b)")
        seconds, useful, loss = run_loop(init_dir, steps, route == "compiled", profile_path, meta)
    else:
        seconds, useful, loss = run_hf(init_dir, steps, route == "hf_packed", workload["sequence_length"],
                                       workload.get("loss_masks"), precision == "bf16", profile_path, meta)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"route": route, "ranks": 1, "workload": workload["workload"], "precision": precision,
                      "timed_steps": len(steps) - 1, "useful_tokens_per_s": useful / seconds,
                      "peak_rss_bytes_per_rank": rss, "last_loss": loss, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
