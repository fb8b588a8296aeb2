"""Evaluation under the k-shot protocol: each user's first k records are history, the rest are scored."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.evaluation.metrics import evaluate_scores
from gmtrouter.routing.base import PreferenceRouter, RoutingContext
from gmtrouter.utils.errors import GmtError


def shot_split(
    records: Sequence[Interaction], shots: int, score_after: int | None = None
) -> tuple[list[Interaction], list[Interaction]]:
    """(history, scored): each user's first `shots` records in file order, and the records after their first
    `score_after` (default `shots`).

    A k-shot curve passes its largest k as `score_after`, so that every k scores the same records; the records
    between the two are neither shown nor scored, and a user with `score_after` records or fewer is left out.
    """
    if shots < 0:
        raise GmtError(f"--shots must be 0 or more, got {shots}")
    after = shots if score_after is None else score_after
    if after < shots:
        raise GmtError(f"records are scored after the first {after}, fewer than the {shots} shots shown")
    seen: Counter[str] = Counter()
    history, scored = [], []
    for record in records:
        if seen[record.user] < shots:
            history.append(record)
        elif seen[record.user] >= after:
            scored.append(record)
        seen[record.user] += 1
    return history, scored


def users_left_out(records: Sequence[Interaction], score_after: int) -> int:
    """Users with `score_after` records or fewer: a k-shot curve that scores after that many has none of theirs."""
    counts = Counter(r.user for r in records)
    return sum(1 for n in counts.values() if n <= score_after)


def record_key(record: Interaction) -> tuple[str, str, int, str]:
    """What makes two records the same interaction: user, conversation, turn and query."""
    return record.user, record.conversation, record.turn, record.query


def overlap(history: Sequence[Interaction], scored: Sequence[Interaction]) -> list[Interaction]:
    """The scored records that are also in `history` (scoring them would read their own labels)."""
    known = {record_key(r) for r in history}
    return [r for r in scored if record_key(r) in known]


@dataclass(frozen=True)
class ScoredSplit:
    """What a k-shot evaluation scored: the records, their scores, the context that scored them, and how long."""

    scored: list[Interaction]
    scores: list[np.ndarray]
    context: RoutingContext
    seconds: float


def score_split(
    router: PreferenceRouter,
    history: Sequence[Interaction],
    test: Sequence[Interaction],
    shots: int = 0,
    score_after: int | None = None,
) -> ScoredSplit:
    """Score `test` under the k-shot protocol, with `history` (e.g. the training data) as known users' context."""
    shown, scored = shot_split(test, shots, score_after)
    if not scored:
        after = shots if score_after is None else score_after
        raise GmtError(f"no records left to score after {after} records per user; lower --shots")
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
    router: PreferenceRouter,
    history: Sequence[Interaction],
    test: Sequence[Interaction],
    shots: int = 0,
    allow_overlap: bool = True,
) -> dict[str, object]:
    """Contract metrics of `router` on `test`, with `history` (e.g. the training data) as known users' context.

    With `allow_overlap=False`, a scored record that is also in `history` is refused: its score would be
    read off its own label.
    """
    if not allow_overlap:
        shared = overlap(history, shot_split(test, shots)[1])
        if shared:
            first = shared[0]
            raise GmtError(
                f"{len(shared)} of the records to score are in the model's history (e.g. user {first.user}, "
                f"conversation {first.conversation}, turn {first.turn}); score held-out records "
                "(gmtrouter data split), or pass --allow-overlap"
            )
    return split_metrics(router, score_split(router, history, test, shots), shots)
