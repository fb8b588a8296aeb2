"""The store and two replicas on a real PostgreSQL server (a throwaway cluster on a loopback port).

Skipped, saying why, where the PostgreSQL server programs or the psycopg driver are not installed.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
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
from tests.schema_support import assert_rows_kept, create_v3
from tests.serve_support import ADMIN, free_port, long_values_are_refused, served_model, server  # noqa: F401

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN}"}


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _unavailable(reason: str) -> None:
    """Skip where PostgreSQL is not installed; in CI, which installs it (.ci/run), that is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; .ci/run should have installed it")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A fresh PostgreSQL cluster on a free loopback port; yields a URL template with {db} for the database."""
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'gmtrouter[serve]')")
    initdb, server = _pg_bin("initdb"), _pg_bin("postgres")
    if not initdb or not server:
        _unavailable("PostgreSQL server programs (initdb, postgres) are not installed")
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres and (shutil.which("runuser") is None or not _has_user("postgres")):
        _unavailable("running as root needs the 'postgres' system user and runuser to start PostgreSQL")
    folder = tempfile.mkdtemp(prefix="gmtrouter-pg-")
    os.chmod(folder, 0o755)
    if as_postgres:
        shutil.chown(folder, "postgres", "postgres")
    data = os.path.join(folder, "data")
    subprocess.run(
        [*as_postgres, initdb, "-D", data, "-A", "trust", "-U", "gmt", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = free_port()
    process = subprocess.Popen(
        [*as_postgres, server, "-D", data, "-p", str(port), "-k", folder, "-c", "listen_addresses=127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    import psycopg

    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(f"postgresql://gmt@127.0.0.1:{port}/postgres", autocommit=True) as conn:
                for name in ("store", "race", "replicas", "upgrade", "lengths"):
                    conn.execute(f"CREATE DATABASE {name}")
            break
        except psycopg.OperationalError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                pytest.fail("the PostgreSQL server did not start")
            time.sleep(0.2)
    try:
        yield f"postgresql+psycopg://gmt@127.0.0.1:{port}/{{db}}"
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


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
