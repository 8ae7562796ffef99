#!/usr/bin/env python3
"""Time per op class in a profiled training pass (bench/train/run.sh PROFILE=1).

Both sides of the comparison dump the CPU events of their profiler, as they
come, in one format; this module owns the format, the one rule that turns the
events into op classes, and the table that puts the routes side by side.

The dump (JSON): {"route", "workload", "precision", "steps": profiled steps,
"wall_ns": their wall time, "events": [[name, thread, start_ns, duration_ns],
...]}, the CPU events of the profiled steps only. Writers: bench_train.cpp's
--profile (libtorch's kineto profiler) and dump_profile() below (torch.profiler,
for peers.py).

Self time: an event's duration minus its direct children's (events nest by
time on their thread), so no nanosecond counts twice. Class of an event:
  - inside a scope (an enclosing event, or itself) of communication (our
    collectives, metareuse::comm::*; torch.distributed's c10d ops), of the
    optimizer (AdamW::step's metareuse::optimizer scope; torch.optim's
    Optimizer.* scopes and peers.py's Optimizer.clip_grad_norm_), or of
    attention (scaled dot-product attention, forward or backward), in that
    order of precedence: that class;
  - else by its own name: matmul, copies/fills, norm/elementwise (every other
    aten op that computes), or other (views, allocation, and the framework's
    own scopes: autograd's engine, backward nodes);
  - "outside ops": the profiled wall time in no op at all (the Python or C++
    between ops, and waiting).

    op_profile.py table DUMP.json ...     the side-by-side table, one column per dump
"""
import json
import sys

CLASSES = ("matmul", "attention", "norm/elementwise", "copies/fills", "communication", "optimizer", "other",
           "outside ops")

_SCOPES = (  # (class, name prefixes or fragments), in order of precedence
    ("communication", ("metareuse::comm::", "c10d::", "nccl:", "gloo:", "record_param_comms")),
    ("optimizer", ("metareuse::optimizer", "Optimizer.")),
    ("attention", ("scaled_dot_product", "ScaledDotProduct", "flash_attention", "FlashAttention",
                   "efficient_attention", "EfficientAttention")),
)
# aten op names without their in-place underscore (addmm_ is addmm, copy_ is copy).
_MATMUL = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "addmv", "mv", "dot", "vdot", "addbmm",
           "_addmm_activation", "mkldnn_linear", "_mkldnn_linear", "einsum", "tensordot", "outer", "addr"}
_COPIES = {"copy", "_to_copy", "to", "clone", "contiguous", "cat", "_cat", "stack", "index_select", "index",
           "repeat_interleave", "repeat", "narrow_copy", "embedding", "embedding_dense_backward", "embedding_backward",
           "gather", "scatter", "scatter_add", "index_put", "_index_put_impl", "index_add", "index_copy",
           "masked_select", "zero", "fill", "zeros", "zeros_like", "ones", "ones_like", "full", "full_like",
           "new_zeros", "new_full", "new_ones", "constant_pad_nd", "slice_backward", "select_backward",
           "narrow_backward", "as_strided_scatter", "slice_scatter", "select_scatter"}
_OTHER = {"view", "_unsafe_view", "reshape", "transpose", "t", "permute", "expand", "expand_as", "slice", "narrow",
          "select", "as_strided", "unsqueeze", "squeeze", "detach", "alias", "split", "split_with_sizes", "chunk",
          "unbind", "view_as", "flatten", "unflatten", "resolve_conj", "resolve_neg", "lift_fresh", "empty",
          "empty_like", "empty_strided", "resize", "set", "item", "_local_scalar_dense", "is_nonzero", "result_type",
          "_has_compatible_shallow_copy_type", "numpy_T", "movedim", "broadcast_tensors", "_reshape_alias",
          "new_empty", "new_empty_strided", "record_stream"}


def _scope_class(name):
    for rank, (klass, marks) in enumerate(_SCOPES):
        if any(mark in name for mark in marks):
            return rank, klass
    return None


def _own_class(name):
    if not name.startswith("aten::"):
        return "other"
    op = name[len("aten::"):].rstrip("_")
    if op in _MATMUL:
        return "matmul"
    if op in _COPIES:
        return "copies/fills"
    if op in _OTHER:
        return "other"
    return "norm/elementwise"


