"""The responsiveness contract through the HTTP API: every feedback kind moves that user's next route the way
a person expects, and leaves other users' routes where they were (the real app, a real SQLite file, a real
trained model)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from tests.serve_support import ADMIN, served_model  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
QUERY = "Explain how a rainbow forms"


@pytest.fixture(scope="module")
def client(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # noqa: F811
    db = f"sqlite:///{tmp_path_factory.mktemp('responsive') / 'service.db'}"
    config = load_config(None, model=served_model, db=db, admin_key=ADMIN, max_query_chars=4000)
    with TestClient(create_app(config)) as test_client:
        yield test_client


def key_for(client: TestClient, user: str) -> dict[str, str]:
    answer = client.post(
        "/v1/admin/keys", json={"users": [user], "name": "test"}, headers={"Authorization": f"Bearer {ADMIN}"}
    )
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def route(client: TestClient, headers: dict[str, str], user: str, text: str = QUERY) -> dict:
    body = {"user": user, "messages": [{"role": "user", "content": text}]}
    answer = client.post("/v1/route", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def scores(client: TestClient, headers: dict[str, str], user: str) -> dict[str, float]:
    return {r["llm"]: r["score"] for r in route(client, headers, user)["ranking"]}


def feedback(client: TestClient, headers: dict[str, str], body: dict) -> None:
    answer = client.post("/v1/feedback", json=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_thumbs_up_raises_and_thumbs_down_lowers_the_routed_llm(client: TestClient) -> None:
    for thumbs, direction in (("up", 1), ("down", -1)):
        user = f"thumbs-{thumbs}"
        headers = key_for(client, user)
        routed = route(client, headers, user, "Name three uses of copper")
        llm = routed["llm"]
        before = scores(client, headers, user)[llm]
        feedback(client, headers, {"kind": "thumbs", "route_id": routed["route_id"], "thumbs": thumbs})
        after = scores(client, headers, user)[llm]
        assert direction * (after - before) > 1e-3, f"thumbs {thumbs} on {llm}: {before:.4f} -> {after:.4f}"


def test_repeated_pairwise_votes_raise_p_b_over_a_step_by_step(client: TestClient) -> None:
    user = "expert_12"
    headers = key_for(client, user)
    start = scores(client, headers, user)
    a = max(start, key=start.get)  # the user's current favourite loses every vote
    b = min(start, key=start.get)
    gaps = [start[b] - start[a]]
    for k in range(10):
        routed = route(client, headers, user, f"{QUERY}, part {k}")
        feedback(client, headers, {"kind": "pairwise", "route_id": routed["route_id"], "a": a, "b": b, "winner": "b"})
        now = scores(client, headers, user)
        gaps.append(now[b] - now[a])
    assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
    p_before, p_after = (1 / (1 + math.exp(-gap)) for gap in (gaps[0], gaps[-1]))
    assert p_after > p_before + 0.2, f"P({b} > {a}): {p_before:.2f} -> {p_after:.2f}"


def test_one_users_feedback_leaves_another_users_ranking(client: TestClient) -> None:
    loud, quiet = "loud-voter", "quiet-voter"
    loud_headers, quiet_headers = key_for(client, loud), key_for(client, quiet)
    before = scores(client, quiet_headers, quiet)
    a, b = max(before, key=before.get), min(before, key=before.get)
    for k in range(10):
        routed = route(client, loud_headers, loud, f"Another question {k}")
        feedback(
            client, loud_headers, {"kind": "pairwise", "route_id": routed["route_id"], "a": a, "b": b, "winner": "b"}
        )
    after = scores(client, quiet_headers, quiet)
    assert sorted(before, key=before.get) == sorted(after, key=after.get)
    assert max(abs(after[m] - before[m]) for m in before) < 0.05, (before, after)
