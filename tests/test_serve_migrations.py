"""Alembic migrations on real SQLite files: a database made before Alembic upgrades with every row kept.

The same on PostgreSQL is in tests/test_serve_postgres.py (it needs the throwaway server started there).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from gmtrouter.serve import migrations
from gmtrouter.serve.catalog import Catalog
from gmtrouter.serve.config import LLMSpec
from gmtrouter.serve.migrations import HEAD, current_version, migrate
from gmtrouter.serve.store import RouteRow, Store, make_engine
from tests.conftest import REPO
from tests.schema_support import assert_rows_kept, create_v3
from tests.serve_support import child_env


def gmtrouter(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gmtrouter", *args], cwd=REPO, env=child_env(), capture_output=True, text=True
    )


def test_a_pre_alembic_database_upgrades_with_every_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    engine = make_engine(url)
    create_v3(engine)
    with engine.connect() as conn:
        assert current_version(conn) == "0003"
    engine.dispose()

    current = gmtrouter("serve", "db", "current", "--db", url)
    assert (current.returncode, current.stdout.strip()) == (0, "0003") and "behind" in current.stderr
    upgraded = gmtrouter("serve", "db", "upgrade", "--db", url)
    assert upgraded.returncode == 0 and f"to revision {HEAD}" in upgraded.stderr, upgraded.stderr
    again = gmtrouter("serve", "db", "current", "--db", url)
    assert again.stdout.strip() == HEAD and "newest" in again.stderr

    store = Store(url)
    assert store.schema_version() == HEAD
    with store.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("schema_version")
    assert_rows_kept(store)
    store.close()


def test_the_store_upgrades_on_open_and_a_second_run_does_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v3.db'}"
    engine = make_engine(url)
    create_v3(engine)
    engine.dispose()
    store = Store(url)  # what the service does at start
    assert_rows_kept(store)
    store.close()
    engine = make_engine(url)
    assert migrate(engine) == (HEAD, HEAD)
    engine.dispose()


def test_a_new_database_starts_at_the_newest_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    engine = make_engine(url)
    assert migrate(engine) == ("", HEAD)
    engine.dispose()
    refused = gmtrouter("train", "-o", str(tmp_path / "m"), "--from-db", f"sqlite:///{tmp_path / 'none' / 'x.db'}")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_0005_adds_the_conversation_to_routes_and_goes_back_with_every_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v4.db'}"
    engine = make_engine(url)
    create_v3(engine)
    assert migrate(engine, "0004") == ("0003", "0004")
    assert migrate(engine) == ("0004", HEAD)
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("routes")}
        indexes = {i["name"] for i in sa.inspect(conn).get_indexes("routes")}
    assert {"conversation", "previous_llm", "switch_cost"} <= columns and "ix_routes_user_conversation" in indexes
    engine.dispose()

    store = Store(url)
    assert_rows_kept(store)
    turns = [
        RouteRow("t1", "alice", "first", ["gpt-4"], "gpt-4", [], 10.0, 1, conversation="chat-1"),
        RouteRow("t2", "alice", "second", ["claude-v1"], "claude-v1", [], 11.0, 2, None, "chat-1", "gpt-4", 0.5),
        RouteRow("t3", "bob", "mine", ["alpaca-13b"], "alpaca-13b", [], 12.0, 1, conversation="chat-1"),
    ]
    store.add_routes(turns)
    assert (store.last_choice("alice", "chat-1"), store.last_choice("bob", "chat-1")) == ("claude-v1", "alpaca-13b")
    assert store.last_choice("carol", "chat-1") is None and store.last_choice("alice", "chat-2") is None
    assert store.get_route("t2") == turns[1]
    store.close()

    engine = make_engine(url)
    with engine.begin() as conn:
        command.downgrade(migrations._config(conn), "0004")
    with engine.connect() as conn:
        assert current_version(conn) == "0004"
        assert "conversation" not in {c["name"] for c in sa.inspect(conn).get_columns("routes")}
        assert conn.execute(sa.text("SELECT count(*) FROM routes")).scalar_one() == 4
    assert migrate(engine) == ("0004", HEAD)
    engine.dispose()


def test_0006_adds_the_llms_table_and_route_arms_and_goes_back_with_every_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'v5.db'}"
    engine = make_engine(url)
    create_v3(engine)
    assert migrate(engine, "0005") == ("0003", "0005")
    with engine.begin() as conn:  # a route the router ranked, beside the direct one (empty ranking) create_v3 made
        conn.execute(
            sa.text(
                'INSERT INTO routes (id, "user", query, candidates, choice, ranking, created, turn) VALUES '
                "('ranked', 'old-user', 'q', '[\"gpt-4\"]', 'gpt-4', :ranking, 5.0, 1)"
            ),
            {"ranking": '[{"llm": "gpt-4", "score": 0.1, "expected_cost": null, "adjusted": 0.1}]'},
        )
    assert migrate(engine) == ("0005", HEAD)
    engine.dispose()

    store = Store(url)
    assert_rows_kept(store)
    assert (store.get_route("ranked").arm, store.get_route("r1").arm) == ("router", None)
    assert store.get_route("ranked").explored is False
    store.add_routes([RouteRow("x", "u", "q", ["a"], "a", [], 6.0, explored=True, arm="control")])
    assert (store.get_route("x").explored, store.get_route("x").arm) == (True, "control")
    catalog = Catalog(store)
    catalog.add("new-llm", LLMSpec(description="fresh", input_price=1.0))
    catalog.retire("gpt-4")
    entries = catalog.entries()
    assert entries["new-llm"].spec.description == "fresh" and entries["new-llm"].retired is None
    assert entries["gpt-4"].added is None and entries["gpt-4"].retired is not None
    store.close()

    engine = make_engine(url)
    with engine.begin() as conn:
        command.downgrade(migrations._config(conn), "0005")
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("llms")
        assert "arm" not in {c["name"] for c in sa.inspect(conn).get_columns("routes")}
        assert conn.execute(sa.text("SELECT count(*) FROM routes")).scalar_one() == 3
    engine.dispose()
