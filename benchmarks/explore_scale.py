"""How wide a cold router's Thompson draws should be: the online benchmark's cold start at several
`thompson_scale` values (0 is greedy: exploration off), on tuning seeds that the report's seeds (0-4) do not use.
`thompson_scale` scales the draws of the personal parts of a score (docs/model.md, "Exploration").

    python -m benchmarks.explore_scale --scales 0,0.25,0.5,1 --seeds 10-12 --workers 2
    python -m benchmarks.explore_scale --replot      # the tables and plot again from benchmarks/out/explore_scale.json

Prints, per matrix and scale, the share of the gap closed over the last 1,000 of 6,000 rounds and over rounds
1,001-2,000 (mean and 95% interval over the seeds, and each scale's paired difference from scale 1), and writes
benchmarks/out/explore_scale.json and .png.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.common import OUT, save_json
from gmtrouter.bench.aggregate import estimate
from gmtrouter.bench.online.config import OnlineConfig
from gmtrouter.bench.online.jobs import Job, job_world, policy_seed
from gmtrouter.bench.online.loop import run_policy
from gmtrouter.bench.online.metrics import run_metrics
from gmtrouter.bench.online.prepare import MATRICES
from gmtrouter.bench.online.run import make_plan
from gmtrouter.bench.plan import parse_int_list

DATA = Path("../shared/data")
METRICS = ("gap_closed.last_1000", "gap_closed.at_2000")


def run_one(task: tuple[Job, float]) -> dict:
    """One cold job at one scale: the policy named by the job, drawing with `thompson_scale` = scale."""
    import torch
    from threadpoolctl import threadpool_limits

    from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy

    job, scale = task
    torch.set_num_threads(1)
    began = time.perf_counter()
    with threadpool_limits(1):
        world = job_world(job)
        seed = policy_seed(job.seed, "gmtrouter-explore")
        policy = GmtrouterPolicy(f"explore-{scale}", explore=scale > 0, seed=seed, settings={"thompson_scale": scale})
        outcome = run_policy(world, policy, job.feedback)
    metrics = run_metrics(world, outcome.choices) if outcome.status == "ok" else {}
    return {
        "matrix": job.matrix,
        "seed": job.seed,
        "scale": scale,
        "status": outcome.status,
        "reason": outcome.reason,
        "seconds": round(time.perf_counter() - began, 1),
        **metrics,
    }


def summarise(results: list[dict], scales: list[float], console: Console) -> None:
    for metric in METRICS:
        table = Table(title=f"{metric}: mean ± 95% interval over seeds; paired difference from scale 1")
        table.add_column("matrix")
        for scale in scales:
            table.add_column(f"scale {scale:g}", justify="right")
        for matrix in sorted({r["matrix"] for r in results}):
            cells = []
            for scale in scales:
                by_seed = {r["seed"]: r[metric] for r in results if r["matrix"] == matrix and r["scale"] == scale}
                base = {r["seed"]: r[metric] for r in results if r["matrix"] == matrix and r["scale"] == 1.0}
                cell = estimate(list(by_seed.values()))
                paired = estimate([by_seed[s] - base[s] for s in by_seed if s in base]) if scale != 1.0 else None
                text = cell.format() if cell else "–"
                cells.append(text + (f" (Δ {paired.format()})" if paired and paired.n > 1 else ""))
            table.add_row(matrix, *cells)
        console.print(table)


def plot(results: list[dict], scales: list[float], path: Path) -> None:
    import matplotlib.pyplot as plt

    matrices = sorted({r["matrix"] for r in results})
    fig, axes = plt.subplots(1, len(METRICS), figsize=(10, 4), sharey=True)
    for ax, metric in zip(np.atleast_1d(axes), METRICS, strict=True):
        for offset, matrix in zip(np.linspace(-0.02, 0.02, len(matrices)), matrices, strict=True):
            mine = [r for r in results if r["matrix"] == matrix]
            cells = [estimate([r[metric] for r in mine if r["scale"] == s]) for s in scales]
            means = [c.mean if c else np.nan for c in cells]
            halves = [c.half if c and c.half is not None else 0.0 for c in cells]
            x = np.asarray(scales) + offset  # side by side, so the intervals do not hide each other
            ax.errorbar(x, means, yerr=halves, marker="o", capsize=3, label=matrix)
        ax.set_title(
            {"gap_closed.last_1000": "last 1,000 of 6,000 rounds", "gap_closed.at_2000": "rounds 1,001-2,000"}[metric]
        )
        ax.set_xlabel("thompson_scale (0 = greedy)")
        ax.grid(alpha=0.3)
    np.atleast_1d(axes)[0].set_ylabel("share of the gap closed")
    np.atleast_1d(axes)[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="0,0.25,0.5,1")
    parser.add_argument("--seeds", default="10-12", help="tuning seeds (the report uses 0-4)")
    parser.add_argument("--matrices", default=",".join(MATRICES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/online"))
    parser.add_argument("--replot", action="store_true", help="tables and plot again from the last run's JSON")
    args = parser.parse_args()
    console = Console()
    if args.replot:
        saved = json.loads((OUT / "explore_scale.json").read_text())
        ok = [r for r in saved["results"] if r["status"] == "ok"]
        summarise(ok, saved["scales"], console)
        plot(ok, saved["scales"], OUT / "explore_scale.png")
        return
    scales = sorted({float(s) for s in args.scales.split(",")} | {1.0})
    config = OnlineConfig(
        data_dir=args.data_dir,
        out=args.out,
        matrices=tuple(args.matrices.split(",")),
        scenarios=("cold",),
        policies=("gmtrouter-explore", "linucb"),
        seeds=tuple(parse_int_list(args.seeds, "--seeds")),
    )
    plan = make_plan(config, console)  # prepares the matrices and puts every query in the encoder's cache
    jobs = [replace(j, result_path="") for j in plan.jobs if j.policy == "gmtrouter-explore"]
    tasks = [(job, scale) for job in jobs for scale in scales]
    results: list[dict] = []
    with Progress(console=console) as progress, multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        bar = progress.add_task(f"{len(tasks)} cold runs", total=len(tasks))
        for result in pool.imap_unordered(run_one, tasks):
            results.append(result)
            progress.advance(bar)
            console.print(
                f"{result['matrix']} seed {result['seed']} scale {result['scale']:g}: "
                f"{result.get('gap_closed.last_1000', math.nan):.3f} ({result['seconds']} s) {result['reason']}"
            )
    ok = [r for r in results if r["status"] == "ok"]
    summarise(ok, scales, console)
    save_json("explore_scale", {"scales": scales, "seeds": args.seeds, "results": results})
    plot(ok, scales, OUT / "explore_scale.png")
    console.print(f"wrote {OUT / 'explore_scale.json'} and {OUT / 'explore_scale.png'}")


if __name__ == "__main__":
    main()
