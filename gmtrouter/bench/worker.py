"""One benchmark job, run in its own process: split, train, evaluate every k, time routing, write the result.

The module imports the heavy libraries at import time on purpose: the runner's fork server imports it once,
and every job process is forked from there already warm. Whatever a job does (raise, run out of memory,
hang), only its own process goes down; the runner writes down what happened.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import gmtrouter.baselines  # warm imports for the fork server
import gmtrouter.model.gmtrouter  # noqa: F401
from gmtrouter.api import Router
from gmtrouter.bench.conversation import conversation_metrics
from gmtrouter.bench.tradeoff import single_llm_points, tradeoff_curve
from gmtrouter.data.schema import Interaction, read_records
from gmtrouter.data.sim_config import UTILITY_KEY
from gmtrouter.data.sim_posterior import CommunityModel, community_posterior_scores, community_taste_scores
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import score_split, shot_split, split_metrics, users_left_out
from gmtrouter.evaluation.metrics import auc, per_user_values, rated_pairs
from gmtrouter.registry.routers import make_router
from gmtrouter.routing.base import PreferenceRouter
from gmtrouter.routing.costs import mean_costs
from gmtrouter.utils.atomic import atomic_write
from gmtrouter.utils.errors import GmtError

with contextlib.suppress(ImportError):  # the default encoder's library: imported here, it costs no job seconds
    import sentence_transformers  # noqa: F401


def clean(value: Any) -> Any:
    """JSON-safe copy: NaN and infinities become null, numpy scalars plain numbers."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_result(path: Path, result: dict[str, Any]) -> None:
    with atomic_write(path) as handle:
        json.dump(clean(result), handle, indent=1, default=str)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB), including the libraries it was forked with."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def param_count(router: PreferenceRouter) -> int:
    """Numbers in the fitted state's tensors (for knn and the graph baselines: stored embeddings too)."""
    _, tensors = router.get_state()
    return int(sum(t.numel() for t in tensors.values()))


def oracle(records: Sequence[Interaction]) -> dict[str, float] | None:
    """Accuracy and AUC of the simulator's true utilities on the scored records (None for real feedback)."""
    if not records or any(UTILITY_KEY not in r.meta for r in records):
        return None
    pairs = rated_pairs(records, [r.meta[UTILITY_KEY] for r in records])
    return {"accuracy": float(pairs.correct.mean()) if len(pairs.label) else None, "auc": auc(pairs.label, pairs.diff)}


def community_reference(scored: Sequence[Interaction], scores: Sequence[Sequence[float]]) -> dict[str, float | None]:
    """Accuracy and AUC of a community reference's `scores` (`gmtrouter.data.sim_posterior`) on the scored records."""
    pairs = rated_pairs(scored, scores)
    return {"accuracy": float(pairs.correct.mean()) if len(pairs.label) else None, "auc": auc(pairs.label, pairs.diff)}


def evaluate_k(
    router: PreferenceRouter,
    train: list[Interaction],
    test: list[Interaction],
    k: int,
    score_after: int | None = None,
    community_model: CommunityModel | None = None,
) -> dict[str, Any]:
    """Contract metrics at k shots, plus the per-user values behind their summaries, the oracle's metrics and,
    given the world's `community_model`, the two community references' (posterior and taste).

    `score_after` (the curve's largest k) makes every k score the same records: each user's after that many.
    """
    split = score_split(router, train, test, k, score_after)
    result = split_metrics(router, split, k)
    users = per_user_values(rated_pairs(split.scored, split.scores))
    result["per_user_values"] = {"accuracy": [a for a, _ in users.values()], "auc": [u for _, u in users.values()]}
    result["oracle"] = oracle(split.scored)
    if community_model is not None:
        shown, _ = shot_split(test, k, score_after)
        scored = split.scored
        result["community_posterior"] = community_reference(
            scored, community_posterior_scores(shown, scored, community_model)
        )
        result["community_taste"] = community_reference(scored, community_taste_scores(shown, scored, community_model))
    result["_split"] = split
    return result


