"""Helpers for the service tests: a small trained model, a real server process, a real upstream process."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gmtrouter.data.schema import Interaction, Response, read_records
from tests.conftest import REPO

ADMIN = "test-admin-key-0123456789"
MODEL_USERS = 20  # MT-Bench users with most records
TASTE_USERS, TASTE_RECORDS = 30, 16


def taste_users(records: list[Interaction], seed: int = 0) -> list[Interaction]:
    """Users with one consistent favourite LLM each, over MT-Bench queries.

    MT-Bench's voters mostly agree with each other, so a model trained on them alone learns the population's
    order and little about any one user; users whose favourites differ make the user's own history matter, which
    is what the feedback tests need to see.
    """
    rng = random.Random(seed)
    llms = sorted({m for r in records for m in r.llms})
    queries = sorted({r.query for r in records})
    made = []
    for u in range(TASTE_USERS):
        favourite = llms[u % len(llms)]
        for k in range(TASTE_RECORDS):
            pair = [favourite, rng.choice([m for m in llms if m != favourite])]
            rng.shuffle(pair)
            made.append(
                Interaction(
                    user=f"taste-{u}",
                    conversation=f"taste-{u}/{k}",
                    turn=1,
                    query=rng.choice(queries),
                    responses=[Response(llm=m, rating=float(m == favourite)) for m in pair],
                )
            )
    return made


def train_small_model(records_path: Path, out: Path) -> Path:
    """GMTRouter on a few MT-Bench users plus taste users: hashing encoder, 150 steps, its user-topic deviation
    kept on (`topic_prior`), so that routing reads query vectors and the encoder's caches are exercised."""
    import torch

    from gmtrouter.registry.checkpoint import save_router
    from gmtrouter.registry.routers import make_router

    torch.set_num_threads(1)
    records = read_records(records_path)
    top = {user for user, _ in Counter(r.user for r in records).most_common(MODEL_USERS)}
    records = [r for r in records if r.user in top] + taste_users(records)
    model = make_router(
        "gmtrouter",
        encoder="hashing-64",
        steps=150,
        lr=0.002,
        eval_every=25,
        topic_prior=8.0,
        progress=False,
        seed=0,
    )
    model.fit(records)
    return save_router(model, out, records)


@pytest.fixture(scope="session")
def served_model(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> Path:
    """One small model per test session (shared by every service test module through its folder)."""
    from gmtrouter.data.loaders import prepare
    from gmtrouter.data.schema import write_records

    base = tmp_path_factory.getbasetemp()
    model = base / "serve-model"
    if not (model / "config.json").is_file():
        records = base / "serve-mt-bench.jsonl"
        write_records(records, prepare("mt-bench", data_dir / "mt_bench"))
        train_small_model(records, model)
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that runs this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "GMTROUTER_ADMIN_KEY": ADMIN}
    env.update(extra)
    return env


