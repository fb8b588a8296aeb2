"""The durable store: routed requests, feedback records, API keys and forget tombstones (SQLAlchemy 2).

SQLite (a file in WAL mode, `synchronous=FULL` by default) for one replica, PostgreSQL for several. Every
write is one short transaction that is committed before the caller answers its client, so an acknowledged
feedback survives a crash. Feedback rows carry a unique idempotency key: a retried request finds its row
instead of adding a second one.

An SQLite file is watched: every commit first checks that the file at the path is still the one opened, so
nothing is acknowledged into a file that was deleted or replaced (the store saves what it holds beside it
instead), and a file that disappears between starts is not silently replaced by an empty one (docs/service.md,
Failure modes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from gmtrouter.data.schema import Interaction, first_error
from gmtrouter.serve.migrations import HEAD, current_version, migrate
from gmtrouter.utils.errors import GmtError

log = logging.getLogger("gmtrouter.serve")
MARKER_SUFFIX = ".gmtrouter"  # beside an SQLite file: the store has used it (a missing file is then a loss)
RESCUE_SUFFIX = ".rescued"  # beside an SQLite file deleted or replaced under a running store: what it held

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
    sa.Column("explored", sa.Boolean),
    sa.Column("arm", sa.String(16)),
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
    explored: bool = False  # the choice was not the top of the ranking: exploration tried it
    arm: str | None = None  # which policy chose: "router" or "control" (None: the request named its LLM)


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


class DatabaseUnavailable(GmtError):
    """The database cannot take this write or read now (its file was deleted or replaced, it does not answer);
    retrying later may succeed, nothing was stored."""


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite URL (None for other databases)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


@contextmanager
def opening(url: str) -> Iterator[None]:
    """Turn a database that cannot be opened (refused, down, not a database) into one line that says so."""
    try:
        yield
    except sa.exc.DBAPIError as error:
        first = str(error.orig).strip().splitlines()[0] if str(error.orig).strip() else error.__class__.__name__
        hint = "; give an SQLite database file, or a new path" if "not a database" in first else ""
        raise GmtError(f"cannot open database '{parsed_safe(url)}': {first}{hint}") from None


def open_sqlite(path: Path, create: bool = False) -> None:
    """Make sure the SQLite file a start opens is the service's: refuse a missing file this service used before,
    unless told to `create` one.

    The first start creates the file (and says so in the log); every start leaves a marker beside it, so that a
    start that finds the file gone (deleted by hand, a volume not mounted) refuses, rather than begin an empty
    database and lose, without a word, everything the old one held.
    """
    marker = path.with_name(path.name + MARKER_SUFFIX)
    if path.exists():
        if not path.is_file():
            raise GmtError(f"{path}: is not a file; give the path of an SQLite database file")
        _leave_marker(path)
        return
    if marker.exists() and not create:
        raise GmtError(
            f"{path}: the database file is gone, but this service used it before ({marker.name} is there); restore "
            f"it (a copy the service saved is {path.name}{RESCUE_SUFFIX}, if that exists), or start with "
            "--create-db to begin an empty one"
        )
    if not path.parent.is_dir():
        raise GmtError(f"{path}: the folder {path.parent} does not exist; create it or give another path")
    log.warning("creating a new, empty database at %s%s", path, " (--create-db)" if create else " (first start)")
    try:
        sqlite3.connect(path).close()
    except sqlite3.Error as error:
        raise GmtError(f"{path}: cannot create the database ({error}); check the folder's permissions") from None
    _leave_marker(path)


def _leave_marker(path: Path) -> None:
    marker = path.with_name(path.name + MARKER_SUFFIX)
    if marker.exists():
        return
    try:
        marker.write_text(
            json.dumps({"database": path.name, "first_used": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}) + "\n"
        )
    except OSError as error:  # a read-only folder: the store works, it only cannot warn of a lost file later
        log.warning("cannot leave %s beside the database (%s)", marker.name, error.strerror)


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


def make_engine(url: str, synchronous: str = "FULL", create: bool = True) -> sa.Engine:
    """An engine for `url`, refusing URLs SQLAlchemy cannot use with one line that says why.

    With `create` False an SQLite file is opened read-write only if it exists (SQLite's mode=rw): a connection
    opened after the file was deleted fails instead of starting an empty database at its path.
    """
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise GmtError(f"bad database URL '{url}'; use sqlite:///FILE or postgresql+psycopg://USER@HOST/DB") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise GmtError("an in-memory SQLite database loses feedback on restart; give a file: sqlite:///FILE")
        if create:
            engine = sa.create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        else:
            uri = f"file:{quote(str(Path(parsed.database).absolute()))}?mode=rw"
            engine = sa.create_engine(
                parsed, creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30)
            )
        _sqlite_setup(engine, synchronous)
        return engine
    try:
        return sa.create_engine(parsed, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise GmtError(f"database driver for '{parsed.drivername}' is missing ({error}); install it") from None


class Store:
    """All reads and writes of the service's database; each method is one transaction."""

    def __init__(
        self, url: str, synchronous: str = "FULL", upgrade: bool = True, check: bool = True, create: bool = False
    ) -> None:
        """Open (and, with `upgrade`, migrate) the database; with `check`, refuse one not at the newest revision.

        An SQLite file is created only by the first start on its path or with `create` (`open_sqlite`); one that
        is not there is refused without `upgrade` (a read).
        """
        self.url = url
        self.file = sqlite_file(url)
        self.unreadable: dict[int, str] = {}  # feedback row id -> why it cannot be read back (logged once)
        self._identity: tuple[int, int] | None = None
        self._anchor: sqlite3.Connection | None = None
        self._rescued: Path | None = None
        self._rescue_tried = False
        self._rescue_lock = threading.Lock()
        if self.file is not None:
            if upgrade:
                open_sqlite(self.file, create)
            elif not self.file.exists():
                raise GmtError(f"{self.file}: no such database file; check the database URL")
        self.engine = make_engine(url, synchronous, create=False)
        self._write = self.engine.execution_options(write=True)
        try:
            with opening(url):
                if upgrade:
                    migrate(self._write)
                with self.engine.connect() as conn:
                    version = current_version(conn)
        except GmtError:
            self.engine.dispose()
            raise
        if check and version != HEAD:
            self.engine.dispose()
            raise GmtError(
                f"database schema revision '{version or 'none'}', expected '{HEAD}'; "
                "run 'gmtrouter serve db upgrade' (or start the service)"
            )
        if self.file is not None:
            self._watch(self.file)

    def _watch(self, path: Path) -> None:
        """Keep the opened file's identity and one connection to it, and check the one before every commit."""
        uri = f"file:{quote(str(path))}?mode=rw"
        self._anchor = sqlite3.connect(uri, uri=True, check_same_thread=False)
        # one read opens the write-ahead log and its index while their paths still lead to them: a connection that
        # first reads after the file is gone cannot open them any more
        self._anchor.execute("SELECT count(*) FROM sqlite_master").fetchone()
        stat = os.stat(path)
        self._identity = (stat.st_dev, stat.st_ino)
        event.listen(self.engine, "commit", lambda _conn: self.check_file())

    def check_file(self) -> None:
        """Raise `DatabaseUnavailable` if the SQLite file at the path is no longer the one this store opened.

        Deleted or replaced under a running service, the old file still takes writes, which a restart would never
        see: nothing may be acknowledged into it. What it holds is saved beside the path once (`_rescue`).
        """
        if self._identity is None or self.file is None:
            return
        try:
            stat = os.stat(self.file)
            gone = "replaced" if (stat.st_dev, stat.st_ino) != self._identity else None
        except FileNotFoundError:
            gone = "deleted"
        if gone is None:
            return
        saved = self._rescue()
        where = f"what it held is saved in {saved.name}" if saved else "saving what it held failed (see above)"
        raise DatabaseUnavailable(
            f"the database file {self.file} was {gone} while the service was running; nothing more is stored. "
            f"{where}: stop the service, delete {self.file.name}-wal and {self.file.name}-shm (they belong to the "
            f"lost file), put the saved copy at {self.file} and start the service again"
        )

    def _rescue(self) -> Path | None:
        """Copy what the opened file holds (its committed rows, WAL included) beside its path, once."""
        with self._rescue_lock:
            if self._rescue_tried or self._anchor is None or self.file is None:
                return self._rescued
            self._rescue_tried = True
            target = self.file.with_name(self.file.name + RESCUE_SUFFIX)
            if target.exists():
                target = target.with_name(f"{target.name}-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                with contextlib.closing(sqlite3.connect(target)) as copy:
                    self._anchor.backup(copy)
            except (sqlite3.Error, OSError) as error:
                target.unlink(missing_ok=True)
                log.error(
                    "the database file %s is gone and saving what it held to %s failed (%s); while this process runs "
                    "the old file can still be copied from /proc/%d/fd",
                    self.file,
                    target,
                    error,
                    os.getpid(),
                )
                return None
            log.error(
                "the database file %s was deleted or replaced; everything it held is saved in %s", self.file, target
            )
            self._rescued = target
            return target

    def check(self) -> None:
        """Raise unless the database answers and, for SQLite, its file is still the one opened (for /healthz)."""
        self.check_file()
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

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
                "explored": r.explored,
                "arm": r.arm,
            }
            for r in rows
        ]
        with self._write.begin() as conn:
            conn.execute(routes.insert(), values)

    def set_answer(self, route_id: str, answer: str) -> None:
        """Keep the text an upstream answered, so that feedback on the route carries it."""
        with self._write.begin() as conn:
            conn.execute(routes.update().where(routes.c.id == route_id).values(answer=answer))

    def delete_route(self, route_id: str) -> None:
        """Remove a route that came to nothing (its upstream failed): no decision to show, no feedback to take."""
        with self._write.begin() as conn:
            conn.execute(routes.delete().where(routes.c.id == route_id))

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
            explored=bool(row["explored"]),
            arm=row["arm"],
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
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feedback).where(feedback.c.key == key)).mappings().first()
        if row is None:  # the row it collided with was deleted (forgotten) in between
            return self.add_feedback(key, user, kind, record, route_id)
        existing = self._feedback(row)
        if existing is None or existing.record.model_dump_json(exclude_none=True) != payload or existing.user != user:
            raise FeedbackConflict(
                f"feedback '{key}' is already stored with different content; send each feedback once "
                "(a retry must repeat the same body)"
            )
        return existing, True

    def feedback_by_key(self, key: str) -> StoredFeedback | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(feedback).where(feedback.c.key == key)).mappings().first()
        return self._feedback(row) if row is not None else None

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
            rows = [self._feedback(row) for row in conn.execute(query).mappings()]
        return [row for row in rows if row is not None]

    def _feedback(self, row: Any) -> StoredFeedback | None:
        """A stored row, or None for one whose record does not meet the record contract (stored by an older
        version, or edited by hand): it is left out of every read, named in the log once and kept in
        `unreadable`, so that one bad row never stops a replay."""
        try:
            record = Interaction.model_validate_json(row["record"])
        except ValidationError as error:
            if row["id"] not in self.unreadable:
                field, message = first_error(error)
                self.unreadable[row["id"]] = f"{field}: {message}" if field else message
                log.error(
                    "feedback row %d (user %r) cannot be read back and is left out of the history: %s",
                    row["id"],
                    row["user"],
                    self.unreadable[row["id"]],
                )
            return None
        return StoredFeedback(
            id=row["id"],
            key=row["key"],
            route_id=row["route_id"],
            user=row["user"],
            kind=row["kind"],
            record=record,
            created=row["created"],
        )

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
                    try:
                        record = Interaction.model_validate_json(payload)
                    except ValidationError:  # an unreadable row goes too; it never reached any cache
                        continue
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
