"""Conversation-aware routing: the LLM that answered the previous turn, and what a user's stickiness to it does.

The data is built in code: half the users strongly prefer to stay with the LLM that answered their previous
turn, the other half do not care. A router that reads the conversation must learn that from the records alone
and route each user's later turns accordingly, in Python as the service does.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from gmtrouter.api import Router, previous_model
from gmtrouter.bench.conversation import SWITCH_COSTS, conversation_metrics
from gmtrouter.data.conversation import continued_llm, previous_llms
from gmtrouter.data.schema import Interaction, Response
from gmtrouter.graph.table import InteractionTable
from gmtrouter.model.comparisons import Comparisons, usable_previous
from gmtrouter.model.deviations import Priors
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.model.population import Population
from gmtrouter.model.prior import PriorScores
from gmtrouter.registry.checkpoint import load_router, save_router
from gmtrouter.registry.routers import make_router
from tests.conftest import make_record

LLMS = ["a", "b", "c"]
QUERIES = [f"Question {i} about subject {i % 7}" for i in range(60)]
QUERY = QUERIES[3]


def three_turn_records(
    users: int, conversations: int, seed: int, first_wins: Callable[[int, list[str], str | None], float]
) -> list[Interaction]:
    """Conversations of three turns; every later turn shows the previous LLM against another, and the first
    side of a pair wins with the chance `first_wins(user, pair, previous LLM)`."""
    rng = np.random.default_rng(seed)
    records = []
    for u in range(users):
        user = f"u{u}"
        for c in range(conversations):
            previous = None
            for turn in (1, 2, 3):
                if previous is None:
                    pair = list(rng.choice(LLMS, 2, replace=False))
                else:
                    pair = [previous, str(rng.choice([m for m in LLMS if m != previous]))]
                rng.shuffle(pair)
                first = rng.random() < first_wins(u, pair, previous)
                ratings = [1.0, 0.0] if first else [0.0, 1.0]
                records.append(
                    Interaction(
                        user=user,
                        conversation=f"{user}/{seed}/{c}",
                        turn=turn,
                        query=str(rng.choice(QUERIES)),
                        responses=[Response(llm=m, rating=r) for m, r in zip(pair, ratings, strict=True)],
                    )
                )
                previous = pair[0] if first else pair[1]
    return records


def sticky_records(users: int = 40, conversations: int = 10, seed: int = 0) -> list[Interaction]:
    """Even users pick the previous turn's LLM 90% of the time, odd users pick at random; first turns are coin
    flips."""

    def first_wins(user: int, pair: list[str], previous: str | None) -> float:
        if previous is None or user % 2:
            return 0.5
        return 0.9 if pair[0] == previous else 0.1

    return three_turn_records(users, conversations, seed, first_wins)


def favourite_records(users: int = 30, conversations: int = 10, seed: int = 0) -> list[Interaction]:
    """Nobody minds switching, but every user has a favourite (a, b or c) that wins 90% of its comparisons:
    the LLM a conversation went on with is mostly the user's favourite, and still no reason to stay."""

    def first_wins(user: int, pair: list[str], previous: str | None) -> float:
        favourite = LLMS[user % 3]
        return 0.9 if pair[0] == favourite else 0.1 if pair[1] == favourite else 0.5

    return three_turn_records(users, conversations, seed, first_wins)


