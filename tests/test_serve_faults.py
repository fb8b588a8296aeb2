"""When the database fails under a running `gmtrouter serve` process: SQLite files made read-only, the SQLite file
deleted, the PostgreSQL server stopped and started again.

Each fault is a 503 with Retry-After (never a 500, never a 401 for a key that could not be checked), the service
recovers when the database does, and nothing acknowledged is lost. A start never quietly begins an empty
database in place of one it used before.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from gmtrouter.serve.app import create_app
from gmtrouter.serve.config import load_config
from gmtrouter.serve.store import Store
from gmtrouter.utils.errors import GmtError
from tests.conftest import REPO
from tests.pg_support import Postgres, postgres_cluster
from tests.serve_support import ADMIN, child_env, free_port, served_model, server, start_server, stop  # noqa: F401

pytestmark = pytest.mark.slow
HEADERS = {"Authorization": f"Bearer {ADMIN}"}
ASK = [{"role": "user", "content": "Write a haiku about rain"}]


def give_feedback(client: httpx.Client, user: str, n: int) -> httpx.Response:
    record = {
        "user": user,
        "conversation": f"fault/{user}/{n}",
        "turn": 1,
        "query": f"question {n} of {user}",
        "responses": [{"llm": "gpt-4", "rating": 1}, {"llm": "alpaca-13b", "rating": 0}],
    }
    return client.post("/v1/feedback", json={"kind": "record", "record": record})


def acknowledge(client: httpx.Client, user: str, numbers: range) -> set[str]:
    """Feedback that must be answered 200; the conversations acknowledged."""
    done = set()
    for n in numbers:
        answer = give_feedback(client, user, n)
        assert answer.status_code == 200, answer.text
        done.add(answer.json()["record"]["conversation"])
    return done


def assert_unavailable(answer: httpx.Response) -> None:
    assert answer.status_code == 503, (answer.request.url, answer.status_code, answer.text)
    assert int(answer.headers["retry-after"]) > 0 and "retry" in answer.json()["detail"], answer.text


def history_of(client: httpx.Client, user: str) -> int:
    return client.get(f"/v1/users/{user}").json()["interactions"]


def stored_conversations(url: str) -> set[str]:
    store = Store(url, upgrade=False)
    try:
        return {row.record.conversation for row in store.feedback_rows()}
    finally:
        store.close()


def _immutable_supported(folder: Path) -> bool:
    """Whether `chattr +i` works here: root (a file mode does not stop root) on a file system that has the flag."""
    probe = folder / "probe"
    probe.write_text("x")
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode:
        return False
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    return True


def test_read_only_sqlite_files_are_503_then_recover(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    if not _immutable_supported(tmp_path):
        pytest.skip("making a file read-only for root needs chattr +i on a file system that supports it")
    db = tmp_path / "ro.db"
    url = f"sqlite:///{db}"
    frozen = [str(db), f"{db}-wal"]  # not -shm: SQLite maps it into memory, and a frozen map is a crash
    process, base = start_server(served_model, url)
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            acknowledged = acknowledge(client, "ro-user", range(3))
            subprocess.run(["chattr", "+i", *frozen], check=True)
            try:
                assert_unavailable(give_feedback(client, "ro-user", 3))
                assert_unavailable(client.post("/v1/route", json={"user": "ro-user", "messages": ASK}))
                reads = client.get("/v1/users/ro-user")  # what the file holds can still be read
                assert reads.status_code == 200 and reads.json()["stored_feedback"] == 3, reads.text
            finally:
                subprocess.run(["chattr", "-i", *frozen], check=True)
            acknowledged |= acknowledge(client, "ro-user", range(4, 6))  # writable again: the same server recovers
            assert client.post("/v1/route", json={"user": "ro-user", "messages": ASK}).status_code == 200
    finally:
        stop(process)
    assert stored_conversations(url) == acknowledged
    with server(served_model, url) as base, httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        assert history_of(client, "ro-user") == 5


def test_a_deleted_sqlite_file_is_503_saved_and_never_replaced_quietly(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    db = tmp_path / "gone.db"
    url = f"sqlite:///{db}"
    process, base = start_server(served_model, url)
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            acknowledged = acknowledge(client, "gone-user", range(3))
            db.unlink()
            assert_unavailable(give_feedback(client, "gone-user", 3))  # never acknowledged into the deleted file
            assert_unavailable(client.post("/v1/route", json={"user": "gone-user", "messages": ASK}))
            assert_unavailable(client.get("/healthz"))
            assert_unavailable(give_feedback(client, "gone-user", 4))
    finally:
        stop(process)
    rescued = db.with_name("gone.db.rescued")
    assert rescued.is_file() and not db.exists()

    started = subprocess.run(
        [sys.executable, "-m", "gmtrouter", "serve", "--model", str(served_model), "--db", url],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = started.stderr.strip().splitlines()
    assert started.returncode == 2 and len(lines) == 1, started.stderr
    assert str(db) in lines[0] and "--create-db" in lines[0] and "gone.db.rescued" in lines[0], lines[0]

    # the operator's way back, as the log says: the lost file's WAL goes, the saved copy takes its place
    for leftover in (f"{db}-wal", f"{db}-shm"):
        Path(leftover).unlink(missing_ok=True)
    rescued.rename(db)
    assert stored_conversations(url) == acknowledged
    with server(served_model, url) as base, httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
        assert history_of(client, "gone-user") == 3
        assert client.get("/healthz").status_code == 200


def test_a_missing_sqlite_file_is_created_only_on_a_first_start_or_when_asked(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    Store(url).close()  # the first start creates it, and leaves the marker
    assert (tmp_path / "fresh.db.gmtrouter").is_file()
    (tmp_path / "fresh.db").unlink()
    with pytest.raises(GmtError, match="the database file is gone"):
        Store(url)
    with pytest.raises(GmtError, match="no such database file"):
        Store(url, upgrade=False)  # a read (train --from-db) never creates one
    assert not (tmp_path / "fresh.db").exists()
    Store(url, create=True).close()  # --create-db
    assert (tmp_path / "fresh.db").is_file()
    (tmp_path / "not-a-db.db").write_text("these are not the rows you are looking for\n")
    with pytest.raises(GmtError, match="file is not a database"):
        Store(f"sqlite:///{tmp_path / 'not-a-db.db'}")


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    with postgres_cluster() as cluster:
        yield cluster


def test_postgres_stopped_is_503_everywhere_then_recovers(served_model: Path, postgres: Postgres) -> None:  # noqa: F811
    url = postgres.create("outage")
    process, base = start_server(served_model, url)
    try:
        with httpx.Client(base_url=base, headers=HEADERS, timeout=60) as client:
            unused = client.post("/v1/admin/keys", json={"users": ["pg-user"]}).json()["key"]
            acknowledged = acknowledge(client, "pg-user", range(3))
            postgres.stop()
            try:
                assert_unavailable(give_feedback(client, "pg-user", 3))
                assert_unavailable(client.post("/v1/route", json={"user": "pg-user", "messages": ASK}))
                assert_unavailable(client.get("/v1/users/pg-user"))
                assert_unavailable(client.get("/healthz"))
                # a key not checked yet cannot be checked now: 503, not a 401 that says the key is wrong
                assert_unavailable(client.get("/v1/users/pg-user", headers={"Authorization": f"Bearer {unused}"}))
            finally:
                postgres.start()
            deadline = time.monotonic() + 60
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.5)
            assert client.get("/healthz").status_code == 200
            acknowledged |= acknowledge(client, "pg-user", range(4, 6))
            assert client.post("/v1/route", json={"user": "pg-user", "messages": ASK}).status_code == 200
            assert history_of(client, "pg-user") == 5
    finally:
        stop(process)
    assert stored_conversations(url) == acknowledged


def test_after_a_500_the_connection_stays_usable(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    """A bug's 500 is answered as JSON and the keep-alive connection is kept (the client's next request on it
    works), rather than dropped without `Connection: close`."""
    config = load_config(None, model=served_model, db=f"sqlite:///{tmp_path / 'bug.db'}", admin_key=ADMIN)
    app = create_app(config)

    @app.get("/a-bug")
    async def a_bug() -> None:  # an endpoint with a bug in it, as any endpoint might have
        raise RuntimeError("a bug")

    port = free_port()
    runner = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical"))
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not runner.started and time.monotonic() < deadline:
            time.sleep(0.05)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/a-bug", headers=HEADERS)
        failed = connection.getresponse()
        body = json.loads(failed.read())
        assert failed.status == 500 and body["detail"] == "internal error; see the server log"
        assert failed.getheader("connection") != "close"
        socket = connection.sock
        connection.request("GET", "/healthz")  # on the same connection: a dropped one would fail here
        assert connection.getresponse().status == 200 and connection.sock is socket
        connection.close()
    finally:
        runner.should_exit = True
        thread.join(timeout=30)


def test_a_database_error_in_process_is_503_with_retry_after(served_model: Path, tmp_path: Path) -> None:  # noqa: F811
    """The same in process, for a file moved away: what needs the database is 503, what does not still works."""
    config = load_config(None, model=served_model, db=f"sqlite:///{tmp_path / 'lost.db'}", admin_key=ADMIN)
    with TestClient(create_app(config)) as client:
        assert client.get("/healthz").status_code == 200
        (tmp_path / "lost.db").rename(tmp_path / "moved.db")  # the file moved away: this is no longer it
        for answer in (
            client.get("/healthz"),
            client.post("/v1/route", json={"user": "x", "messages": ASK}, headers=HEADERS),
            client.post("/ui/api/try", json={"user": "x", "query": "q"}, headers=HEADERS),
        ):
            if answer.request.url.path == "/ui/api/try":  # ranks without storing: the database is not needed
                assert answer.status_code == 200, answer.text
            else:
                assert_unavailable(answer)
