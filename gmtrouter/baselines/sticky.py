"""The sticky rule: stay with the LLM that answered the conversation's previous turn; elsewhere, user-winrate.

What session-sticky routing does in practice: a conversation keeps the LLM its first turn was routed to, so it
never switches. It is the rule a conversation-aware router has to beat on utility.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gmtrouter.baselines.winrate import UserWinrateContext, UserWinrateRouter
from gmtrouter.data.conversation import previous_llms
from gmtrouter.data.schema import Interaction

STAY_BONUS = 1e3  # logits: more than any user-winrate score difference, so the previous LLM always wins


class StickyRouter(UserWinrateRouter):
    """Keeps the previous turn's LLM whenever it is a candidate; routes first turns by user-winrate."""

    name = "sticky"

    def context(self, history: Sequence[Interaction]) -> StickyContext:
        return StickyContext(self, history)


class StickyContext(UserWinrateContext):
    router: StickyRouter

    def score_records(self, records: Sequence[Interaction]) -> list[np.ndarray]:
        scores = super().score_records(records)
        previous = previous_llms(self.history + list(records))[len(self.history) :]
        for record, row, after in zip(records, scores, previous, strict=True):
            row += _stay_bonus(record.llms, after)
        return scores

    def score_turn(self, user: str, query: str, llms: Sequence[str], previous: str | None) -> np.ndarray:
        return self.score(user, query, llms) + _stay_bonus(llms, previous)


def _stay_bonus(llms: Sequence[str], previous: str | None) -> np.ndarray:
    """`STAY_BONUS` for the previous turn's LLM among `llms`, 0 for the others."""
    return STAY_BONUS * np.array([m == previous for m in llms], dtype=float)