def self_times(events):
    """[(name, class, self_ns)] for every event, and the summed duration of the top-level events per thread."""
    by_thread = {}
    for name, thread, start, duration in events:
        by_thread.setdefault(thread, []).append((int(start), int(duration), name))
    out, in_ops = [], 0
    for thread_events in by_thread.values():
        thread_events.sort(key=lambda e: (e[0], -e[1]))
        stack = []  # [end, name, scope (rank, class) or None, children's ns, index in out]
        for start, duration, name in thread_events:
            end = start + duration
            while stack and stack[-1][0] <= start:
                stack.pop()
            parent = stack[-1] if stack and end <= stack[-1][0] else None
            scope = _scope_class(name)
            if parent is not None:
                parent[3] += duration
                out[parent[4]][2] -= duration
                if parent[2] is not None and (scope is None or parent[2][0] < scope[0]):
                    scope = parent[2]
            else:
                stack.clear()
                in_ops += duration
            out.append([name, scope[1] if scope else _own_class(name), duration])
            stack.append([end, name, scope, 0, len(out) - 1])
    return out, in_ops


def summarize(dump):
    """{class: ms per step} of one dump, "outside ops" included, and its top ops by self time."""
    steps = max(1, int(dump["steps"]))
    events, in_ops = self_times(dump["events"])
    per_class = {c: 0.0 for c in CLASSES}
    per_op = {}
    for name, klass, ns in events:
        per_class[klass] += ns
        per_op[(name, klass)] = per_op.get((name, klass), 0) + ns
    # Another thread's ops (autograd workers on a GPU) may overlap the main thread's: never below zero.
    per_class["outside ops"] = max(0, int(dump["wall_ns"]) - in_ops)
    ms = {c: v / 1e6 / steps for c, v in per_class.items()}
    top = sorted(((v / 1e6 / steps, name, klass) for (name, klass), v in per_op.items()), reverse=True)
    return ms, top


def label(dump):
    return f"{dump['route']} ({dump.get('precision', 'fp32')})" if dump.get("precision", "fp32") != "fp32" else dump["route"]


def table(dumps, top_ops=8):
    """The side-by-side table of op classes (ms per profiled step, share of the step), then each route's top ops."""
    summaries = [summarize(d) for d in dumps]
    names = [label(d) for d in dumps]
    width = max(14, *(len(n) + 2 for n in names))
    lines = [f"profile of workload ({dumps[0]['workload']}), {dumps[0]['steps']} profiled steps per route "
             "(self time per op class, ms per step, share of the step)"]
    lines.append(f"{'op class':<18}" + "".join(f"{n:>{width}}{'share':>8}" for n in names))
    totals = [sum(ms.values()) for ms, _ in summaries]
    for klass in CLASSES:
        row = f"{klass:<18}"
        for (ms, _), total in zip(summaries, totals):
            row += f"{ms[klass]:>{width}.1f}{100 * ms[klass] / total if total else 0:>7.1f}%"
        lines.append(row)
    lines.append(f"{'step':<18}" + "".join(f"{t:>{width}.1f}{100.0:>7.1f}%" for t in totals))
    for name, (_, top) in zip(names, summaries):
        lines.append(f"top ops of {name} (ms per step, class): " +
                     "; ".join(f"{op} {ms:.1f} ({klass})" for ms, op, klass in top[:top_ops]))
    return "\n".join(lines)


def dump_profile(path, profiler, meta, steps, wall_ns):
    """Writes a torch.profiler.profile's CPU events (stopped) in the dump format."""
    events = [[e.name(), e.start_thread_id(), e.start_ns(), e.duration_ns()]
              for e in profiler.profiler.kineto_results.events()
              if str(e.device_type()).endswith("CPU") and not e.is_async()]
    with open(path, "w") as f:
        json.dump(dict(meta, steps=steps, wall_ns=wall_ns, events=events), f)


def main():
    if len(sys.argv) < 3 or sys.argv[1] != "table":
        sys.exit("usage: op_profile.py table DUMP.json ...")
    dumps = []
    for path in sys.argv[2:]:
        with open(path) as f:
            dumps.append(json.load(f))
    print(table(dumps))


if __name__ == "__main__":
    main()
