"""How a router does inside conversations: later turns, switches of LLM, and what a switching cost trades.

For every scored record that follows a known previous turn (turn >= 2), the router's scores are read as a
route among the record's candidates: pairwise accuracy on those turns, how often the top pick switches away
from the previous turn's LLM, and the true utility of the pick where the simulator knows it. A sweep of
`switch_cost` (logits subtracted from every LLM but the previous one, as `Router.route` does) shows what each
amount of stickiness costs in accuracy and buys in fewer switches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from gmtrouter.api import switch_adjusted
from gmtrouter.data.conversation import previous_llms
from gmtrouter.data.schema import Interaction
from gmtrouter.data.sim_config import UTILITY_KEY
from gmtrouter.evaluation.metrics import rated_pairs

SWITCH_COSTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def later_turns(history: Sequence[Interaction], scored: Sequence[Interaction]) -> tuple[np.ndarray, list[str]]:
    """(indices into `scored` of the records after a known previous turn, that previous LLM for each)."""
    previous = previous_llms([*history, *scored])[len(history) :]
    keep = [i for i, (record, llm) in enumerate(zip(scored, previous, strict=True)) if record.turn > 1 and llm]
    return np.asarray(keep, dtype=np.int64), [previous[i] or "" for i in keep]


def _route_numbers(records: Sequence[Interaction], scores: Sequence[np.ndarray], previous: Sequence[str]):
    pairs = rated_pairs(records, scores)
    picks = [int(np.argmax(s)) for s in scores]
    switched = [r.llms[p] != before for r, p, before in zip(records, picks, previous, strict=True)]
    utilities = [r.meta.get(UTILITY_KEY) for r in records]
    known = all(isinstance(u, list) and len(u) == len(r.responses) for u, r in zip(utilities, records, strict=True))
    return {
        "accuracy": float(pairs.correct.mean()) if len(pairs.label) else None,
        "switch_rate": float(np.mean(switched)),
        "utility": float(np.mean([u[p] for u, p in zip(utilities, picks, strict=True)])) if known else None,
    }


def conversation_metrics(
    history: Sequence[Interaction], scored: Sequence[Interaction], scores: Sequence[np.ndarray]
) -> dict[str, Any] | None:
    """Accuracy, switch rate and utility on the later turns of `scored`, at every cost of `SWITCH_COSTS`, and
    the simulator oracle's; None when no scored record follows a known previous turn."""
    index, previous = later_turns(history, scored)
    if len(index) == 0:
        return None
    records = [scored[i] for i in index]
    raw = [np.asarray(scores[i], dtype=float) for i in index]
    sweep = []
    for cost in SWITCH_COSTS:
        adjusted = [
            switch_adjusted(s, r.llms, before, cost) for s, r, before in zip(raw, records, previous, strict=True)
        ]
        sweep.append({"switch_cost": cost, **_route_numbers(records, adjusted, previous)})
    utilities = [r.meta.get(UTILITY_KEY) for r in records]
    oracle = None
    if all(isinstance(u, list) for u in utilities):
        oracle = _route_numbers(records, [np.asarray(u, dtype=float) for u in utilities], previous)
    return {"records": len(records), **sweep[0], "sweep": sweep, "oracle": oracle}
