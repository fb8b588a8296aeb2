"""Running totals per user behind the Overview: routes per LLM, spend, feedback, agreement and activity.

Parsing every stored ranking and feedback record on each page load costs about a second at ten thousand rows, so
each stored row is parsed once per process: a refresh reads only rows created since the last one (with a
few seconds of lookback for rows committed late; ids seen in it are skipped) and
adds them to per-user totals. If the table counts then disagree with the totals (a user was forgotten, rows were
deleted), everything is rebuilt from the store. A page sums the totals of the users its key may see.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from gmtrouter.serve.store import Store
from gmtrouter.serve.ui import insights, queries
from gmtrouter.serve.ui.arm_stats import ArmCounts

LOOKBACK_S = 5.0  # rows committed up to this late are still read; later ones make the counts disagree (a rebuild)


@dataclass
class UserTotals:
    """What one user's stored routes and feedback add up to."""

    routes: int = 0
    choices: Counter[str] = field(default_factory=Counter)
    priced: int = 0  # routes whose candidates all have a known expected cost
    routed_cost: float = 0.0
    cheapest_cost: float = 0.0
    feedback: int = 0
    agreed: int = 0
    judged: int = 0
    route_times: list[float] = field(default_factory=list)  # when each route was stored: the activity chart
    feedback_times: list[float] = field(default_factory=list)
    arms: dict[str, ArmCounts] = field(default_factory=dict)  # routes and feedback on their answers, per arm


@dataclass
class Totals:
    """The sum over the users a key may see."""

    routes: int
    choices: dict[str, int]
    spend: insights.Spend
    feedback: int
    agreement: insights.Agreement
    route_times: list[float]
    feedback_times: list[float]
    arms: dict[str, ArmCounts]


class Tally:
    """Per-user totals kept up to date incrementally from the store (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, scale: tuple[float, float] | None) -> None:
        self.users: dict[str, UserTotals] = {}
        self.scale = scale
        self._route_mark = self._feedback_mark = 0.0
        self._recent_routes: dict[str, float] = {}
        self._recent_feedback: dict[int, float] = {}
        self._routes = self._feedback = 0

    def refresh(self, store: Store, scale: tuple[float, float]) -> None:
        """Add the rows stored since the last refresh; rebuild when the store no longer matches the totals."""
        with self._lock:
            if scale != self.scale:
                self._reset(scale)
            self._read(store)
            if queries.table_counts(store) != (self._routes, self._feedback):
                self._reset(scale)
                self._read(store)

    def _read(self, store: Store) -> None:
        since = max(0.0, self._route_mark - LOOKBACK_S) if self._routes else None
        for route_id, user, choice, ranking, created, arm in queries.routes_since(store, since):
            if route_id in self._recent_routes:
                continue
            self._recent_routes[route_id] = created
            self._route_mark = max(self._route_mark, created)
            totals = self.users.setdefault(user, UserTotals())
            totals.route_times.append(created)
            self._add_route(totals, choice, json.loads(ranking))
            if arm is not None:
                totals.arms.setdefault(arm, ArmCounts()).routes += 1
        since = max(0.0, self._feedback_mark - LOOKBACK_S) if self._feedback else None
        for row_id, user, created, record, choice, kind, arm in queries.feedback_since(store, since):
            if row_id in self._recent_feedback:
                continue
            self._recent_feedback[row_id] = created
            self._feedback_mark = max(self._feedback_mark, created)
            totals = self.users.setdefault(user, UserTotals())
            totals.feedback += 1
            totals.feedback_times.append(created)
            self._feedback += 1
            if choice is not None and record is not None:
                parsed = json.loads(record)
                verdict = insights.agreed(choice, parsed, self.scale or (0.0, 1.0))
                if verdict is not None:
                    totals.judged += 1
                    totals.agreed += int(verdict)
                if arm is not None:
                    self._add_arm_feedback(totals.arms.setdefault(arm, ArmCounts()), choice, kind, parsed)
        _prune(self._recent_routes, self._route_mark - LOOKBACK_S)
        _prune(self._recent_feedback, self._feedback_mark - LOOKBACK_S)

    def _add_route(self, totals: UserTotals, choice: str, ranking: list[dict]) -> None:
        self._routes += 1
        totals.routes += 1
        totals.choices[choice] += 1
        prices = {r["llm"]: r.get("expected_cost") for r in ranking}
        if prices and all(p is not None for p in prices.values()):
            totals.priced += 1
            totals.routed_cost += prices.get(choice) or 0.0
            totals.cheapest_cost += min(prices.values())

    def _add_arm_feedback(self, counts: ArmCounts, choice: str, kind: str, record: dict) -> None:
        """A thumb or a rating of the answer the route chose (anything else says nothing of the arm)."""
        responses = record.get("responses", [])
        if len(responses) != 1 or responses[0].get("llm") != choice:
            return
        rating = float(responses[0]["rating"])
        if kind == "thumbs":
            low, high = self.scale or (0.0, 1.0)
            up = rating > (low + high) / 2
            counts.up += int(up)
            counts.down += int(not up)
        elif kind == "rating":
            counts.rating(rating)

    def totals(self, visible: Callable[[str], bool], favourite: str | None, costs: dict[str, float]) -> Totals:
        """Sum over the users for whom `visible(user)` holds; spend of always `favourite` at its expected cost."""
        with self._lock:
            chosen = [t for user, t in self.users.items() if visible(user)]
            choices: Counter[str] = Counter()
            for t in chosen:
                choices.update(t.choices)
            priced = sum(t.priced for t in chosen)
            fav_cost = costs.get(favourite) if favourite else None
            spend = insights.Spend(
                routes=sum(t.routes for t in chosen),
                priced=priced,
                routed=sum(t.routed_cost for t in chosen),
                favourite_llm=favourite,
                favourite=priced * fav_cost if fav_cost is not None else None,
                cheapest=sum(t.cheapest_cost for t in chosen),
            )
            agreement = insights.Agreement(sum(t.agreed for t in chosen), sum(t.judged for t in chosen))
            feedback = sum(t.feedback for t in chosen)
            route_times = [x for t in chosen for x in t.route_times]
            feedback_times = [x for t in chosen for x in t.feedback_times]
            arms: dict[str, ArmCounts] = {}
            for t in chosen:
                for arm, counts in t.arms.items():
                    arms.setdefault(arm, ArmCounts()).add(counts)
            return Totals(spend.routes, dict(choices), spend, feedback, agreement, route_times, feedback_times, arms)

    def per_user(self, visible: Callable[[str], bool]) -> dict[str, dict[str, float]]:
        """Stored routes, stored feedback and the last time either was stored, of each visible user."""
        with self._lock:
            return {
                user: {
                    "routes": t.routes,
                    "feedback": t.feedback,
                    "last": max(t.route_times[-1:] + t.feedback_times[-1:], default=0.0),
                }
                for user, t in self.users.items()
                if visible(user) and (t.routes or t.feedback)
            }

    @property
    def last_write(self) -> float | None:
        """When the newest route or feedback counted so far was stored."""
        newest = max(self._route_mark, self._feedback_mark)
        return newest or None


def _prune(recent: dict, before: float) -> None:
    for key in [k for k, created in recent.items() if created < before]:
        del recent[key]
