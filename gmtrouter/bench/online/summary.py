"""From job result files to numbers over seeds: every run's metrics (recomputed from its choices and its
world, which a seed rebuilds exactly), means with 95% t-intervals, paired differences, regret curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gmtrouter.bench.aggregate import Estimate, estimate
from gmtrouter.bench.online.config import Plan
from gmtrouter.bench.online.jobs import Job, job_world, read_result
from gmtrouter.bench.online.metrics import gap_closed, oracle_choices, regret_curve, routed_utility, run_metrics
from gmtrouter.bench.online.policies import best_single_llm
from gmtrouter.bench.online.world import World

ROLLING = 500  # rounds in each point of the rolling share of the gap closed
ROLLING_STEP = 100

Cell = tuple[str, str, str]  # matrix, scenario, policy


@dataclass(frozen=True)
class Run:
    """One finished job: its result file and what it is worth."""

    job: Job
    result: dict[str, Any]
    metrics: dict[str, float]
    regret: np.ndarray  # [T] cumulative regret against the oracle
    rolling: np.ndarray  # [points] share of the gap closed over ROLLING rounds, every ROLLING_STEP rounds


def rolling_gap_closed(world: World, choices: np.ndarray) -> np.ndarray:
    """The share of the gap closed over each window of `ROLLING` rounds, one window every `ROLLING_STEP`."""
    policy, oracle = routed_utility(world, choices), routed_utility(world, oracle_choices(world))
    best = world.truth.utility[:, best_single_llm(world.stream, world.truth)]
    starts = range(0, max(len(choices) - ROLLING, 0) + 1, ROLLING_STEP)
    return np.asarray([gap_closed(*(a[s : s + ROLLING] for a in (policy, oracle, best))) for s in starts])


class Summary:
    """Every job of a plan with its status and, when it finished, its metrics."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.status: dict[tuple[Cell, int], tuple[str, str]] = {}
        self.runs: dict[tuple[Cell, int], Run] = {}
        self.worlds: dict[tuple[str, str, int], World] = {}
        for job in plan.jobs:
            cell = (job.matrix, job.scenario, job.policy)
            result = read_result(job.result_path)
            if result is None or result.get("key") != job.key():
                self.status[(cell, job.seed)] = ("not run", "")
                continue
            self.status[(cell, job.seed)] = (result["status"], result.get("reason", ""))
            if result["status"] != "ok":
                continue
            world = self.world(job)
            choices = np.asarray(result["choices"], dtype=int)
            metrics = run_metrics(world, choices)
            metrics["routes_per_second"] = len(choices) / result["loop_seconds"] if result["loop_seconds"] else np.nan
            metrics["start_seconds"] = result["start_seconds"]
            self.runs[(cell, job.seed)] = Run(
                job, result, metrics, regret_curve(world, choices), rolling_gap_closed(world, choices)
            )

    def world(self, job: Job) -> World:
        """The job's world, built once for every policy that shares it."""
        key = (job.matrix, job.scenario, job.seed)
        if key not in self.worlds:
            self.worlds[key] = job_world(job)
        return self.worlds[key]

    def job_seconds(self) -> float:
        """The finished runs' own time: starting each policy and its loop."""
        return float(sum(r.result["start_seconds"] + r.result["loop_seconds"] for r in self.runs.values()))

    def seeds(self, cell: Cell) -> list[int]:
        return sorted(seed for (c, seed) in self.runs if c == cell)

    def values(self, cell: Cell, metric: str) -> list[float]:
        """`metric` of every seed the cell finished (NaN where a run has no value)."""
        return [self.runs[(cell, s)].metrics.get(metric, np.nan) for s in self.seeds(cell)]

    def estimate(self, cell: Cell, metric: str) -> Estimate | None:
        """Mean and 95% t-interval of `metric` over the seeds the cell finished."""
        return estimate(self.values(cell, metric))

    def paired(self, cell: Cell, other: Cell, metric: str) -> Estimate | None:
        """Mean and 95% t-interval of cell minus other, over the seeds both finished."""
        both = sorted(set(self.seeds(cell)) & set(self.seeds(other)))
        return estimate(
            [
                self.runs[(cell, s)].metrics.get(metric, np.nan) - self.runs[(other, s)].metrics.get(metric, np.nan)
                for s in both
            ]
        )

    def curves(self, cell: Cell, name: str) -> np.ndarray | None:
        """[seeds, points] the cell's `regret` or `rolling` curves (None when it has no finished seed)."""
        seeds = self.seeds(cell)
        if not seeds:
            return None
        return np.stack([getattr(self.runs[(cell, s)], name) for s in seeds])

    def cell_status(self, cell: Cell) -> str:
        """ "ok", or why some seeds have no result (the first reason given)."""
        states = [(status, why) for (c, _), (status, why) in self.status.items() if c == cell]
        bad = [(status, why) for status, why in states if status != "ok"]
        if not bad:
            return "ok"
        status, why = bad[0]
        return f"{status}: {why}" if why else status

    def cells(self) -> list[Cell]:
        return list(dict.fromkeys(c for (c, _) in self.status))

    def policies(self, matrix: str, scenario: str) -> list[str]:
        return [c[2] for c in self.cells() if c[0] == matrix and c[1] == scenario]

    def world_facts(self, matrix: str, scenario: str) -> dict[str, Any]:
        """What the report says about a scenario's worlds over their seeds."""
        worlds = [w for (m, s, _), w in self.worlds.items() if m == matrix and s == scenario]
        facts: dict[str, Any] = {"worlds": len(worlds)}
        if worlds:
            best = [w.stream.llms[best_single_llm(w.stream, w.truth)] for w in worlds]
            facts["best_single"] = sorted(set(best))
            facts["favoured"] = sorted({w.favoured for w in worlds if w.favoured})
            facts["degraded"] = sorted({w.stream.llms[w.degraded] for w in worlds if w.degraded is not None})
        return facts


def mean_over(values: Sequence[float]) -> float:
    clean = [v for v in values if np.isfinite(v)]
    return float(np.mean(clean)) if clean else float("nan")
