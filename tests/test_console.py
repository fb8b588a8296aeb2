"""The web console over HTTP, in process: sign-in, every page, who may see what, Try it against /v1/route.

FastAPI's TestClient over the real app, a real SQLite file and the small trained model of the service tests.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from gmtrouter.serve.store import Store
from tests.conftest import REPO
from tests.serve_support import ADMIN, routes_written, served_model  # noqa: F401 - a fixture

pytestmark = pytest.mark.slow
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
QUERY = "Write a haiku about rain"


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('console') / 'service.db'}"


@pytest.fixture(scope="module")
def app_client(served_model: Path, db_url: str) -> Iterator[TestClient]:  # noqa: F811
    config = load_config(None, model=served_model, db=db_url, admin_key=ADMIN, report=REPO / "docs" / "results.md")
    with TestClient(create_app(config)) as client:
        yield client


@pytest.fixture(scope="module")
def activity(app_client: TestClient) -> dict[str, str]:
    """Routes and feedback through the API: two users, one of them with a user key."""
    made = app_client.post("/v1/admin/keys", json={"users": ["taste-1"], "name": "t1"}, headers=ADMIN_HEADERS)
    key = made.json()["key"]
    ids = {}
    for user, headers in (("taste-1", {"Authorization": f"Bearer {key}"}), ("taste-2", ADMIN_HEADERS)):
        answer = app_client.post(
            "/v1/route",
            json={"user": user, "messages": [{"role": "user", "content": QUERY}], "cost_weight": 0.5},
            headers=headers,
        )
        assert answer.status_code == 200, answer.text
        ids[user] = answer.json()["route_id"]
        answer = app_client.post(
            "/v1/feedback", json={"kind": "thumbs", "route_id": ids[user], "thumbs": "up"}, headers=headers
        )
        assert answer.status_code == 200, answer.text
    routes_written(app_client)  # the pages read route rows, which are committed behind the answers
    return {"key": key, "route_taste-1": ids["taste-1"], "route_taste-2": ids["taste-2"]}


def signed_in(client: TestClient, key: str) -> TestClient:
    client.cookies.clear()
    answer = client.post("/ui/login", data={"key": key, "next": "/ui"}, follow_redirects=False)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/ui"
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    return client


def test_pages_need_a_key(app_client: TestClient) -> None:
    app_client.cookies.clear()
    answer = app_client.get("/ui/users", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/ui/login?next=")
    bad = app_client.post("/ui/login", data={"key": "gmt_nope_nope"}, follow_redirects=False)
    assert bad.status_code == 401 and "unknown or revoked API key" in bad.text
    assert app_client.get("/ui/api/overview").status_code == 401
    assert app_client.post("/ui/api/try", json={"query": QUERY}).status_code == 401


def test_admin_sees_every_page_with_stored_data(app_client: TestClient, activity: dict[str, str]) -> None:
    client = signed_in(app_client, ADMIN)
    overview = client.get("/ui")
    assert overview.status_code == 200 and "<svg" in overview.text and "feedback agreement" in overview.text
    data = client.get("/ui/api/overview").json()
    assert data["store"]["routes"] >= 2 and data["store"]["feedback"] >= 2
    assert data["agreement"]["judged"] >= 2 and data["agreement"]["rate"] == 1.0  # thumbs up on each choice
    assert sum(data["activity"]["routes"]) >= 2
    assert abs(sum(data["traffic"].values()) - 1) < 1e-9
    assert data["model"]["data_hash"] and data["model"]["created"]

    users = client.get("/ui/users", params={"q": "taste-1"})
    assert users.status_code == 200 and "/ui/users/taste-1" in users.text and "taste-2" not in users.text
    page = client.get("/ui/users/taste-1")
    assert page.status_code == 200 and "What the router believes" in page.text and "Forget" in page.text
    assert activity["route_taste-1"] in page.text  # its recent decision links to it

    decisions = client.get("/ui/decisions")
    assert activity["route_taste-1"] in decisions.text and activity["route_taste-2"] in decisions.text
    detail = client.get(f"/ui/decisions/{activity['route_taste-1']}")
    assert detail.status_code == 200 and "thumbs" in detail.text
    assert re.search(r"<dt>cost weight</dt><dd>(0\.5|no effect)", detail.text)

    model = client.get("/ui/model")
    assert model.status_code == 200 and "mt-bench-kshot.png" in model.text
    figure = client.get("/ui/model/figures/mt-bench-kshot.png")
    assert figure.status_code == 200 and figure.headers["content-type"] == "image/png"
    assert client.get("/ui/model/figures/..%2F..%2Fpyproject.toml").status_code == 404
    assert client.get("/ui/try").status_code == 200
    assert client.get("/ui/static/console.css").status_code == 200


def test_user_key_sees_only_its_user(app_client: TestClient, activity: dict[str, str]) -> None:
    client = signed_in(app_client, activity["key"])
    assert client.get("/ui/users/taste-1").status_code == 200
    for path in ("/ui/users/taste-2", f"/ui/users/{quote('taste-2', safe='')}", "/ui/decisions?user=taste-2"):
        refused = client.get(path)
        assert refused.status_code == 403 and "may not act for user 'taste-2'" in html.unescape(refused.text)
    assert client.get(f"/ui/decisions/{activity['route_taste-2']}").status_code == 404
    listed = client.get("/ui/users").text
    assert "/ui/users/taste-1" in listed and "/ui/users/taste-2" not in listed
    assert activity["route_taste-2"] not in client.get("/ui/decisions").text
    assert client.get("/ui/api/overview").json()["store"]["routes"] == 1
    forbidden = client.post("/ui/api/try", json={"user": "taste-2", "query": QUERY})
    assert forbidden.status_code == 403
    forget = client.post("/ui/forget", data={"user": "taste-1", "confirm": "taste-1"})
    assert forget.status_code == 403 and "admin" in forget.text


def test_try_ranks_as_route_does_and_stores_nothing(app_client: TestClient, db_url: str, activity: dict) -> None:
    client = signed_in(app_client, ADMIN)
    store = Store(db_url)
    routes_written(app_client)
    before = store.count("routes")
    body = {
        "user": "taste-3",
        "query": QUERY,
        "candidates": ["gpt-4", "claude-v1", "vicuna-13b-v1.2"],
        "cost_weight": 1,
    }
    tried = client.post("/ui/api/try", json=body)
    assert tried.status_code == 200, tried.text
    assert store.count("routes") == before
    routed = app_client.post(
        "/v1/route",
        json={
            "user": "taste-3",
            "messages": [{"role": "user", "content": QUERY}],
            **{k: body[k] for k in ("candidates", "cost_weight")},
        },
        headers=ADMIN_HEADERS,
    ).json()
    assert [r["llm"] for r in tried.json()["ranking"]] == [r["llm"] for r in routed["ranking"]]
    assert [r["score"] for r in tried.json()["ranking"]] == pytest.approx([r["score"] for r in routed["ranking"]])
    assert tried.json()["explanation"] == routed["explanation"]
    anonymous = client.post("/ui/api/try", json={"query": QUERY})
    assert anonymous.status_code == 200 and anonymous.json()["known_user"] is False
    for bad, status, words in (
        ({"query": ""}, 422, "query"),
        ({"query": QUERY, "candidates": ["no-such-llm"]}, 400, "no-such-llm"),
        ({"query": QUERY, "cost_weight": -1}, 422, "cost_weight"),
    ):
        answer = client.post("/ui/api/try", json=bad)
        assert answer.status_code == status and words in answer.json()["detail"]
        assert "\n" not in answer.json()["detail"]
    store.close()


def test_forget_needs_the_user_id_typed_again(app_client: TestClient, db_url: str) -> None:
    client = signed_in(app_client, ADMIN)
    app_client.post(
        "/v1/feedback",
        json={
            "kind": "record",
            "record": {
                "user": "gone",
                "conversation": "g/1",
                "turn": 1,
                "query": QUERY,
                "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "claude-v1", "rating": 0}],
            },
        },
        headers=ADMIN_HEADERS,
    )
    store = Store(db_url)
    assert store.count("feedback", "gone") == 1
    wrong = client.post("/ui/forget", data={"user": "gone", "confirm": "gon"})
    assert wrong.status_code == 400 and store.count("feedback", "gone") == 1
    done = client.post("/ui/forget", data={"user": "gone", "confirm": "gone"}, follow_redirects=False)
    assert done.status_code == 303 and store.count("feedback", "gone") == 0
    assert "Forgot" in client.get(done.headers["location"]).text
    store.close()


def test_serve_refuses_a_missing_report_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.serve_support import child_env

    args = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(tmp_path), "--report", str(tmp_path / "x.md")]
    result = subprocess.run(args, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "no such benchmark report" in lines[0], result.stderr
