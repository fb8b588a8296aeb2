"""Evaluation under the k-shot protocol: each user's first k records are history, the rest are scored."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.errors import GmtError
from gmtrouter.metrics import evaluate_scores
from gmtrouter.routers import PreferenceRouter, RoutingContext


def shot_split(records: Sequence[Interaction], shots: int) -> tuple[list[Interaction], list[Interaction]]:
    """(history, scored): each user's first `shots` records in file order, and the others."""
    if shots < 0:
        raise GmtError(f"--shots must be 0 or more, got {shots}")
    seen: Counter[str] = Counter()
    history, scored = [], []
    for record in records:
        (history if seen[record.user] < shots else scored).append(record)
        seen[record.user] += 1
    return history, scored


@dataclass(frozen=True)
class ScoredSplit:
    """What a k-shot evaluation scored: the records, their scores, the context that scored them, and how long."""

    scored: list[Interaction]
    scores: list[np.ndarray]
    context: RoutingContext
    seconds: float


def score_split(
    router: PreferenceRouter, history: Sequence[Interaction], test: Sequence[Interaction], shots: int = 0
) -> ScoredSplit:
    """Score `test` under the k-shot protocol, with `history` (e.g. the training data) as known users' context."""
    shown, scored = shot_split(test, shots)
    if not scored:
        raise GmtError(f"no records left to score after {shots} shots per user; lower --shots")
    started = time.perf_counter()
    context = router.context([*history, *shown])
    scores = context.score_records(scored)
    return ScoredSplit(scored, scores, context, time.perf_counter() - started)


def split_metrics(router: PreferenceRouter, split: ScoredSplit, shots: int) -> dict[str, object]:
    """Contract metrics of a scored split, with the router, shots, known/new user counts and time per record."""
    known = {r.user for r in split.scored if split.context.knows_user(r.user)}
    result = evaluate_scores(split.scored, split.scores)
    result.update(
        router=router.name,
        shots=shots,
        known_users=len(known),
        new_users=result["n_users"] - len(known),
        ms_per_record=1000 * split.seconds / len(split.scored),
    )
    return result


def evaluate_router(
    router: PreferenceRouter, history: Sequence[Interaction], test: Sequence[Interaction], shots: int = 0
) -> dict[str, object]:
    """Contract metrics of `router` on `test`, with `history` (e.g. the training data) as known users' context."""
    return split_metrics(router, score_split(router, history, test, shots), shots)
