"""Property tests of the HTTP API: whatever arrives, the answer is never a 5xx, and a refusal stores nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from gmtrouter.serve.store import Store
from tests.serve_support import ADMIN, routes_written, served_model  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
LLMS = ["gpt-4", "alpaca-13b", "claude-v1", "gpt-5", ""]
FUZZ = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=60) | st.sampled_from(["", "  ", "hello", "x" * 3000, "\ud800 lone", "a\x00b"])
messages = (
    st.lists(
        st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "assistant", "system", "robot"]) | json_values},
            optional={
                "content": texts
                | json_values
                | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": texts}))
            },
        ),
        max_size=4,
    )
    | json_values
)


@pytest.fixture(scope="module")
def app_and_store(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Store]]:  # noqa: F811
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.db'}"
    config = load_config(None, model=served_model, db=url, admin_key=ADMIN, max_query_chars=2000)
    store = Store(url)
    with TestClient(create_app(config), raise_server_exceptions=False) as client:
        routed = client.post(
            "/v1/route", json={"user": "fuzz", "messages": [{"role": "user", "content": "q"}]}, headers=HEADERS
        )
        client.route_id = routed.json()["route_id"]
        yield client, store
    store.close()


def check(client: TestClient, store: Store, path: str, body: object, raw: bytes | None = None) -> None:
    routes_written(client)
    before = (store.count("routes"), store.count("feedback"))
    content = raw if raw is not None else json.dumps(body).encode()
    answer = client.post(path, content=content, headers={**HEADERS, "Content-Type": "application/json"})
    assert answer.status_code < 500, (body, answer.text)
    routes_written(client)
    after = (store.count("routes"), store.count("feedback"))
    if answer.status_code >= 400:
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and detail and "\n" not in detail
        assert after == before, (body, answer.text)
    elif path == "/v1/route":
        assert after == (before[0] + 1, before[1])
    else:
        assert after[0] == before[0] and after[1] == before[1] + (0 if answer.json()["duplicate"] else 1)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {},
        optional={
            "user": texts | json_values,
            "messages": messages,
            "candidates": st.lists(st.sampled_from(LLMS), max_size=3) | json_values,
            "cost_weight": st.floats() | st.integers() | json_values,
            "extra": json_values,
        },
    )
    | json_values
)
def test_route_fuzz(app_and_store: tuple[TestClient, Store], body: object) -> None:
    check(*app_and_store, "/v1/route", body)


@FUZZ
@given(
    body=st.fixed_dictionaries(
        {"kind": st.sampled_from(["rating", "thumbs", "pairwise", "record", "stars"]) | json_values},
        optional={
            "route_id": st.sampled_from(["ROUTE", "nope", ""]) | json_values,
            "rating": st.floats() | json_values,
            "thumbs": st.sampled_from(["up", "down", "left"]) | json_values,
            "a": st.sampled_from(LLMS),
            "b": st.sampled_from(LLMS),
            "winner": st.sampled_from(["a", "b", "tie", "c"]),
            "llm": st.sampled_from(LLMS) | json_values,
            "text": texts,
            "record": st.fixed_dictionaries(
                {
                    "user": texts,
                    "conversation": texts,
                    "turn": st.integers(-1, 3) | json_values,
                    "query": texts,
                    "responses": st.lists(
                        st.fixed_dictionaries({"llm": st.sampled_from(LLMS), "rating": st.floats() | json_values}),
                        max_size=3,
                    ),
                }
            )
            | json_values,
        },
    )
)
def test_feedback_fuzz(app_and_store: tuple[TestClient, Store], body: dict) -> None:
    client, store = app_and_store
    if body.get("route_id") == "ROUTE":
        body["route_id"] = client.route_id
    check(client, store, "/v1/feedback", body)


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_raw_bodies_fuzz(app_and_store: tuple[TestClient, Store], raw: bytes) -> None:
    for path in ("/v1/route", "/v1/feedback"):
        check(*app_and_store, path, None, raw)
