"""GMTRouter end to end on small data: it personalises, adapts to new users without retraining, never
reads the labels it is scored on, and survives a checkpoint round trip."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.evaluation.kshot import evaluate_router
from gmtrouter.model.comparisons import refit_scope
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.registry.checkpoint import load_router, save_router
from gmtrouter.utils.errors import GmtError

FAST = {
    "encoder": "hashing-64",
    "hidden": 32,
    "head_dim": 32,
    "steps": 200,
    "eval_every": 20,
    "patience": 3,
    "progress": False,
}
TOPICS = ["cooking pasta", "tax law", "python bugs", "poetry", "chess openings", "gardening"]


def taste_records(users: int, per_user: int, seed: int, prefix: str = "u") -> list[Interaction]:
    """Half the users always prefer LLM 'a' over 'b', the other half the reverse; 'c' is always last."""
    rng = np.random.default_rng(seed)
    records = []
    for u in range(users):
        likes_a = u % 2 == 0
        for k in range(per_user):
            topic = TOPICS[rng.integers(len(TOPICS))]
            pair = ["a", "b"] if rng.random() < 0.5 else ["b", "a"]
            llms = [*pair, "c"] if rng.random() < 0.3 else pair
            ratings = {m: float((m == "a") == likes_a) if m != "c" else -1.0 for m in llms}
            records.append(
                Interaction(
                    user=f"{prefix}{u}",
                    conversation=f"{prefix}{u}/{k}",
                    turn=1,
                    query=f"question {k} about {topic}",
                    responses=[Response(llm=m, rating=r, text=f"{m} on {topic}") for m, r in ratings.items()],
                )
            )
    return records


@pytest.fixture(scope="module")
def fitted() -> tuple[GMTRouter, list[Interaction]]:
    train = taste_records(24, 10, seed=0)
    return GMTRouter(**FAST).fit(train), train


def test_known_users_are_personalised(fitted) -> None:
    router, train = fitted
    test = taste_records(24, 4, seed=1)
    result = evaluate_router(router, train, test)
    assert result["accuracy"] > 0.9
    assert result["known_users"] == 24


def test_new_users_adapt_from_a_few_shots_without_retraining(fitted) -> None:
    router, train = fitted
    newcomers = taste_records(10, 8, seed=2, prefix="new")
    cold = evaluate_router(router, train, newcomers, shots=0)
    warm = evaluate_router(router, train, newcomers, shots=3)
    assert cold["new_users"] == 10
    assert cold["accuracy"] < 0.75  # without history, half of them are guessed wrong
    assert warm["accuracy"] > 0.9


def test_scores_never_depend_on_the_scored_labels(fitted) -> None:
    router, train = fitted
    test = taste_records(6, 3, seed=3)
    flipped = [
        r.model_copy(update={"responses": [x.model_copy(update={"rating": -x.rating}) for x in r.responses]})
        for r in test
    ]
    context = router.context(train)
    for a, b in zip(context.score_records(test), context.score_records(flipped), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_observe_changes_the_next_route(fitted) -> None:
    router, train = fitted
    api = Router(router, train)
    before = api.route("stranger", "question about poetry", ["a", "b"])
    assert not before.known_user and before.notes
    liked = "b" if before.llm == "a" else "a"
    for k in range(4):
        api.observe(
            {
                "user": "stranger",
                "conversation": f"s{k}",
                "turn": 1,
                "query": f"q {k} about tax law",
                "responses": [{"llm": liked, "rating": 1.0}, {"llm": before.llm, "rating": 0.0}],
            }
        )
    after = api.route("stranger", "question about poetry", ["a", "b"])
    assert after.known_user and after.llm == liked
    api.forget("stranger")
    assert not api.route("stranger", "question about poetry", ["a", "b"]).known_user


def test_checkpoint_round_trip_and_version_check(fitted, tmp_path) -> None:
    router, train = fitted
    save_router(router, tmp_path / "model", train)
    loaded, history = load_router(tmp_path / "model")
    assert history == train
    test = taste_records(4, 3, seed=4)
    for a, b in zip(
        router.context(train).score_records(test), loaded.context(history).score_records(test), strict=True
    ):
        np.testing.assert_allclose(a, b, atol=1e-5)
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    config["gmtrouter_version"] = "0.0.1"
    (tmp_path / "model" / "config.json").write_text(json.dumps(config))
    with pytest.raises(GmtError, match=r"made by gmtrouter 0\.0\.1"):
        load_router(tmp_path / "model")


def test_training_is_seeded() -> None:
    train = taste_records(8, 6, seed=5)
    test = taste_records(8, 2, seed=6)
    settings = {**FAST, "steps": 20}
    first = GMTRouter(seed=3, **settings).fit(train).context(train).score_records(test)
    again = GMTRouter(seed=3, **settings).fit(train).context(train).score_records(test)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_incremental_observe_matches_a_full_encode(fitted) -> None:
    """Folding feedback in as it comes gives nearly what rebuilding the context on the whole history gives: the
    graph's node states are recomputed around the new users, their deviations are refitted exactly, and what
    everybody shares takes one Newton step (`Population.after`) while everybody's topic verdicts are kept, which
    a rebuild moves a little further (here, with two newcomers among 24 users, by about a tenth of a logit)."""
    router, train = fitted
    context = router.context(train)
    newcomers = taste_records(2, 4, seed=9, prefix="inc")
    context.observe(newcomers[:4])
    context.observe(newcomers[4:])
    full = router.context(train + newcomers)
    for user in ("inc0", "inc1", "u3"):
        for query in ("question about poetry", "question 1 about tax law"):
            incremental = context.score(user, query, ["a", "b", "c"])
            np.testing.assert_allclose(incremental, full.score(user, query, ["a", "b", "c"]), atol=0.15)
    if context.network:  # without the network no graph is kept: the backbone alone scores
        assert context.graph.num_nodes == full.graph.num_nodes
    else:
        assert context.graph is None and full.graph is None


@pytest.mark.parametrize(
    "ablation",
    [
        {"turn_nodes": False},
        {"layer": "sage"},
        {"response_text": False},
        {"user_sampling": False},
        {"multi_turn": False},
    ],
)
def test_ablations_train_and_score(ablation) -> None:
    train = taste_records(6, 5, seed=7)
    settings = {**FAST, "steps": 4, **ablation}
    router = GMTRouter(**settings).fit(train)
    context = router.context(train)
    scores = context.score_records(taste_records(6, 1, seed=8))
    assert all(np.isfinite(s).all() for s in scores)
    context.observe(taste_records(1, 2, seed=9, prefix="late"))
    assert context.knows_user("late0")


def test_explanations_name_what_made_the_llm_win_for_that_user(fitted) -> None:
    """u2 always prefers 'a' and u3 'b': what made 'a' win for u2 (against 'b') is u2's own interactions where
    'a' beat 'b', strongest first; for u3 nothing speaks for 'a', and u3's interactions make 'b' win instead."""
    router, train = fitted
    context = router.context(train)
    query = "question about chess openings"
    for user, winner, loser in (("u2", "a", "b"), ("u3", "b", "a")):
        reasons = context.explain(user, query, winner, top=3, against=loser)
        assert len(reasons) == 3
        assert all(record.user == user and {winner, loser} <= set(record.llms) for record, _ in reasons)
        assert all(
            record.responses[record.llms.index(winner)].rating > record.responses[record.llms.index(loser)].rating
            for record, _ in reasons
        )
        weights = [w for _, w in reasons]
        assert all(w > 0 for w in weights) and weights == sorted(weights, reverse=True), (user, weights)
    assert context.explain("u3", query, "a", against="b") == []
    assert context.explain("nobody", "question", "a") == []


