"""Expected cost of sending a request to an LLM, and how a cost weight trades it against preference."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from gmtrouter.data.schema import Interaction


def mean_costs(records: Sequence[Interaction]) -> dict[str, float]:
    """Mean USD cost per response of each LLM, over the responses that state a cost."""
    totals: dict[str, list[float]] = defaultdict(list)
    for record in records:
        for response in record.responses:
            if response.cost is not None:
                totals[response.llm].append(response.cost)
    return {llm: float(np.mean(values)) for llm, values in totals.items()}


def cost_adjusted(scores: np.ndarray, costs: Sequence[float | None], cost_weight: float) -> np.ndarray:
    """score - cost_weight * ln(cost / cheapest candidate's cost).

    Scores are Bradley-Terry logits, so a weight of 1 asks an LLM that costs e times more to be one logit
    (a 73% preference) better. LLMs of unknown cost are not penalised.
    """
    known = np.array([c for c in costs if c is not None and c > 0], dtype=float)
    if cost_weight == 0 or len(known) == 0:
        return scores.astype(float)
    floor = known.min()
    penalty = np.array([np.log(c / floor) if c is not None and c > 0 else 0.0 for c in costs])
    return scores - cost_weight * penalty