def chat(previous: str) -> list[dict[str, str]]:
    """A second turn after an answer by `previous`."""
    return [
        {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hello, how can I help?", "model": previous},
        {"role": "user", "content": QUERY},
    ]


@pytest.fixture(scope="module")
def records() -> list[Interaction]:
    return sticky_records()


@pytest.fixture(scope="module")
def model(records) -> GMTRouter:
    return GMTRouter(progress=False, residual=False, seed=0).fit(records)


@pytest.fixture()
def router(model, records) -> Router:
    return Router(model, records)


def test_the_previous_llm_is_named_or_read_from_the_previous_turn() -> None:
    first = make_record("u", "q1", {"a": 0.0, "b": 1.0}, turn=1, conversation="c")
    tie = make_record("u", "q2", {"c": 0.5, "a": 0.5}, turn=2, conversation="c")
    named = make_record("u", "q3", {"a": 1.0, "c": 0.0}, turn=3, conversation="c").model_copy(
        update={"previous_llm": "b"}
    )
    orphan = make_record("u", "q4", {"a": 1.0, "c": 0.0}, turn=5, conversation="c")
    assert continued_llm(tie) == "c"  # the first of equals
    assert previous_llms([first, tie, named, orphan]) == [None, "b", "b", None]


def test_a_fit_reads_the_previous_llm_only_from_shown_records(model) -> None:
    turn1 = make_record("u", "q1", {"a": 0.0, "b": 1.0}, turn=1, conversation="c")
    turn2 = make_record("u", "q2", {"b": 1.0, "c": 0.0}, turn=2, conversation="c")
    table = InteractionTable.build([turn1, turn2], LLMS, model.text_encoder(), (0.0, 1.0))
    assert table.rec_prev_llm.tolist() == [-1, 1] and table.rec_prev_from.tolist() == [-1, 0]
    assert usable_previous(table, np.array([1])).tolist() == [-1, -1]  # turn 1 hidden: its winner is a label
    assert usable_previous(table, np.array([0, 1])).tolist() == [-1, 1]
    topics = np.zeros(len(table.query_vocab), dtype=np.int64)
    everybody = Population(np.zeros(3), stay=0.5)
    hidden = PriorScores.of(table, np.array([1]), everybody, Priors(1.0, np.inf, stay=1.0), topics, 1)
    shown = PriorScores.of(table, np.array([0, 1]), everybody, Priors(1.0, np.inf, stay=1.0), topics, 1)
    assert hidden.stay[0] == 0 and shown.stay[0] > 0
    assert Comparisons.of(table, np.array([1])).stay(table.rec_prev_llm).tolist() == [1.0]


def test_the_router_learns_who_sticks_to_the_previous_llm(model, router) -> None:
    log = model.training_log_["backbone"]
    assert log["stay_prior"] is not None and model.population_.stay > 0.3
    stay = router.context.prior.stay
    users = router.context.table.user_vocab
    sticky = [stay[users[f"u{u}"]] for u in range(0, 40, 2)]
    loose = [stay[users[f"u{u}"]] for u in range(1, 40, 2)]
    assert min(sticky) > max(loose)


def test_a_taste_is_not_read_as_stickiness(model) -> None:
    """Users who stay with their favourite because it is their favourite do not make everybody sticky: a
    stickiness that took their taste would outweigh a new user's first votes."""
    taste = favourite_records()
    table = InteractionTable.build(taste, LLMS, model.text_encoder(), (0.0, 1.0))
    assert abs(Population.fit(table, np.arange(len(taste)), conversation=True).stay) < 0.25


def test_the_same_second_message_routes_after_the_first_answer_for_a_sticky_user(router) -> None:
    for previous in ("a", "b", "c"):
        decision = router.route("u0", chat(previous))
        assert decision.llm == previous and decision.previous_llm == previous
    alone = router.route("u0", QUERY)
    assert alone.previous_llm is None
    after_a = {r.llm: r.score for r in router.route("u0", chat("a")).ranking}
    first = {r.llm: r.score for r in alone.ranking}
    assert after_a["a"] - after_a["b"] > first["a"] - first["b"] + 1.0


def test_a_user_who_does_not_mind_switching_is_not_held(router) -> None:
    stayed = [router.route(f"u{u}", chat(m)).llm == m for u in range(1, 40, 2) for m in LLMS]
    held = [router.route(f"u{u}", chat(m)).llm == m for u in range(0, 40, 2) for m in LLMS]
    assert np.mean(stayed) < 0.7 and np.mean(held) >= 0.9, (np.mean(stayed), np.mean(held))


def test_switch_cost_keeps_the_previous_llm_and_zero_changes_nothing(router) -> None:
    base = router.route("u1", chat("c"))
    assert router.route("u1", chat("c"), switch_cost=0.0).ranking == base.ranking
    held = router.route("u1", chat("c"), switch_cost=50.0)
    assert held.llm == "c" and held.switch_cost == 50.0
    scores = {r.llm: r.score for r in held.ranking}
    assert scores == {r.llm: r.score for r in base.ranking}  # the cost moves the choice, not the preference
    with pytest.raises(Exception, match="switch_cost must be a finite number, 0 or more"):
        router.route("u1", chat("c"), switch_cost=-1.0)


def test_a_conversation_id_follows_what_the_router_chose_before(router) -> None:
    first = router.route("u0", "Hello there", conversation="talk-1")
    second = router.route("u0", QUERY, conversation="talk-1")
    assert second.previous_llm == first.llm and second.llm == first.llm
    assert router.route("u2", QUERY, conversation="talk-1").previous_llm is None  # another user's id space
    router.forget("u0")
    assert router.route("u0", QUERY, conversation="talk-1").previous_llm is None


def test_an_unknown_previous_llm_is_said_not_guessed(router) -> None:
    decision = router.route("u0", chat("gpt-99"))
    assert decision.previous_llm is None and any("gpt-99" in note for note in decision.notes)
    assert previous_model(chat("b")) == "b" and previous_model(QUERY) is None


def test_routing_each_turn_alone_ignores_the_previous_llm(records) -> None:
    alone = GMTRouter(progress=False, residual=False, seed=0, conversation=False).fit(records)
    router = Router(alone, records)
    assert alone.population_.stay == 0.0
    assert router.route("u0", chat("a")).ranking == router.route("u0", chat("b")).ranking


def test_stickiness_survives_save_and_load(model, records, tmp_path) -> None:
    save_router(model, tmp_path / "model", records)
    loaded, history = load_router(tmp_path / "model")
    assert loaded.population_.stay == pytest.approx(model.population_.stay)
    assert Router(loaded, history).route("u0", chat("b")).llm == "b"


def test_held_out_later_turns_score_better_with_the_conversation(model, records) -> None:
    test = sticky_records(users=40, conversations=4, seed=1)
    alone = GMTRouter(progress=False, residual=False, seed=0, conversation=False).fit(records)
    with_context = conversation_metrics(records, test, model.context(records).score_records(test))
    without = conversation_metrics(records, test, alone.context(records).score_records(test))
    assert with_context["accuracy"] > without["accuracy"] + 0.1
    rates = [point["switch_rate"] for point in with_context["sweep"]]
    assert [point["switch_cost"] for point in with_context["sweep"]] == list(SWITCH_COSTS)
    assert all(b <= a for a, b in itertools.pairwise(rates)) and rates[-1] < rates[0]


def test_the_sticky_rule_keeps_the_previous_llm(records) -> None:
    sticky = make_router("sticky").fit(records)
    context = sticky.context(records)
    assert context.score_turn("u1", QUERY, LLMS, "c").argmax() == 2
    test = sticky_records(users=4, conversations=2, seed=2)
    metrics = conversation_metrics(records, test, context.score_records(test))
    assert metrics["switch_rate"] == 0.0
