"""`Router.route` in Python keeps routed queries' embeddings in a bounded LRU, as the service does."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmtrouter.api import Router
from gmtrouter.model.gmtrouter import GMTRouter
from gmtrouter.text.hashing import HashingEncoder
from tests.test_gmtrouter import FAST, taste_records


class CountingEncoder(HashingEncoder):
    """The real hashing encoder (the model's own), recording each text it embeds."""

    def __init__(self) -> None:
        super().__init__(64)
        self.seen: list[str] = []

    def encode(self, texts):
        self.seen.extend(texts)
        return super().encode(texts)


@pytest.fixture(scope="module")
def trained() -> tuple[GMTRouter, list]:
    train = taste_records(12, 8, seed=1)
    return GMTRouter(**FAST).fit(train), train


def test_a_repeated_query_is_embedded_once_and_routes_the_same(trained) -> None:
    model, history = trained
    counting = CountingEncoder()
    model.use_text_encoder(counting)
    router = Router(model, history)
    first = router.route("u0", "how long do I boil pasta?", ["a", "b", "c"])
    counting.seen.clear()
    again = router.route("u0", "how long do I boil pasta?", ["a", "b", "c"])
    assert counting.seen == []
    assert [r.llm for r in again.ranking] == [r.llm for r in first.ranking]
    np.testing.assert_allclose([r.score for r in again.ranking], [r.score for r in first.ranking], rtol=1e-6)


def test_the_query_cache_is_bounded(trained) -> None:
    model, history = trained
    counting = CountingEncoder()
    model.use_text_encoder(counting)
    router = Router(model, history, query_cache=2)
    for query in ("first query", "second query", "third query"):
        router.route("u1", query)
    counting.seen.clear()
    router.route("u1", "third query")
    assert counting.seen == []
    router.route("u1", "first query")  # the oldest of three in a cache of two: embedded again
    assert counting.seen == ["first query"]


@pytest.fixture(scope="module")
def textless() -> tuple[GMTRouter, list]:
    """A backbone-only GMTRouter with its topic deviations off: nothing it scores with reads a query's vector."""
    train = taste_records(12, 8, seed=1)
    settings = {**FAST, "residual": False, "task_prior": math.inf, "topic_prior": math.inf}
    return GMTRouter(**settings).fit(train), train


def test_a_model_that_reads_no_query_vector_routes_a_new_query_without_encoding_it(textless) -> None:
    model, history = textless
    counting = CountingEncoder()
    model.use_text_encoder(counting)
    router = Router(model, history)
    assert not router.context.needs_query_vector
    counting.seen.clear()
    fresh = router.route("u0", "a question no one asked before", ["a", "b", "c"])
    assert counting.seen == []
    assert router.encode_queries(["another new question"]) == 0 and counting.seen == []
    # nothing of the query's text enters: another new query gets the very same scores
    other = router.route("u0", "something else entirely", ["a", "b", "c"])
    assert [(r.llm, r.score) for r in other.ranking] == [(r.llm, r.score) for r in fresh.ranking]


def test_a_model_whose_residual_or_topics_read_the_vector_encodes_a_new_query(trained) -> None:
    model, history = trained
    counting = CountingEncoder()
    model.use_text_encoder(counting)
    router = Router(model, history)
    assert router.context.needs_query_vector  # this fit keeps its residual or its topics
    assert router.needs_encoding(["a question no one asked before"])
    router.route("u0", "a question no one asked before")
    assert "a question no one asked before" in counting.seen
    assert not router.needs_encoding(["a question no one asked before"])
