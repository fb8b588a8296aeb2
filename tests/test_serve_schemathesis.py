"""Fuzzing generated from the OpenAPI schema itself (Schemathesis) against a running `gmtrouter serve` process.

Every operation the schema lists gets generated requests, valid and schema-violating ones, each sent three
times: without a key, with a user key and with the admin key. Whatever arrives, the answer is never a 5xx, and a
refused request leaves every table as it was. Retraining is left out with the admin key (it would train on
random folders).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode

from gmtrouter.serve.store import Store
from tests.serve_support import ADMIN, echo_upstream, served_model, server  # noqa: F401 - served_model is a fixture

pytestmark = pytest.mark.slow
LLMS = ["alpaca-13b", "claude-v1", "gpt-3.5-turbo", "gpt-4", "llama-13b", "vicuna-13b-v1.2"]
TABLES = ("routes", "feedback", "api_keys", "forgotten")
EXAMPLES = 8  # per operation and mode: every endpoint, bounded in time


@pytest.fixture(scope="module")
def running(served_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # noqa: F811
    folder = tmp_path_factory.mktemp("schemathesis")
    db = f"sqlite:///{folder / 'fuzz.db'}"
    with echo_upstream() as upstream:
        lines = ["max_query_chars = 2000", "max_body_bytes = 20000"]
        for llm in LLMS:
            lines += [f'[upstreams."{llm}"]', f'base_url = "{upstream}"', 'api_key = "upstream-secret"']
        (folder / "fuzz.toml").write_text("\n".join(lines) + "\n")
        with server(served_model, db, folder / "fuzz.toml") as base:
            admin = {"Authorization": f"Bearer {ADMIN}"}
            made = httpx.post(f"{base}/v1/admin/keys", json={"users": ["fuzz-user", "acme/*"]}, headers=admin)
            store = Store(db)
            yield {"base": base, "store": store, "user": {"Authorization": f"Bearer {made.json()['key']}"}}
            store.close()


def _rows(store: Store) -> list[int]:
    return [store.count(table) for table in TABLES]


def _send_three_ways(case: schemathesis.Case, running: dict) -> None:
    """The case without a key, with a user key and (but for retraining) with the admin key: no 5xx, and a
    refusal changes no table."""
    store: Store = running["store"]
    callers = [("no key", {}), ("user key", running["user"])]
    if case.operation.path != "/v1/admin/retrain":
        callers.append(("admin key", {"Authorization": f"Bearer {ADMIN}"}))
    for who, auth in callers:
        before = _rows(store)
        response = case.call(base_url=running["base"], headers=auth, timeout=60)
        where = f"{case.method} {case.formatted_path} with {who}"
        assert response.status_code < 500, (where, response.status_code, response.text[:500])
        if response.status_code >= 400:
            detail = response.json().get("detail")
            assert isinstance(detail, str) and detail and "\n" not in detail, (where, response.text[:500])
            assert _rows(store) == before, (where, response.status_code, response.text[:300])


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_input_gets_a_5xx_or_stores_anything_when_refused(running: dict, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{running['base']}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {(op.method.upper(), op.path) for op in operations} >= {
        ("POST", "/v1/route"),
        ("POST", "/v1/feedback"),
        ("POST", "/v1/chat/completions"),
        ("DELETE", "/v1/users/{user}"),
        ("POST", "/v1/admin/keys"),
    }
    nothing_invalid = []  # operations without inputs that can be made invalid (e.g. GET /healthz)
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            _send_three_ways(case, running)

        try:
            check()
        except Unsatisfiable:
            if mode is not GenerationMode.NEGATIVE:
                raise
            nothing_invalid.append(f"{operation.method.upper()} {operation.path}")
    assert not {"POST /v1/route", "POST /v1/feedback", "POST /v1/chat/completions"} & set(nothing_invalid)
