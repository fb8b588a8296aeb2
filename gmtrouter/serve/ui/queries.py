"""The console's reads of the store: aggregates over routes and feedback, scoped to the users a key may see.

Every function is one read-only transaction over the tables of `gmtrouter.serve.store`, selecting only the
columns it needs; JSON columns are parsed with `json.loads` (not pydantic), which keeps a page over ten thousand
feedback rows within its time budget. A scope of None means every user (the admin key).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from gmtrouter.serve.auth import Principal
from gmtrouter.serve.store import Store, feedback, routes

Scope = sa.ColumnElement[bool] | None


def scope_of(who: Principal, column: sa.Column[Any]) -> Scope:
    """The SQL condition for the users `who` may act for: exact ids and tenant prefixes (None: everyone)."""
    if who.admin:
        return None
    exact = [u for u in who.users if not u.endswith("*")]
    clauses: list[sa.ColumnElement[bool]] = [column.in_(exact)] if exact else []
    clauses += [column.startswith(p[:-1], autoescape=True) for p in who.users if p.endswith("*")]
    return sa.or_(*clauses) if clauses else sa.false()


def _where(query: sa.Select[Any], scope: Scope) -> sa.Select[Any]:
    return query if scope is None else query.where(scope)


@dataclass(frozen=True)
class RouteView:
    """A stored route as the console shows it."""

    id: str
    user: str
    query: str
    choice: str
    ranking: list[dict[str, Any]]
    created: float


@dataclass(frozen=True)
class FeedbackView:
    """A stored feedback as the console shows it (the record as plain JSON)."""

    id: int
    route_id: str | None
    user: str
    kind: str
    record: dict[str, Any]
    created: float


def created_times(store: Store, who: Principal, since: float) -> dict[str, list[float]]:
    """Creation times of routes and of feedback since a time: the activity chart bins them."""
    out: dict[str, list[float]] = {}
    with store.engine.connect() as conn:
        for name, table in (("routes", routes), ("feedback", feedback)):
            query = _where(sa.select(table.c.created).where(table.c.created >= since), scope_of(who, table.c.user))
            out[name] = [row[0] for row in conn.execute(query)]
    return out


def choice_counts(store: Store, who: Principal) -> dict[str, int]:
    """How many stored routes chose each LLM."""
    query = _where(sa.select(routes.c.choice, sa.func.count()).group_by(routes.c.choice), scope_of(who, routes.c.user))
    with store.engine.connect() as conn:
        return {choice: int(n) for choice, n in conn.execute(query)}


def rankings(store: Store, who: Principal) -> list[tuple[str, list[dict[str, Any]]]]:
    """(choice, ranking) of every stored route: what spend is computed from."""
    query = _where(sa.select(routes.c.choice, routes.c.ranking), scope_of(who, routes.c.user))
    with store.engine.connect() as conn:
        return [(choice, json.loads(ranking)) for choice, ranking in conn.execute(query)]


def routed_feedback(store: Store, who: Principal) -> list[tuple[str, dict[str, Any]]]:
    """(the route's choice, the feedback's record) for every feedback given on a stored route."""
    query = sa.select(routes.c.choice, feedback.c.record).join(routes, routes.c.id == feedback.c.route_id)
    query = _where(query, scope_of(who, feedback.c.user))
    with store.engine.connect() as conn:
        return [(choice, json.loads(record)) for choice, record in conn.execute(query)]


def user_counts(store: Store, who: Principal) -> dict[str, dict[str, float]]:
    """Per user: stored feedback, stored routes and the last time either was stored."""
    out: dict[str, dict[str, float]] = {}
    with store.engine.connect() as conn:
        for name, table in (("feedback", feedback), ("routes", routes)):
            query = sa.select(table.c.user, sa.func.count(), sa.func.max(table.c.created)).group_by(table.c.user)
            for user, n, last in conn.execute(_where(query, scope_of(who, table.c.user))):
                entry = out.setdefault(user, {"feedback": 0, "routes": 0, "last": 0.0})
                entry[name] = int(n)
                entry["last"] = max(entry["last"], float(last or 0.0))
    return out


def _route_view(row: Any) -> RouteView:
    return RouteView(row.id, row.user, row.query, row.choice, json.loads(row.ranking), row.created)


def _feedback_view(row: Any) -> FeedbackView:
    return FeedbackView(row.id, row.route_id, row.user, row.kind, json.loads(row.record), row.created)


def recent_routes(store: Store, who: Principal, limit: int = 50, user: str | None = None) -> list[RouteView]:
    """The latest stored routes, newest first (of one user, if given)."""
    columns = (routes.c.id, routes.c.user, routes.c.query, routes.c.choice, routes.c.ranking, routes.c.created)
    query = _where(sa.select(*columns), scope_of(who, routes.c.user))
    if user is not None:
        query = query.where(routes.c.user == user)
    query = query.order_by(routes.c.created.desc()).limit(limit)
    with store.engine.connect() as conn:
        return [_route_view(row) for row in conn.execute(query)]


def route_view(store: Store, route_id: str) -> RouteView | None:
    """One stored route (the caller checks that the key may see its user)."""
    columns = (routes.c.id, routes.c.user, routes.c.query, routes.c.choice, routes.c.ranking, routes.c.created)
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(*columns).where(routes.c.id == route_id)).first()
    return _route_view(row) if row is not None else None


def feedback_on(store: Store, route_ids: Sequence[str]) -> dict[str, list[FeedbackView]]:
    """The feedback given on each of these routes, oldest first."""
    if not route_ids:
        return {}
    query = sa.select(feedback).where(feedback.c.route_id.in_(list(route_ids))).order_by(feedback.c.id)
    out: dict[str, list[FeedbackView]] = {}
    with store.engine.connect() as conn:
        for row in conn.execute(query):
            out.setdefault(row.route_id, []).append(_feedback_view(row))
    return out


def user_feedback(store: Store, user: str, limit: int | None = None) -> list[FeedbackView]:
    """A user's stored feedback, newest first."""
    query = sa.select(feedback).where(feedback.c.user == user).order_by(feedback.c.id.desc())
    if limit is not None:
        query = query.limit(limit)
    with store.engine.connect() as conn:
        return [_feedback_view(row) for row in conn.execute(query)]


def user_feedback_times(store: Store, user: str) -> list[float]:
    """When each of a user's stored feedback rows was committed, oldest first."""
    query = sa.select(feedback.c.created).where(feedback.c.user == user).order_by(feedback.c.created)
    with store.engine.connect() as conn:
        return [row[0] for row in conn.execute(query)]


def last_write(store: Store) -> float | None:
    """When the newest route or feedback was stored (None for an empty store)."""
    with store.engine.connect() as conn:
        times = [conn.execute(sa.select(sa.func.max(t.c.created))).scalar() for t in (routes, feedback)]
    known = [t for t in times if t is not None]
    return max(known) if known else None
