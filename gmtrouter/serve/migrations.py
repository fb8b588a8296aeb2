"""Schema migrations, in code: a `schema_version` table and ordered functions, each run once in one transaction.

Each function brings the schema from version N-1 to N and never changes once released, so a database of any
earlier version upgrades by running the functions it lacks. Every replica calls `migrate` at start; a lock
(PostgreSQL advisory lock, SQLite write lock) makes concurrent starts run each migration exactly once.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_LOCK_ID = 0x67_6D_74  # any constant: the advisory lock all replicas of this service agree on


def _v1_initial(conn: Connection) -> None:
    """Routes, feedback (canonical record JSON, unique idempotency key), hashed API keys."""
    meta = sa.MetaData()
    sa.Table(
        "routes",
        meta,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("query", sa.Text, nullable=False),
        sa.Column("candidates", sa.Text, nullable=False),  # JSON list
        sa.Column("choice", sa.String(256), nullable=False),
        sa.Column("ranking", sa.Text, nullable=False),  # JSON list of {llm, score, expected_cost, adjusted}
        sa.Column("created", sa.Float, nullable=False),
    )
    sa.Table(
        "feedback",
        meta,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False, unique=True),
        sa.Column("route_id", sa.String(64), nullable=True),
        sa.Column("user", sa.String(256), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("created", sa.Float, nullable=False),
    )
    sa.Table(
        "api_keys",
        meta,
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(128), nullable=False),
        sa.Column("users", sa.Text, nullable=False),  # JSON list of user ids or 'prefix*' patterns
        sa.Column("admin", sa.Boolean, nullable=False, default=False),
        sa.Column("created", sa.Float, nullable=False),
        sa.Column("revoked", sa.Float, nullable=True),
    )
    meta.create_all(conn)


def _v2_forget_and_indexes(conn: Connection) -> None:
    """Tombstones of forgotten users (their training-history records stay hidden after a restart); indexes."""
    meta = sa.MetaData()
    sa.Table(
        "forgotten",
        meta,
        sa.Column("user", sa.String(256), primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
    )
    meta.create_all(conn)
    routes = sa.Table("routes", sa.MetaData(), sa.Column("user", sa.String(256)))
    feedback = sa.Table("feedback", sa.MetaData(), sa.Column("user", sa.String(256)), sa.Column("created", sa.Float))
    sa.Index("ix_routes_user", routes.c.user).create(conn)
    sa.Index("ix_feedback_user", feedback.c.user).create(conn)
    sa.Index("ix_feedback_created", feedback.c.created).create(conn)


def _v3_turns_answers_kinds(conn: Connection) -> None:
    """The routed turn and the answer text (kept by the chat proxy), the feedback's kind, a name for each key."""
    conn.execute(sa.text("ALTER TABLE routes ADD COLUMN turn INTEGER NOT NULL DEFAULT 1"))
    conn.execute(sa.text("ALTER TABLE routes ADD COLUMN answer TEXT"))
    conn.execute(sa.text("ALTER TABLE feedback ADD COLUMN kind VARCHAR(16) NOT NULL DEFAULT 'record'"))
    conn.execute(sa.text("ALTER TABLE api_keys ADD COLUMN name VARCHAR(256) NOT NULL DEFAULT ''"))


MIGRATIONS: list[Callable[[Connection], None]] = [_v1_initial, _v2_forget_and_indexes, _v3_turns_answers_kinds]
LATEST = len(MIGRATIONS)

_version = sa.Table("schema_version", sa.MetaData(), sa.Column("version", sa.Integer, nullable=False))


def current_version(conn: Connection) -> int:
    """The schema version of the database (0 when it is empty)."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.select(_version.c.version)).scalar_one_or_none() or 0)


def migrate(engine: sa.Engine, target: int = LATEST) -> tuple[int, int]:
    """Run the migrations the database lacks, up to `target`; returns (version before, version after)."""
    if not 0 <= target <= LATEST:
        raise ValueError(f"schema version {target} does not exist (latest is {LATEST})")
    # `write` makes the store's SQLite engine open the transaction with BEGIN IMMEDIATE: the write lock from the start
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        before = current_version(conn)
        if before > LATEST:
            from gmtrouter.errors import GmtError

            raise GmtError(
                f"the database has schema version {before}, newer than this gmtrouter knows ({LATEST}); upgrade it"
            )
        if before == 0:
            _version.create(conn)
            conn.execute(_version.insert().values(version=0))
        for version in range(before + 1, target + 1):
            MIGRATIONS[version - 1](conn)
            conn.execute(_version.update().values(version=version))
    return before, max(before, target)
