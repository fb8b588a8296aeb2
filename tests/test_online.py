"""Learning while routing, through the Python API: a router with no logs learns from thumbs on the one answer a
user sees, explores what it is unsure of, takes LLMs at run time, and shares what users teach without letting
one user's votes speak for another."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.utils.errors import GmtError

ENCODER = "hashing-64"  # the text is not what these contracts are about; the service tests use MiniLM


def thumb(user: str, index: int, query: str, llm: str, up: bool) -> dict:
    return {
        "user": user,
        "conversation": f"{user}/{index}",
        "turn": 1,
        "query": query,
        "responses": [{"llm": llm, "rating": float(up)}],
    }


def play(router: Router, p_up: dict[str, float], rounds: int, users: int, seed: int) -> list[str]:
    """Users ask, the router picks one LLM, the user thumbs it up with that LLM's chance; the LLMs routed to."""
    rng = np.random.default_rng(seed)
    chosen = []
    for i in range(rounds):
        user, query = f"user{rng.integers(users)}", f"question {rng.integers(10_000)}"
        decision = router.route(user, query)
        router.observe(thumb(user, i, query, decision.llm, rng.random() < p_up[decision.llm]))
        chosen.append(decision.llm)
    return chosen


def test_a_router_with_no_logs_finds_the_llm_users_like_from_their_thumbs() -> None:
    router = Router.cold(["small", "medium", "large"], encoder=ENCODER, seed=0)
    chosen = play(router, {"small": 0.3, "medium": 0.5, "large": 0.8}, rounds=300, users=15, seed=1)
    assert collections.Counter(chosen[:30])["large"] < 25  # it had to try the others first
    assert collections.Counter(chosen[-100:])["large"] >= 70, collections.Counter(chosen[-100:])
    assert router.route("brand-new", "anything", explore=False).llm == "large"


def test_exploration_is_off_when_asked_and_reproducible_under_a_seed() -> None:
    def router() -> Router:
        return Router.cold(["a", "b", "c"], encoder=ENCODER, seed=7)

    first, second = router(), router()
    draws = [first.route("u", f"q{i}").llm for i in range(30)]
    assert draws == [second.route("u", f"q{i}").llm for i in range(30)]
    assert len(set(draws)) > 1  # with nothing known, every LLM could be the best
    greedy = {first.route("u", "q", explore=False).llm for _ in range(10)}
    assert len(greedy) == 1
    decision = next(d for d in (first.route("u", f"x{i}") for i in range(50)) if d.explored)
    assert decision.llm != decision.ranking[0].llm and any(n.startswith("explored:") for n in decision.notes)
    assert {first.route("u", f"c{i}", candidates=["b", "c"]).llm for i in range(30)} <= {"b", "c"}
    with pytest.raises(GmtError, match="explore must be one of"):
        Router.cold(["a"], encoder=ENCODER, explore="sometimes")


def test_tempered_personal_draws_explore_less() -> None:
    rng = np.random.default_rng(5)
    p_up = {"a": 0.7, "b": 0.5, "c": 0.4}
    seen = [(f"user{rng.integers(8)}", llm, rng.random() < p_up[llm]) for llm in rng.choice(list(p_up), 90)]

    def explored(scale: float) -> int:
        router = Router.cold(list(p_up), encoder=ENCODER, seed=11, thompson_scale=scale)
        for i, (user, llm, up) in enumerate(seen):  # the same thumbs for every scale
            router.observe(thumb(user, i, f"question {i}", llm, up))
        return sum(router.route(f"user{i % 8}", f"new question {i}").explored for i in range(200))

    wide, tempered, flat = explored(1.0), explored(0.25), explored(0.0)
    assert flat <= tempered < wide, (wide, tempered, flat)
    with pytest.raises(GmtError, match="thompson_scale must be 0 or more"):
        Router.cold(["a"], encoder=ENCODER, thompson_scale=-1.0)


def test_an_llm_added_at_run_time_is_tried_and_kept_when_users_like_it() -> None:
    router = Router.cold(["old-a", "old-b"], encoder=ENCODER, seed=3)
    play(router, {"old-a": 0.5, "old-b": 0.4}, rounds=150, users=10, seed=2)
    router.add_llm("newcomer", "a new model that answers well")
    assert "newcomer" in router.active_llms
    chosen = play(router, {"old-a": 0.5, "old-b": 0.4, "newcomer": 0.85}, rounds=250, users=10, seed=4)
    assert collections.Counter(chosen[:50])["newcomer"] >= 5  # unsure of it, the router tries it
    assert collections.Counter(chosen[-80:])["newcomer"] >= 50
    router.retire_llm("newcomer")
    assert "newcomer" not in router.active_llms and "newcomer" in router.llms
    assert all(router.route("u1", f"q{i}").llm != "newcomer" for i in range(20))
    assert router.route("u1", "q", candidates=["newcomer"]).llm == "newcomer"  # retired, not forgotten
    with pytest.raises(GmtError, match="already one this router routes among"):
        router.add_llm("old-a")


def test_thumbs_from_many_users_raise_an_llm_for_a_user_who_gave_none() -> None:
    router = Router.cold(["a", "b", "c"], encoder=ENCODER, explore="off", seed=0)
    before = router.context.score("silent", "a question", router.llms)
    for u in range(30):
        for k in range(3):
            router.observe(thumb(f"fan{u}", k, f"question {u}-{k}", "c", True))
            router.observe(thumb(f"fan{u}", k + 10, f"other {u}-{k}", "a", False))
    after = router.context.score("silent", "a question", router.llms)
    assert after[2] - before[2] > 0.3 and after[0] < before[0], (before, after)
    assert router.route("silent", "a question").llm == "c"


def test_one_users_votes_move_their_own_ranking_far_more_than_anyone_elses() -> None:
    router = Router.cold(["a", "b", "c"], encoder=ENCODER, explore="off", seed=0)
    play(router, {"a": 0.6, "b": 0.5, "c": 0.4}, rounds=300, users=30, seed=5)
    query = "write a haiku about rain"
    llms = router.llms
    voter, other = "user3", "user4"
    before = {u: router.context.score(u, query, llms) for u in (voter, other)}
    router.observe(
        {
            "user": voter,
            "conversation": "vote",
            "turn": 1,
            "query": query,
            "responses": [{"llm": "a", "rating": 0.0}, {"llm": "c", "rating": 1.0}],
        }
    )
    after = {u: router.context.score(u, query, llms) for u in (voter, other)}
    moved = {u: (after[u][2] - after[u][0]) - (before[u][2] - before[u][0]) for u in (voter, other)}
    assert moved[voter] > 0 and moved[other] >= 0  # a vote for c over a never lowers c against a for anyone
    assert moved[other] < 0.5 * moved[voter], moved
