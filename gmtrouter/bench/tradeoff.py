"""Preference against cost: what a router delivers as its cost weight grows, next to always asking one LLM.

Each held-out record is one request whose candidates are the LLMs it showed. The router ranks them as
`Router.route` does (its score minus cost_weight * ln(expected cost / cheapest candidate's), expected cost =
the LLM's mean cost in the training records) and the top one is chosen. What the choice is worth is read from
the record itself, so nothing is guessed:

- win rate: the share of the other shown responses that the chosen one was rated above (a tie counts half);
  choosing at random gives 0.5, always choosing the user's favourite gives 1;
- cost: the chosen response's own cost (USD) where the record has it, else the LLM's expected cost;
- utility (synthetic users only): the simulator's true utility of the chosen response for that user.

A single LLM is the policy "always ask this LLM", measured on the held-out records that showed it (candidates
are drawn uniformly, so it meets a random rival as the router's choice does).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from gmtrouter.data.schema import Interaction
from gmtrouter.routing.costs import cost_adjusted

COST_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def win_share(record: Interaction, index: int) -> float:
    """Share of the record's other responses that response `index` was rated above, ties counting half."""
    ratings = np.asarray(record.ratings, dtype=float)
    others = np.delete(ratings, index)
    if len(others) == 0:
        return float("nan")
    return float(((ratings[index] > others) + 0.5 * (ratings[index] == others)).mean())


def response_cost(record: Interaction, index: int, expected: Mapping[str, float]) -> float:
    """The response's own cost, else its LLM's expected cost, else NaN."""
    response = record.responses[index]
    if response.cost is not None:
        return float(response.cost)
    return float(expected.get(response.llm, float("nan")))


def utility(record: Interaction, index: int) -> float:
    """The simulator's true utility of response `index`, NaN for real feedback."""
    values = record.meta.get("utility")
    return float(values[index]) if isinstance(values, list) and len(values) > index else float("nan")


def _mean(values: Sequence[float]) -> float | None:
    clean = [v for v in values if v == v]
    return float(np.mean(clean)) if clean else None


def tradeoff_curve(
    records: Sequence[Interaction],
    scores: Sequence[np.ndarray],
    expected: Mapping[str, float],
    weights: Sequence[float] = COST_WEIGHTS,
) -> list[dict[str, Any]]:
    """For each cost weight: mean win rate, cost and utility of the chosen responses, and each LLM's share."""
    rows = []  # per record: scores, expected costs, and what each response would be worth if chosen
    for record, score in zip(records, scores, strict=True):
        if len(record.responses) < 2:
            continue
        worth = [
            (win_share(record, i), response_cost(record, i, expected), utility(record, i))
            for i in range(len(record.responses))
        ]
        rows.append((np.asarray(score, dtype=float), [expected.get(m) for m in record.llms], worth, record.llms))
    points = []
    for weight in weights:
        worth_of_picks, chosen = [], Counter()
        for score, candidate_costs, worth, llms in rows:
            pick = int(np.argmax(cost_adjusted(score, candidate_costs, weight)))
            worth_of_picks.append(worth[pick])
            chosen[llms[pick]] += 1
        total = sum(chosen.values())
        points.append(
            {
                "cost_weight": weight,
                "win_rate": _mean([w[0] for w in worth_of_picks]),
                "cost": _mean([w[1] for w in worth_of_picks]),
                "utility": _mean([w[2] for w in worth_of_picks]),
                "share": {llm: n / total for llm, n in sorted(chosen.items())} if total else {},
            }
        )
    return points


def single_llm_points(records: Sequence[Interaction], expected: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """Win rate, cost and utility of always asking each LLM, over the records that showed it."""
    by_llm: dict[str, list[tuple[float, float, float]]] = {}
    for record in records:
        if len(record.responses) < 2:
            continue
        for index, response in enumerate(record.responses):
            values = (win_share(record, index), response_cost(record, index, expected), utility(record, index))
            by_llm.setdefault(response.llm, []).append(values)
    return {
        llm: {
            "win_rate": _mean([v[0] for v in values]),
            "cost": _mean([v[1] for v in values]),
            "utility": _mean([v[2] for v in values]),
            "n": len(values),
        }
        for llm, values in sorted(by_llm.items())
    }
