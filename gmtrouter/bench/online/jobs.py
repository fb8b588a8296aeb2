"""One job = one policy on one seed's world of one scenario and matrix; its result file.

A job is named by a key over everything that decides its outcome (the matrix's bytes, the world's settings, the
scenario, the seed, the policy and its settings, the warm-start model), so a rerun skips finished
jobs and reruns changed ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from gmtrouter.bench.online.loop import run_policy
from gmtrouter.bench.online.policies import BestSingle, EpsilonGreedy, LinUCB, Oracle, Policy, WinRate
from gmtrouter.bench.online.scenarios import SCENARIOS
from gmtrouter.bench.online.world import World, WorldConfig, build_world
from gmtrouter.data.matrix import MatrixRow, read_matrix
from gmtrouter.data.schema import Interaction, read_records
from gmtrouter.data.sim_features import FeatureTables, build_features
from gmtrouter.routing.explore import THOMPSON_SCALE
from gmtrouter.utils.atomic import atomic_write

EPSILON = 0.1  # share of epsilon-greedy's rounds routed to a uniformly drawn candidate
LINUCB_ALPHA, LINUCB_RIDGE = 0.25, 1.0  # docs/online.md: how they were chosen
WIN_RATE_SHRINK = 5.0  # pseudo-observations of the population's rate in each user's rate
POLICIES = ("gmtrouter-explore", "gmtrouter-greedy", "gmtrouter-epsilon", "win-rate", "linucb", "best-single", "oracle")
GMTROUTER_POLICIES = POLICIES[:3]
LEARNERS = POLICIES[:5]  # the policies that learn (and take a warm start)
SETTINGS: dict[str, dict[str, float]] = {
    "gmtrouter-explore": {"thompson_scale": THOMPSON_SCALE},
    "gmtrouter-epsilon": {"epsilon": EPSILON},
    "win-rate": {"shrink": WIN_RATE_SHRINK},
    "linucb": {"alpha": LINUCB_ALPHA, "ridge": LINUCB_RIDGE},
}


@dataclass(frozen=True)
class Job:
    """What one run needs to know; everything in it is plain data, so it can travel to a worker process."""

    matrix: str
    matrix_path: str
    matrix_sha: str
    scenario: str
    seed: int
    policy: str
    world: WorldConfig
    result_path: str
    embeddings_path: str | None = None  # LinUCB's query embeddings
    warm_path: str | None = None  # the warm start's records
    model_dir: str | None = None  # gmtrouter's warm-start model
    model_sha: str | None = None
    rounds: int | None = None  # stop early (the service check runs the first rounds)

    @property
    def feedback(self) -> str:
        return SCENARIOS[self.scenario].feedback

    @property
    def label(self) -> str:
        return f"{self.matrix} {self.scenario} seed {self.seed} {self.policy}"

    def key(self) -> str:
        spec = {
            "matrix": self.matrix_sha,
            "world": asdict(self.world),
            "scenario": self.scenario,
            "seed": self.seed,
            "policy": self.policy,
            "settings": SETTINGS.get(self.policy, {}),
            "embeddings": Path(self.embeddings_path).name if self.embeddings_path else None,
            "model": self.model_sha,
            "api": _api_capabilities() if self.policy in GMTROUTER_POLICIES else None,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def _api_capabilities() -> list[str]:
    from gmtrouter.bench.online.gmtrouter_policy import api_capabilities  # torch and the model: only when needed

    return api_capabilities()


def policy_seed(seed: int, policy: str) -> int:
    """A policy's own random stream (tie-breaks, exploration), one per world seed and policy."""
    return int(np.random.SeedSequence([seed, zlib.crc32(policy.encode())]).generate_state(1)[0])


@lru_cache(maxsize=4)
def matrix_tables(path: str) -> tuple[list[MatrixRow], FeatureTables]:
    """A matrix and its feature tables, once per process."""
    rows = read_matrix(path)
    return rows, build_features(rows)


@lru_cache(maxsize=4)
def warm_records(path: str) -> list[Interaction]:
    return read_records(path)


def job_world(job: Job) -> World:
    rows, tables = matrix_tables(job.matrix_path)
    return build_world(rows, tables, job.world, job.seed, SCENARIOS[job.scenario].change)


def make_policy(job: Job, world: World) -> Policy:
    """The policy a job names, with its settings and its own seed."""
    seed = policy_seed(job.seed, job.policy)
    model = Path(job.model_dir) if job.model_dir else None
    if job.policy == "oracle":
        return Oracle(world.truth)
    if job.policy == "best-single":
        return BestSingle(world.truth)
    if job.policy == "win-rate":
        return WinRate(seed, WIN_RATE_SHRINK)
    if job.policy == "linucb":
        assert job.embeddings_path is not None
        return LinUCB(np.load(job.embeddings_path), seed, LINUCB_ALPHA, LINUCB_RIDGE)
    from gmtrouter.bench.online.gmtrouter_policy import GmtrouterPolicy  # torch and the model: only when needed

    if job.policy == "gmtrouter-explore":
        return GmtrouterPolicy(job.policy, explore=True, seed=seed, model_dir=model, settings=SETTINGS[job.policy])
    if job.policy == "gmtrouter-greedy":
        return GmtrouterPolicy(job.policy, explore=False, seed=seed, model_dir=model)
    if job.policy == "gmtrouter-epsilon":
        greedy = GmtrouterPolicy(job.policy, explore=False, seed=seed, model_dir=model)
        return EpsilonGreedy(greedy, seed, EPSILON, name=job.policy)
    raise ValueError(f"unknown policy {job.policy}")


def read_result(path: str | Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_job(job: Job, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run the job, write its result file (also for a failure) and return it."""
    from threadpoolctl import threadpool_limits

    if job.policy in GMTROUTER_POLICIES:
        import torch

        torch.set_num_threads(1)  # one core per job: the loop is sequential, and jobs run side by side
    with threadpool_limits(1):  # numpy's BLAS too: threads fighting over shared cores only slow a round
        return _run_job(job, progress)


def _run_job(job: Job, progress: Callable[[int], None] | None) -> dict[str, Any]:
    load_before = os.getloadavg()[0]
    world = job_world(job)
    warm = warm_records(job.warm_path) if job.warm_path and SCENARIOS[job.scenario].warm else []
    result: dict[str, Any] = {"key": job.key(), "label": job.label}
    try:
        outcome = run_policy(world, make_policy(job, world), job.feedback, warm, progress, job.rounds)
        result.update(
            status=outcome.status,
            reason=outcome.reason,
            choices=outcome.choices.tolist(),
            start_seconds=round(outcome.start_seconds, 3),
            loop_seconds=round(outcome.loop_seconds, 3),
        )
    except Exception as error:  # a failing policy is reported with the rest, not a stop
        result.update(status="failed", reason=f"{type(error).__name__}: {error}", choices=[])
    result["load_average"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    with atomic_write(Path(job.result_path), "w") as handle:
        json.dump(result, handle)
    return result