def route_latency(
    router: PreferenceRouter, train: list[Interaction], test: list[Interaction], requests: int, seed: int
):
    """Median and p95 ms of single `Router.route` calls of known users, after a pass that caches the queries."""
    started = time.perf_counter()
    api = Router(router, train)
    context_seconds = time.perf_counter() - started
    known = [r for r in test if api.context.knows_user(r.user)] or list(test)
    rng = np.random.default_rng(seed)
    picks = [known[i] for i in rng.choice(len(known), size=min(requests, len(known)), replace=False)]
    for record in picks:  # warm: query embeddings cached, lazy state built
        api.route(record.user, record.query)
    times = []
    for record in picks:
        begin = time.perf_counter()
        api.route(record.user, record.query)
        times.append(1000 * (time.perf_counter() - begin))
    return {
        "requests": len(times),
        "median_ms": float(np.median(times)),
        "p95_ms": float(np.percentile(times, 95)),
        "mean_ms": float(np.mean(times)),
        "context_seconds": context_seconds,
    }


def _training_log(router: PreferenceRouter) -> dict[str, Any]:
    log = dict(getattr(router, "training_log_", {}) or {})
    log.pop("curve", None)
    return json.loads(json.dumps(clean(log), default=str))


def _redirect_output(log_path: Path) -> None:
    """Send the job's stdout and stderr (progress bars, library warnings) to its log file."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 (kept open for the life of the process)
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle


def run_job(job: dict[str, Any], options: dict[str, Any], conn: Any = None) -> None:
    """Entry point of a job process. `options`: data, result and log paths, threads, latency requests."""
    _redirect_output(Path(options["log"]))
    torch.set_num_threads(int(options.get("threads", 1)))
    started = time.perf_counter()
    shots: Sequence[int] = job["shots"]
    phases = ["fit", *(f"k={k}" for k in shots)] + (["route latency"] if job["split"] == "record" else [])
    result: dict[str, Any] = {"job": job, "status": "running", "phases": phases}

    def phase(done: int) -> None:
        if conn is not None:
            conn.send((done, len(phases), phases[done] if done < len(phases) else "done"))

    try:
        torch.manual_seed(job["seed"])
        records = read_records(options["data"])
        train, test = split_records(records, job["split"], job["test_frac"], job["seed"])
        result.update(train_records=len(train), test_records=len(test))
        score_after = max(shots) if job["split"] == "user" else None
        if score_after is not None:
            result["score_after"] = score_after
            result["users_left_out"] = users_left_out(test, score_after)
        phase(0)
        router = make_router(job["router"], **job["settings"])
        fit_started = time.perf_counter()
        router.fit(train)
        result["train_seconds"] = time.perf_counter() - fit_started
        result["training_log"] = _training_log(router)
        result["params"] = param_count(router)
        evaluations: dict[str, Any] = {}
        expected = mean_costs(train)
        model = options.get("community_model")
        reference = CommunityModel(**model) if model and job["split"] == "user" else None
        for index, k in enumerate(shots, start=1):
            phase(index)
            try:
                evaluation = evaluate_k(router, train, test, k, score_after, reference)
            except GmtError as error:  # no records left to score after k shots: that k has no number
                evaluations[str(k)] = {"error": str(error)}
                continue
            split = evaluation.pop("_split")
            if k == 0 and job["split"] == "record":
                result["conversation"] = conversation_metrics(train, split.scored, split.scores)
                result["tradeoff"] = {
                    "curve": tradeoff_curve(split.scored, split.scores, expected),
                    "single": single_llm_points(split.scored, expected),
                }
            evaluations[str(k)] = evaluation
        result["evaluations"] = evaluations
        if job["split"] == "record":
            phase(len(phases) - 1)
            result["latency"] = route_latency(router, train, test, int(options.get("latency_requests", 200)), 0)
        result["status"] = "ok"
    except Exception as error:  # the job failed; the runner and the report say so
        result["status"] = "failed"
        result["error"] = f"{type(error).__name__}: {error}".splitlines()[0][:500]
        result["traceback"] = traceback.format_exc()[-4000:]
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mb"] = peak_rss_mb()
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    write_result(Path(options["result"]), result)
    phase(len(phases))
