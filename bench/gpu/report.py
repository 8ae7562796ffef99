#!/usr/bin/env python3
"""The GPU check's report (bench/gpu/run.sh runs it after every stage): reads what
the stages left in OUT and prints the stage table and the throughput table, and
writes OUT/results.json and OUT/table.md. Standard library only.

  report.py OUT [--final]

OUT holds: stages.tsv (name, status, seconds, note per line, written by run.sh),
metareuse.jsonl (bench_train_gpu), hf.jsonl (hf_baseline.py), gemm.json (the
measured fp16 GEMM peak), canned.jsonl (rows given by CANNED_RESULTS, for a
rehearsal without a GPU), run.json (run.sh's facts: commit, budget, device)."""
import json
import os
import sys


def jsonl_rows(path, source):
    rows = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if "tokens_per_s" in row:
                row["source"] = source
                rows.append(row)
    return rows


def shape(row):
    return "3B" if "3b" in row["run"] else "1B"


def route(row):
    if row.get("route") == "metareuse":
        return "metareuse (C++)"
    return "HF torch.compile" if "compile" in row["run"] else "HF eager"


def main():
    out = sys.argv[1]
    final = "--final" in sys.argv[2:]
    facts = json.load(open(os.path.join(out, "run.json"))) if os.path.exists(os.path.join(out, "run.json")) else {}
    stages = []
    if os.path.exists(os.path.join(out, "stages.tsv")):
        for line in open(os.path.join(out, "stages.tsv")):
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 4:
                stages.append(dict(stage=parts[0], status=parts[1], seconds=int(parts[2]), note=parts[3]))
    ours = jsonl_rows(os.path.join(out, "metareuse.jsonl"), "measured")
    hf = jsonl_rows(os.path.join(out, "hf.jsonl"), "measured")
    canned = jsonl_rows(os.path.join(out, "canned.jsonl"), "canned")
    for row in canned:
        (ours if row.get("route") == "metareuse" else hf).append(row)
    gemm = {}
    if os.path.exists(os.path.join(out, "gemm.json")):
        try:
            gemm = json.load(open(os.path.join(out, "gemm.json")))
        except ValueError:
            gemm = {}
    device = gemm.get("device") or next((r["device"] for r in ours + hf if r.get("device")), facts.get("device", "unknown"))
    peak = gemm.get("tflops") or (float(facts["peak_tflops"]) if facts.get("peak_tflops") else None)

    lines = []
    elapsed = sum(s["seconds"] for s in stages)
    lines.append(f"Stages ({'final' if final else 'so far'}; {elapsed} s of the {facts.get('budget_s', '?')} s budget):")
    lines.append("| stage | status | seconds | note |")
    lines.append("|---|---|---|---|")
    for s in stages:
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']} | {s['note']} |")
    table = []
    if ours or hf:
        lines.append("")
        peak_text = f"{peak:.0f} TFLOP/s fp16 GEMM peak ({'measured' if gemm.get('tflops') else 'given'})" if peak else "no GEMM peak"
        lines.append(f"Throughput on {device}: Llama 3.2 shapes, seq 2048, fp16, one GPU; MFU against {peak_text}"
                     + ("; CANNED rows are a rehearsal's, not measurements" if canned else ""))
        lines.append("| shape | route | batch | step s | tokens/s | TFLOP/s | MFU | peak GiB | ours / this route | source |")
        lines.append("|---|---|---|---|---|---|---|---|---|---|")
        for r in sorted(ours + hf, key=lambda r: (shape(r), route(r))):
            mine = [o for o in ours if shape(o) == shape(r)]
            ratio = f"{mine[0]['tokens_per_s'] / r['tokens_per_s']:.2f}x" if mine and r not in ours else ""
            mfu = f"{100 * r['tflops'] / peak:.0f}%" if peak else "-"
            lines.append(f"| {shape(r)} | {route(r)} | {r['batch']} | {r['step_s']:.3f} | {r['tokens_per_s']:,.0f} | "
                         f"{r['tflops']:.0f} | {mfu} | {r['peak_mem_gib']:.1f} | {ratio} | {r['source']} |")
            table.append(dict(r, shape=shape(r), route_name=route(r), ratio_ours_over_route=ratio or None,
                              mfu=(r["tflops"] / peak if peak else None)))
    text = "\n".join(lines)
    print(text, flush=True)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(text + "\n")
    results = dict(facts, device=device, peak_tflops=peak, gemm=gemm or None, final=final, elapsed_s=elapsed,
                   stages=stages, rows=table)
    tmp = os.path.join(out, "results.json.tmp")
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(out, "results.json"))


if __name__ == "__main__":
    main()
