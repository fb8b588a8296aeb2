"""What a change of the code did to finished online-benchmark jobs: rerun them with this checkout and compare.

A job's result file keeps its routes, and its key names the world, the policy and its settings but not the code,
so `gmtrouter bench --online` would skip it after a change of the model. This reruns the finished jobs the
options select (into a scratch folder, leaving the result files as they are) and prints, per job, how many of its
routes differ and each metric before and after, with the paired mean difference over the jobs.

    python -m benchmarks.online_rerun --out runs/bench/online --matrices llmrouter --scenarios cold --seeds 0-4

Writes benchmarks/out/online_rerun.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from benchmarks.common import save_json
from gmtrouter.bench.aggregate import estimate
from gmtrouter.bench.online.config import OnlineConfig
from gmtrouter.bench.online.jobs import POLICIES, Job, job_world
from gmtrouter.bench.online.metrics import run_metrics
from gmtrouter.bench.online.prepare import MATRICES
from gmtrouter.bench.online.run import make_plan
from gmtrouter.bench.plan import parse_int_list

METRICS = ("gap_closed.last_1000", "gap_closed.at_2000", "newcomer.favoured_share", "newcomer.other_share")


def rerun(job: Job) -> dict:
    """The job's stored routes and metrics against a run of this checkout's code on the same world."""
    from gmtrouter.bench.online.jobs import run_job

    stored = json.loads(Path(job.result_path).read_text())
    scratch = Path(tempfile.gettempdir()) / "gmtrouter-online-rerun" / job.key()
    fresh = run_job(replace(job, result_path=str(scratch.with_suffix(".json"))))
    world = job_world(job)
    before = run_metrics(world, np.asarray(stored["choices"])) if stored["status"] == "ok" else {}
    after = run_metrics(world, np.asarray(fresh["choices"])) if fresh["status"] == "ok" else {}
    differ = sum(a != b for a, b in zip(stored["choices"], fresh["choices"], strict=False))
    return {
        "label": job.label,
        "routes": len(fresh["choices"]),
        "routes_differ": differ,
        "before": {k: before[k] for k in METRICS if k in before},
        "after": {k: after[k] for k in METRICS if k in after},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/online"), help="the online benchmark's folder")
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--matrices", default=",".join(MATRICES))
    parser.add_argument("--scenarios", default="cold")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--policy", default="gmtrouter-explore", choices=POLICIES)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    console = Console()
    config = OnlineConfig(
        data_dir=args.data_dir,
        out=args.out,
        matrices=tuple(args.matrices.split(",")),
        scenarios=tuple(args.scenarios.split(",")),
        policies=(args.policy,),
        seeds=tuple(parse_int_list(args.seeds, "--seeds")),
    )
    jobs = [j for j in make_plan(config, console).jobs if Path(j.result_path).exists()]
    if not jobs:
        raise SystemExit(f"no finished {args.policy} jobs under {args.out} for these options")
    results = []
    with console.status(f"rerunning {len(jobs)} jobs"), multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        for result in pool.imap_unordered(rerun, jobs):
            results.append(result)
            console.print(f"{result['label']}: {result['routes_differ']} of {result['routes']} routes differ")
    table = Table(title="finished jobs rerun with this checkout: before → after")
    table.add_column("job")
    table.add_column("routes differ", justify="right")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    for r in sorted(results, key=lambda r: r["label"]):
        cells = [
            f"{r['before'][m]:.3f} → {r['after'][m]:.3f}" if m in r["after"] and m in r["before"] else "–"
            for m in METRICS
        ]
        table.add_row(r["label"], str(r["routes_differ"]), *cells)
    both = [[r["after"][m] - r["before"][m] for r in results if m in r["after"] and m in r["before"]] for m in METRICS]
    paired = [estimate(values) for values in both]
    table.add_row("paired mean difference", "", *[p.format() if p else "–" for p in paired])
    console.print(table)
    save_json(
        "online_rerun",
        {"options": vars(args) | {"out": str(args.out), "data_dir": str(args.data_dir)}, "results": results},
    )


if __name__ == "__main__":
    main()
