"""The responsiveness contract of the default router (MiniLM + GMTRouter, trained on MT-Bench human votes).

Feedback moves a user's next route the way a person expects, at once and without retraining: a thumbs up
raises that LLM for that user and a thumbs down lowers it; repeated "B beats A" votes raise P(B > A) step by
step and past the population's preference within ten votes; opposite histories give opposite rankings; and
one user's feedback leaves other users' rankings where they were.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.data.loaders import prepare
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.model.gmtrouter import GMTRouter

pytestmark = pytest.mark.slow
QUERY = "Write a short poem about the sea."


@pytest.fixture(scope="module")
def mt_bench(data_dir) -> list[Interaction]:
    return prepare("mt-bench", data_dir / "mt_bench")


@pytest.fixture(scope="module")
def router(mt_bench) -> Router:
    """The default deployment: the bundled MiniLM encoder and GMTRouter's default settings."""
    model = GMTRouter(progress=False, steps=120, seed=0).fit(mt_bench)
    return Router(model, mt_bench)


def vote(user: str, index: int, ratings: dict[str, float]) -> Interaction:
    return Interaction(
        user=user,
        conversation=f"{user}/{index}",
        turn=1,
        query=f"{QUERY} ({index})",
        responses=[Response(llm=llm, rating=rating) for llm, rating in ratings.items()],
    )


def scores(router: Router, user: str) -> dict[str, float]:
    llms = router.model.llms_
    return dict(zip(llms, router.context.score(user, QUERY, llms).tolist(), strict=True))


def p_beats(router: Router, user: str, winner: str, loser: str) -> float:
    s = scores(router, user)
    return float(1.0 / (1.0 + np.exp(s[loser] - s[winner])))


def test_thumbs_up_raises_and_thumbs_down_lowers_that_llm_for_that_user(router) -> None:
    """Every thumb moves the LLM the right way; five that contradict the population (a thumbs up on an LLM it
    ranks below average, down on one above) move it visibly. A thumbs down on an LLM everybody dislikes is
    little news, and a few votes are weak evidence: the user prior holds them near the population."""
    low, high = router.model.rating_range_
    population = scores(router, "nobody")
    average = np.mean(list(population.values()))
    for llm in router.model.llms_:
        for thumbs, rating, direction in (("up", high, 1), ("down", low, -1)):
            user = f"thumbs-{thumbs}-{llm}"
            curve = [scores(router, user)[llm]]
            for k in range(5):
                router.observe_many([vote(user, k, {llm: rating})])
                curve.append(scores(router, user)[llm])
            moves = direction * np.diff(curve)
            assert (moves > 0).all(), f"thumbs {thumbs} on {llm}: {np.round(curve, 3)}"
            if direction * (population[llm] - average) < 0:
                assert direction * (curve[-1] - curve[0]) > 0.2, f"thumbs {thumbs} on {llm}: {np.round(curve, 3)}"
            router.forget(user)


def test_a_thumb_on_one_llm_does_not_undo_the_thumbs_on_another(router) -> None:
    """Four thumbs down on the population's favourite lower it for the user; a thumbs down on the runner-up
    afterwards (the LLM the user is now routed to, say) must not give the favourite its place back."""
    low, _ = router.model.rating_range_
    population = scores(router, "nobody")
    top, second = sorted(population, key=population.get, reverse=True)[:2]
    user = "harsh"
    for k in range(4):
        router.observe_many([vote(user, k, {top: low})])
    lowered = scores(router, user)[top]
    router.observe_many([vote(user, 4, {second: low})])
    after = scores(router, user)[top]
    assert lowered < population[top] - 0.2, (population[top], lowered)
    assert after < lowered + 0.1, (
        f"{top}: {population[top]:.3f} -> {lowered:.3f} -> {after:.3f} after a thumb on {second}"
    )
    router.forget(user)


def population_pair(router: Router) -> tuple[str, str]:
    """(A, B): the pair whose population preference P(A > B) is closest to 75%."""
    s = scores(router, "nobody")
    pairs = [(a, b) for a, b in itertools.permutations(s, 2) if s[a] > s[b]]
    return min(pairs, key=lambda ab: abs(1 / (1 + np.exp(s[ab[1]] - s[ab[0]])) - 0.75))


def test_repeated_votes_raise_p_monotonically_and_overturn_the_population_within_ten(router) -> None:
    a, b = population_pair(router)
    user = "contrarian"
    history = [p_beats(router, user, b, a)]
    assert history[0] < 0.45, f"population P({b} > {a}) = {history[0]:.2f}; expected the population to prefer {a}"
    for k in range(10):
        router.observe_many([vote(user, k, {a: 0.0, b: 1.0})])
        history.append(p_beats(router, user, b, a))
    assert all(later > earlier for earlier, later in itertools.pairwise(history)), history
    assert history[-1] > 0.5, f"after 10 votes P({b} > {a}) = {history[-1]:.2f}: {history}"
    router.forget(user)


def test_opposite_histories_give_opposite_rankings(router) -> None:
    a, b = population_pair(router)
    for k in range(8):
        router.observe_many([vote("likes-a", k, {a: 1.0, b: 0.0}), vote("likes-b", k, {a: 0.0, b: 1.0})])
    assert scores(router, "likes-a")[a] > scores(router, "likes-a")[b]
    assert scores(router, "likes-b")[b] > scores(router, "likes-b")[a]
    router.forget("likes-a")
    router.forget("likes-b")


def test_one_users_feedback_barely_moves_another_users_ranking(router, mt_bench) -> None:
    bystander = mt_bench[0].user
    before = scores(router, bystander)
    a, b = population_pair(router)
    for k in range(10):
        router.observe_many([vote("loud", k, {a: 0.0, b: 1.0})])
    after = scores(router, bystander)
    assert sorted(before, key=before.get) == sorted(after, key=after.get)
    assert max(abs(after[m] - before[m]) for m in before) < 0.05, (before, after)
    router.forget("loud")
