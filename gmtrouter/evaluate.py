"""Evaluation under the k-shot protocol: each user's first k records are history, the rest are scored."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

from gmtrouter.data.schema import Interaction
from gmtrouter.errors import GmtError
from gmtrouter.metrics import evaluate_scores
from gmtrouter.routers import PreferenceRouter


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


def evaluate_router(
    router: PreferenceRouter, history: Sequence[Interaction], test: Sequence[Interaction], shots: int = 0
) -> dict[str, object]:
    """Contract metrics of `router` on `test`, with `history` (e.g. the training data) as known users' context."""
    shown, scored = shot_split(test, shots)
    if not scored:
        raise GmtError(f"no records left to score after {shots} shots per user; lower --shots")
    started = time.perf_counter()
    context = router.context([*history, *shown])
    scores = context.score_records(scored)
    seconds = time.perf_counter() - started
    known = {r.user for r in scored if context.knows_user(r.user)}
    result = evaluate_scores(scored, scores)
    result.update(
        router=router.name,
        shots=shots,
        known_users=len(known),
        new_users=result["n_users"] - len(known),
        ms_per_record=1000 * seconds / len(scored),
    )
    return result