def test_a_model_that_kept_no_residual_routes_without_the_network_with_the_same_scores() -> None:
    train = taste_records(8, 6, seed=5)
    router = GMTRouter(**{**FAST, "residual": False}).fit(train)
    lean = router.context(train)
    assert not lean.network and lean.states is None
    full = router.context(train)
    full.network = True
    full.refresh()
    late = taste_records(2, 3, seed=9, prefix="late")
    for context in (lean, full):
        context.observe(late)
    test = taste_records(8, 2, seed=6)
    for a, b in zip(lean.score_records(test), full.score_records(test), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    for user in ("u1", "late0", "nobody"):
        for query in ("question about poetry", "question 1 about tax law"):
            np.testing.assert_allclose(
                lean.score(user, query, ["a", "b", "c"]), full.score(user, query, ["a", "b", "c"]), atol=1e-5
            )


def test_observe_refits_only_the_users_and_queries_it_touches_yet_as_a_full_fit_would() -> None:
    """Feedback refits the backbone of its users and of the queries they asked; with what everybody shares held
    (the population's strengths, and everybody's topic verdicts: here off), that is exactly what fitting the whole
    history again gives, new users and queries too, variances included."""
    train = taste_records(10, 6, seed=5)
    router = GMTRouter(**{**FAST, "residual": False}).fit(train)
    router.priors_ = dataclasses.replace(router.priors_, task=math.inf, user=1.0, topic=2.0, query=1.0, own=0.5)
    known_user_new_query = taste_records(4, 7, seed=5)[-1]  # u3's seventh question, one nobody asked yet
    late = [
        *taste_records(2, 3, seed=9, prefix="late"),
        known_user_new_query,
        train[0].model_copy(update={"user": "late0", "conversation": "late0/x"}),
    ]
    table = router.table(train + late)
    shared = router.population_
    before = router.prior_scores(table, None, None, np.arange(len(train)), population=shared, posterior=True)
    users = np.unique(table.rec_user[len(train) :])
    scope = refit_scope(table, users)
    refitted = router.prior_scores(table, None, None, scope, before, users, shared, posterior=True)
    full = router.prior_scores(table, None, None, np.arange(table.num_records), population=shared, posterior=True)
    for name in ("user", "topic", "own", "query", "stay"):
        np.testing.assert_allclose(getattr(refitted, name), getattr(full, name), atol=1e-5, err_msg=name)
    for name in ("user", "topic", "own", "query"):
        np.testing.assert_allclose(refitted.variance[name], full.variance[name], atol=1e-5, err_msg=name)
    assert not np.allclose(refitted.query, before.query)  # the shared query moved
