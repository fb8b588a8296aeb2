"""The console's store queries and the numbers it derives, over a real SQLite store."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from gmtrouter.api import switch_adjusted
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.routing.costs import cost_adjusted
from gmtrouter.serve.auth import Principal
from gmtrouter.serve.store import RouteRow, Store
from gmtrouter.serve.ui import arm_stats, insights, queries
from gmtrouter.serve.ui.tally import Tally

ADMIN = Principal("admin", admin=True)
COSTS = {"gpt-4": 0.03, "claude-v1": 0.01, "vicuna": 0.001}


def ranking(scores: dict[str, float], weight: float) -> list[dict]:
    llms = list(scores)
    adjusted = cost_adjusted(np.array([scores[m] for m in llms]), [COSTS[m] for m in llms], weight)
    rows = [
        {"llm": m, "score": scores[m], "expected_cost": COSTS[m], "adjusted": float(a)}
        for m, a in zip(llms, adjusted, strict=True)
    ]
    return sorted(rows, key=lambda r: -r["adjusted"])


def route(route_id: str, user: str, choice: str, created: float, weight: float = 0.0) -> RouteRow:
    ranks = ranking({"gpt-4": 1.0, "claude-v1": 0.5, "vicuna": -0.5}, weight)
    return RouteRow(route_id, user, f"query {route_id}", [r["llm"] for r in ranks], choice, ranks, created)


def record(user: str, route_id: str, ratings: dict[str, float]) -> Interaction:
    responses = [Response(llm=m, rating=v) for m, v in ratings.items()]
    return Interaction(
        user=user, conversation=f"route/{route_id}", turn=1, query=f"query {route_id}", responses=responses
    )


@pytest.fixture()
def store(tmp_path: Path) -> Store:
    opened = Store(f"sqlite:///{tmp_path / 'console.db'}")
    now = time.time()
    opened.add_routes(
        [
            route("r1", "alice", "gpt-4", now - 30),
            route("r2", "alice", "claude-v1", now - 20),
            route("r3", "bob", "gpt-4", now - 10),
            route("r4", "acme/eve", "vicuna", now - 5),
            route("r5", "acme_x", "gpt-4", now - 1),
        ]
    )
    opened.add_feedback("route:r1", "alice", "pairwise", record("alice", "r1", {"gpt-4": 1, "claude-v1": 0}), "r1")
    opened.add_feedback("route:r2", "alice", "thumbs", record("alice", "r2", {"claude-v1": 0}), "r2")
    opened.add_feedback("route:r3", "bob", "rating", record("bob", "r3", {"gpt-4": 0.5}), "r3")
    opened.add_feedback("record:x", "acme/eve", "record", record("acme/eve", "x", {"gpt-4": 1, "vicuna": 0}))
    yield opened
    opened.close()


def users_of(store: Store, who: Principal) -> set[str]:
    return {r.user for r in queries.recent_routes(store, who)}


def test_scope_admin_user_and_tenant(store: Store) -> None:
    assert users_of(store, ADMIN) == {"alice", "bob", "acme/eve", "acme_x"}
    assert users_of(store, Principal("k", False, ("alice",))) == {"alice"}
    assert users_of(store, Principal("k", False, ("acme/*",))) == {"acme/eve"}
    # '_' and '%' in a tenant prefix are literal, not SQL wildcards
    assert users_of(store, Principal("k", False, ("acme_*",))) == {"acme_x"}
    assert users_of(store, Principal("k", False, ("a%*",))) == set()
    assert users_of(store, Principal("k", False, ("bob", "acme/*"))) == {"bob", "acme/eve"}


def test_recent_routes_and_feedback(store: Store) -> None:
    assert [r.id for r in queries.recent_routes(store, ADMIN, limit=3)] == ["r5", "r4", "r3"]
    assert [r.id for r in queries.recent_routes(store, ADMIN, user="alice")] == ["r2", "r1"]
    assert [r.id for r in queries.recent_routes(store, Principal("k", False, ("bob",)))] == ["r3"]
    assert queries.recent_routes(store, ADMIN)[0].ranking[0]["llm"] == "gpt-4"
    after = queries.feedback_on(store, ["r1", "r4"])
    assert list(after) == ["r1"] and after["r1"][0].kind == "pairwise"
    assert after["r1"][0].record["responses"][0] == {"llm": "gpt-4", "rating": 1.0}
    assert queries.route_view(store, "nope") is None
    assert len(queries.user_feedback_times(store, "alice")) == 2
    assert [f.kind for f in queries.user_feedback(store, "alice")] == ["thumbs", "pairwise"]  # newest first
    assert queries.table_counts(store) == (5, 4)


def totals(tally: Tally, who: Principal = ADMIN, favourite: str | None = "gpt-4") -> object:
    return tally.totals(who.may_act_as, favourite, COSTS)


def test_totals_spend_agreement_and_scope(store: Store) -> None:
    tally = Tally()
    tally.refresh(store, (0.0, 1.0))
    every = totals(tally)
    assert every.routes == 5 and every.feedback == 4
    assert len(every.route_times) == 5 and len(every.feedback_times) == 4  # the activity chart's input
    assert every.choices == {"gpt-4": 3, "claude-v1": 1, "vicuna": 1}
    assert every.spend.priced == 5
    assert every.spend.routed == pytest.approx(3 * 0.03 + 0.01 + 0.001)
    assert every.spend.favourite == pytest.approx(5 * 0.03)
    assert every.spend.cheapest == pytest.approx(5 * 0.001)
    # r1: gpt-4 chosen and won -> agrees; r2: thumbs down on the choice -> disagrees; r3: a rating at the middle
    # of the scale says nothing; the record feedback has no route
    assert (every.agreement.agreed, every.agreement.judged) == (1, 2)
    bob = totals(tally, Principal("k", False, ("bob",)))
    assert (bob.routes, bob.feedback, bob.choices) == (1, 1, {"gpt-4": 1})
    tenant = totals(tally, Principal("k", False, ("acme/*",)))
    assert (tenant.routes, tenant.feedback, tenant.agreement.judged) == (1, 1, 0)
    assert totals(tally, favourite=None).spend.favourite is None
    rows = tally.per_user(Principal("k", False, ("alice", "acme/*")).may_act_as)
    assert set(rows) == {"alice", "acme/eve"} and (rows["alice"]["routes"], rows["alice"]["feedback"]) == (2, 2)
    assert (
        insights.agreed("gpt-4", {"responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "x", "rating": 1}]}, (0, 1))
        is None
    )


def test_totals_follow_new_rows_late_rows_and_forgets(store: Store) -> None:
    tally = Tally()
    tally.refresh(store, (0.0, 1.0))
    now = time.time()
    store.add_routes([route("r6", "bob", "vicuna", now), route("late", "bob", "claude-v1", now - 60)])
    store.add_feedback("route:r6", "bob", "thumbs", record("bob", "r6", {"vicuna": 1}), "r6")
    tally.refresh(store, (0.0, 1.0))
    tally.refresh(store, (0.0, 1.0))  # nothing new: nothing counted twice
    fresh = Tally()
    fresh.refresh(store, (0.0, 1.0))
    assert vars(totals(tally)) == vars(totals(fresh))
    assert totals(tally).routes == 7 and totals(tally).agreement.agreed == 2
    store.forget("alice")
    tally.refresh(store, (0.0, 1.0))
    after = totals(tally)
    assert (after.routes, after.feedback) == (5, 3) and "alice" not in tally.users


@pytest.mark.parametrize("weight", [0.0, 0.25, 1.0, 3.5])
def test_cost_weight_is_recovered_from_a_stored_ranking(weight: float) -> None:
    ranks = ranking({"gpt-4": 0.3, "claude-v1": 1.2, "vicuna": -2.0}, weight)
    assert insights.cost_weight_of(ranks) == pytest.approx(weight, abs=1e-6)
    equal = [
        {"llm": "a", "score": 1, "adjusted": 1, "expected_cost": 0.01},
        {"llm": "b", "score": 0, "adjusted": 0, "expected_cost": 0.01},
    ]
    assert insights.cost_weight_of(equal) is None


@pytest.mark.parametrize("previous", ["gpt-4", "claude-v1", "vicuna"])
def test_cost_weight_is_recovered_from_a_ranking_made_with_a_switch_cost(previous: str) -> None:
    llms = ["gpt-4", "claude-v1", "vicuna"]
    adjusted = switch_adjusted(
        cost_adjusted(np.array([0.3, 1.2, -2.0]), [COSTS[m] for m in llms], 0.75), llms, previous, 2.0
    )
    ranks = [
        {"llm": m, "score": s, "expected_cost": COSTS[m], "adjusted": float(a)}
        for m, s, a in zip(llms, [0.3, 1.2, -2.0], adjusted, strict=True)
    ]
    assert insights.cost_weight_of(ranks, previous, 2.0) == pytest.approx(0.75, abs=1e-6)


def test_arm_intervals_narrow_with_feedback_and_hold_the_difference() -> None:
    few, many = arm_stats.rate(3, 4), arm_stats.rate(300, 400)
    assert few.value == many.value == 0.75
    assert many.high - many.low < few.high - few.low and few.low <= 0.75 <= few.high
    low, high = insights.wilson(5, 10)
    assert low < 0.5 < high and math.isclose(low + high, 1.0)
    lead = arm_stats.rate_difference(arm_stats.rate(80, 100), arm_stats.rate(50, 100))
    assert lead.value == pytest.approx(0.3) and 0 < lead.low < 0.3 < lead.high
    even = arm_stats.rate_difference(arm_stats.rate(5, 10), arm_stats.rate(5, 10))
    assert even.low < 0 < even.high and even.value == 0

    router, control = arm_stats.ArmCounts(), arm_stats.ArmCounts()
    for value in (0.9, 0.8, 1.0, 0.7):
        router.rating(value)
    for value in (0.2, 0.4, 0.3):
        control.rating(value)
    assert arm_stats.mean(router).value == pytest.approx(0.85)
    rated = arm_stats.mean_difference(router, control)
    assert rated.value == pytest.approx(0.55) and 0 < rated.low < rated.high
    one = arm_stats.ArmCounts()
    one.rating(0.5)
    assert arm_stats.mean(one).low is None and arm_stats.mean_difference(one, router).value is None
    shown = arm_stats.compare({"router": router})
    assert shown["arms"]["control"]["thumbs_up"]["value"] is None and shown["lead"]["rating"]["value"] is None


def test_activity_bins_follow_the_span_of_the_data() -> None:
    now = 1_700_000_000.0
    recent = insights.activity({"routes": [now - 10, now - 20, now - 400], "feedback": [now - 5]}, now)
    assert recent.bucket == 60 and len(recent.starts) == 8  # 7 minutes of data: minutes, from the first on
    assert recent.routes[0] == 1 and recent.routes[-1] == 2 and sum(recent.feedback) == 1
    burst = insights.activity({"routes": [now - 40, now - 25, now - 3], "feedback": []}, now)
    assert burst.bucket == 10 and sum(1 for n in burst.routes if n) == 3  # a fresh service: not one bar
    seconds = insights.activity({"routes": [now - 8, now - 4, now - 1], "feedback": [now - 6]}, now)
    assert seconds.bucket == 1 and sum(1 for n in seconds.routes if n) == 3 and len(seconds.starts) == 9
    hours = insights.activity({"routes": [now - 10 * insights.HOUR, now], "feedback": []}, now)
    assert hours.bucket == insights.HOUR and len(hours.starts) == 11 and hours.routes[0] == hours.routes[-1] == 1
    older = insights.activity({"routes": [now - 5 * insights.DAY, now], "feedback": []}, now)
    assert older.bucket == 6 * insights.HOUR and sum(older.routes) == 2 and older.routes[0] == 1
    weeks = insights.activity({"routes": [now - 12 * insights.DAY, now], "feedback": []}, now)
    assert weeks.bucket == insights.DAY and len(weeks.starts) == 13
    assert sum(insights.activity({"routes": [now - 40 * insights.DAY], "feedback": []}, now).routes) == 0
    assert all(len(chart.starts) <= insights.MAX_BINS for chart in (recent, burst, hours, older, weeks))
