"""The service as a deployed process: crash durability, reload under load, the OpenAI client through our proxy."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from gmtrouter.registry.checkpoint import model_identity
from gmtrouter.serve.store import Store
from tests.serve_support import ADMIN, echo_upstream, served_model, server, start_server, stop  # noqa: F401

pytestmark = pytest.mark.slow
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def record(user: str, n: int) -> dict:
    return {
        "user": user,
        "conversation": f"{user}/{n}",
        "turn": 1,
        "query": f"Question number {n} from {user}",
        "responses": [{"llm": "gpt-4", "rating": n % 2}, {"llm": "vicuna-13b-v1.2", "rating": 1 - n % 2}],
    }


def test_every_acknowledged_feedback_survives_a_kill(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'crash.db'}"
    process, base = start_server(served_model, db)
    writers, per_writer = 6, 150
    acknowledged: list[tuple[str, int]] = []
    attempted: list[tuple[str, int]] = []
    lock = threading.Lock()

    def write(w: int) -> None:
        user = f"crash-{w}"
        with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=30) as client:
            for n in range(per_writer):
                with lock:
                    attempted.append((user, n))
                try:
                    answer = client.post("/v1/feedback", json={"kind": "record", "record": record(user, n)})
                except httpx.HTTPError:
                    return  # the server is gone
                assert answer.status_code == 200, answer.text
                with lock:
                    acknowledged.append((user, n))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 120 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    for thread in threads:
        thread.join(timeout=60)
    assert 120 <= len(acknowledged) < writers * per_writer, "the kill should land mid-burst"

    store = Store(db)
    stored = {(row.user, int(row.record.conversation.split("/")[1])) for row in store.feedback_rows()}
    assert set(acknowledged) <= stored
    assert store.count("feedback") == len(stored)  # nothing twice
    assert stored <= set(attempted)

    with server(served_model, db) as again, httpx.Client(base_url=again, headers=ADMIN_HEADERS, timeout=30) as client:
        profile = client.get("/v1/users/crash-0").json()
        assert profile["interactions"] == profile["stored_feedback"] == store.count("feedback", "crash-0")
        for user, n in sorted(set(attempted)):  # clients retry everything they sent; acknowledged ones repeat
            answer = client.post("/v1/feedback", json={"kind": "record", "record": record(user, n)})
            assert answer.status_code == 200
            assert answer.json()["duplicate"] is ((user, n) in stored)
    assert store.count("feedback") == len(set(attempted))
    store.close()


def test_reload_swaps_models_under_load_without_errors(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    other = shutil.copytree(served_model, tmp_path / "model-b")
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**config, "created": "another time"}))  # another version
    versions = model_identity(served_model)["model_version"], model_identity(other)["model_version"]
    assert versions[0] != versions[1]
    db = f"sqlite:///{tmp_path / 'reload.db'}"
    with server(served_model, db) as base:
        statuses: list[int] = []
        failures: list[str] = []
        stop_at = time.monotonic() + 120

        def load(worker: int) -> None:
            with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=60) as client:
                for n in range(60):
                    if time.monotonic() > stop_at:
                        return
                    body = {"user": f"expert_{worker}", "messages": [{"role": "user", "content": f"q{worker}-{n}"}]}
                    try:
                        statuses.append(client.post("/v1/route", json=body).status_code)
                    except httpx.HTTPError as error:
                        failures.append(repr(error))

        threads = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        with httpx.Client(base_url=base, headers=ADMIN_HEADERS, timeout=120) as admin:
            while len(statuses) < 20:
                time.sleep(0.01)
            swapped = admin.post("/v1/admin/reload", json={"model_dir": str(other)})
            assert swapped.status_code == 200, swapped.text
            seen_during = len(statuses)
            for thread in threads:
                thread.join(timeout=180)
            assert admin.get("/healthz").json()["model_version"] == versions[1]
            bad = admin.post("/v1/admin/reload", json={"model_dir": str(tmp_path / "missing")})
            assert bad.status_code == 400 and "not a gmtrouter model folder" in bad.json()["detail"]
            assert admin.get("/healthz").json()["model_version"] == versions[1]
        assert failures == [] and set(statuses) == {200}
        assert 20 <= seen_during < len(statuses) == 240


def test_openai_client_through_the_proxy(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = f"sqlite:///{tmp_path / 'proxy.db'}"
    with echo_upstream() as upstream:
        config = tmp_path / "serve.toml"
        llms = ["alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "llama-13b", "vicuna-13b-v1.2"]
        lines = []
        for llm in llms:
            lines += [f'[upstreams."{llm}"]', f'base_url = "{upstream}"', 'api_key_env = "ECHO_KEY"']
            if llm == "gpt-4":
                lines.append('model = "echo-gpt4"')
        config.write_text("\n".join(lines) + "\n")
        with server(served_model, db, config, env={"ECHO_KEY": "upstream-secret"}) as base:
            key = httpx.post(f"{base}/v1/admin/keys", json={"users": ["oa-user"]}, headers=ADMIN_HEADERS).json()["key"]
            client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=60)
            question = [{"role": "user", "content": "What is the capital of France?"}]

            answer = client.chat.completions.create(model="auto", messages=question)  # the key names one user
            chosen = answer.model
            assert chosen in llms
            upstream_name = "echo-gpt4" if chosen == "gpt-4" else chosen
            assert answer.choices[0].message.content == f"{upstream_name} says: What is the capital of France?"
            route_id = answer.model_extra["route_id"]

            chunks = list(client.chat.completions.create(model="auto", messages=question, user="oa-user", stream=True))
            assert {c.model for c in chunks} == {chosen}
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == answer.choices[0].message.content

            direct = client.chat.completions.create(model="gpt-4", messages=question)
            assert (direct.model, direct.choices[0].message.content) == (
                "gpt-4",
                f"echo-gpt4 says: {question[0]['content']}",
            )
            with pytest.raises(openai.NotFoundError, match="not served here"):
                client.chat.completions.create(model="gpt-5", messages=question)
            with pytest.raises(openai.UnprocessableEntityError, match="max_tokens: must be a whole number, at least 1"):
                client.chat.completions.create(model="auto", messages=question, max_tokens=0)
            with pytest.raises(openai.PermissionDeniedError):
                client.chat.completions.create(model="auto", messages=question, user="someone-else")
            with pytest.raises(openai.AuthenticationError):
                openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0).chat.completions.create(
                    model="auto", messages=question
                )

            feedback = {"kind": "thumbs", "route_id": route_id, "thumbs": "up"}
            stored = httpx.post(f"{base}/v1/feedback", json=feedback, headers={"Authorization": f"Bearer {key}"})
            assert stored.status_code == 200
            assert stored.json()["record"]["responses"] == [
                {"llm": chosen, "rating": 1.0, "text": answer.choices[0].message.content}
            ]
    assert os.path.exists(tmp_path / "proxy.db")
