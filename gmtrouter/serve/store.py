"""The durable store: routed requests, feedback records, API keys and forget tombstones (SQLAlchemy 2).

SQLite (a file in WAL mode, `synchronous=FULL` by default) for one replica, PostgreSQL for several. Every
write is one short transaction that is committed before the caller answers its client, so an acknowledged
feedback survives a crash. Feedback rows carry a unique idempotency key: a retried request finds its row
instead of adding a second one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gmtrouter.data.schema import Interaction
from gmtrouter.serve.migrations import HEAD, current_version, migrate
from gmtrouter.utils.errors import GmtError

meta = sa.MetaData()
routes = sa.Table(
    "routes",
    meta,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("user", sa.String(256)),
    sa.Column("query", sa.Text),
    sa.Column("candidates", sa.Text),
    sa.Column("choice", sa.String(256)),
    sa.Column("ranking", sa.Text),
    sa.Column("created", sa.Float),
    sa.Column("turn", sa.Integer),
    sa.Column("answer", sa.Text),
    sa.Column("conversation", sa.String(256)),
    sa.Column("previous_llm", sa.String(256)),
    sa.Column("switch_cost", sa.Float),
)
feedback = sa.Table(
    "feedback",
    meta,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(512)),
    sa.Column("route_id", sa.String(64)),
    sa.Column("user", sa.String(256)),
    sa.Column("kind", sa.String(16)),
    sa.Column("record", sa.Text),
    sa.Column("created", sa.Float),
)
api_keys = sa.Table(
    "api_keys",
    meta,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("salt", sa.String(64)),
    sa.Column("hash", sa.String(128)),
    sa.Column("users", sa.Text),
    sa.Column("admin", sa.Boolean),
    sa.Column("created", sa.Float),
    sa.Column("revoked", sa.Float),
)
forgotten = sa.Table("forgotten", meta, sa.Column("user", sa.String(256), primary_key=True), sa.Column("at", sa.Float))


@dataclass(frozen=True)
class RouteRow:
    """A routed request as stored: what feedback by `route_id` refers to."""

    id: str
    user: str
    query: str
    candidates: list[str]
    choice: str
    ranking: list[dict[str, Any]]
    created: float
    turn: int = 1
    answer: str | None = None
    conversation: str | None = None  # the caller's conversation id, when the request named one
    previous_llm: str | None = None  # the LLM that answered the conversation's previous turn, as routing used it
    switch_cost: float = 0.0


@dataclass(frozen=True)
class StoredFeedback:
    """One feedback row: its id, idempotency key and the canonical record it became."""

    id: int
    key: str
    route_id: str | None
    user: str
    kind: str
    record: Interaction
    created: float


@dataclass(frozen=True)
class KeyRow:
    id: str
    name: str
    salt: str
    hash: str
    users: list[str]
    admin: bool
    created: float
    revoked: float | None


class FeedbackConflict(GmtError):
    """The idempotency key is taken by a different feedback."""


def _sqlite_setup(engine: sa.Engine, synchronous: str) -> None:
    """WAL, durable commits, waiting (not failing) on a busy file, and BEGIN IMMEDIATE for write transactions.

    pysqlite's own transaction handling is turned off so that SQLAlchemy's BEGIN is the one that counts; a write
    transaction takes the write lock at BEGIN, so it never fails half-way to upgrade a read lock.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")


