"""Per-query win-rate baselines: what other users thought of this query's answers, and the user's own taste."""

from __future__ import annotations

import numpy as np
import pytest

from gmtrouter.data.schema import Interaction
from gmtrouter.data.split import split_records
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.registry.routers import make_router
from tests.conftest import make_record

FAST = {"encoder": "hashing-64"}
LLMS = ["alpha", "beta", "gamma"]


def question_records(users: int, per_user: int, seed: int, tastes: bool = False) -> list[Interaction]:
    """Twelve questions with no topic words; each ranks the three LLMs in its own order, the same for everybody.

    With `tastes`, users named a* also like alpha and b* like beta, and the questions matter less: each signal
    alone reaches about 0.72 at best, both together 0.86.
    """
    rng = np.random.default_rng(seed)
    questions = [f"question number {k} zx{k * 7919 % 97}" for k in range(12)]
    rank = {q: np.roll(np.arange(3), k) if k % 2 else np.roll(np.arange(3)[::-1], k) for k, q in enumerate(questions)}
    records = []
    for u in range(users):
        user = f"{'ab'[u % 2]}{u}"
        for i in range(per_user):
            query = str(rng.choice(questions))
            shown = [str(m) for m in rng.permutation(LLMS)[:2]]
            utility = {m: (1.5 if tastes else 2.0) * rank[query][LLMS.index(m)] for m in shown}
            if tastes:
                liked = "alpha" if user.startswith("a") else "beta"
                utility = {m: v + 3.0 * (m == liked) for m, v in utility.items()}
            p = 1 / (1 + np.exp(-(utility[shown[0]] - utility[shown[1]])))
            first_wins = rng.random() < p
            ratings = {shown[0]: float(first_wins), shown[1]: float(not first_wins)}
            records.append(make_record(user, query, ratings, conversation=f"{user}/{i}"))
    return records


@pytest.fixture(scope="module")
def questions() -> tuple[list[Interaction], list[Interaction]]:
    return split_records(question_records(40, 30, seed=0), "record", 0.2, 0)


def test_query_winrate_learns_what_everybody_thought_of_each_question(questions) -> None:
    train, test = questions
    per_query = make_router("query-winrate", **FAST).fit(train)
    overall = make_router("global-winrate").fit(train)
    ours = evaluate_router(per_query, train, test)["accuracy"]
    assert ours >= 0.8
    assert ours >= evaluate_router(overall, train, test)["accuracy"] + 0.15
    assert per_query.training_log_["params"]["query_prior"] in per_query.GRID["query_prior"]  # tuned


def test_an_unseen_query_borrows_the_nearest_seen_one_or_takes_the_global_ranking(questions) -> None:
    train, _ = questions
    router = make_router("query-winrate", **FAST, grid={"min_similarity": 0.8}).fit(train)
    context = router.context(train)
    seen = "question number 1 zx62"  # alpha is best on it, gamma second
    assert seen in {r.query for r in train}
    assert LLMS[int(np.argmax(context.score("someone", seen, LLMS)))] == "alpha"
    close = seen + " please"  # not in the history, nearly the same text
    np.testing.assert_allclose(context.score("someone", close, LLMS), context.score("someone", seen, LLMS))
    far = "completely different words here"
    np.testing.assert_allclose(context.score("someone", far, LLMS), router.strengths_[[0, 1, 2]])
    never = make_router("query-winrate", **FAST, grid={"min_similarity": 2.0}).fit(train).context(train)
    np.testing.assert_allclose(never.score("someone", close, LLMS), never.router.strengths_)


def test_query_deviation_follows_the_history_without_refit(questions) -> None:
    train, _ = questions
    router = make_router("query-winrate", **FAST).fit(train)
    context = router.context(train)
    fresh = "a question nobody has asked before"
    before = context.score("x", fresh, LLMS)
    votes = [make_record(f"v{i}", fresh, {"gamma": 1.0, "alpha": 0.0}, conversation=f"v{i}") for i in range(10)]
    context.observe(votes)
    after = context.score("x", fresh, LLMS)
    assert after[2] - after[0] > before[2] - before[0] + 0.5


def test_user_query_winrate_holds_both_signals() -> None:
    train, test = split_records(question_records(40, 40, seed=1, tastes=True), "record", 0.2, 1)
    both = evaluate_router(make_router("user-query-winrate", **FAST).fit(train), train, test)["accuracy"]
    users = evaluate_router(make_router("user-winrate").fit(train), train, test)["accuracy"]
    queries = evaluate_router(make_router("query-winrate", **FAST).fit(train), train, test)["accuracy"]
    assert both >= max(users, queries) + 0.05
