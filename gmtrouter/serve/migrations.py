"""Schema migrations with Alembic: the revisions live in gmtrouter/serve/schema/versions/, one file each.

Every replica calls `migrate` at start. It runs in one transaction under a lock (PostgreSQL advisory lock,
SQLite write lock), so replicas that start together migrate once. A database made before Alembic (a
`schema_version` table, versions 1 to 3) is first stamped with the revision that matches its version, then
upgraded; a database at a revision this code does not know (made by a newer gmtrouter) is refused.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection

from gmtrouter.utils.errors import GmtError

_LOCK_ID = 0x67_6D_74  # any constant: the advisory lock all replicas of this service agree on
_LEGACY = {1: "0001", 2: "0002", 3: "0003"}  # schema_version of the hand-written migrations -> revision


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("schema")))
    config.attributes["connection"] = connection
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


HEAD: str = _scripts().get_current_head() or ""


def current_version(conn: Connection) -> str:
    """The database's schema revision: Alembic's, else one read from a pre-Alembic `schema_version` ('' if empty)."""
    revision = MigrationContext.configure(conn).get_current_revision()
    if revision is not None:
        return revision
    if sa.inspect(conn).has_table("schema_version"):
        version = conn.execute(sa.text("SELECT version FROM schema_version")).scalar_one_or_none() or 0
        return _LEGACY.get(int(version), "")
    return ""


def migrate(engine: sa.Engine, target: str = "head") -> tuple[str, str]:
    """Bring the database to `target` (default: the newest revision); returns (revision before, revision after)."""
    # `write` makes the store's SQLite engine open the transaction with BEGIN IMMEDIATE: the write lock from the start
    with engine.execution_options(write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": _LOCK_ID})
        context = MigrationContext.configure(conn)
        before = current_version(conn)
        if before and before != HEAD and _unknown(before):
            raise GmtError(f"the database has schema revision {before}, which this gmtrouter does not know; upgrade it")
        if before and context.get_current_revision() is None:  # made by the hand-written migrations
            context.stamp(_scripts(), before)
        from alembic import command

        try:
            command.upgrade(_config(conn), target)
        except CommandError as error:
            raise GmtError(f"cannot migrate the database to '{target}': {error}") from None
        return before, current_version(conn)


def _unknown(revision: str) -> bool:
    try:
        return _scripts().get_revision(revision) is None
    except CommandError:
        return True
