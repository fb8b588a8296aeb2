"""What the router believes of a user: each LLM's score for them with its 95% interval, beside a new user's, and
the evidence (comparisons and thumbs) behind it.

The profile shows the router's own view, not the raw win rates of a user's comparisons: routing reads the
backbone's posterior (the population's strengths, what the user's own feedback says, how sure each part is),
and a profile that showed something else would contradict the routes it explains. The view is taken on a
question nobody asked, so that no query's own verdict enters: the user's overall preference.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gmtrouter.api import Router
from gmtrouter.data.schema import Interaction

Z95 = 1.96
NOBODY_ASKED = "\x00"  # a question no request can send (a NUL is refused in every text): the overall view
NEW_USER = ""  # a user id no request can name (ids have at least one character): the population's view


@dataclass(frozen=True)
class Interval:
    """A score (Bradley-Terry logit) with its 95% posterior interval."""

    score: float
    low: float
    high: float


@dataclass(frozen=True)
class Belief:
    """One LLM in a user's profile: the router's view of it for this user and for a new user, and how many of
    the user's comparisons and thumbs involve it."""

    llm: str
    user: Interval
    new_user: Interval
    comparisons: int
    thumbs: int


def evidence(records: Iterable[Interaction]) -> dict[str, tuple[int, int]]:
    """Per LLM: (comparisons it was in, thumbs on its lone answers); a comparison is a record with two or more
    rated answers, a thumb (or rating) a record with one."""
    counts: dict[str, list[int]] = {}
    for record in records:
        slot = 0 if len(record.responses) > 1 else 1
        for response in record.responses:
            counts.setdefault(response.llm, [0, 0])[slot] += 1
    return {llm: (c, t) for llm, (c, t) in counts.items()}


class EvidenceTally:
    """`evidence` over a live router's whole history, counted once per record: the history only grows between
    swaps of the router (observe appends), so a read counts only the records added since the last one."""

    def __init__(self) -> None:
        self._history: Sequence[Interaction] | None = None
        self._counted = 0
        self._counts: dict[str, tuple[int, int]] = {}

    def of(self, history: Sequence[Interaction]) -> dict[str, tuple[int, int]]:
        if history is not self._history or len(history) < self._counted:
            self._history, self._counted, self._counts = history, 0, {}
        fresh = evidence(history[self._counted :])
        for llm, (c, t) in fresh.items():
            old = self._counts.get(llm, (0, 0))
            self._counts[llm] = (old[0] + c, old[1] + t)
        self._counted = len(history)
        return dict(self._counts)


def _intervals(router: Router, user: str, llms: list[str]) -> list[Interval]:
    scores = router.context.score(user, NOBODY_ASKED, llms)
    spread = router.context.uncertainty(user, NOBODY_ASKED, llms)
    return [Interval(float(s), float(s - Z95 * d), float(s + Z95 * d)) for s, d in zip(scores, spread, strict=True)]


def beliefs(router: Router, user: str) -> list[Belief]:
    """The router's view of each LLM it routes among by default, for `user`, their strongest first (the caller
    holds whatever keeps the router from changing meanwhile)."""
    llms = router.active_llms
    if not llms:
        return []
    mine, theirs = _intervals(router, user, llms), _intervals(router, NEW_USER, llms)
    counts = evidence(router.history(user))
    order = np.argsort([-m.score for m in mine], kind="stable")
    return [Belief(llms[i], mine[i], theirs[i], *counts.get(llms[i], (0, 0))) for i in order]
