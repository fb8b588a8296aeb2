"""What the console computes from stored rows and the live router: activity, spend, agreement, win rates.

Pure functions over plain data, so that each number on a page has one definition (docs/service.md, Console).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gmtrouter.data.schema import Interaction

HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class Activity:
    """Routes and feedback per time bucket, oldest first."""

    starts: list[float]
    bucket: float
    routes: list[int]
    feedback: list[int]


BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, HOUR, 6 * HOUR, DAY)  # bin widths a time chart may use, in seconds
MIN_BINS, MAX_BINS = 6, 24


def activity(times: dict[str, list[float]], now: float, days: float = 14.0) -> Activity:
    """Bins sized to what is there: the chart spans the earliest time (of the last `days`) to now, in the
    narrowest bins that cover that span in at most 24 (and at least 6) bins, so the data fills the chart's width
    instead of crowding into its last bar."""
    earliest = min((t for ts in times.values() for t in ts if t >= now - days * DAY), default=now)
    span = max(now - earliest, 0.0)
    bucket = next((b for b in BUCKETS if span <= b * (MAX_BINS - 1)), DAY)
    count = max(MIN_BINS, math.ceil(span / bucket) + 1)
    count = min(count, int(days)) if bucket == DAY else min(count, MAX_BINS)
    end = (math.floor(now / bucket) + 1) * bucket
    edges = end - bucket * np.arange(count, -1, -1)
    counts = {name: np.histogram(np.asarray(ts, dtype=float), bins=edges)[0].tolist() for name, ts in times.items()}
    return Activity(edges[:-1].tolist(), bucket, counts.get("routes", []), counts.get("feedback", []))


def win_counts(records: Iterable[Interaction]) -> dict[str, tuple[int, int]]:
    """Per LLM: (comparisons it won, comparisons it was in) over records with more than one response.

    A response wins its record when it has the record's top rating (ties at the top all win), as in
    `Router.profile`.
    """
    wins: dict[str, list[int]] = {}
    for record in records:
        if len(record.responses) < 2:
            continue
        top = max(record.ratings)
        for response in record.responses:
            entry = wins.setdefault(response.llm, [0, 0])
            entry[0] += int(response.rating == top)
            entry[1] += 1
    return {llm: (w, n) for llm, (w, n) in wins.items()}


def wilson(wins: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a win rate: honest for small n (a user's first few comparisons)."""
    if n == 0:
        return 0.0, 1.0
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


class PopulationCache:
    """Win counts over the live router's whole history, recomputed only when the router or its history changes."""

    def __init__(self) -> None:
        self._key: tuple[int, int] | None = None
        self._value: dict[str, tuple[int, int]] = {}
        self._users: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, history: Sequence[Interaction]) -> tuple[dict[str, tuple[int, int]], dict[str, int]]:
        """(win counts per LLM, history records per user)."""
        key = (id(history), len(history))
        with self._lock:
            if key != self._key:
                users: dict[str, int] = {}
                for record in history:
                    users[record.user] = users.get(record.user, 0) + 1
                self._value, self._users, self._key = win_counts(history), users, key
            return self._value, self._users


def favourite(population: dict[str, tuple[int, int]]) -> str | None:
    """The single LLM users prefer most: the highest win rate over every comparison in the history."""
    rated = {llm: w / n for llm, (w, n) in population.items() if n}
    return max(rated, key=lambda m: (rated[m], m)) if rated else None


@dataclass(frozen=True)
class Spend:
    """Expected spend of the stored routes whose candidates all have a known cost (`priced` of `routes`): the
    routed choices, always `favourite_llm`, and always the cheapest candidate (USD; None where unknown)."""

    routes: int
    priced: int
    routed: float
    favourite_llm: str | None
    favourite: float | None
    cheapest: float


@dataclass(frozen=True)
class Agreement:
    """How often the routed LLM was the one the user then preferred, over feedback that says."""

    agreed: int
    judged: int

    @property
    def rate(self) -> float | None:
        return self.agreed / self.judged if self.judged else None


def agreed(choice: str, record: dict[str, Any], scale: tuple[float, float]) -> bool | None:
    """Whether feedback confirms the routed choice: the choice alone has the top rating of a comparison, or a
    single rating of it is above the middle of the scale; None when the feedback does not say (a tie)."""
    ratings = {r["llm"]: float(r["rating"]) for r in record.get("responses", [])}
    if choice not in ratings:
        return None
    if len(ratings) == 1:
        middle = (scale[0] + scale[1]) / 2
        return None if ratings[choice] == middle else ratings[choice] > middle
    top = max(ratings.values())
    winners = [m for m, v in ratings.items() if v == top]
    if len(winners) == len(ratings):
        return None
    return winners == [choice]


def cost_weight_of(
    ranking: Sequence[dict[str, Any]], previous_llm: str | None = None, switch_cost: float = 0.0
) -> float | None:
    """The cost weight a stored ranking was made with, recovered from `adjusted = score - w ln(cost / cheapest)`
    (less `switch_cost` for every LLM but `previous_llm`, when the route knew one); None when costs are equal or
    unknown (then the weight changed nothing)."""
    known = [r for r in ranking if r.get("expected_cost")]
    if not known:
        return None
    floor = min(r["expected_cost"] for r in known)
    for r in known:
        gap = math.log(r["expected_cost"] / floor)
        if gap > 1e-9:
            switched = switch_cost if previous_llm is not None and r["llm"] != previous_llm else 0.0
            return max(0.0, round((r["score"] - r["adjusted"] - switched) / gap, 6))
    return None


def history_curve(base: int, times: Sequence[float]) -> list[tuple[float, int]]:
    """(time, history size) after each stored feedback, starting from the `base` records that came with the
    model."""
    return [(t, base + i + 1) for i, t in enumerate(sorted(times))]
