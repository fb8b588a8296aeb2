"""The store and two replicas on a real PostgreSQL server (a throwaway cluster on a loopback port).

Skipped, saying why, where the PostgreSQL server programs or the psycopg driver are not installed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from gmtrouter.serve.migrations import HEAD, migrate
from gmtrouter.serve.store import Store, make_engine
from tests.conftest import make_record
from tests.pg_support import postgres_cluster
from tests.schema_support import assert_rows_kept, create_v3
from tests.serve_support import ADMIN, long_values_are_refused, served_model, server  # noqa: F401

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port; yields a URL template with {db} for the database."""
    with postgres_cluster() as cluster:
        for name in ("store", "race", "replicas", "upgrade", "lengths"):
            cluster.create(name)
        yield cluster.url("{db}")


def test_store_on_postgres(postgres: str) -> None:
    store = Store(postgres.format(db="store"))
    assert store.schema_version() == HEAD
    record = make_record("pg-user", "a question", {"gpt-4": 1.0, "llama-13b": 0.0})
    first, duplicate = store.add_feedback("k", "pg-user", "record", record)
    again, duplicate_again = store.add_feedback("k", "pg-user", "record", record)
    assert (duplicate, duplicate_again, again.id) == (False, True, first.id)
    assert store.records() == [record]
    assert store.forget("pg-user") == {"feedback": 1, "routes": 0} and store.tombstones().keys() == {"pg-user"}
    store.close()


def test_replicas_start_together_and_migrate_once(postgres: str) -> None:
    engine = make_engine(postgres.format(db="race"))
    results: list[tuple[int, int]] = []
    threads = [threading.Thread(target=lambda: results.append(migrate(engine))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [("", HEAD)] + [(HEAD, HEAD)] * 3
    engine.dispose()


def test_feedback_and_forgets_reach_the_other_replica(postgres: str, served_model: Path) -> None:  # noqa: F811
    url = postgres.format(db="replicas")
    config = load_config(None, model=served_model, db=url, admin_key=ADMIN, sync_seconds=0.5)
    with TestClient(create_app(config)) as one, TestClient(create_app(config)) as two:
        for n in range(3):
            body = {
                "kind": "record",
                "record": make_record("shared", f"q{n}", {"gpt-4": 1, "alpaca-13b": 0}).model_dump(),
            }
            assert one.post("/v1/feedback", json=body, headers=HEADERS).status_code == 200
        assert one.get("/v1/users/shared", headers=HEADERS).json()["interactions"] == 3

        def interactions() -> int:
            return two.get("/v1/users/shared", headers=HEADERS).json()["interactions"]

        deadline = time.monotonic() + 60
        while interactions() != 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert interactions() == 3
        assert two.delete("/v1/users/shared", headers=HEADERS).json()["feedback_deleted"] == 3
        deadline = time.monotonic() + 60
        while one.get("/v1/users/shared", headers=HEADERS).json()["interactions"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert one.get("/v1/users/shared", headers=HEADERS).json()["known"] is False


def test_a_pre_alembic_database_upgrades_with_every_row(postgres: str) -> None:
    url = postgres.format(db="upgrade")
    engine = make_engine(url)
    create_v3(engine)
    assert migrate(engine) == ("0003", HEAD)
    engine.dispose()
    store = Store(url)
    assert store.schema_version() == HEAD
    assert_rows_kept(store)
    store.close()


def test_long_values_for_bounded_columns_are_422_on_postgres(postgres: str, served_model: Path) -> None:  # noqa: F811
    url = postgres.format(db="lengths")
    store = Store(url)
    with server(served_model, url) as base:
        long_values_are_refused(base, store)
    store.close()
