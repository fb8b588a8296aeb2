"""From job result files to numbers over seeds: mean and 95% t-interval, paired differences, failures.

Seeds vary the split and the router together, so the interval says how much a number moves with both. With
one seed there is no interval. Paired differences use the seeds both routers finished.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from gmtrouter.bench.plan import Job
from gmtrouter.bench.runner import read_result

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """Mean of `n` values and the half-width of its t-interval (None for fewer than two values)."""

    mean: float
    half: float | None
    n: int

    def format(self, digits: int = 3) -> str:
        if self.half is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"


def estimate(values: Sequence[float]) -> Estimate | None:
    """Mean and 95% t-interval of the finite values; None when there are none."""
    clean = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if len(clean) == 0:
        return None
    if len(clean) < 2:
        return Estimate(float(clean.mean()), None, 1)
    sem = float(clean.std(ddof=1) / math.sqrt(len(clean)))
    half = float(stats.t.ppf(0.5 + CONFIDENCE / 2, len(clean) - 1) * sem)
    return Estimate(float(clean.mean()), half, len(clean))


def dig(result: dict[str, Any], path: str) -> Any:
    """A nested value by dotted path ('evaluations.0.per_user.auc.p10'); None where any step is missing."""
    value: Any = result
    for step in path.split("."):
        if not isinstance(value, dict) or step not in value:
            return None
        value = value[step]
    return value


class Results:
    """The result files of a plan's jobs, looked up by (dataset, split, variant, seed)."""

    def __init__(self, jobs: Sequence[Job], out: Path) -> None:
        self.jobs = list(jobs)
        self.by_job: dict[tuple[str, str, str, int], dict[str, Any]] = {}
        for job in self.jobs:
            result = read_result(job.result_path(out))
            if result is not None:
                self.by_job[job.dataset, job.split, job.variant, job.seed] = result

    def variants(self, dataset: str, split: str | None = None) -> list[str]:
        """Variants planned for a dataset (and split), in plan order."""
        names = [j.variant for j in self.jobs if j.dataset == dataset and (split is None or j.split == split)]
        return list(dict.fromkeys(names))

    def seeds(self, dataset: str, split: str, variant: str) -> list[int]:
        return [j.seed for j in self.jobs if (j.dataset, j.split, j.variant) == (dataset, split, variant)]

    def ok(self, dataset: str, split: str, variant: str) -> dict[int, dict[str, Any]]:
        """Seed -> result of the variant's finished, successful jobs."""
        found = {}
        for seed in self.seeds(dataset, split, variant):
            result = self.by_job.get((dataset, split, variant, seed))
            if result is not None and result["status"] == "ok":
                found[seed] = result
        return found

    def values(self, dataset: str, split: str, variant: str, path: str) -> dict[int, float]:
        """Seed -> the number at `path` in each successful result that has it."""
        found = {}
        for seed, result in self.ok(dataset, split, variant).items():
            value = dig(result, path)
            if isinstance(value, int | float) and math.isfinite(value):
                found[seed] = float(value)
        return found

    def estimate(self, dataset: str, split: str, variant: str, path: str) -> Estimate | None:
        return estimate(list(self.values(dataset, split, variant, path).values()))

    def paired(self, dataset: str, split: str, first: str, second: str, path: str) -> Estimate | None:
        """first - second over the seeds both have: mean and t-interval of the paired differences."""
        a, b = self.values(dataset, split, first, path), self.values(dataset, split, second, path)
        common = sorted(set(a) & set(b))
        return estimate([a[s] - b[s] for s in common])

    def failures(self, dataset: str | None = None) -> list[dict[str, Any]]:
        """Results that did not end `ok` (and planned jobs with no result at all), in plan order."""
        found = []
        for job in self.jobs:
            if dataset is not None and job.dataset != dataset:
                continue
            result = self.by_job.get((job.dataset, job.split, job.variant, job.seed))
            if result is None:
                found.append({"job": job.to_dict(), "status": "not run", "error": "no result file"})
            elif result["status"] != "ok":
                found.append(result)
        return found

    def pooled(self, dataset: str, split: str, variant: str, path: str) -> list[float]:
        """A list-valued field concatenated over seeds (e.g. per-user AUCs), non-finite values dropped."""
        pooled: list[float] = []
        for result in self.ok(dataset, split, variant).values():
            values = dig(result, path) or []
            pooled.extend(float(v) for v in values if v is not None and math.isfinite(v))
        return pooled

    def shared(self, dataset: str, split: str, path: str) -> Estimate | None:
        """A number every variant's result carries alike (e.g. the oracle's accuracy), estimated over seeds."""
        per_seed: dict[int, float] = {}
        for variant in self.variants(dataset, split):
            for seed, value in self.values(dataset, split, variant, path).items():
                per_seed.setdefault(seed, value)
        return estimate(list(per_seed.values()))
