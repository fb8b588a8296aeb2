"""The HTTP API in process (FastAPI's TestClient over the real app, a real SQLite file, a real trained model)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gmtrouter.registry.checkpoint import model_identity
from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from gmtrouter.serve.store import Store
from tests.conftest import REPO
from tests.serve_support import ADMIN, child_env, routes_written, served_model  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def ask(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('api') / 'service.db'}"


@pytest.fixture(scope="module")
def client(served_model: Path, db_url: str) -> Iterator[TestClient]:  # noqa: F811
    config = load_config(None, model=served_model, db=db_url, admin_key=ADMIN, max_query_chars=4000)
    with TestClient(create_app(config)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def store(db_url: str) -> Iterator[Store]:
    opened = Store(db_url)
    yield opened
    opened.close()


def key_for(client: TestClient, *users: str) -> dict[str, str]:
    answer = client.post("/v1/admin/keys", json={"users": list(users), "name": "test"}, headers=ADMIN_HEADERS)
    assert answer.status_code == 201, answer.text
    return {"Authorization": f"Bearer {answer.json()['key']}"}


def route(client: TestClient, headers: dict[str, str], user: str, text: str, **extra: object) -> dict:
    answer = client.post("/v1/route", json={"user": user, "messages": ask(text), **extra}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_route_ranks_candidates_and_stores_the_route(client: TestClient, store: Store) -> None:
    headers = key_for(client, "expert_24")
    routes_written(client)
    before = store.count("routes")
    body = route(client, headers, "expert_24", "Write a haiku about the sea")
    llms = client.get("/healthz").json()["llms"]
    assert sorted(r["llm"] for r in body["ranking"]) == sorted(llms)
    adjusted = [r["adjusted"] for r in body["ranking"]]
    assert adjusted == sorted(adjusted, reverse=True)
    assert body["llm"] == body["ranking"][0]["llm"]
    assert body["known_user"] is True and isinstance(body["explanation"], list)
    routes_written(client)  # rows are committed behind the answers
    assert store.count("routes") == before + 1
    stored = store.get_route(body["route_id"])
    assert (stored.user, stored.query, stored.choice) == ("expert_24", "Write a haiku about the sea", body["llm"])

    two = route(client, headers, "expert_24", "Write a haiku about the sea", candidates=["gpt-4", "alpaca-13b"])
    assert {r["llm"] for r in two["ranking"]} == {"gpt-4", "alpaca-13b"}
    multi = client.post(
        "/v1/route",
        json={
            "user": "expert_24",
            "messages": [*ask("first"), {"role": "assistant", "content": "ok"}, *ask("and the second question")],
        },
        headers=headers,
    ).json()
    routes_written(client)
    second = store.get_route(multi["route_id"])
    assert (second.query, second.turn) == ("and the second question", 2)


def test_one_sided_feedback_moves_the_users_ranking(client: TestClient) -> None:
    user = "newcomer-1"
    headers = key_for(client, user)
    first = route(client, headers, user, "Explain how a rainbow forms")
    assert first["known_user"] is False
    favourite = first["ranking"][-1]["llm"]  # the LLM the population prior likes least
    others = [r["llm"] for r in first["ranking"][:-1]]
    for i in range(3):
        for other in others:
            routed = route(client, headers, user, f"Question {i} about {other}")
            feedback = {"kind": "pairwise", "route_id": routed["route_id"], "a": other, "b": favourite, "winner": "b"}
            answer = client.post("/v1/feedback", json=feedback, headers=headers)
            assert answer.status_code == 200, answer.text
    after = route(client, headers, user, "Explain how a rainbow forms")
    assert after["known_user"] is True
    position = [r["llm"] for r in after["ranking"]].index(favourite)
    assert position < len(others), after["ranking"]
    profile = client.get(f"/v1/users/{user}", headers=headers).json()
    assert profile["interactions"] == 3 * len(others) == profile["stored_feedback"]
    assert profile["preferred_llms"][0] == favourite


def test_feedback_kinds_become_canonical_records(client: TestClient, store: Store) -> None:
    user = "rater-1"
    headers = key_for(client, user)
    routed = [route(client, headers, user, f"Tell me about topic {i}") for i in range(3)]
    rating = {"kind": "rating", "route_id": routed[0]["route_id"], "rating": 0.75, "text": "An answer."}
    first = client.post("/v1/feedback", json=rating, headers=headers).json()
    assert first["record"]["responses"] == [{"llm": routed[0]["llm"], "rating": 0.75, "text": "An answer."}]
    assert first["record"]["conversation"] == f"route/{routed[0]['route_id']}"
    thumbs = {"kind": "thumbs", "route_id": routed[1]["route_id"], "thumbs": "down"}
    assert client.post("/v1/feedback", json=thumbs, headers=headers).json()["record"]["responses"][0]["rating"] == 0.0
    a, b = routed[2]["ranking"][0]["llm"], routed[2]["ranking"][1]["llm"]
    tie = {"kind": "pairwise", "route_id": routed[2]["route_id"], "a": a, "b": b, "winner": "tie"}
    assert [
        r["rating"] for r in client.post("/v1/feedback", json=tie, headers=headers).json()["record"]["responses"]
    ] == [
        0.5,
        0.5,
    ]
    record = {
        "user": user,
        "conversation": "ui/42",
        "turn": 1,
        "query": "Which is better?",
        "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "llama-13b", "rating": 0}],
    }
    assert client.post("/v1/feedback", json={"kind": "record", "record": record}, headers=headers).status_code == 200
    rows = store.count("feedback", user)
    assert rows == 4

    retry = client.post("/v1/feedback", json=rating, headers=headers).json()
    assert retry["duplicate"] is True and retry["feedback_id"] == first["feedback_id"]
    changed = client.post("/v1/feedback", json={**rating, "rating": 0.25}, headers=headers)
    assert changed.status_code == 409 and "already stored" in changed.json()["detail"]
    again = client.post("/v1/feedback", json={"kind": "record", "record": record}, headers=headers).json()
    assert again["duplicate"] is True
    assert store.count("feedback", user) == rows


def test_forget_removes_rows_and_history(client: TestClient, store: Store, served_model: Path, db_url: str) -> None:  # noqa: F811
    user = "leaver-1"
    headers = key_for(client, user)
    routed = route(client, headers, user, "Plan a trip to Rome")
    client.post(
        "/v1/feedback", json={"kind": "thumbs", "route_id": routed["route_id"], "thumbs": "up"}, headers=headers
    )
    assert client.get(f"/v1/users/{user}", headers=headers).json()["interactions"] == 1
    gone = client.delete(f"/v1/users/{user}", headers=headers).json()
    assert gone == {"user": user, "feedback_deleted": 1, "routes_deleted": 1}
    assert store.count("feedback", user) == store.count("routes", user) == 0
    profile = client.get(f"/v1/users/{user}", headers=headers).json()
    assert (profile["known"], profile["interactions"]) == (False, 0)

    # a user of the model's training history, forgotten by the admin, stays forgotten after a restart
    assert client.get("/v1/users/author_0", headers=ADMIN_HEADERS).json()["known"] is True
    assert client.delete("/v1/users/author_0", headers=ADMIN_HEADERS).status_code == 200
    assert route(client, ADMIN_HEADERS, "author_0", "Hello again")["known_user"] is False
    config = load_config(None, model=served_model, db=db_url, admin_key=ADMIN)
    with TestClient(create_app(config)) as restarted:
        assert restarted.get("/v1/users/author_0", headers=ADMIN_HEADERS).json()["interactions"] == 0


def test_keys_act_only_for_their_users(client: TestClient, store: Store) -> None:
    mine, theirs = key_for(client, "alice"), key_for(client, "bob")
    bobs_route = route(client, theirs, "bob", "Bob's question")
    refused = [
        client.post("/v1/route", json={"user": "bob", "messages": ask("hi")}, headers=mine),
        client.get("/v1/users/bob", headers=mine),
        client.delete("/v1/users/bob", headers=mine),
        client.post("/v1/admin/reload", json={"model_dir": "x"}, headers=mine),
        client.post("/v1/admin/keys", json={"users": ["alice"]}, headers=mine),
    ]
    assert [r.status_code for r in refused] == [403, 403, 403, 403, 403]
    assert all(len(r.json()["detail"].splitlines()) == 1 for r in refused)
    feedback = {"kind": "thumbs", "route_id": bobs_route["route_id"], "thumbs": "down"}
    assert client.post("/v1/feedback", json=feedback, headers=mine).status_code == 404
    record = {"user": "bob", "conversation": "c", "turn": 1, "query": "q", "responses": [{"llm": "gpt-4", "rating": 1}]}
    assert client.post("/v1/feedback", json={"kind": "record", "record": record}, headers=mine).status_code == 403
    routes_written(client)
    assert store.count("feedback", "bob") == 0 and store.count("routes", "bob") == 1

    for headers in ({"Authorization": "Bearer gmt_0000_nope"}, {"Authorization": "Bearer whatever"}, {}):
        answer = client.post("/v1/route", json={"user": "alice", "messages": ask("hi")}, headers=headers)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    tenant = key_for(client, "acme/*")
    assert client.post("/v1/route", json={"user": "acme/eve", "messages": ask("hi")}, headers=tenant).status_code == 200
    assert client.post("/v1/route", json={"user": "acmex", "messages": ask("hi")}, headers=tenant).status_code == 403

    key_id = client.get("/v1/admin/keys", headers=ADMIN_HEADERS).json()[-1]["key_id"]
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=ADMIN_HEADERS).json()["revoked"] is not None
    assert client.post("/v1/route", json={"user": "acme/eve", "messages": ask("hi")}, headers=tenant).status_code == 401
    assert all("key" not in k and "hash" not in k for k in client.get("/v1/admin/keys", headers=ADMIN_HEADERS).json())


BAD_REQUESTS = [
    ("/v1/route", {"user": "alice", "messages": []}, 422, "messages"),
    ("/v1/route", {"user": "alice", "messages": ask("x"), "candidates": ["gpt-5"]}, 400, "unknown LLM(s) gpt-5"),
    ("/v1/route", {"user": "alice", "messages": [{"role": "system", "content": "x"}]}, 400, "no user message"),
    ("/v1/route", {"user": "alice", "messages": ask("   ")}, 400, "query is empty"),
    ("/v1/route", {"user": "alice", "messages": ask("x" * 5000)}, 413, "max_query_chars"),
    ("/v1/route", {"user": "alice", "messages": ask("x"), "cost_weight": "high"}, 422, "cost_weight"),
    ("/v1/route", {"user": "alice", "messages": ask("x"), "cost_weight": -1}, 422, "cost_weight"),
    ("/v1/route", {"user": 7, "messages": ask("x")}, 422, "user"),
    ("/v1/route", {"user": "alice", "messages": ask("x"), "candidate": ["gpt-4"]}, 422, "candidate"),
    ("/v1/route", {"user": "alice", "messages": [{"role": "robot", "content": "x"}]}, 422, "role"),
    ("/v1/route", {"user": "alice", "messages": ask("\ud800 half a pair")}, 422, "lone surrogate"),
    ("/v1/route", {"user": "alice", "messages": ask("nul \x00 inside")}, 422, "NUL character"),
    ("/v1/feedback", {"kind": "stars", "route_id": "r"}, 422, "kind"),
    ("/v1/feedback", {"kind": "rating", "route_id": "nope", "rating": 1}, 404, "no route 'nope'"),
    ("/v1/feedback", {"kind": "thumbs", "route_id": "r", "thumbs": "sideways"}, 422, "thumbs"),
    ("/v1/feedback", {"kind": "record", "record": {"user": "alice"}}, 422, "record.conversation"),
    (
        "/v1/feedback",
        {"kind": "record", "record": {"user": "alice", "conversation": "c", "turn": 1, "query": "q",
                                       "responses": [{"llm": "gpt-5", "rating": 1}]}},
        400,
        "unknown LLM(s) gpt-5",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "status", "words"), BAD_REQUESTS)
def test_bad_requests_get_one_line_and_store_nothing(
    client: TestClient, store: Store, path: str, body: dict, status: int, words: str
) -> None:
    headers = {**key_for(client, "alice"), "Content-Type": "application/json"}
    routes_written(client)
    before = (store.count("routes"), store.count("feedback"))
    answer = client.post(path, content=json.dumps(body).encode(), headers=headers)  # ASCII: lone surrogates escaped
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert isinstance(detail, str) and len(detail.splitlines()) == 1 and words in detail
    assert (store.count("routes"), store.count("feedback")) == before


def test_malformed_and_oversized_bodies(client: TestClient, store: Store) -> None:
    headers = {**key_for(client, "alice"), "Content-Type": "application/json"}
    routes_written(client)
    before = (store.count("routes"), store.count("feedback"))
    broken = client.post("/v1/route", content=b'{"user": "alice", "messages": [', headers=headers)
    assert broken.status_code == 400 and "not valid JSON" in broken.json()["detail"]
    huge = client.post("/v1/feedback", content=b"[" + b"1," * 1_100_000 + b"1]", headers=headers)
    assert huge.status_code == 413 and "max_body_bytes" in huge.json()["detail"]
    assert (store.count("routes"), store.count("feedback")) == before


def test_small_things_a_new_user_meets(client: TestClient, store: Store) -> None:
    alice = key_for(client, "small-alice")
    routed = client.post("/v1/route", json={"messages": ask("hello")}, headers=alice)  # a one-user key needs no user
    assert routed.status_code == 200 and routed.json()["user"] == "small-alice", routed.text
    tenant = key_for(client, "acme/*")
    unnamed = client.post("/v1/route", json={"messages": ask("hello")}, headers=tenant)
    assert unnamed.status_code == 422 and unnamed.json()["detail"].startswith("user: is required"), unnamed.text
    missing = client.post("/v1/chat/completions", json={"model": "nope", "messages": ask("hi")}, headers=alice)
    assert missing.status_code == 404 and "add [upstreams.NAME]" in missing.json()["detail"], missing.text
    overview = client.get("/ui/api/overview", headers=alice).json()
    assert "model_dir" not in overview["model"] and "database" not in overview["store"]
    assert "model_dir" in client.get("/ui/api/overview", headers=ADMIN_HEADERS).json()["model"]
    page = client.get("/ui/model", headers=alice).text
    assert str(client.app.state.service.engine.model_dir) not in page
    hi = ask("hi")
    route_id = routed.json()["route_id"]
    for path, body, words in (  # accepted before, and not to be: a flag for a weight, a string for a rating, NaN
        ("/v1/route", {"messages": hi, "cost_weight": True}, "cost_weight: Input should be a valid number"),
        ("/v1/chat/completions", {"model": "auto", "messages": hi, "cost_weight": float("nan")}, "cost_weight:"),
        ("/v1/chat/completions", {"model": "auto", "messages": hi, "cost_weight": float("inf")}, "cost_weight:"),
        ("/v1/chat/completions", {"model": "auto", "messages": hi, "temperature": float("nan")}, "temperature:"),
        ("/v1/feedback", {"kind": "rating", "route_id": route_id, "rating": "0.5"}, "rating: Input should be"),
    ):
        content = json.dumps(body)  # NaN and Infinity as JSON's extensions, which Python's parser accepts
        refused = client.post(path, content=content, headers={**alice, "Content-Type": "application/json"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith(words), (body, refused.text)
    vote = [{"llm": "gpt-4", "rating": 1}]
    long_query = {"user": "small-alice", "conversation": "c", "turn": 1, "query": "q" * 4001, "responses": vote}
    too_long = client.post("/v1/feedback", json={"kind": "record", "record": long_query}, headers=alice)
    assert too_long.status_code == 413 and "max_query_chars" in too_long.json()["detail"], too_long.text
    reload = client.post("/v1/admin/reload", json={"model_dir": "d" * 300}, headers=ADMIN_HEADERS)
    assert reload.status_code == 400 and "cannot be read as a model folder" in reload.json()["detail"], reload.text
    wrong = client.put("/v1/users/small-alice", headers=alice)  # a 405 names every method the path takes
    assert wrong.status_code == 405 and wrong.headers["allow"] == "DELETE, GET", wrong.headers
    assert client.get("/v1/users/a%00b", headers=ADMIN_HEADERS).status_code == 400  # a NUL never reaches the store


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert {"/v1/route", "/v1/feedback", "/v1/users/{user}", "/v1/chat/completions", "/v1/admin/reload"} <= set(
        spec["paths"]
    )
    assert spec["paths"]["/v1/route"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorOut"
    }
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_and_choices(client: TestClient) -> None:
    headers = key_for(client, "metric-user")
    chosen = route(client, headers, "metric-user", "Count me")["llm"]
    text = client.get("/metrics").text
    assert 'gmtrouter_requests_total{endpoint="/v1/route",method="POST",status="200"}' in text
    assert f'gmtrouter_route_choices_total{{llm="{chosen}"}}' in text
    assert 'gmtrouter_request_seconds_bucket{endpoint="/v1/route",le="0.1",method="POST"}' in text
    assert "gmtrouter_route_batch_size_count" in text


def test_cli_creates_keys_the_service_accepts(client: TestClient, db_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gmtrouter", "serve", "keys", "create", "--user", "cli-user", "--db", db_url],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}
    assert route(client, headers, "cli-user", "From the command line")["user"] == "cli-user"
    listed = subprocess.run(
        [sys.executable, "-m", "gmtrouter", "serve", "keys", "list", "--db", db_url],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert token not in listed.stdout and "cli-user" in json.dumps(json.loads(listed.stdout))


def test_retrain_from_stored_feedback_then_reload(client: TestClient, tmp_path: Path) -> None:
    """Last in this module: it swaps in a new model trained on what the earlier tests stored."""
    assert client.post("/v1/admin/retrain", json={"output": ""}, headers=ADMIN_HEADERS).status_code == 422
    settings = {"encoder": "hashing-64", "steps": 2}
    output = tmp_path / "retrained"
    job = client.post("/v1/admin/retrain", json={"output": str(output), "settings": settings}, headers=ADMIN_HEADERS)
    assert job.status_code == 202 and job.json()["status"] == "running"
    for _ in range(600):  # a bound on the polling, not a time limit on training
        state = client.get(f"/v1/admin/jobs/{job.json()['job_id']}", headers=ADMIN_HEADERS).json()
        if state["status"] != "running" and (state["status"] == "failed" or state["reloaded"]):
            break
        time.sleep(0.5)
    assert (state["status"], state["returncode"], state["reloaded"]) == ("succeeded", 0, True), state["log_tail"]
    health = client.get("/healthz").json()
    assert (health["model_version"], health["data_hash"]) == tuple(model_identity(output).values())
    assert client.get("/v1/users/newcomer-1", headers=ADMIN_HEADERS).json()["interactions"] == 15
