"""Hostile and careless input against the real server (a `gmtrouter serve` process): a clear 4xx, never a 5xx,
nothing stored from a refused request, limits and rate limits as configured, forgetting that leaves nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gmtrouter.serve.store import Store
from gmtrouter.text.cache import CachedEncoder
from gmtrouter.text.hashing import HashingEncoder
from tests.conftest import REPO
from tests.serve_support import (  # noqa: F401 - served_model is a fixture
    ADMIN,
    child_env,
    echo_upstream,
    long_values_are_refused,
    routes_written,
    served_model,
    server,
    start_server,
    stop,
)

pytestmark = pytest.mark.slow
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
LLMS = ["alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "llama-13b", "vicuna-13b-v1.2"]


def ask(text: str) -> list[dict[str, object]]:
    return [{"role": "user", "content": text}]


def counts(store: Store, base: str) -> tuple[int, int]:
    """(routes, feedback) stored, once the routes answered so far are committed (they are written behind)."""
    with httpx.Client(base_url=base, timeout=60) as client:
        routes_written(client)
    return store.count("routes"), store.count("feedback")


def write_config(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def plain(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:  # noqa: F811
    """One server with a small body limit; yields its URL and its store."""
    folder = tmp_path_factory.mktemp("hardening")
    db = f"sqlite:///{folder / 'plain.db'}"
    config = write_config(folder / "plain.toml", ["max_body_bytes = 4000"])
    store = Store(db)
    with server(served_model, db, config) as base:
        yield base, store
    store.close()


def test_a_text_part_that_is_not_a_string_is_422(plain: tuple[str, Store]) -> None:
    base, store = plain
    before = counts(store, base)
    for text in (5, None, ["a"], {"t": 1}):
        parts = [{"role": "user", "content": [{"type": "text", "text": text}]}]
        for path, body in (
            ("/v1/route", {"user": "parts", "messages": parts}),
            ("/v1/chat/completions", {"model": "auto", "user": "parts", "messages": parts}),
        ):
            answer = httpx.post(base + path, json=body, headers=ADMIN_HEADERS)
            assert answer.status_code == 422, (path, text, answer.text)
            assert "messages.0.content" in answer.json()["detail"]
    assert counts(store, base) == before
    fine = [{"role": "user", "content": [{"type": "text", "text": "a haiku"}, {"type": "image_url", "image_url": {}}]}]
    assert httpx.post(base + "/v1/route", json={"user": "parts", "messages": fine}, headers=ADMIN_HEADERS).is_success


def test_a_chunked_body_over_the_limit_is_413(plain: tuple[str, Store]) -> None:
    base, store = plain
    before = counts(store, base)
    body = json.dumps({"user": "big", "messages": ask("x" * 5000)}).encode()

    def chunks() -> Iterator[bytes]:  # no Content-Length: the server only learns the size by reading
        for start in range(0, len(body), 1000):
            yield body[start : start + 1000]

    for content in (chunks(), body):
        answer = httpx.post(
            base + "/v1/route", content=content, headers={**ADMIN_HEADERS, "Content-Type": "application/json"}
        )
        assert answer.status_code == 413, answer.text
        assert "max_body_bytes" in answer.json()["detail"]
    assert counts(store, base) == before


def test_long_values_for_bounded_columns_are_422_on_sqlite(plain: tuple[str, Store]) -> None:
    long_values_are_refused(*plain)


def test_healthz_names_the_model_not_the_server_paths(plain: tuple[str, Store], served_model: Path) -> None:  # noqa: F811
    base, store = plain
    health = httpx.get(base + "/healthz").json()
    assert set(health) == {
        "status",
        "model_version",
        "data_hash",
        "llms",
        "history_records",
        "pending_changes",
        "feedback_unreadable",
        "pending_routes",
        "refitting",
        "schema_version",
    }
    config = json.loads((served_model / "config.json").read_text())
    assert (
        health["status"] == "ok" and health["data_hash"] == config["data_hash"] and len(health["model_version"]) == 16
    )
    text = json.dumps(health)
    assert str(served_model) not in text and "/" not in text and store.url not in text


def test_rate_limits_per_key_answer_429_with_retry_after(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'rate.db'}"
    config = write_config(tmp_path / "rate.toml", ["rate_requests_per_minute = 5", "rate_feedback_per_minute = 2"])
    store = Store(db)
    with server(served_model, db, config) as base, httpx.Client(base_url=base, timeout=60) as client:

        def key(user: str) -> dict[str, str]:
            made = client.post("/v1/admin/keys", json={"users": [user]}, headers=ADMIN_HEADERS)
            return {"Authorization": f"Bearer {made.json()['key']}"}

        first, second, voter = key("rate-a"), key("rate-b"), key("rate-c")
        statuses = [
            client.post("/v1/route", json={"user": "rate-a", "messages": ask(f"q{n}")}, headers=first) for n in range(6)
        ]
        assert [s.status_code for s in statuses] == [200] * 5 + [429]
        refused = statuses[-1]
        assert 1 <= int(refused.headers["Retry-After"]) <= 12 and "5 requests a minute" in refused.json()["detail"]
        routes_written(client)
        assert store.count("routes", "rate-a") == 5
        # the console is under the same limit: its Try-it calls (each may run the encoder) and its pages
        tried = client.post("/ui/api/try", json={"user": "rate-a", "query": "a fresh query"}, headers=first)
        page = client.get("/ui/users", headers=first)
        assert tried.status_code == page.status_code == 429 and int(page.headers["Retry-After"]) >= 1, tried.text
        assert (
            client.post("/v1/route", json={"user": "rate-b", "messages": ask("q")}, headers=second).status_code == 200
        )
        for _ in range(8):  # the admin is not limited
            assert client.post(
                "/v1/route", json={"user": "rate-a", "messages": ask("q")}, headers=ADMIN_HEADERS
            ).is_success

        def vote(n: int) -> httpx.Response:
            record = {
                "user": "rate-c",
                "conversation": f"rate-c/{n}",
                "turn": 1,
                "query": f"question {n}",
                "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "alpaca-13b", "rating": 0}],
            }
            return client.post("/v1/feedback", json={"kind": "record", "record": record}, headers=voter)

        votes = [vote(n) for n in range(3)]
        assert [v.status_code for v in votes] == [200, 200, 429]
        assert "2 feedback events a minute" in votes[-1].json()["detail"] and int(votes[-1].headers["Retry-After"]) >= 1
        assert store.count("feedback", "rate-c") == 2
    store.close()


def test_chat_forwards_only_allowed_fields_within_caps(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'chat.db'}"
    store = Store(db)
    with echo_upstream() as upstream:
        lines = ["chat_max_tokens = 100", "chat_max_n = 2"]
        for llm in LLMS:
            lines += [f'[upstreams."{llm}"]', f'base_url = "{upstream}"']
            lines.append('api_key = "wrong-secret"' if llm == "gpt-4" else 'api_key = "upstream-secret"')
        config = write_config(tmp_path / "chat.toml", lines)
        with (
            server(served_model, db, config) as base,
            httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client,
        ):
            question = {"user": "chatter", "messages": ask("What is the capital of France?")}
            candidates = [m for m in LLMS if m != "gpt-4"]
            before = counts(store, base)
            for extra, words in (
                ({"logprobs": True}, "logprobs: this service does not forward it"),
                ({"max_tokens": 101}, "max_tokens: at most 100 here (chat_max_tokens)"),
                ({"max_completion_tokens": 5000}, "max_completion_tokens: at most 100"),
                ({"n": 3}, "n: at most 2 here (chat_max_n)"),
            ):
                answer = client.post("/v1/chat/completions", json={"model": "auto", **question, **extra})
                assert answer.status_code == 422 and words in answer.json()["detail"], answer.text
                assert answer.json()["error"]["message"] == answer.json()["detail"]
            assert counts(store, base) == before

            body = {"model": "auto", **question, "candidates": candidates, "cost_weight": 0.5, "temperature": 0.2}
            answer = client.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text
            received = answer.json()["received"]
            assert received["fields"] == ["max_tokens", "messages", "model", "stream", "temperature", "user"]
            assert received["max_tokens"] == 100  # the cap, sent for a request that named none
            answer = client.post("/v1/chat/completions", json={**body, "max_tokens": 7, "n": 2})
            assert answer.json()["received"]["max_tokens"] == 7 and answer.json()["received"]["n"] == 2

            before = counts(store, base)
            refused = client.post("/v1/chat/completions", json={"model": "gpt-4", **question})
            assert refused.status_code == 502, refused.text
            assert "upstream of 'gpt-4'" in refused.json()["detail"] and "credentials (401" in refused.json()["detail"]
            assert counts(store, base) == before  # no answer reached the user: no decision is kept, none to rate
    store.close()


def _encoded(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("gmtrouter_queries_encoded_total "):
            return float(line.split()[1])
    raise AssertionError("no gmtrouter_queries_encoded_total in /metrics")


def test_forget_removes_rows_history_and_cached_texts(plain: tuple[str, Store]) -> None:
    base, store = plain
    with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client:
        secret = "My neighbour Mr Wobblesworth owes me 4,217 euros; draft a polite reminder."
        routed = client.post("/v1/route", json={"user": "leaver", "messages": ask(secret)}).json()
        thumbs = client.post("/v1/feedback", json={"kind": "thumbs", "route_id": routed["route_id"], "thumbs": "up"})
        assert thumbs.status_code == 200, thumbs.text
        before = _encoded(client)
        client.post("/v1/route", json={"user": "leaver", "messages": ask(secret)})
        assert _encoded(client) == before  # a routed query is kept in memory...
        profile = client.get("/v1/users/leaver").json()
        assert profile["interactions"] == profile["stored_feedback"] == 1

        gone = client.delete("/v1/users/leaver").json()
        assert (gone["feedback_deleted"], gone["routes_deleted"]) == (1, 2)
        assert store.count("routes", "leaver") == store.count("feedback", "leaver") == 0
        assert client.get("/v1/users/leaver").json()["known"] is False
        client.post("/v1/route", json={"user": "someone-else", "messages": ask(secret)})
        assert _encoded(client) == before + 1  # ...until its user is forgotten: it had to be embedded again


def test_forget_drops_texts_from_the_cache_file(tmp_path: Path) -> None:
    """The encoder's disk cache (the one real text encoders use) loses a forgotten text, row and all."""
    encoder = CachedEncoder(HashingEncoder(16), cache_dir=tmp_path)
    encoder.encode(["kept text", "forgotten text"])
    encoder.forget(["forgotten text"])
    again = CachedEncoder(HashingEncoder(16), cache_dir=tmp_path)
    keys = [again.cache.key(t) for t in ("kept text", "forgotten text")]
    assert list(again.cache.get(keys)) == [keys[0]]


