"""The store on a real SQLite file: refusals, idempotency under concurrency, retraining from it."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from gmtrouter.registry.checkpoint import load_router
from gmtrouter.serve.config import load_config
from gmtrouter.serve.store import FeedbackConflict, Store, make_engine
from gmtrouter.utils.errors import GmtError
from tests.conftest import REPO, make_record
from tests.serve_support import child_env


def test_store_refuses_bad_urls_and_newer_schemas(tmp_path: Path) -> None:
    with pytest.raises(GmtError, match="in-memory SQLite"):
        Store("sqlite://")
    with pytest.raises(GmtError, match="bad database URL"):
        Store("not a url")
    url = f"sqlite:///{tmp_path / 'new.db'}"
    Store(url).close()
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(GmtError, match="revision 9999, which this gmtrouter does not know"):
        Store(url)


def test_concurrent_retries_store_one_row(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'race.db'}", synchronous="NORMAL")
    records = [make_record(f"u{i % 3}", f"query {i}", {"gpt-4": 1.0, "llama-13b": 0.0}) for i in range(40)]
    results: list[tuple[int, bool]] = []
    lock = threading.Lock()

    def send(copy: int) -> None:
        for i, record in enumerate(records):
            stored, duplicate = store.add_feedback(f"key-{i}", record.user, "record", record)
            with lock:
                results.append((stored.id, duplicate))

    threads = [threading.Thread(target=send, args=(c,)) for c in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("feedback") == 40
    assert sum(not duplicate for _, duplicate in results) == 40 and len({i for i, _ in results}) == 40
    with pytest.raises(FeedbackConflict, match="already stored with different content"):
        store.add_feedback("key-0", "u0", "record", records[1])
    store.close()


def test_config_files_in_three_formats(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('db = "sqlite:///x.db"\n[upstreams.gpt-4]\nbase_url = "http://127.0.0.1:1/v1"\n')
    (tmp_path / "a.yaml").write_text("db: sqlite:///x.db\nupstreams:\n  gpt-4:\n    base_url: http://127.0.0.1:1/v1\n")
    (tmp_path / "a.json").write_text(json.dumps({"db": "sqlite:///x.db", "upstreams": {"gpt-4": {"base_url": "u"}}}))
    for name in ("a.toml", "a.yaml", "a.json"):
        config = load_config(tmp_path / name, port=9000)
        assert (config.db, config.port, list(config.upstreams)) == ("sqlite:///x.db", 9000, ["gpt-4"])
    (tmp_path / "bad.toml").write_text("max_query_chars = -1\n")
    with pytest.raises(GmtError, match="setting 'max_query_chars'"):
        load_config(tmp_path / "bad.toml")
    (tmp_path / "typo.toml").write_text("max_query_char = 10\n")
    with pytest.raises(GmtError, match="setting 'max_query_char'"):
        load_config(tmp_path / "typo.toml")
    with pytest.raises(GmtError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmtrouter", *args],
        cwd=REPO,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_train_from_db_uses_stored_feedback_and_honours_forgets(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'feedback.db'}"
    store = Store(url)
    llms = {"gpt-4": 1.0, "llama-13b": 0.0}
    for i in range(12):
        for user in ("keeper", "leaver"):
            record = make_record(user, f"{user} asks question {i}", llms)
            store.add_feedback(f"k-{user}-{i}", user, "record", record)
    store.forget("leaver")
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(
            make_record(u, f"{u} file question {i}", llms).model_dump_json() + "\n"
            for u in ("a", "leaver")
            for i in range(6)
        )
    )
    store.close()
    output = tmp_path / "model"
    settings = ["--set", "encoder=hashing-16", "--set", "steps=2", "--set", "progress=false"]
    result = _cli("train", "--from-db", url, "--data", str(data), "-o", str(output), *settings)
    assert result.returncode == 0, result.stderr
    assert "left out 6 records of forgotten users" in " ".join(result.stderr.split())
    _, history = load_router(output)
    users = [r.user for r in history]
    assert users.count("keeper") == 12 and users.count("a") == 6 and "leaver" not in users

    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    Store(empty).close()
    result = _cli("train", "--from-db", empty, "-o", str(tmp_path / "none"), *settings)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: the database holds no feedback yet; give --data too, or collect feedback first"
    ]
    result = _cli("train", "-o", str(tmp_path / "none"))
    assert result.returncode == 2 and "--data FILE, --from-db URL" in result.stderr


def test_serve_command_refuses_bad_setups_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("port: [1, 2]\n")
    cases = [
        (["serve"], "give the model folder (--model DIR) or, to start with no logs, the LLMs"),
        (["serve", "--model", str(tmp_path)], "not a gmtrouter model folder"),
        (["serve", "--config", str(tmp_path / "bad.yaml")], "setting 'port'"),
        (["serve", "keys", "create", "--db", f"sqlite:///{tmp_path / 'k.db'}"], "needs at least one user"),
    ]
    for args, words in cases:
        result = _cli(*args)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and len(lines) == 1 and words in lines[0], result.stderr
