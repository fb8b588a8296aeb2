"""A database as the store looked before Alembic (schema version 3), filled with one row of every table.

The DDL in tests/fixtures/schema/ is what the hand-written migrations executed, captured statement by statement
from a real SQLite file and a real PostgreSQL server; replaying it recreates such a database exactly.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from gmtrouter.data.schema import Interaction
from gmtrouter.serve.store import Store
from tests.conftest import FIXTURES, make_record

RECORD = make_record("old-user", "an old question", {"gpt-4": 1.0, "alpaca-13b": 0.0})


def create_v3(engine: sa.Engine) -> None:
    """Replay the captured version-3 DDL and fill every table with rows, as a deployed service left them."""
    ddl = (FIXTURES / "schema" / f"schema_v3_{engine.dialect.name}.sql").read_text()
    code = "\n".join(line for line in ddl.splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in code.split(";") if s.strip()]
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        q = '"user"'
        conn.execute(
            sa.text(
                f"INSERT INTO routes (id, {q}, query, candidates, choice, ranking, created, turn, answer) "
                "VALUES ('r1', 'old-user', 'an old question', '[\"gpt-4\"]', 'gpt-4', '[]', 1.0, 2, 'an answer')"
            )
        )
        conn.execute(
            sa.text(
                f'INSERT INTO feedback ("key", route_id, {q}, record, created, kind) '
                "VALUES ('k1', 'r1', 'old-user', :r, 2.0, 'thumbs')"
            ),
            {"r": RECORD.model_dump_json(exclude_none=True)},
        )
        conn.execute(
            sa.text(
                "INSERT INTO api_keys (id, salt, hash, users, admin, created, name) "
                "VALUES ('id1', '00', 'h', '[\"u\"]', false, 3.0, 'laptop')"
            )
        )
        conn.execute(sa.text(f"INSERT INTO forgotten ({q}, at) VALUES ('gone-user', 4.0)"))


def assert_rows_kept(store: Store) -> None:
    """Every row `create_v3` wrote reads back through the store, with the values it had."""
    route = store.get_route("r1")
    assert (route.user, route.query, route.candidates, route.turn, route.answer) == (
        "old-user",
        "an old question",
        ["gpt-4"],
        2,
        "an answer",
    )
    assert (route.conversation, route.previous_llm, route.switch_cost) == (None, None, 0.0)  # routed before 0005
    (stored,) = store.feedback_rows()
    assert (stored.key, stored.route_id, stored.kind, stored.created) == ("k1", "r1", "thumbs", 2.0)
    assert stored.record == Interaction.model_validate_json(json.dumps(RECORD.model_dump(exclude_none=True)))
    key = store.get_key("id1")
    assert (key.name, key.users, key.admin, key.created) == ("laptop", ["u"], False, 3.0)
    assert store.tombstones() == {"gone-user": 4.0}
    # and the upgraded database takes new rows: ids go on from the old ones
    fresh, duplicate = store.add_feedback("k2", "new-user", "record", make_record("new-user", "q", {"gpt-4": 1}))
    assert not duplicate and fresh.id > stored.id
