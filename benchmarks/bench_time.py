"""How long the full `gmtrouter bench` plan takes, estimated from an earlier full run's report (no job is run).

    python -m benchmarks.bench_time --report docs/results.md --runs runs/bench

The earlier report gives, per dataset and router, the fit time and the median route time of its known-user
jobs (Resources), and the sum of all its jobs' times (header). A job is modelled as c x (fit + its route-latency
phase: 400 routes on the known-user split), with c fitted so that the earlier plan's jobs add up to the
earlier sum: c carries evaluation and process start-up in proportion. Today's full plan (every dataset,
setting, router, ablation and seed, less the jobs it leaves out) is then summed job by job:

- a (dataset, router) of the earlier report takes its own numbers; a dataset variant borrows its matrix's
  (llmrouter-task and llmrouter-communities from llmrouter, gsm8k-communities from gsm8k); a new-topics job
  costs what a new-queries job does (a fit and one evaluation);
- a router the earlier report lacks takes its fit time from a finished job under `--runs` (e.g. from
  `gmtrouter bench --quick`), converted to the earlier run's conditions by the ratio of user-winrate's fit
  times in the two runs on that dataset (which carries both machine load and data size).

The estimate is the sum over jobs divided by the workers.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

from gmtrouter.bench.cli_options import bench_config
from gmtrouter.bench.plan import ABLATIONS, Job, build_plan

BORROW = {"llmrouter-task": "llmrouter", "llmrouter-communities": "llmrouter", "gsm8k-communities": "gsm8k"}
HAS_TEXT = {"mt-bench", "gsm8k", "gsm8k-communities"}
# distinct meta.category values, which decide whether a dataset has the new-topics setting
CATEGORIES = {"mt-bench": 8, "mmlu": 57, "llmrouter": 14, "llmrouter-task": 14, "llmrouter-communities": 14}
LATENCY_ROUTES = 400  # 200 warm-up routes and 200 timed ones
ANCHOR = "user-winrate"


def read_report(report: Path) -> tuple[dict[tuple[str, str], tuple[float, float]], float, int]:
    """({(dataset, router): (fit s, route ms)}, the jobs' summed minutes, the jobs' count) of a report."""
    text = report.read_text()
    total = re.search(r"ran (\d+) jobs; (\d+) finished jobs were reused.*?own times add up to ([\d.]+) min", text, re.S)
    if total is None or "## Resources" not in text:
        raise SystemExit(f"{report}: no header totals or Resources tables to estimate from")
    table: dict[tuple[str, str], tuple[float, float]] = {}
    dataset = None
    for line in text[text.index("## Resources") :].splitlines():
        if line.startswith("### "):
            dataset = line[4:].strip()
        elif dataset and line.startswith("| ") and not line.startswith("| router"):
            cells = [c.strip().strip("*") for c in line.strip("|").split("|")]
            numbers = [re.match(r"[\d.]+", c) for c in cells[1:3]]
            if all(numbers):
                table[dataset, cells[0]] = (float(numbers[0][0]), float(numbers[1][0]))
    return table, float(total[3]), int(total[1]) + int(total[2])


def measured_fits(runs: Path) -> dict[tuple[str, str], float]:
    """{(dataset, router): fit seconds} of the finished known-user jobs under `runs`."""
    found = {}
    for path in (runs / "results").rglob("*.json") if runs.is_dir() else []:
        result = json.loads(path.read_text())
        job = result["job"]
        if result.get("status") == "ok" and job["split"] == "record" and result.get("train_seconds") is not None:
            found[job["dataset"], job["variant"]] = float(result["train_seconds"])
    return found


def job_cost(job: Job, table: dict[tuple[str, str], tuple[float, float]]) -> float | None:
    """fit + route-latency seconds of a job in the earlier run's conditions, or None when unknown."""
    dataset = job.dataset if (job.dataset, job.variant) in table else BORROW.get(job.dataset, job.dataset)
    if (dataset, job.variant) not in table:
        return None
    fit, route_ms = table[dataset, job.variant]
    return fit + (LATENCY_ROUTES * route_ms / 1000 if job.split == "record" else 0.0)


def earlier_plan_cost(table: dict[tuple[str, str], tuple[float, float]]) -> float:
    """fit + latency summed over the earlier plan: its datasets and routers, known and new users, 5 seeds
    (ablations on 3, the no-text ablation only where responses have text)."""
    total = 0.0
    for (_, router), (fit, route_ms) in table.items():
        ablation = any(a.name == router for a in ABLATIONS)
        seeds = 3 if ablation else 5
        total += seeds * (2 * fit + LATENCY_ROUTES * route_ms / 1000)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report", type=Path, default=Path("docs/results.md"))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    config, _, _ = bench_config(
        quick=False, datasets=None, routers=None, variants=[], seeds=None, ablation_seeds=None, shots=None,
        data_dir=Path("."), chatbot_arena=None, out=Path("."), report=None, users=None, records_per_user=50,
        encoder=None, settings=[], timeout=900.0, workers=args.workers, threads=1, retry_failed=False,
    )  # fmt: skip
    jobs, skipped = build_plan(
        config, dict.fromkeys(config.datasets, ""), {d: d in HAS_TEXT for d in config.datasets}, CATEGORIES
    )
    table, earlier_minutes, earlier_jobs = read_report(args.report)
    scale = 60 * earlier_minutes / earlier_plan_cost(table)
    measured = measured_fits(args.runs)
    for (dataset, router), seconds in measured.items():  # routers the earlier run did not have
        base = BORROW.get(dataset, dataset)
        if (base, router) in table or (base, ANCHOR) not in table or (dataset, ANCHOR) not in measured:
            continue
        slowdown = measured[dataset, ANCHOR] / max(table[base, ANCHOR][0], 0.05)
        table.setdefault((dataset, router), (seconds / slowdown, 0.05))

    minutes: dict[str, float] = defaultdict(float)
    unknown = []
    for job in jobs:
        cost = job_cost(job, table)
        if cost is None:
            unknown.append(job.label)
        else:
            minutes[job.dataset] += scale * cost / 60
    total = sum(minutes.values())
    print(f"earlier run: {earlier_jobs} jobs, {earlier_minutes:.1f} min of jobs; c = {scale:.2f}")
    print(f"full plan now: {len(jobs)} jobs, {len(skipped)} (dataset, router) pairs left out")
    for dataset, value in minutes.items():
        print(f"  {dataset:16s} {value:6.1f} min of jobs")
    print(f"jobs: {total:.1f} min; with {args.workers} at a time: {total / args.workers:.1f} min")
    if unknown:
        print(f"no time known for {len(unknown)} jobs, e.g. {unknown[0]}")


if __name__ == "__main__":
    main()