def make_engine(url: str, synchronous: str = "FULL") -> sa.Engine:
    """An engine for `url`, refusing URLs SQLAlchemy cannot use with one line that says why."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise GmtError(f"bad database URL '{url}'; use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise GmtError("an in-memory SQLite database loses feedback on restart; give a file: sqlite:///FILE")
        engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_setup(engine, synchronous)
        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise GmtError(f"database driver for '{parsed.drivername}' is missing ({error}); install it") from None


class Store:
    """All reads and writes of the service's database; each method is one transaction."""

    def __init__(self, url: str, synchronous: str = "FULL", upgrade: bool = True, check: bool = True) -> None:
        """Open (and, with `upgrade`, migrate) the database; with `check`, refuse one not at the newest revision."""
        self.url = url
        self.engine = make_engine(url, synchronous)
        self._write = self.engine.execution_options(write=True)
        try:
            if upgrade:
                migrate(self._write)
            with self.engine.connect() as conn:
                version = current_version(conn)
        except sa.exc.OperationalError as error:
            self.engine.dispose()
            raise GmtError(f"cannot open database '{parsed_safe(url)}': {error.orig}") from None
        except GmtError:
            self.engine.dispose()
            raise
        if check and version != HEAD:
            self.engine.dispose()
            raise GmtError(
                f"database schema revision '{version or 'none'}', expected '{HEAD}'; "
                "run 'gmtrouter serve db upgrade' (or start the service)"
            )

    def close(self) -> None:
        self.engine.dispose()

    def schema_version(self) -> str:
        """The database's Alembic revision."""
        with self.engine.connect() as conn:
            return current_version(conn)

    # ------------------------------------------------------------------------------------------ routes

    def add_routes(self, rows: Sequence[RouteRow]) -> None:
        """Store routed requests in one transaction (the route worker writes a whole batch at once)."""
        if not rows:
            return
        values = [
            {
                "id": r.id,
                "user": r.user,
                "query": r.query,
                "candidates": json.dumps(r.candidates),
                "choice": r.choice,
                "ranking": json.dumps(r.ranking),
                "created": r.created,
                "turn": r.turn,
                "answer": r.answer,
                "conversation": r.conversation,
                "previous_llm": r.previous_llm,
                "switch_cost": r.switch_cost,
            }
            for r in rows
        ]
        with self._write.begin() as conn:
            conn.execute(routes.insert(), values)

    def set_answer(self, route_id: str, answer: str) -> None:
        """Keep the text an upstream answered, so that feedback on the route carries it."""
        with self._write.begin() as conn:
            conn.execute(routes.update().where(routes.c.id == route_id).values(answer=answer))

    def get_route(self, route_id: str) -> RouteRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(routes).where(routes.c.id == route_id)).mappings().first()
        if row is None:
            return None
        return RouteRow(
            id=row["id"],
            user=row["user"],
            query=row["query"],
            candidates=json.loads(row["candidates"]),
            choice=row["choice"],
            ranking=json.loads(row["ranking"]),
            created=row["created"],
            turn=row["turn"],
            answer=row["answer"],
            conversation=row["conversation"],
            previous_llm=row["previous_llm"],
            switch_cost=row["switch_cost"],
        )

    def last_choice(self, user: str, conversation: str) -> str | None:
        """The LLM of the newest route stored for this user's conversation (any replica's), None if none.

        Keyed by the user too: conversation ids are the callers' own, and one user's must never read another's.
        """
        query = (
            sa.select(routes.c.choice)
            .where(routes.c.user == user, routes.c.conversation == conversation)
            .order_by(routes.c.created.desc())
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).scalar_one_or_none()

    # ---------------------------------------------------------------------------------------- feedback

    def add_feedback(
        self, key: str, user: str, kind: str, record: Interaction, route_id: str | None = None
    ) -> tuple[StoredFeedback, bool]:
        """Commit one feedback; returns (the stored row, whether it was already there).

        A second call with the same key and the same record is a retry: it returns the first row. The same key
        with a different record raises `FeedbackConflict`.
        """
        payload = record.model_dump_json(exclude_none=True)
        created = time.time()
        try:
            with self._write.begin() as conn:
                new_id = conn.execute(
                    feedback.insert()
                    .values(key=key, route_id=route_id, user=user, kind=kind, record=payload, created=created)
                    .returning(feedback.c.id)
                ).scalar_one()
            return StoredFeedback(new_id, key, route_id, user, kind, record, created), False
        except IntegrityError:
            pass
        existing = self.feedback_by_key(key)
        if existing is None:  # the row it collided with was deleted (forgotten) in between
            return self.add_feedback(key, user, kind, record, route_id)
        if existing.record.model_dump_json(exclude_none=True) != payload or existing.user != user:
            raise FeedbackConflict(
                f"feedback '{key}' is already stored with different content; send each feedback once "
                "(a retry must repeat the same body)"
            )
        return existing, True

    def feedback_by_key(self, key: str) -> StoredFeedback | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feedback).where(feedback.c.key == key)).mappings().first()
        return _feedback(row) if row is not None else None

    def feedback_rows(
        self, created_since: float | None = None, user: str | None = None, ids: Sequence[int] | None = None
    ) -> list[StoredFeedback]:
        """Stored feedback in commit order (by id); optionally only rows created since a time, of one user, or
        with the given ids."""
        query = sa.select(feedback).order_by(feedback.c.id)
        if created_since is not None:
            query = query.where(feedback.c.created >= created_since)
        if user is not None:
            query = query.where(feedback.c.user == user)
        if ids is not None:
            query = query.where(feedback.c.id.in_(list(ids)))
        with self.engine.connect() as conn:
            return [_feedback(row) for row in conn.execute(query).mappings()]

    def feedback_ids(self, created_since: float) -> list[int]:
        """Ids of the feedback rows created since a time: cheap to poll, records are read only for new ids."""
        query = sa.select(feedback.c.id).where(feedback.c.created >= created_since).order_by(feedback.c.id)
        with self.engine.connect() as conn:
            return [row[0] for row in conn.execute(query)]

    def records(self) -> list[Interaction]:
        """Every stored feedback as a canonical record, oldest first: what `gmtrouter train --from-db` reads."""
        return [row.record for row in self.feedback_rows()]

    def count(self, table: str, user: str | None = None) -> int:
        """Rows in `routes`, `feedback` or `api_keys` (of one user, for the first two)."""
        target = meta.tables[table]
        query = sa.select(sa.func.count()).select_from(target)
        if user is not None:
            query = query.where(target.c.user == user)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    # ------------------------------------------------------------------------------------------ forget

    def forget(self, user: str, texts: set[str] | None = None) -> dict[str, int]:
        """Delete a user's routes and feedback and leave a tombstone; returns how many rows went.

        `texts`, if given, receives the texts the deleted rows held (queries, answers, response texts), read in the
        same transaction, so that the caller can drop them from the encoder's caches too.
        """
        now = time.time()
        with self._write.begin() as conn:
            if texts is not None:
                for query, answer in conn.execute(
                    sa.select(routes.c.query, routes.c.answer).where(routes.c.user == user)
                ):
                    texts.update(t for t in (query, answer) if t)
                for (payload,) in conn.execute(sa.select(feedback.c.record).where(feedback.c.user == user)):
                    record = Interaction.model_validate_json(payload)
                    texts.update([record.query, *(r.text for r in record.responses if r.text)])
            gone_feedback = conn.execute(feedback.delete().where(feedback.c.user == user)).rowcount
            gone_routes = conn.execute(routes.delete().where(routes.c.user == user)).rowcount
            updated = conn.execute(forgotten.update().where(forgotten.c.user == user).values(at=now)).rowcount
            if not updated:
                conn.execute(forgotten.insert().values(user=user, at=now))
        return {"feedback": int(gone_feedback), "routes": int(gone_routes)}

    def tombstones(self, since: float | None = None) -> dict[str, float]:
        """Forgotten users and when they were forgotten."""
        query = sa.select(forgotten.c.user, forgotten.c.at)
        if since is not None:
            query = query.where(forgotten.c.at >= since)
        with self.engine.connect() as conn:
            return {user: at for user, at in conn.execute(query)}

    # -------------------------------------------------------------------------------------------- keys

    def add_key(self, key_id: str, name: str, salt: str, digest: str, users: Iterable[str], admin: bool) -> None:
        with self._write.begin() as conn:
            conn.execute(
                api_keys.insert().values(
                    id=key_id,
                    name=name,
                    salt=salt,
                    hash=digest,
                    users=json.dumps(list(users)),
                    admin=admin,
                    created=time.time(),
                    revoked=None,
                )
            )

    def get_key(self, key_id: str) -> KeyRow | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).mappings().first()
        return _key(row) if row is not None else None

    def list_keys(self) -> list[KeyRow]:
        with self.engine.connect() as conn:
            return [_key(row) for row in conn.execute(sa.select(api_keys).order_by(api_keys.c.created)).mappings()]

    def revoke_key(self, key_id: str) -> bool:
        with self._write.begin() as conn:
            done = conn.execute(
                api_keys.update()
                .where(api_keys.c.id == key_id, api_keys.c.revoked.is_(None))
                .values(revoked=time.time())
            ).rowcount
        return bool(done)


def _feedback(row: Any) -> StoredFeedback:
    return StoredFeedback(
        id=row["id"],
        key=row["key"],
        route_id=row["route_id"],
        user=row["user"],
        kind=row["kind"],
        record=Interaction.model_validate_json(row["record"]),
        created=row["created"],
    )


def _key(row: Any) -> KeyRow:
    return KeyRow(
        id=row["id"],
        name=row["name"],
        salt=row["salt"],
        hash=row["hash"],
        users=json.loads(row["users"]),
        admin=bool(row["admin"]),
        created=row["created"],
        revoked=row["revoked"],
    )


def parsed_safe(url: str) -> str:
    """The URL with any password hidden, for error messages and logs."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<unparsable URL>"
