#!/usr/bin/env python3
"""The Python route for the CPU training benchmark: a plain PyTorch Llama of the
bench shape (vocab 8192, dim 256, 4 layers, 8 heads, 4 KV heads, FFN 688, tied
embeddings, RoPE), trained with torch.optim.AdamW in fp32 on random tokens,
seq 256, batch 8. Written by the metareuse project for bench/train/run.sh.
Prints one JSON line: tokens/s and peak RSS."""
import json, resource, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

V, C, L, H, KVH, FF, T, B = 8192, 256, 4, 8, 4, 688, 256, 8
D = C // H


class RMSNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight


def rotate(x, cos, sin):
    x1, x2 = x[..., : D // 2], x[..., D // 2:]
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin


class Layer(nn.Module):
    def __init__(self):
        super().__init__()
        self.n1, self.n2 = RMSNorm(), RMSNorm()
        self.q = nn.Linear(C, H * D, bias=False)
        self.k = nn.Linear(C, KVH * D, bias=False)
        self.v = nn.Linear(C, KVH * D, bias=False)
        self.o = nn.Linear(H * D, C, bias=False)
        self.gate = nn.Linear(C, FF, bias=False)
        self.up = nn.Linear(C, FF, bias=False)
        self.down = nn.Linear(FF, C, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.n1(x)
        q = rotate(self.q(h).view(b, t, H, D).transpose(1, 2), cos, sin)
        k = rotate(self.k(h).view(b, t, KVH, D).transpose(1, 2), cos, sin)
        v = self.v(h).view(b, t, KVH, D).transpose(1, 2)
        k = k.repeat_interleave(H // KVH, dim=1)
        v = v.repeat_interleave(H // KVH, dim=1)
        scores = (q @ k.transpose(-1, -2)) / D ** 0.5 + mask
        x = x + self.o((scores.softmax(-1) @ v).transpose(1, 2).reshape(b, t, C))
        h = self.n2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Llama(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, C)
        self.layers = nn.ModuleList(Layer() for _ in range(L))
        self.norm = RMSNorm()
        inv_freq = 1.0 / (500000.0 ** (torch.arange(0, D, 2).float() / D))
        freqs = torch.outer(torch.arange(T).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("cos", emb.cos())
        self.register_buffer("sin", emb.sin())
        self.register_buffer("mask", torch.full((T, T), float("-inf")).triu(1))

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.norm(x) @ self.embed.weight.t()


def main():
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    torch.manual_seed(0)
    model = Llama()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    total, loss = 0.0, None
    for s in range(steps + 2):
        ids = torch.randint(0, V, (B, T))
        start = time.perf_counter()
        opt.zero_grad()
        logits = model(ids)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, V), ids[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if s >= 2:
            total += time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"route": "pytorch", "ranks": 1, "steps": steps, "tokens_per_s": steps * B * T / total,
                      "peak_rss_bytes_per_rank": rss, "last_loss": loss.item(),
                      "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