def test_forget_racing_feedback_leaves_history_and_store_agreeing(plain: tuple[str, Store]) -> None:
    """Feedback committed just before a DELETE must not come back into the live history after it."""
    base, store = plain
    user = "racer"

    def record(n: int) -> dict:
        return {
            "kind": "record",
            "record": {
                "user": user,
                "conversation": f"race/{n}",
                "turn": 1,
                "query": f"race question {n}",
                "responses": [{"llm": "gpt-4", "rating": n % 2}, {"llm": "claude-v1", "rating": 1 - n % 2}],
            },
        }

    def one_round(client: httpx.Client, first: int, delay: float) -> list[str]:
        """Four feedbacks and a DELETE released together; the DELETE lands `delay` seconds later."""
        go, errors = threading.Barrier(5), []

        def send(n: int) -> None:
            go.wait()
            answer = client.post("/v1/feedback", json=record(n))
            if answer.status_code != 200:
                errors.append(answer.text)

        def forget() -> None:
            go.wait()
            time.sleep(delay)
            if client.delete(f"/v1/users/{user}").status_code != 200:
                errors.append("forget failed")

        threads = [threading.Thread(target=send, args=(first + k,)) for k in range(4)]
        threads.append(threading.Thread(target=forget))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return errors

    with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client:
        for number in range(12):  # the DELETE lands at different points of the feedback commits
            assert one_round(client, 4 * number, 0.002 * number) == []
            profile = client.get(f"/v1/users/{user}").json()
            stored = store.count("feedback", user)
            assert profile["interactions"] == profile["stored_feedback"] == stored, (number, profile, stored)


