"""Forward + backward time of one HGT layer: gmtrouter's HGTLayer against torch_geometric's HGTConv.

Both layers hold the same parameters and run on the same synthetic interaction graph (users, LLMs, queries,
responses, turns, and the relations between them in both directions). Every repeat times each variant once,
in turn, so that load from other processes hits all of them alike; the table reports the median and the
minimum over the repeats after warm-up.

    python benchmarks/hgt_layer.py --turns 20000 --dim 128 --heads 4 --repeats 7 --profile
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gmtrouter.model.hgt import HGTLayer

EdgeDict = dict[tuple[str, str, str], Tensor]


def interaction_graph(turns: int, seed: int = 0) -> tuple[dict[str, int], EdgeDict]:
    """Node counts and edges of a log with `turns` turns.

    Sizes follow a routing log: one user per 20 turns, 8 LLMs, one query per 10 turns (queries recur), one
    response per turn; a turn continues the previous turn's conversation with probability 0.65.
    """
    g = torch.Generator().manual_seed(seed)
    counts = {"user": max(1, turns // 20), "llm": 8, "query": max(1, turns // 10), "response": turns}
    counts["turn"] = turns
    t = torch.arange(turns)
    ends = {k: torch.randint(0, counts[k], (turns,), generator=g) for k in ("user", "llm", "query")}
    ends["response"] = t
    follows = t[1:][torch.rand(turns - 1, generator=g) < 0.65]
    edges: EdgeDict = {("turn", "to", k): torch.stack([t, e]) for k, e in ends.items()}
    edges[("turn", "prev", "turn")] = torch.stack([follows - 1, follows])
    edges.update({(k, "to", "turn"): torch.stack([e, t]) for k, e in ends.items()})
    edges[("turn", "next", "turn")] = torch.stack([follows, follows - 1])
    return counts, edges


def step(layer: torch.nn.Module, x: dict[str, Tensor], call: Callable) -> float:
    """Seconds for one forward and backward pass (gradients for inputs and parameters)."""
    layer.zero_grad(set_to_none=True)
    xs = {k: v.detach().requires_grad_() for k, v in x.items()}
    start = time.perf_counter()
    out = call(xs)
    sum(o.sum() for o in out.values()).backward()
    return time.perf_counter() - start


def profile_step(call: Callable[[], None]) -> tuple[list, list]:
    """Profiler events of one call aggregated by name: one run for times, one more for allocated memory.

    Tracking memory slows allocations down by a large factor, so its times are not used.
    """
    from torch.profiler import ProfilerActivity, profile

    runs = []
    for memory in (False, True):
        with profile(activities=[ProfilerActivity.CPU], profile_memory=memory) as prof:
            call()
        runs.append(list(prof.key_averages()))
    return runs[0], runs[1]


def print_profile(console, name: str, events: list, memory: list, rows: int = 8) -> None:
    """The most expensive ATen ops by self CPU time, and the share of slice-assignment backward nodes."""
    from rich.table import Table

    total = sum(e.self_cpu_time_total for e in events) / 1e3
    ops = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: -e.self_cpu_time_total)
    table = Table(title=f"{name}: top ATen ops by self CPU time (step total {total:.0f} ms)")
    for col in ("op", "ms", "share", "calls"):
        table.add_column(col, justify="left" if col == "op" else "right")
    for e in ops[:rows]:
        ms = e.self_cpu_time_total / 1e3
        table.add_row(e.key, f"{ms:.0f}", f"{ms / total:.0%}", str(e.count))
    console.print(table)
    # Backward of `out[a:b] = ...` (CopySlices) and of `x[a:b]` (SliceBackward0): each one allocates, fills
    # and copies a gradient as large as the whole tensor that was sliced.
    nodes = [e for e in events if e.key in _SLICE_NODES]
    if nodes:
        ms = sum(e.cpu_time_total for e in nodes) / 1e3
        gb = sum(e.cpu_memory_usage for e in memory if e.key in _SLICE_FUNCTIONS)
        count = sum(e.count for e in nodes)
        console.print(
            f"{name}: {count} slice-assignment backward nodes take {ms:.0f} ms "
            f"({ms / total:.0%} of the step) and allocate {gb / 1e9:.1f} GB"
        )


_SLICE_FUNCTIONS = ("SliceBackward0", "torch::autograd::CopySlices")
_SLICE_NODES = (
    "autograd::engine::evaluate_function: SliceBackward0",
    "autograd::engine::evaluate_function: torch::autograd::CopySlices",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=128, help="hidden width of the router's HGT (128)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, default=Path("benchmarks/out/hgt_layer.png"))
    parser.add_argument("--profile", action="store_true", help="also print where each layer spends its time")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 keeps torch's default")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from rich.console import Console
    from rich.table import Table
    from torch_geometric.nn import HGTConv

    console = Console()
    counts, edges = interaction_graph(args.turns, args.seed)
    metadata = (list(counts), list(edges))
    torch.manual_seed(args.seed)
    conv = HGTConv(args.dim, args.dim, metadata, heads=args.heads)
    layer = HGTLayer.from_pyg(conv)
    gen = torch.Generator().manual_seed(args.seed + 1)
    x = {k: torch.randn(n, args.dim, generator=gen) for k, n in counts.items()}

    plan = layer.plan(edges, counts)
    with torch.no_grad():
        ref, ours = conv(x, edges), layer(x, plan=plan)
    diff = max((ref[k] - ours[k]).abs().max().item() for k in ref)

    variants: dict[str, tuple[torch.nn.Module, Callable]] = {
        "HGTConv (PyG)": (conv, lambda xs: conv(xs, edges)),
        "HGTLayer, no plan": (layer, lambda xs: layer(xs, edges)),
        "HGTLayer + plan": (layer, lambda xs: layer(xs, plan=plan)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    plan_times: list[float] = []  # what "no plan" pays on every call
    load_before = os.getloadavg()[0]
    for i in range(args.warmup + args.repeats):
        for name, (module, call) in variants.items():
            seconds = step(module, x, call)
            if i >= args.warmup:
                times[name].append(seconds)
        start = time.perf_counter()
        layer.plan(edges, counts)
        if i >= args.warmup:
            plan_times.append(time.perf_counter() - start)
    load_after = os.getloadavg()[0]

    num_edges = sum(e.size(1) for e in edges.values())
    console.print(
        f"turns={args.turns} nodes={sum(counts.values())} edges={num_edges} "
        f"dim={args.dim} heads={args.heads} "
        f"| torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
        f"| load average {load_before:.1f} -> {load_after:.1f} | max |diff| {diff:.1e}"
    )
    base = statistics.median(times["HGTConv (PyG)"])
    table = Table(title=f"HGT layer, forward + backward, median of {args.repeats}")
    for col in ("layer", "median ms", "min ms", "speed-up"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    for name, ts in times.items():
        med = statistics.median(ts)
        table.add_row(name, f"{med * 1e3:.0f}", f"{min(ts) * 1e3:.0f}", f"{base / med:.1f}x")
    table.add_row(
        "(building the plan alone)",
        f"{statistics.median(plan_times) * 1e3:.0f}",
        f"{min(plan_times) * 1e3:.0f}",
        "",
    )
    console.print(table)

    if args.profile:
        for name, (module, call) in variants.items():
            if name != "HGTLayer, no plan":
                events, memory = profile_step(lambda module=module, call=call: step(module, x, call))
                print_profile(console, name, events, memory)

    args.plot.parent.mkdir(parents=True, exist_ok=True)
    plot(times, args, args.plot)
    console.print(f"plot: {args.plot}")


def plot(times: dict[str, list[float]], args: argparse.Namespace, path: Path) -> None:
    """Bar per variant: median milliseconds and speed-up over the first, whiskers from fastest to slowest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(times)
    med = [statistics.median(times[n]) * 1e3 for n in names]
    low = [m - min(times[n]) * 1e3 for m, n in zip(med, names, strict=True)]
    high = [max(times[n]) * 1e3 - m for m, n in zip(med, names, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    bars = ax.bar(names, med, yerr=[low, high], capsize=4, color=["#9a9a9a", "#6aa7d8", "#1f6fb2"])
    for bar, m, top in zip(bars, med, high, strict=True):
        label = f"{m:.0f} ms ({med[0] / m:.1f}x)"
        anchor = (bar.get_x() + bar.get_width() / 2, m + top)
        ax.annotate(label, anchor, xytext=(0, 3), textcoords="offset points", ha="center", va="bottom")
    ax.set_ylabel("forward + backward, ms")
    ax.set_ylim(0, max(m + h for m, h in zip(med, high, strict=True)) * 1.15)
    threads = torch.get_num_threads()
    ax.set_title(f"HGT layer, {args.turns} turns, dim {args.dim}, {args.heads} heads, CPU, {threads} threads")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