def wait_ready(url: str, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 200; fail with the child's output if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = process.stdout.read() if process.stdout else ""
            raise AssertionError(f"process exited with {process.returncode}:\n{output[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"{url} did not answer within {timeout} s")


def routes_written(client: httpx.Client | object, timeout: float = 60.0) -> None:
    """Wait until every route the service answered has its row committed (`pending_routes` of /healthz: rows are
    written behind the answers); `client` is an httpx or FastAPI test client."""
    deadline = time.monotonic() + timeout
    while client.get("/healthz").json()["pending_routes"]:
        assert time.monotonic() < deadline, "route rows were not committed in time"
        time.sleep(0.01)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def start_server(
    model: Path, db: str, config: Path | None = None, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """`gmtrouter serve` as a child process on a free loopback port, answering /healthz; (process, base URL)."""
    port = free_port()
    args = [sys.executable, "-m", "gmtrouter", "serve", "--model", str(model), "--db", db, "--port", str(port)]
    args += ["--log-level", "warning"] + (["--config", str(config)] if config is not None else [])
    process = subprocess.Popen(
        args, cwd=REPO, env=child_env(**(env or {})), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{base}/healthz", process)
    except BaseException:
        stop(process)
        raise
    return process, base


@contextlib.contextmanager
def server(model: Path, db: str, config: Path | None = None, env: dict[str, str] | None = None) -> Iterator[str]:
    """`start_server` for the length of a with-block; yields the base URL."""
    process, base = start_server(model, db, config, env)
    try:
        yield base
    finally:
        stop(process)


@contextlib.contextmanager
def upstream_process(args: list[str]) -> Iterator[str]:
    """An OpenAI-compatible server started by `args` plus `--port PORT` on a free port; yields its /v1 URL."""
    port = free_port()
    process = subprocess.Popen(
        [*args, "--port", str(port)],
        cwd=REPO,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", process, timeout=60)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(process)


def echo_upstream() -> contextlib.AbstractContextManager[str]:
    """The OpenAI-compatible echo server (tests/echo_upstream.py) as a child process; yields its /v1 URL."""
    return upstream_process([sys.executable, str(Path(__file__).with_name("echo_upstream.py"))])


def long_values_are_refused(base: str, store: object) -> None:
    """Every string that goes into a bounded column, one character too long, or with a NUL: 4xx naming it,
    nothing stored.

    PostgreSQL enforces column lengths (SQLite does not), so the same values at the limit must be stored there.
    """
    headers = {"Authorization": f"Bearer {ADMIN}"}
    user, long_user = "u" * 256, "u" * 257

    def record(**change: object) -> dict:
        base_record = {
            "user": "long-values",
            "conversation": "long/1",
            "turn": 1,
            "query": "a question",
            "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "alpaca-13b", "rating": 0}],
        }
        return {"kind": "record", "record": {**base_record, **change}}

    ask = [{"role": "user", "content": "a question"}]
    cases = [
        ("POST", "/v1/route", {"user": long_user, "messages": ask}, {}, "user"),
        ("POST", "/v1/chat/completions", {"model": "auto", "user": long_user, "messages": ask}, {}, "user"),
        ("POST", "/v1/route", {"user": user, "messages": ask, "conversation": "c" * 257}, {}, "conversation"),
        (
            "POST",
            "/v1/chat/completions",
            {"model": "auto", "user": user, "messages": ask, "conversation": "c" * 257},
            {},
            "conversation",
        ),
        ("POST", "/v1/feedback", record(user=long_user), {}, "record.user"),
        ("POST", "/v1/feedback", record(conversation="c" * 600), {}, "record.conversation"),
        ("POST", "/v1/feedback", {**record(), "idempotency_key": "k" * 201}, {}, "idempotency_key"),
        ("POST", "/v1/feedback", record(), {"Idempotency-Key": "k" * 201}, "idempotency-key"),
        ("GET", f"/v1/users/{long_user}", None, {}, "user"),
        ("DELETE", f"/v1/users/{long_user}", None, {}, "user"),
        ("POST", "/v1/admin/keys", {"users": [long_user]}, {}, "users.0"),
        ("POST", "/v1/admin/keys", {"users": ["x"], "name": "n" * 257}, {}, "name"),
    ]
    # a NUL, which PostgreSQL's text cannot hold, in a body field or in the URL (paths and queries of the console)
    nul_cases = [
        ("POST", "/v1/admin/keys", {"users": ["x"], "name": "a\x00b"}, 422, "name"),
        ("POST", "/v1/feedback", {"kind": "thumbs", "route_id": "a\x00", "thumbs": "up"}, 422, "route_id"),
        ("POST", "/v1/feedback", record(query="a\x00b"), 422, "record.query"),
        ("GET", "/ui/decisions/%00", None, 400, "the url holds a nul"),
        ("GET", "/ui/users/acme%2F%00", None, 400, "the url holds a nul"),
        ("GET", "/ui/decisions?user=a%00", None, 400, "the url holds a nul"),
        ("DELETE", "/v1/admin/keys/%00", None, 400, "the url holds a nul"),
    ]
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        routes_written(client)
        before = [store.count(table) for table in ("routes", "feedback", "api_keys")]  # type: ignore[attr-defined]
        for method, path, body, extra, field in cases:
            answer = client.request(method, path, json=body, headers=extra)
            assert answer.status_code == 422, (path, field, answer.text)
            assert answer.json()["detail"].lower().startswith(field), (path, answer.json()["detail"])
        for method, path, body, status, words in nul_cases:
            answer = client.request(method, path, json=body)
            assert answer.status_code == status, (path, answer.text)
            assert answer.json()["detail"].lower().startswith(words), (path, answer.json()["detail"])
        assert [store.count(table) for table in ("routes", "feedback", "api_keys")] == before  # type: ignore[attr-defined]

        # at the limits, everything is stored
        routed = client.post("/v1/route", json={"user": user, "messages": ask, "conversation": "c" * 256})
        assert routed.status_code == 200, routed.text
        routes_written(client)  # committed behind the answer
        assert store.last_choice(user, "c" * 256) == routed.json()["llm"]  # type: ignore[attr-defined]
        at_limit = record(user=user, conversation="c" * 200)
        stored = client.post("/v1/feedback", json=at_limit, headers={"Idempotency-Key": "k" * 200})
        assert stored.status_code == 200, stored.text
        assert client.post("/v1/admin/keys", json={"users": [user], "name": "n" * 256}).status_code == 201
        assert client.get(f"/v1/users/{user}").json()["stored_feedback"] == 1
        assert client.delete(f"/v1/users/{user}").json()["feedback_deleted"] == 1