def test_a_short_admin_key_is_refused_and_admin_access_is_logged(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'admin.db'}"
    args = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(served_model), "--db", db, "--port", "0"]
    short = subprocess.run(
        args, cwd=REPO, env=child_env(GMTROUTER_ADMIN_KEY="change-me"), capture_output=True, text=True, timeout=120
    )
    assert short.returncode == 2 and "Traceback" not in short.stderr
    assert short.stderr.strip().splitlines() == [
        "error: GMTROUTER_ADMIN_KEY has 9 characters; an admin key needs at least 16 "
        "(make one: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    ]
    for env, words in (
        ({}, "reachable with $GMTROUTER_ADMIN_KEY"),
        ({"GMTROUTER_ADMIN_KEY": ""}, "unreachable: no admin key"),
    ):
        process, _base = start_server(served_model, db, env=env)
        stop(process)
        assert words in process.stdout.read()


def test_retraining_keeps_the_database_url_off_command_lines(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db_file = tmp_path / "secret-password-here.db"
    db = f"sqlite:///{db_file}"
    with server(served_model, db) as base, httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client:
        record = {
            "user": "u1",
            "conversation": "c1",
            "turn": 1,
            "query": "q",
            "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "alpaca-13b", "rating": 0}],
        }
        assert client.post("/v1/feedback", json={"kind": "record", "record": record}).is_success
        settings = {"encoder": "hashing-64", "steps": 2}
        job = client.post("/v1/admin/retrain", json={"output": str(tmp_path / "m2"), "settings": settings}).json()
        seen: list[str] = []
        state = job
        for _ in range(6000):  # a bound on the polling, not a time limit on training
            for pid in os.listdir("/proc"):
                try:
                    line = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except (FileNotFoundError, ProcessLookupError, PermissionError, NotADirectoryError):
                    continue
                if "gmtrouter train" in line and str(tmp_path / "m2") in line:
                    seen.append(line)
            state = client.get(f"/v1/admin/jobs/{job['job_id']}").json()
            if state["status"] != "running":
                break
            time.sleep(0.02)
        assert state["status"] == "succeeded", state["log_tail"]
        assert "1 stored feedback records from the database" in state["log_tail"]  # the URL reached the child
        assert seen, "the training process was never seen running"
        assert not [line for line in seen if str(db_file) in line or "--from-db" in line]
